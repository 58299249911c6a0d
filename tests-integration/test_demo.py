"""The main job's demo (scripts/demo.py) runs end to end in its quick mode and its checks hold."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import sys
from pathlib import Path

import pytest
from _flows import importorskip_transformers

importorskip_transformers()
pytest.importorskip("peft")

DEMO = Path(__file__).resolve().parents[1] / "scripts" / "demo.py"


def load_demo():
    spec = importlib.util.spec_from_file_location("bnb_demo", DEMO)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_demo_quick_run_passes_its_checks(tmp_path):
    demo = load_demo()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = demo.main(["--quick", "--quiet", "--device", "cpu", "--out", str(tmp_path)])
    text = out.getvalue()
    assert code == 0, text
    assert "all checks passed" in text and "FAILED" not in text, text
    for heading in ("1. a ", "2. the same model", "3. QLoRA", "4. save"):
        assert heading in text, text
    for row in ("bf16 (dense)", "NF4 + double quant", "int8 (threshold 6)"):
        assert row in text
    assert (tmp_path / "nf4" / "model.safetensors").is_file()
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()


def test_demo_tokenizer_round_trips_and_rejects_unknown_characters():
    demo = load_demo()
    tok = demo.CharTokenizer("abc ")
    assert tok.decode(tok.encode("a cab")) == "a cab"
    with pytest.raises(ValueError, match="outside the alphabet"):
        tok.encode("abz")
