"""The public face: sealog/__init__.py lists every public name, sorted, and each resolves."""

from __future__ import annotations

import types

import sealog


def test_all_is_sorted_complete_and_resolvable() -> None:
    """A new public name cannot be forgotten in __all__, nor a stale one left behind."""
    import __future__

    public = {name for name, value in vars(sealog).items()
              if not name.startswith("_") and not isinstance(value, types.ModuleType | __future__._Feature)}
    public |= {"__version__"}
    # isort style, as ruff keeps it: CONSTANTS, then Classes, then functions.
    assert sealog.__all__ == sorted(sealog.__all__, key=lambda n: (not n.isupper(), not n[:1].isupper(), n))
    assert set(sealog.__all__) == public
    for name in sealog.__all__:
        assert getattr(sealog, name) is not None
