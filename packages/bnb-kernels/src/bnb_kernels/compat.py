"""Version compatibility between the bnb packages, checked once at import.

Each package names the range of siblings it works with; a mismatched install fails at
import with a message naming both versions and the fix, instead of failing later in a
kernel call.
"""

from __future__ import annotations

import importlib

__all__ = ["IncompatibleVersionError", "parse_version", "require"]


class IncompatibleVersionError(ImportError):
    pass


def parse_version(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("+")[0].split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
        if not piece.isdigit():
            break
    return tuple(parts)


def require(user: str, user_version: str, needs: dict[str, tuple[str, str]]) -> None:
    """Check that each module in ``needs`` has a ``__version__`` in ``[low, high)``.

    ``needs`` maps an importable module (``"bnb_kernels"``) to ``(low, high)`` versions.
    """
    for module_name, (low, high) in needs.items():
        module = importlib.import_module(module_name)
        found = getattr(module, "__version__", "0")
        if not (parse_version(low) <= parse_version(found) < parse_version(high)):
            dist = module_name.replace("_", "-")
            raise IncompatibleVersionError(
                f"{dist} {found} is installed; {user} {user_version} needs {dist}>={low},<{high}. "
                "Install a matching set with `pip install -U bitsandbytes` "
                f"(or `pip install '{dist}>={low},<{high}'`)."
            )
