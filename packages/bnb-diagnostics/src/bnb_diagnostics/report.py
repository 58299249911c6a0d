"""The environment report: platform, Python, torch, CUDA and driver, GPUs, Triton, the native
library, which backend each op runs on, and the installed package set.

Every probe is best-effort: a probe that fails records why instead of raising, so the report
is still useful on a broken install (that is when it is needed most).
"""

from __future__ import annotations

import ctypes
import importlib
import os
import platform
import shutil
import subprocess
import sys
from typing import Any

import torch

from . import packages

__all__ = ["available_devices", "collect", "cuda_driver"]


def available_devices() -> list[str]:
    """Device types this machine can run bnb ops on (``cpu`` always, ``cuda`` when present)."""
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    return devices


def _platform() -> dict[str, Any]:
    return {
        "system": platform.system(),
        "release": platform.release(),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "python_executable": sys.executable,
    }


def cuda_driver() -> dict[str, Any]:
    """Driver version from ``nvidia-smi`` and the CUDA driver API version from libcuda."""
    info: dict[str, Any] = {"driver_version": None, "driver_cuda_api": None}
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run(
                [smi, "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            if out.returncode == 0 and out.stdout.strip():
                info["driver_version"] = out.stdout.strip().splitlines()[0].strip()
        except (OSError, subprocess.SubprocessError) as exc:
            info["driver_error"] = f"nvidia-smi failed: {exc}"
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        version = ctypes.c_int(0)
        if lib.cuDriverGetVersion(ctypes.byref(version)) == 0 and version.value:
            info["driver_cuda_api"] = f"{version.value // 1000}.{(version.value % 1000) // 10}"
        break
    else:
        info.setdefault("driver_error", "no CUDA driver library (libcuda) found")
    return info


def _torch() -> dict[str, Any]:
    info: dict[str, Any] = {
        "version": torch.__version__,
        "cuda_build": torch.version.cuda,
        "hip_build": getattr(torch.version, "hip", None),
        "cuda_available": torch.cuda.is_available(),
        "gpus": [],
    }
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            info["gpus"].append(
                {
                    "index": index,
                    "name": props.name,
                    "compute_capability": f"{props.major}.{props.minor}",
                    "memory_gib": round(props.total_memory / 2**30, 2),
                }
            )
        info.update(cuda_driver())
    return info


def _triton() -> dict[str, Any]:
    try:
        triton = importlib.import_module("triton")
    except Exception as exc:  # ImportError, or a broken install raising anything
        return {"version": None, "error": f"{type(exc).__name__}: {exc}"}
    return {"version": getattr(triton, "__version__", "unknown"), "interpret": os.environ.get("TRITON_INTERPRET")}


def _native() -> dict[str, Any]:
    import bnb_kernels

    status = bnb_kernels.native_status()
    return {
        "loaded": status.startswith("loaded"),
        "status": status,
        "cpu_features": bnb_kernels.cpu_features(),
        "forced_backend": os.environ.get("BNB_BACKEND") or None,
    }


def _backends(devices: list[str]) -> dict[str, dict[str, str]]:
    import bnb_kernels

    return bnb_kernels.backend_table(tuple(devices))


def _packages() -> dict[str, Any]:
    versions = packages.installed_versions()
    problems = packages.check_compatibility({k: versions[k] for k in packages.BNB_DISTRIBUTIONS})
    import_errors = {}
    for module in ("bnb_kernels", "bnb_quant", "bnb_nn", "bnb_optim"):
        if versions.get(module.replace("_", "-")) is None:
            continue
        try:
            importlib.import_module(module)
        except Exception as exc:
            import_errors[module] = f"{type(exc).__name__}: {exc}"
    return {
        "versions": versions,
        "compatible": not problems and not import_errors,
        "problems": [p.message for p in problems],
        "import_errors": import_errors,
    }


def collect(devices: list[str] | None = None) -> dict[str, Any]:
    """The whole report as a JSON-serializable dict."""
    devices = available_devices() if devices is None else devices
    report: dict[str, Any] = {}
    for key, probe in (
        ("platform", _platform),
        ("torch", _torch),
        ("triton", _triton),
        ("native", _native),
        ("backends", lambda: _backends(devices)),
        ("packages", _packages),
    ):
        try:
            report[key] = probe()
        except Exception as exc:  # a probe must never take the report down
            report[key] = {"error": f"{type(exc).__name__}: {exc}"}
    report["devices"] = devices
    return report
