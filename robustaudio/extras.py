"""Optional extras: import one, or fail with the install line that adds it (checked before a run starts).

The lowest layer: anything may import it. Commands call :func:`require` while they parse their options,
so that a missing extra stops them before any clip is loaded or any file written.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtraError(ImportError):
    """An optional dependency that the requested feature needs is not installed; the message says which
    extra installs it."""


def require(module: str, extra: str, feature: str) -> ModuleType:
    """Import ``module``, or raise :class:`MissingExtraError` naming ``feature`` and the ``extra`` to install.

    The pip line is quoted so that it also works in zsh (where ``[...]`` is a glob).
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingExtraError(f"{feature} needs {module}, which is not installed: "
                                f"pip install 'robustaudio[{extra}]'") from error


__all__ = ["MissingExtraError", "require"]
