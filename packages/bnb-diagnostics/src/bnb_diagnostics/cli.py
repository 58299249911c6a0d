"""``bnb-diagnostics`` / ``python -m bitsandbytes``: print the environment report and run the
self-test.

Exit codes: 0 everything asked for works; 1 a self-test failed or the installed packages do not
form a compatible set; 2 something asked for on the command line is not available here (a
device, or the native library with ``--require-native``); 64 bad command-line usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

EXIT_OK, EXIT_FAILED, EXIT_UNAVAILABLE, EXIT_USAGE = 0, 1, 2, 64

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_UNAVAILABLE", "EXIT_USAGE", "build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 by default; 2 means "unavailable" here
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser(prog: str = "bnb-diagnostics") -> argparse.ArgumentParser:
    parser = _Parser(
        prog=prog,
        description="Report the environment bnb (bitsandbytes) runs in and self-test it on each device.",
        epilog="Exit codes: 0 ok, 1 a check failed or the package set is incompatible, "
        "2 a requested device/feature is unavailable, 64 usage error.",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    parser.add_argument(
        "--device",
        action="append",
        metavar="TYPE",
        help="self-test on this device type (cpu, cuda); repeatable; default: every available device",
    )
    parser.add_argument("--no-self-test", action="store_true", help="only print the report")
    parser.add_argument(
        "--require-native",
        action="store_true",
        help="exit non-zero if the native CPU library did not load (ops would use the slow reference)",
    )
    return parser


def _status(results: list[dict[str, Any]]) -> str:
    if any(r["status"] == "fail" for r in results):
        return "fail"
    return "pass" if results else "not run"


def _print_text(doc: dict[str, Any], out: TextIO) -> None:
    rep = doc["report"]
    w = out.write

    def section(title: str) -> None:
        w(f"\n== {title} ==\n")

    plat, tor, tri, nat = rep["platform"], rep["torch"], rep["triton"], rep["native"]
    section("platform")
    for key in ("platform", "machine", "cpu_count", "python", "python_executable"):
        w(f"  {key:18} {plat.get(key)}\n")
    section("torch / CUDA")
    w(f"  {'torch':18} {tor.get('version')} (CUDA build {tor.get('cuda_build')}, HIP {tor.get('hip_build')})\n")
    w(f"  {'CUDA available':18} {tor.get('cuda_available')}\n")
    if tor.get("cuda_available"):
        w(f"  {'driver':18} {tor.get('driver_version')} (CUDA driver API {tor.get('driver_cuda_api')})\n")
    for gpu in tor.get("gpus", []):
        w(
            f"  gpu {gpu['index']:<14} {gpu['name']}, compute capability {gpu['compute_capability']}, "
            f"{gpu['memory_gib']} GiB\n"
        )
    w(f"  {'triton':18} {tri.get('version') or 'not available: ' + str(tri.get('error'))}\n")
    section("native CPU library")
    w(f"  {'loaded':18} {nat.get('loaded')}\n  {'status':18} {nat.get('status')}\n")
    feats = nat.get("cpu_features") or {}
    w(f"  {'cpu features':18} {', '.join(k for k, v in feats.items() if v) or '-'}\n")
    if nat.get("forced_backend"):
        w(f"  {'BNB_BACKEND':18} {nat['forced_backend']} (forced)\n")
    section("backend per op")
    table = rep.get("backends", {})
    devices = rep.get("devices", [])
    w(f"  {'op':32}" + "".join(f"{d:>12}" for d in devices) + "\n")
    for op, row in table.items() if isinstance(table, dict) else []:
        if isinstance(row, dict):
            w(f"  {op:32}" + "".join(f"{row.get(d, '-'):>12}" for d in devices) + "\n")
    section("packages")
    pk = rep["packages"]
    for name, version in pk.get("versions", {}).items():
        w(f"  {name:18} {version or 'not installed'}\n")
    w(f"  {'compatible set':18} {'yes' if pk.get('compatible') else 'NO'}\n")
    for problem in pk.get("problems", []):
        w(f"  ! {problem}\n")
    for module, err in pk.get("import_errors", {}).items():
        w(f"  ! import {module}: {err}\n")
    if doc["self_test"] is not None:
        section("self-test")
        for r in doc["self_test"]:
            w(f"  [{r['status'].upper():4}] {r['device']:5} {r['check']:26} {r['detail']}\n")
    section("summary")
    for line in doc["errors"]:
        w(f"  ERROR: {line}\n")
    for line in doc["warnings"]:
        w(f"  warning: {line}\n")
    w(f"  result: {doc['result']} (exit {doc['exit_code']})\n")


def main(argv: list[str] | None = None, prog: str = "bnb-diagnostics", out: TextIO | None = None) -> int:
    out = sys.stdout if out is None else out
    args = build_parser(prog).parse_args(argv)

    from . import report, selftest

    available = report.available_devices()
    requested = args.device or available
    errors: list[str] = []
    warnings: list[str] = []
    exit_code = EXIT_OK
    known = {"cpu", "cuda", "xpu", "mps", "hpu", "npu"}
    unknown = [d for d in requested if d not in known]
    if unknown:
        build_parser(prog).error(f"unknown device type(s) {', '.join(unknown)}; expected one of {sorted(known)}")
    missing = [d for d in requested if d not in available]
    for d in missing:
        errors.append(f"device {d!r} was asked for but is not available here (available: {', '.join(available)})")
        exit_code = EXIT_UNAVAILABLE
    devices = [d for d in requested if d in available]

    rep = report.collect(sorted(set(available) | set(devices), key=available.index))
    native = rep.get("native", {})
    if not native.get("loaded"):
        message = f"native CPU library not loaded, CPU ops use the reference backend: {native.get('status')}"
        if args.require_native:
            errors.append(message)
            exit_code = exit_code or EXIT_UNAVAILABLE
        else:
            warnings.append(message)
    pk = rep.get("packages", {})
    if not pk.get("compatible", False):
        errors.append("installed bnb packages are not a compatible set: " + "; ".join(pk.get("problems", [])))
        exit_code = exit_code or EXIT_FAILED

    results = None
    if not args.no_self_test:
        results = [r.as_dict() for r in selftest.run(devices)]
        failed = [r for r in results if r["status"] == "fail"]
        for r in failed:
            errors.append(f"self-test {r['check']!r} failed on {r['device']}: {r['detail']}")
        if failed:
            exit_code = exit_code or EXIT_FAILED

    doc = {
        "report": rep,
        "self_test": results,
        "self_test_status": _status(results or []) if results is not None else "not run",
        "errors": errors,
        "warnings": warnings,
        "result": "ok" if exit_code == EXIT_OK else "problems found",
        "exit_code": exit_code,
    }
    if args.json:
        json.dump(doc, out, indent=1, default=str)
        out.write("\n")
    else:
        _print_text(doc, out)
    return exit_code


def console_main() -> None:
    """Entry point of the ``bnb-diagnostics`` console script."""
    raise SystemExit(main())
