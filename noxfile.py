"""nox sessions of the workspace (every environment is made by uv).

    uv run nox -l                                 # list the sessions
    uv run nox -s "tests(torch='2.4', variant='pypi')" -- packages/bnb-quant/tests
    uv run nox -s isolated                        # each package alone in a fresh venv
    uv run nox -s lint
    uv run nox -s bench
    nox -s gpu                                    # GPU machine: no uv, installed torch

``tests`` runs over torch versions x CUDA variants. ``pypi`` is torch as PyPI serves it
(CUDA 13 build for new torch, CUDA 12 for torch 2.4 on Linux; both run on a CPU-only
machine); ``cpu``, ``cu12x``, ``cu13x`` install from the PyPI-compatible PyTorch wheel
index through uv's ``--torch-backend``. A variant whose index cannot be reached from this
machine, or that has no build for that torch, is SKIPPED with a message saying so: nox
reports it as skipped, never as passed.

The local packages are installed non-editable from their folders (as a user gets them),
rebuilt every time (``--reinstall-package``), with bnb-kernels' CMake build kept apart per
session so the editable ``.venv`` build is not disturbed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nox

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).parent
nox.options.default_venv_backend = "uv"
nox.options.sessions = ["lint", "tests(torch='newest', variant='pypi')", "isolated"]

# Package folder -> import name; the dependency order of the workspace.
PACKAGES = {
    "bnb-kernels": "bnb_kernels",
    "bnb-quant": "bnb_quant",
    "bnb-nn": "bnb_nn",
    "bnb-optim": "bnb_optim",
    "bnb-diagnostics": "bnb_diagnostics",
}
OLDEST_TORCH = "2.4"
TORCH_VERSIONS = [OLDEST_TORCH, "newest"]
VARIANTS = ["pypi", "cpu", "cu12x", "cu13x"]
# uv --torch-backend per (torch, variant); None = that torch has no such build.
# Override with BNB_NOX_BACKEND_<VARIANT>=cu128 etc.
BACKENDS = {
    OLDEST_TORCH: {"cpu": "cpu", "cu12x": "cu124", "cu13x": None},
    "newest": {"cpu": "cpu", "cu12x": "cu128", "cu13x": "cu130"},
}
# Tools that are not needed to run the tests.
NOT_FOR_TESTS = {"ruff", "nox"}
BENCH_MODULES = ["quant", "linear4bit", "linear8bit", "optim"]


def _pyproject(path: Path = ROOT / "pyproject.toml") -> dict:
    with path.open("rb") as f:
        return tomllib.load(f)


def _req_name(req: str) -> str:
    name = req
    for sep in "<>=!~;[ ":
        name = name.split(sep, 1)[0]
    return name.strip().lower().replace("_", "-")


def test_requirements() -> list[str]:
    """The dev dependency group without the tools the tests do not use."""
    dev = _pyproject()["dependency-groups"]["dev"]
    return [r for r in dev if isinstance(r, str) and _req_name(r) not in NOT_FOR_TESTS]


def locked_version(name: str) -> str | None:
    with (ROOT / "uv.lock").open("rb") as f:
        lock = tomllib.load(f)
    for pkg in lock.get("package", []):
        if pkg.get("name") == name:
            return pkg.get("version")
    return None


def lock_constraints(session: nox.Session) -> str:
    """uv.lock's versions (all groups, no workspace packages) as a pip constraints file."""
    path = Path(session.create_tmp()) / "lock-constraints.txt"
    session.run_install(
        "uv", "export", "--frozen", "--quiet", "--no-hashes", "--no-emit-workspace", "--all-groups",
        "--output-file", str(path), silent=True,
    )  # fmt: skip
    return str(path)


def sibling_closure(package: str) -> list[str]:
    """``package`` and every workspace package it depends on, dependencies first."""
    order: list[str] = []

    def visit(name: str) -> None:
        deps = _pyproject(ROOT / "packages" / name / "pyproject.toml")["project"].get("dependencies", [])
        for req in deps:
            dep = _req_name(req)
            if dep in PACKAGES and dep not in order:
                visit(dep)
        if name not in order:
            order.append(name)

    visit(package)
    return order


def install_local(session: nox.Session, packages: list[str], *extra: str) -> None:
    """Install workspace packages from their folders (non-editable, rebuilt) plus ``extra``."""
    build_dir = Path(session.create_tmp()) / "bnb-kernels-build"
    # --no-sources: the root project's [tool.uv.sources] would make the members editable.
    args = ["uv", "pip", "install", "--no-sources"]
    for name in packages:
        args += ["--reinstall-package", name]
    if "bnb-kernels" in packages:
        args += ["--config-settings-package", f"bnb-kernels:build-dir={build_dir}"]
    args += [str(ROOT / "packages" / name) for name in packages]
    session.run_install(*args, *extra, silent=False)


def _index_unreachable(session: nox.Session, backend: str, torch_spec: str) -> str | None:
    """Resolve torch against the variant's index; the error text if the index is unreachable."""
    req = Path(session.create_tmp()) / "torch-probe.in"
    req.write_text(torch_spec + "\n")
    env = {**os.environ, "UV_HTTP_RETRIES": "0"}
    proc = subprocess.run(
        ["uv", "pip", "compile", "-q", "--no-header", "--torch-backend", backend, "-p", sys.executable, str(req)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    if proc.returncode == 0:
        return None
    text = proc.stderr.strip()
    network = ("Failed to fetch", "dns error", "error sending request", "Connect", "timed out", "Could not connect")
    if any(word in text for word in network):
        lines = [line.strip().removeprefix("cause: ") for line in text.splitlines()]
        fetch = [line for line in lines if line.startswith("Failed to fetch")]
        return "; ".join(fetch[:1] + lines[-1:]) if lines else "no answer"
    session.error(f"resolving {torch_spec} with --torch-backend {backend} failed:\n{text}")
    return None  # unreachable: session.error raises


@nox.session
@nox.parametrize("variant", VARIANTS)
@nox.parametrize("torch", TORCH_VERSIONS)
def tests(session: nox.Session, torch: str, variant: str) -> None:
    """The test suite on one torch version x CUDA variant (posargs: pytest arguments)."""
    torch_spec = "torch>=2.4" if torch == "newest" else f"torch=={torch}.*"
    extra: list[str] = []
    if torch == OLDEST_TORCH:
        # numpy 1.x: what stacks pinned to torch 2.4 mostly have (torch 2.4 itself also takes numpy 2).
        # setuptools: Triton 3.0 (torch 2.4's) imports it and a uv venv has none.
        extra += ["numpy<2", "setuptools"]
    if variant != "pypi":
        backend = os.environ.get(f"BNB_NOX_BACKEND_{variant.upper()}", BACKENDS[torch][variant])
        if backend is None:
            session.skip(f"SKIPPED: torch {torch} has no {variant} build on the PyTorch wheel index")
        why = _index_unreachable(session, backend, torch_spec)
        if why:
            session.skip(
                f"SKIPPED: the PyTorch wheel index for --torch-backend {backend} ({variant}) "
                f"cannot be reached from this machine ({why}); nothing was tested"
            )
        extra += ["--torch-backend", backend]
    install_local(session, list(PACKAGES), str(ROOT), torch_spec, *test_requirements(), *extra)
    session.run(
        "python", "-c", "import torch, bnb_kernels; print('torch', torch.__version__, '|', bnb_kernels.native_status())"
    )
    args = session.posargs or ["-n", "2"]
    session.run("python", "-m", "pytest", "-p", "no:cacheprovider", *args, env={"PYTHONDONTWRITEBYTECODE": "1"})


@nox.session
@nox.parametrize("package", list(PACKAGES))
def isolated(session: nox.Session, package: str) -> None:
    """One package alone in a fresh venv: its declared deps only; its tests pass; others absent."""
    closure = sibling_closure(package)
    absent = [p for p in PACKAGES if p not in closure]
    tools = {"pytest", "pytest-xdist", "hypothesis", "numpy", "safetensors"}  # safetensors reads the fixtures
    test_tools = [r for r in test_requirements() if _req_name(r) in tools]
    install_local(session, closure, *test_tools, "--constraints", lock_constraints(session))
    absent_pairs = [(p, PACKAGES[p]) for p in absent] + [("bitsandbytes", "bitsandbytes")]
    check = Path(session.create_tmp()) / "check_isolated.py"
    check.write_text(
        "import importlib.metadata as md, importlib.util as u, sys\n"
        "bad = []\n"
        f"for dist, mod in {absent_pairs!r}:\n"
        "    if u.find_spec(mod) is not None:\n"
        "        bad.append(mod)\n"
        "    try:\n"
        "        md.distribution(dist)\n"
        "        bad.append(dist)\n"
        "    except md.PackageNotFoundError:\n"
        "        pass\n"
        "if bad:\n"
        "    sys.exit(f'should be absent but are installed: {bad}')\n"
        f"import {PACKAGES[package]} as m\n"
        f"print('{package}', m.__version__, 'installed with', {closure[:-1]!r}, "
        f"'and without', {[*absent, 'bitsandbytes']!r})\n"
    )
    session.run("python", str(check))
    tests_dir = ROOT / "packages" / package / "tests"
    if not tests_dir.is_dir():
        session.error(f"{package} has no tests/ folder")
    args = session.posargs or []
    session.run("python", "-m", "pytest", "-p", "no:cacheprovider", str(tests_dir), *args)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check + ruff format --check on the whole tree."""
    ruff = locked_version("ruff")
    session.install(f"ruff=={ruff}" if ruff else "ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(venv_backend="none")
def gpu(session: nox.Session) -> None:
    """The GPU-marked tests with the torch already installed (no uv, no venv): for the GPU machine.

    Equivalent without nox: ``bash scripts/gpu-tests.sh`` (sets up with scripts/gpu-env.sh
    when the packages are not importable yet).
    """
    session.run(
        "bash", str(ROOT / "scripts" / "gpu-tests.sh"), *session.posargs, env={"PYTHON": sys.executable}, external=True
    )


@nox.session
def bench(session: nox.Session) -> None:
    """Every benchmark module in benchmarks/ on the device that is there (posargs: harness arguments)."""
    env = {"UV_PROJECT_ENVIRONMENT": session.virtualenv.location}
    session.run_install("uv", "sync", "--locked", "--no-dev", "--group", "bench", env=env)
    for name in BENCH_MODULES:
        if (ROOT / "benchmarks" / f"{name}.py").is_file():
            session.run("python", "-m", f"benchmarks.{name}", *session.posargs)
        else:
            session.log(f"benchmarks/{name}.py does not exist yet; not run")


if shutil.which("uv") is None:  # every uv session needs it on PATH
    print("noxfile: uv is not on PATH; install it with `python -m pip install uv`", file=sys.stderr)
