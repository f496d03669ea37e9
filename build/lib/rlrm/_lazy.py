"""Lazy module attributes, so importing a package stays light.

* :func:`lazy_getattr` - a module ``__getattr__`` that imports each listed name from its module on
  first access (and caches it in the module), else raises the usual AttributeError.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_getattr"]


def lazy_getattr(package: str, table: Mapping[str, str], namespace: dict[str, Any]) -> Callable[[str], Any]:
    """A ``__getattr__`` for ``package`` that loads ``name`` from ``table[name]`` into ``namespace`` on first use."""

    def __getattr__(name: str) -> Any:
        if name in table:
            value = getattr(importlib.import_module(table[name]), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
