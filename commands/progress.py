"""The progress lines the import commands print on stderr while they read and write a file."""

from __future__ import annotations

import time
from collections.abc import Mapping

import click

from models.imports.member_rows import Progress


def progress_printer(stages: Mapping[str, str], *, quiet: bool = False) -> Progress:
    """Return a progress callback printing `<done>[ of <total>] <what the stage does> (<seconds> s)` on stderr.

    `stages` names what each stage counts ("lines checked (pass 1 of 2)"); an unnamed stage prints as it is.
    """
    started = time.monotonic()

    def progress(stage: str, done: int, total: int | None) -> None:
        if quiet:
            return
        of = f" of {total:,}" if total is not None else ""
        click.echo(f"{done:,}{of} {stages.get(stage, stage)} ({time.monotonic() - started:.1f} s)", err=True)

    return progress
