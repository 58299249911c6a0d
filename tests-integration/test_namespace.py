"""The drop-in ``bitsandbytes`` namespace: every public name of the reference release resolves to
our implementation, versions satisfy what transformers/PEFT/accelerate check, and the namespace
holds no logic of its own."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import subprocess
import sys
import types
from importlib import metadata
from pathlib import Path

import pytest
import torch
from _flows import importorskip_transformers

import bitsandbytes as bnb

ROOT = Path(__file__).resolve().parents[1]
NAMES_FILE = Path(__file__).parent / "reference_public_names.txt"
NAMESPACE_DIR = ROOT / "src" / "bitsandbytes"
OUR_PACKAGES = ("bnb_kernels", "bnb_quant", "bnb_nn", "bnb_optim", "bnb_diagnostics", "bitsandbytes")


def reference_names() -> tuple[list[tuple[str, str]], dict[tuple[str, str], str]]:
    provided, excluded = [], {}
    for raw in NAMES_FILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        entry, _, note = line.partition("|")
        module, name = entry.split()
        if note:
            reason = note.strip()
            assert reason.startswith("excluded:") and len(reason) > len("excluded: ") + 10, raw
            excluded[(module, name)] = reason
        else:
            provided.append((module, name))
    return provided, excluded


PROVIDED, EXCLUDED = reference_names()


def test_names_file_is_well_formed():
    assert len(PROVIDED) > 100
    assert len(set(PROVIDED)) == len(PROVIDED), "duplicate entries"
    assert not set(PROVIDED) & set(EXCLUDED)


@pytest.mark.parametrize(("module", "name"), PROVIDED, ids=[f"{m}.{n}" for m, n in PROVIDED])
def test_reference_name_resolves_to_our_implementation(module, name):
    mod = importlib.import_module(module)
    assert hasattr(mod, name), f"{module}.{name} is missing from the drop-in namespace"
    obj = getattr(mod, name)
    if isinstance(obj, types.ModuleType):
        assert obj.__name__.split(".")[0] in OUR_PACKAGES, obj
    elif inspect.isclass(obj) or inspect.isfunction(obj):
        owner = obj.__module__.split(".")[0]
        assert owner in OUR_PACKAGES, f"{module}.{name} comes from {obj.__module__}, not from a bnb package"


def test_nn_modules_mirrors_nn():
    import bitsandbytes.nn.modules as modules

    for module, name in PROVIDED:
        if module == "bitsandbytes.nn" and name != "modules":
            assert getattr(modules, name) is getattr(bnb.nn, name), name


def test_namespace_objects_are_the_package_objects():
    import bnb_nn
    import bnb_optim
    import bnb_quant

    assert bnb.nn.Linear4bit is bnb_nn.Linear4bit
    assert bnb.nn.Params4bit is bnb_nn.Params4bit
    assert bnb.nn.Linear8bitLt is bnb_nn.Linear8bitLt
    assert bnb.matmul_4bit is bnb_nn.matmul_4bit
    assert bnb.MatmulLtState is bnb_nn.MatmulLtState
    assert bnb.optim.PagedAdamW8bit is bnb_optim.PagedAdamW8bit
    assert bnb.functional.QuantState is bnb_quant.QuantState
    assert bnb.functional.dequantize_4bit is bnb_quant.dequantize_4bit


def test_versions_agree_and_satisfy_the_integrations():
    from bnb_kernels.compat import parse_version

    text = (ROOT / "pyproject.toml").read_text()
    pyproject = re.search(r'^\[project\][^\[]*?^version = "([^"]+)"', text, re.M | re.S).group(1)
    assert bnb.__version__ == pyproject
    try:
        assert metadata.version("bitsandbytes") == pyproject
    except metadata.PackageNotFoundError:  # a source tree on PYTHONPATH (the offline GPU machine)
        pass
    # Minimums the integrations check, read from their installed source where possible.
    minimums = {
        "accelerate 4-bit": "0.39.0",
        "accelerate 8-bit": "0.37.2",
        "bnb 0.45 API (int8_vectorwise_*)": "0.45.0",
    }
    transformers = importorskip_transformers()
    from transformers.utils import import_utils

    minimums["transformers"] = import_utils.BITSANDBYTES_MIN_VERSION
    for who, minimum in minimums.items():
        assert parse_version(bnb.__version__) >= parse_version(minimum), (who, minimum)
    assert transformers.utils.is_bitsandbytes_available()


def test_integrations_accept_the_namespace():
    importorskip_transformers()
    accelerate_imports = pytest.importorskip("accelerate.utils.imports")
    peft_imports = pytest.importorskip("peft.import_utils")
    from transformers.integrations.bitsandbytes import validate_bnb_backend_availability
    from transformers.utils import get_available_devices

    assert accelerate_imports.is_4bit_bnb_available()
    assert accelerate_imports.is_8bit_bnb_available()
    assert accelerate_imports.is_bitsandbytes_multi_backend_available()
    assert peft_imports.is_bnb_available() and peft_imports.is_bnb_4bit_available()
    # transformers refuses to quantize unless an available device is one bitsandbytes supports.
    assert validate_bnb_backend_availability(raise_exception=True)
    assert "cpu" in bnb.supported_torch_devices
    assert set(get_available_devices()) & bnb.supported_torch_devices


def test_supported_devices_are_honest():
    import bnb_kernels

    ops = bnb_kernels.backend_table(tuple(sorted(bnb.supported_torch_devices)))
    assert ops, "no ops registered"
    for op, row in ops.items():
        for device, backend in row.items():
            assert backend != "-", f"{op} has no implementation on {device}, yet {device} is listed as supported"


ALLOWED_NODES = (ast.Expr, ast.Import, ast.ImportFrom, ast.Assign, ast.AnnAssign, ast.Raise)


@pytest.mark.parametrize("path", sorted(NAMESPACE_DIR.rglob("*.py")), ids=lambda p: str(p.relative_to(NAMESPACE_DIR)))
def test_namespace_has_no_logic(path):
    """Only docstrings, imports, constant assignments (and __main__'s one call): no def, class,
    if, try or loop. Behaviour lives in the packages, where it is tested."""
    tree = ast.parse(path.read_text())
    for node in tree.body:
        assert isinstance(node, ALLOWED_NODES), f"{path.name}:{node.lineno}: {type(node).__name__} in the namespace"
        if isinstance(node, ast.Expr):
            assert isinstance(node.value, ast.Constant), f"{path.name}:{node.lineno}: expression statement"
        if isinstance(node, ast.Raise):
            assert path.name == "__main__.py", f"{path.name}:{node.lineno}"
        if isinstance(node, ast.Assign | ast.AnnAssign):
            value = node.value
            calls = [n for n in ast.walk(value) if isinstance(n, ast.Call | ast.Lambda)]
            assert not calls, f"{path.name}:{node.lineno}: computed assignment"


def test_python_dash_m_bitsandbytes_runs_the_diagnostics():
    """``python -m bitsandbytes`` is the bnb-diagnostics report of this very install."""
    import json

    out = subprocess.run(
        [sys.executable, "-m", "bitsandbytes", "--json", "--no-self-test"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    doc = json.loads(out.stdout)
    assert out.returncode == doc["exit_code"] == 0, doc["errors"]
    assert doc["report"]["packages"]["versions"]["bitsandbytes"] == bnb.__version__
    assert doc["self_test"] is None  # the self-test itself is covered by bnb-diagnostics' tests
    assert doc["report"]["packages"]["compatible"] is True
    assert doc["report"]["torch"]["version"] == torch.__version__
