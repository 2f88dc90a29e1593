"""The public face: sealog/__init__.py lists every public name, sorted, and each resolves."""

from __future__ import annotations
import __future__

import types

import sealog


def public_names() -> set[str]:
    """Every name in the package namespace a user could import, submodules and __future__ flags aside."""
    return {name for name, value in vars(sealog).items()
            if not name.startswith("_") and not isinstance(value, types.ModuleType | __future__._Feature)}


def isort_key(name: str) -> tuple[bool, bool, str]:
    """ruff's RUF022 order for __all__: CONSTANTS, then Classes, then functions and dunders."""
    return (not name.isupper(), not name[:1].isupper(), name)


def test_all_is_sorted_without_duplicates() -> None:
    """__all__ is kept in one order (the one ruff enforces) and names each member once."""
    assert sealog.__all__ == sorted(sealog.__all__, key=isort_key)
    assert len(sealog.__all__) == len(set(sealog.__all__))


def test_all_is_complete() -> None:
    """Every public name in the namespace is in __all__, and __all__ holds nothing else but __version__."""
    assert set(sealog.__all__) == public_names() | {"__version__"}


def test_each_exported_name_resolves_to_a_member_not_a_submodule() -> None:
    """Each name in __all__ is an attribute of sealog (so `from sealog import *` works), never a module."""
    star: dict[str, object] = {}
    exec("from sealog import *", star)
    for name in sealog.__all__:
        value = getattr(sealog, name)
        assert value is not None, name
        assert not isinstance(value, types.ModuleType), name
        assert star[name] is value
    assert set(star) - {"__builtins__"} == set(sealog.__all__)
