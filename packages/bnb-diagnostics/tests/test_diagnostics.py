"""bnb-diagnostics: the report, the self-test, the compatibility check and the CLI contract."""

from __future__ import annotations

import io
import json
import runpy
import sys

import pytest
import torch

from bnb_diagnostics import cli, packages, report, selftest


def run_cli(*argv: str) -> tuple[int, str]:
    buf = io.StringIO()
    code = cli.main(list(argv), out=buf)
    return code, buf.getvalue()


def test_json_report_has_every_section_and_passes_on_cpu():
    code, text = run_cli("--json", "--device", "cpu")
    doc = json.loads(text)
    rep = doc["report"]
    assert rep["platform"]["python"] == sys.version.split()[0]
    assert rep["torch"]["version"] == torch.__version__
    assert rep["torch"]["cuda_available"] == torch.cuda.is_available()
    assert "version" in rep["triton"]
    assert isinstance(rep["native"]["loaded"], bool) and rep["native"]["status"]
    assert rep["backends"]["quantize_4bit"]["cpu"] in {"cpu", "reference", "triton"}
    assert rep["packages"]["versions"]["bnb-kernels"] == "0.1.0"
    assert rep["packages"]["compatible"] is True
    statuses = {(r["check"], r["device"]): r["status"] for r in doc["self_test"]}
    assert set(selftest.CHECKS) == {c for c, _ in statuses}
    assert "fail" not in statuses.values(), doc["self_test"]
    assert statuses[("quantize 4-bit nf4/fp4", "cpu")] == "pass"
    assert code == cli.EXIT_OK == doc["exit_code"]


def test_text_report_names_the_sections():
    code, text = run_cli("--no-self-test")
    for heading in ("== platform ==", "== torch / CUDA ==", "== native CPU library ==", "== backend per op =="):
        assert heading in text
    assert "quantize_blockwise" in text and "compatible set" in text
    assert code == cli.EXIT_OK


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU answer")
def test_asking_for_a_missing_device_exits_2_and_says_why():
    code, text = run_cli("--json", "--device", "cuda")
    doc = json.loads(text)
    assert code == cli.EXIT_UNAVAILABLE == doc["exit_code"]
    assert any("'cuda'" in e and "not available" in e for e in doc["errors"])


def test_usage_errors_exit_64():
    with pytest.raises(SystemExit) as exc:
        cli.main(["--device", "tpu9"])
    assert exc.value.code == cli.EXIT_USAGE
    with pytest.raises(SystemExit) as exc:
        cli.main(["--frobnicate"])
    assert exc.value.code == cli.EXIT_USAGE


def test_help_exits_0(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    assert "--json" in capsys.readouterr().out


def test_require_native_fails_when_the_library_did_not_load(monkeypatch):
    monkeypatch.setattr(report, "_native", lambda: {"loaded": False, "status": "x.so: not found", "cpu_features": {}})
    code, text = run_cli("--json", "--no-self-test", "--require-native")
    assert code == cli.EXIT_UNAVAILABLE
    assert any("x.so: not found" in e for e in json.loads(text)["errors"])
    code, text = run_cli("--json", "--no-self-test")
    assert code == cli.EXIT_OK
    assert any("x.so: not found" in w for w in json.loads(text)["warnings"])


def test_a_failing_check_fails_the_run(monkeypatch):
    def broken(device: str) -> str:
        raise AssertionError("codes differ from the reference backend")

    monkeypatch.setattr(selftest, "CHECKS", {"broken": broken, "ok": lambda device: "fine"})
    code, text = run_cli("--json", "--device", "cpu")
    doc = json.loads(text)
    assert code == cli.EXIT_FAILED
    assert doc["self_test_status"] == "fail"
    assert [r["status"] for r in doc["self_test"]] == ["fail", "pass"]
    assert "codes differ" in doc["self_test"][0]["detail"]


def test_missing_optional_package_is_a_skip_not_a_failure(monkeypatch):
    real_import = selftest.importlib.import_module

    def no_nn(name: str, *a):
        if name in ("bnb_nn", "bnb_optim"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *a)

    monkeypatch.setattr(selftest.importlib, "import_module", no_nn)
    results = {r.check: r for r in selftest.run(["cpu"])}
    assert results["optimizer 8-bit step"].status == "skip"
    assert "bnb-optim is not installed" in results["optimizer 8-bit step"].detail
    for name in ("matmul 4-bit", "matmul int8"):
        # falls back to the op-level check when the op exists, else skips
        assert results[name].status in {"pass", "skip"}, results[name]
    assert results["quantize 4-bit nf4/fp4"].status == "pass"


@pytest.mark.parametrize(
    ("version", "spec", "ok"),
    [
        ("0.1.0", ">=0.1,<0.2", True),
        ("0.2.0", ">=0.1,<0.2", False),
        ("0.1.5", "==0.1.5", True),
        ("0.1.5", "==0.1.0", False),
        ("0.1.0+local", "==0.1.0", True),
        ("1.4.2", "~=1.4", True),
        ("2.0", "~=1.4", False),
        ("0.9", "!=0.9", False),
        ("0.51.0", "", True),
    ],
)
def test_satisfies(version, spec, ok):
    assert packages.satisfies(version, spec) is ok


def test_satisfies_rejects_unreadable_clauses():
    with pytest.raises(ValueError, match="cannot read version clause"):
        packages.satisfies("0.1.0", "=>0.1")
    with pytest.raises(TypeError):
        packages.satisfies(0.1, ">=0.1")


def test_compatibility_reports_each_broken_requirement():
    versions = {"bitsandbytes": "0.51.0", "bnb-kernels": "0.2.0", "bnb-nn": "0.1.0", "bnb-optim": None}
    requirements = {
        "bitsandbytes": {"bnb-kernels": "==0.1.0", "bnb-nn": "==0.1.0", "bnb-optim": "==0.1.0", "torch": ">=2.4"},
        "bnb-nn": {"bnb-kernels": ">=0.1,<0.2"},
    }
    problems = packages.check_compatibility(versions, requirements)
    messages = sorted(p.message for p in problems)
    assert messages == [
        "bitsandbytes needs bnb-kernels==0.1.0, but bnb-kernels 0.2.0 is installed",
        "bitsandbytes needs bnb-optim==0.1.0, which is not installed",
        "bnb-nn needs bnb-kernels>=0.1,<0.2, but bnb-kernels 0.2.0 is installed",
    ]
    assert packages.check_compatibility({"bnb-kernels": "0.1.0", "bnb-nn": "0.1.0"}, requirements) == []


def test_source_tree_packages_report_their_module_version(monkeypatch):
    real = packages.metadata.version

    def no_metadata(name):
        if name.startswith("bnb-") or name == "bitsandbytes":
            raise packages.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(packages.metadata, "version", no_metadata)
    found = packages.installed_versions(("bnb-kernels", "torch", "not-a-bnb-package"))
    import bnb_kernels

    assert found == {"bnb-kernels": bnb_kernels.__version__, "torch": real("torch"), "not-a-bnb-package": None}


def test_installed_metadata_is_consistent():
    spec = packages.requirements_of("bnb-diagnostics")["bnb-kernels"]
    assert sorted(spec.split(",")) == ["<0.2", ">=0.1"]
    assert packages.check_compatibility() == []


def test_console_script_and_module_entry_points(monkeypatch, capsys):
    from importlib import metadata

    scripts = {e.name: e.value for e in metadata.entry_points(group="console_scripts")}
    assert scripts["bnb-diagnostics"] == "bnb_diagnostics.cli:console_main"
    monkeypatch.setattr(sys, "argv", ["bnb_diagnostics", "--help"])
    with pytest.raises(SystemExit) as exc:
        runpy.run_module("bnb_diagnostics", run_name="__main__")
    assert exc.value.code == 0
    assert "--require-native" in capsys.readouterr().out
