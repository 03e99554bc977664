"""Lazy re-exports (PEP 562), so that ``import dlabel_lab`` stays light.

A package lists its public names and the module each comes from; the module
is imported the first time the name is used. torch, Lightning, Captum,
torchvision, matplotlib and ipywidgets are therefore loaded only by the code
that needs them, and the command line answers at once.

Example:
    >>> __getattr__, __dir__ = lazy_exports(__name__, globals(), {"ClipSpec": ".media.video"})  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, namespace: dict[str, Any], exports: Mapping[str, str],
                 *, submodules: tuple[str, ...] = ()) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Build a package's ``__getattr__`` and ``__dir__`` for lazily imported names.

    Args:
        package: The package's ``__name__``.
        namespace: The package's ``globals()``; a resolved name is cached there.
        exports: Public name -> relative module (``".media.video"``), or
            ``".module:attr"`` when the public name differs from the attribute.
        submodules: Subpackage or module names reachable as attributes.

    Returns:
        ``(__getattr__, __dir__)`` to assign at module level.
    """
    exports = dict(exports)

    def __getattr__(name: str) -> Any:
        target = exports.get(name)
        if target is None:
            if name in submodules:
                module = importlib.import_module(f".{name}", package)
                namespace[name] = module
                return module
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module_name, _, attr = target.partition(":")
        value = getattr(importlib.import_module(module_name, package), attr or name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports, *submodules})

    return __getattr__, __dir__
