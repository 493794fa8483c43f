"""Print the reference of the project's `flask --app app …` commands as Markdown (docs/operations.md, "CLI").

    .venv/bin/python scripts/cli_reference.py

Flask's own commands (run, shell, routes) and Flask-Limiter's are left out.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import create_app  # noqa: E402 - the project root is on the path from here

BUILT_IN = {"run", "shell", "routes", "limiter"}


def commands(command: click.Command, path: list[str]) -> Iterator[tuple[list[str], click.Command]]:
    """Yield every leaf command under `command` with its path of names."""
    if isinstance(command, click.Group):
        context = click.Context(command, info_name=path[-1])
        for name in sorted(command.list_commands(context)):
            sub = command.get_command(context, name)
            if sub is not None and not sub.hidden:
                yield from commands(sub, [*path, name])
    else:
        yield path, command


def usage(path: list[str], command: click.Command) -> str:
    """Return the usage line of a command, choices of long argument lists shortened."""
    pieces = []
    for param in command.params:
        if isinstance(param, click.Argument):
            choice = isinstance(param.type, click.Choice)  # a long list of choices: named, listed by the command
            pieces.append((param.name or "value").upper() if choice else param.make_metavar(click.Context(command)))
    options = " [OPTIONS]" if any(isinstance(p, click.Option) for p in command.params) else ""
    return " ".join(["flask --app app", *path]) + options + "".join(f" {p}" for p in pieces)


def option_line(option: click.Option) -> str:
    """Return one option as a Markdown list item."""
    value = ""
    if not option.is_flag:
        metavar = option.make_metavar(click.Context(click.Command("x")))
        if isinstance(option.type, click.DateTime):
            metavar = "YYYY-MM-DD"
        elif metavar in {"TEXT", "INTEGER"}:
            metavar = (option.name or "value").upper()
        value = f" {metavar}"
    names = ", ".join(f"`{name}{value}`" if name == option.opts[-1] else f"`{name}`" for name in option.opts)
    help_text = option.help or ""
    if option.multiple and "repeatable" not in help_text:
        help_text = f"{help_text} (repeatable)".strip()
    return f"  - {names}: {help_text}".rstrip(": ")


def reference() -> str:
    """Return the Markdown reference of every project command."""
    app = create_app({"TESTING": True})
    cli = app.cli
    context = click.Context(cli, info_name="flask")
    lines: list[str] = []
    for group_name in sorted(cli.list_commands(context)):
        if group_name in BUILT_IN:
            continue
        group = cli.get_command(context, group_name)
        if group is None:
            continue
        lines.append(f"### `{group_name}`")
        lines.append("")
        if isinstance(group, click.Group) and group.help:
            lines.append(group.help.strip().splitlines()[0])
            lines.append("")
        for path, command in commands(group, [group_name]):
            lines.append(f"- `{usage(path, command)}` — {command.get_short_help_str(limit=300)}")
            lines.extend(option_line(p) for p in command.params if isinstance(p, click.Option) and p.name != "help")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    sys.stdout.write(reference())
