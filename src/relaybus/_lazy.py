"""Module attributes imported on first use (PEP 562), for package ``__init__`` files.

A package lists which of its modules defines each exported name; ``from package import X`` and
``package.X`` then import that module only when ``X`` is first asked for. Type checkers and IDEs read the
package's ``if TYPE_CHECKING:`` imports instead.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    namespace: dict[str, Any], module_of: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of the package whose ``globals()`` is ``namespace``.

    ``module_of`` maps each lazy name to the module defining it, relative to the package (``".core"``).
    """
    package = namespace["__name__"]

    def getattr_(name: str) -> Any:
        module = module_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value  # later look-ups do not come back here
        return value

    def dir_() -> list[str]:
        return sorted(set(namespace) | set(module_of))

    return getattr_, dir_
