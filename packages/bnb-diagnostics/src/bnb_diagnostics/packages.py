"""Installed versions of the bnb packages and whether they form a compatible set.

Two sources are compared: each distribution's declared requirements on its siblings
(``Requires-Dist`` metadata, e.g. bnb-nn needs ``bnb-kernels>=0.1,<0.2``, the meta-package
pins ``bnb-nn==0.1.0``) and the versions actually installed. Only the standard library and
``bnb_kernels.compat`` are used, so this works with nothing but bnb-kernels installed.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from importlib import metadata

from bnb_kernels.compat import parse_version

__all__ = [
    "BNB_DISTRIBUTIONS",
    "THIRD_PARTY",
    "Problem",
    "check_compatibility",
    "installed_versions",
    "requirements_of",
    "satisfies",
]

BNB_DISTRIBUTIONS = ("bitsandbytes", "bnb-kernels", "bnb-quant", "bnb-nn", "bnb-optim", "bnb-diagnostics")
THIRD_PARTY = ("torch", "triton", "numpy", "transformers", "peft", "accelerate", "safetensors")

_REQ = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(?:\[[^\]]*\])?\s*([^;]*)(;.*)?$")
_SPEC = re.compile(r"^\s*(==|!=|>=|<=|>|<|~=)\s*([0-9][^\s,]*)\s*$")


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_versions(names: tuple[str, ...] = BNB_DISTRIBUTIONS + THIRD_PARTY) -> dict[str, str | None]:
    """``{distribution: version or None when not installed}``."""
    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = _source_tree_version(name)
    return found


def _source_tree_version(dist: str) -> str | None:
    """``__version__`` of a bnb package importable without installed metadata (a source tree
    on PYTHONPATH, as on the offline GPU machine); None for anything else."""
    if dist not in BNB_DISTRIBUTIONS:
        return None
    try:
        module = importlib.import_module(dist.replace("-", "_"))
    except Exception:
        return None
    version = getattr(module, "__version__", None)
    return version if isinstance(version, str) else None


def requirements_of(dist: str) -> dict[str, str]:
    """``{required distribution: specifier}`` for the unconditional requirements of ``dist``."""
    try:
        lines = metadata.requires(dist) or []
    except metadata.PackageNotFoundError:
        return {}
    out: dict[str, str] = {}
    for line in lines:
        m = _REQ.match(line)
        if m is None or m.group(3):  # skip requirements behind an environment marker / extra
            continue
        out[_normalize(m.group(1))] = m.group(2).strip().strip("()")
    return out


def satisfies(version: str, specifier: str) -> bool:
    """True when ``version`` meets every clause of ``specifier`` (``">=0.1,<0.2"``, ``"==0.1.0"``).

    Raises ``ValueError`` for a clause it cannot read.
    """
    if not isinstance(version, str) or not isinstance(specifier, str):
        raise TypeError(f"expected two strings, got {type(version).__name__} and {type(specifier).__name__}")
    have = parse_version(version)
    for clause in filter(None, (c.strip() for c in specifier.split(","))):
        m = _SPEC.match(clause)
        if m is None:
            raise ValueError(f"cannot read version clause {clause!r} (expected e.g. '>=0.1' or '==0.1.0')")
        op, want_s = m.groups()
        want = parse_version(want_s)
        n = max(len(have), len(want))
        a, b = have + (0,) * (n - len(have)), want + (0,) * (n - len(want))
        ok = {
            "==": a == b,
            "!=": a != b,
            ">=": a >= b,
            "<=": a <= b,
            ">": a > b,
            "<": a < b,
            # ~=X.Y.Z means >=X.Y.Z and ==X.Y.*
            "~=": a >= b and have[: max(len(want) - 1, 1)] == want[: max(len(want) - 1, 1)],
        }[op]
        if not ok:
            return False
    return True


@dataclass(frozen=True)
class Problem:
    package: str
    requires: str
    specifier: str
    found: str | None
    message: str = field(default="")


def check_compatibility(
    versions: dict[str, str | None] | None = None,
    requirements: dict[str, dict[str, str]] | None = None,
) -> list[Problem]:
    """Every requirement between installed bnb distributions that the installed versions break.

    ``versions`` and ``requirements`` default to what is installed; tests pass their own.
    """
    versions = installed_versions(BNB_DISTRIBUTIONS) if versions is None else versions
    if requirements is None:
        requirements = {d: requirements_of(d) for d, v in versions.items() if v is not None}
    normalized = {_normalize(k): v for k, v in versions.items()}
    problems: list[Problem] = []
    for dist, reqs in sorted(requirements.items()):
        if normalized.get(_normalize(dist)) is None:
            continue
        for needed, spec in sorted(reqs.items()):
            if not _normalize(needed).startswith("bnb-") or not spec:
                continue
            found = normalized.get(_normalize(needed))
            if found is None:
                problems.append(
                    Problem(dist, needed, spec, None, f"{dist} needs {needed}{spec}, which is not installed")
                )
            elif not satisfies(found, spec):
                problems.append(
                    Problem(
                        dist, needed, spec, found, f"{dist} needs {needed}{spec}, but {needed} {found} is installed"
                    )
                )
    return problems
