"""``python manage.py sealog verify|query|stats|export|...``: the sealog CLI on the project's store.

The store URL comes from ``SEALOG["URL"]`` unless ``--url`` is given; everything else is the CLI's.
"""

from __future__ import annotations

import argparse
import io
import sys
from contextlib import redirect_stdout
from typing import Any

import click
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ... import conf


class Command(BaseCommand):
    help = "Run a sealog CLI command (verify, query, stats, export, tail, ...) on this project's store."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("args", nargs=argparse.REMAINDER, metavar="COMMAND [ARGS]",
                            help="A sealog command (verify, query, stats, ...) and its arguments, as for the CLI.")

    def handle(self, *args: str, **options: Any) -> None:
        from sealog._cli import main

        if not args:
            raise CommandError("name a sealog command, e.g. `manage.py sealog verify`")
        name, rest = args[0], list(args[1:])
        command = main.commands.get(name)
        if command is None:
            raise CommandError(f"unknown sealog command {name!r}; try: {', '.join(sorted(main.commands))}")
        url = conf.options().get("URL")
        takes_url = any(param.name == "url" for param in command.params)
        if url and takes_url and not any(a == "--url" or a.startswith("--url=") for a in rest):
            rest = ["--url", url, *rest]
        code = self._run(main, [name, *rest])
        if code:
            raise CommandError(f"sealog {name} exited with {code}", returncode=code)

    def _run(self, main: click.Group, argv: list[str]) -> int:
        """Run the CLI; output goes to this command's stdout (call_command may have redirected it)."""
        if getattr(self.stdout, "_out", None) is sys.stdout:
            return _exit_code(main, argv)
        buffer = io.BytesIO()
        text = io.TextIOWrapper(buffer, encoding="utf-8", write_through=True)
        with redirect_stdout(text):
            code = _exit_code(main, argv)
        self.stdout.write(buffer.getvalue().decode(), ending="")
        return code


def _exit_code(main: click.Group, argv: list[str]) -> int:
    try:
        main.main(args=argv, prog_name="manage.py sealog", standalone_mode=False)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    return 0
