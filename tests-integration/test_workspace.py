"""The shape of the workspace: the dependency rule, version pins, per-package files.

Dependency rule (DESIGN.md): bnb-kernels <- bnb-quant <- {bnb-nn, bnb-optim};
bnb-kernels <- bnb-diagnostics; bnb-nn and bnb-optim never import each other. Checked
twice: on the dependencies each pyproject declares, and on the imports in each package's
source (every ``import``/``from`` statement at any depth, and ``import_module("...")``
with a literal name).
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[1]

MODULES = {
    "bnb-kernels": "bnb_kernels",
    "bnb-quant": "bnb_quant",
    "bnb-nn": "bnb_nn",
    "bnb-optim": "bnb_optim",
    "bnb-diagnostics": "bnb_diagnostics",
}
# What each package may depend on among its siblings (the meta-package may use all five).
ALLOWED = {
    "bnb-kernels": set(),
    "bnb-quant": {"bnb-kernels"},
    "bnb-nn": {"bnb-kernels", "bnb-quant"},
    "bnb-optim": {"bnb-kernels", "bnb-quant"},
    "bnb-diagnostics": {"bnb-kernels"},
}
SIBLING_MODULES = {mod: dist for dist, mod in MODULES.items()} | {"bitsandbytes": "bitsandbytes"}


def _toml(path: Path) -> dict:
    with path.open("rb") as f:
        return tomllib.load(f)


def _pyproject(dist: str) -> dict:
    return _toml(ROOT / "packages" / dist / "pyproject.toml")


def _req_name(req: str) -> str:
    return re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0].strip().lower().replace("_", "-")


def _declared_siblings(dist: str) -> dict[str, str]:
    """Sibling distribution -> its specifier, from the package's [project] dependencies."""
    out = {}
    for req in _pyproject(dist)["project"].get("dependencies", []):
        name = _req_name(req)
        if name in MODULES or name == "bitsandbytes":
            out[name] = req[len(name) :].split(";")[0].strip()
    return out


def _imported_modules(src: Path, root: Path = ROOT) -> dict[str, list[str]]:
    """Top-level module name -> ["file:line", ...] for every import in ``src``."""
    found: dict[str, list[str]] = {}
    for path in sorted(src.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
                func = node.func
                fname = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if fname in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                    names = [node.args[0].value]
            for name in names:
                where = f"{path.relative_to(root)}:{node.lineno}"
                found.setdefault(name.split(".")[0], []).append(where)
    return found


def _init_version(dist: str) -> str:
    init = ROOT / "packages" / dist / "src" / MODULES[dist] / "__init__.py"
    for node in ast.parse(init.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__version__" for t in node.targets):
            assert isinstance(node.value, ast.Constant)
            return str(node.value.value)
    raise AssertionError(f"{init} sets no literal __version__")


def test_workspace_members_are_the_five_packages() -> None:
    members = sorted(p.name for p in (ROOT / "packages").iterdir() if (p / "pyproject.toml").is_file())
    assert members == sorted(MODULES)
    for dist in MODULES:
        assert _pyproject(dist)["project"]["name"] == dist


@pytest.mark.parametrize("dist", list(MODULES))
def test_declared_dependencies_follow_the_rule(dist: str) -> None:
    declared = set(_declared_siblings(dist))
    assert "bitsandbytes" not in declared, f"{dist} must not depend on the meta-package"
    assert declared <= ALLOWED[dist], (
        f"{dist} declares {sorted(declared - ALLOWED[dist])}, allowed: {sorted(ALLOWED[dist])}"
    )
    if dist != "bnb-kernels":
        assert "bnb-kernels" in declared, f"{dist} uses bnb-kernels' compat check, so it must declare bnb-kernels"


@pytest.mark.parametrize("dist", list(MODULES))
def test_source_imports_follow_the_rule(dist: str) -> None:
    imports = _imported_modules(ROOT / "packages" / dist / "src")
    own = MODULES[dist]
    declared = set(_declared_siblings(dist))
    for module, where in imports.items():
        sibling = SIBLING_MODULES.get(module)
        if sibling is None or module == own:
            continue
        assert sibling in ALLOWED[dist], (
            f"{dist} imports {module} ({', '.join(where)}), which the dependency rule forbids"
        )
        assert sibling in declared, f"{dist} imports {module} ({', '.join(where)}) without declaring {sibling}"


@pytest.mark.parametrize("dist", list(MODULES))
def test_package_tests_import_only_what_the_package_may(dist: str) -> None:
    # `nox -s isolated` runs each package's tests with only that package and its declared
    # siblings installed, so its tests may import nothing else of the workspace either.
    imports = _imported_modules(ROOT / "packages" / dist / "tests")
    declared = set(_declared_siblings(dist))
    for module, where in imports.items():
        sibling = SIBLING_MODULES.get(module)
        if sibling is None or module == MODULES[dist]:
            continue
        assert sibling in declared, (
            f"{dist}'s tests import {module} ({', '.join(where)}), which {dist} does not depend on: "
            f"they fail when {dist} is installed alone"
        )


def test_nn_and_optim_never_import_each_other() -> None:
    nn = _imported_modules(ROOT / "packages" / "bnb-nn" / "src")
    optim = _imported_modules(ROOT / "packages" / "bnb-optim" / "src")
    assert "bnb_optim" not in nn, f"bnb-nn imports bnb_optim at {nn.get('bnb_optim')}"
    assert "bnb_nn" not in optim, f"bnb-optim imports bnb_nn at {optim.get('bnb_nn')}"


def test_import_scanner_sees_nested_and_dynamic_imports(tmp_path: Path) -> None:
    # The scanner itself: a forbidden import hidden in a function or made by name is found.
    src = tmp_path / "pkg"
    src.mkdir()
    (src / "a.py").write_text(
        textwrap.dedent(
            """
            import importlib
            def f():
                from bnb_optim.adam import Adam
                return Adam
            def g():
                return importlib.import_module("bnb_nn.modules")
            """
        )
    )
    found = _imported_modules(src, root=tmp_path)
    assert set(found) >= {"bnb_optim", "bnb_nn", "importlib"}
    assert found["bnb_optim"] == ["pkg/a.py:4"]


def test_meta_package_pins_equal_package_versions() -> None:
    root = _toml(ROOT / "pyproject.toml")["project"]
    pins = {}
    for req in root["dependencies"]:
        name = _req_name(req)
        if name in MODULES:
            spec = req[len(name) :].split(";")[0].strip()
            assert re.fullmatch(r"==\s*[0-9][0-9A-Za-z.+-]*", spec), f"meta-package pin {req!r} is not an exact == pin"
            pins[name] = spec.lstrip("=").strip()
    assert set(pins) == set(MODULES), f"meta-package pins {sorted(pins)}, expected all five"
    for dist, pinned in pins.items():
        assert _pyproject(dist)["project"]["version"] == pinned, f"{dist}: pyproject version != meta pin {pinned}"
        assert _init_version(dist) == pinned, f"{dist}: __version__ {_init_version(dist)} != meta pin {pinned}"


def test_installed_versions_equal_the_sources() -> None:
    import importlib

    for dist, module in MODULES.items():
        mod = importlib.import_module(module)
        assert mod.__version__ == _pyproject(dist)["project"]["version"], dist
    import bitsandbytes

    assert bitsandbytes.__version__ == _toml(ROOT / "pyproject.toml")["project"]["version"]


@pytest.mark.parametrize("dist", [d for d in MODULES if d != "bnb-kernels"])
def test_runtime_version_check_matches_declared_ranges(dist: str) -> None:
    # The (low, high) ranges each package passes to bnb_kernels.compat.require at import
    # are the ones its pyproject declares (">=low,<high").
    init = ROOT / "packages" / dist / "src" / MODULES[dist] / "__init__.py"
    calls = [
        node
        for node in ast.walk(ast.parse(init.read_text()))
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "require"
    ]
    assert calls, f"{init} does not call bnb_kernels.compat.require"
    ranges = ast.literal_eval(calls[0].args[2])
    declared = _declared_siblings(dist)
    assert {SIBLING_MODULES[m] for m in ranges} == set(declared), f"{dist}: require() checks {sorted(ranges)}"
    for module, (low, high) in ranges.items():
        spec = declared[SIBLING_MODULES[module]].replace(" ", "")
        assert set(spec.split(",")) == {f">={low}", f"<{high}"}, f"{dist}: pyproject {spec!r} vs require {low}..{high}"


@pytest.mark.parametrize("dist", list(MODULES))
def test_package_has_readme_changelog_py_typed_tests(dist: str) -> None:
    pkg = ROOT / "packages" / dist
    for name in ("README.md", "CHANGELOG.md"):
        assert (pkg / name).is_file() and (pkg / name).read_text().strip(), f"{dist} lacks a non-empty {name}"
    assert (pkg / "src" / MODULES[dist] / "py.typed").is_file(), f"{dist} lacks py.typed"
    assert sorted((pkg / "tests").glob("test_*.py")), f"{dist} has no tests/test_*.py"
    assert (ROOT / "src" / "bitsandbytes" / "py.typed").is_file()


def test_require_names_both_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    import bnb_kernels
    from bnb_kernels.compat import IncompatibleVersionError, require

    require("bnb-quant", "0.1.0", {"bnb_kernels": ("0.1", "0.2")})  # the real versions agree
    monkeypatch.setattr(bnb_kernels, "__version__", "0.7.3")
    with pytest.raises(IncompatibleVersionError) as info:
        require("bnb-quant", "0.1.0", {"bnb_kernels": ("0.1", "0.2")})
    message = str(info.value)
    assert "bnb-kernels 0.7.3" in message and "bnb-quant 0.1.0" in message and ">=0.1,<0.2" in message
    assert isinstance(info.value, ImportError)


def test_mismatched_sibling_fails_at_import() -> None:
    # A real import of each dependent package, in a fresh interpreter, with bnb_kernels
    # reporting a version outside every declared range.
    script = textwrap.dedent(
        f"""
        import sys
        import bnb_kernels
        bnb_kernels.__version__ = "9.9.0"
        for mod in {[MODULES[d] for d in MODULES if d != "bnb-kernels"]!r}:
            try:
                __import__(mod)
            except ImportError as exc:
                print(mod, "|", exc)
            else:
                print(mod, "| imported")
        """
    )
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(" | ", 1) for line in out.stdout.strip().splitlines())
    for dist, module in MODULES.items():
        if dist == "bnb-kernels":
            continue
        msg = lines[module]
        assert msg != "imported", f"{module} imported despite bnb-kernels 9.9.0"
        assert "bnb-kernels 9.9.0" in msg and f"{dist} {_init_version(dist)}" in msg, msg
