"""Versioned schema migrations, one ``NNN_name.sql`` file per step and per backend."""

from __future__ import annotations

from importlib import resources
from typing import NamedTuple


class Migration(NamedTuple):
    version: int
    name: str
    sql: str


def load(backend: str) -> list[Migration]:
    folder = resources.files(__name__) / backend
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            number, _, rest = entry.name.partition("_")
            found.append(Migration(int(number), rest.removesuffix(".sql"), entry.read_text()))
    return sorted(found)
