"""The configuration reference in README.md, generated from the code so that it never drifts.

Every option lives in one place: ``steps.settings.Settings`` (what changes the output video),
``workflows.argo.ClusterConfig`` (where and how the workflow runs) and each command's own
typer options. ``python -m workflows.docs`` rewrites the blocks of README.md between
``<!-- BEGIN GENERATED: name -->`` and ``<!-- END GENERATED: name -->``; ``--check`` only says
whether they are current (a test runs it).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any

import typer
import typer.core
import typer.main

from steps.fsutil import atomic_write_text
from steps.settings import Settings
from workflows.argo import ClusterConfig

README = Path(__file__).resolve().parent.parent / "README.md"
_BLOCK = re.compile(r"(<!-- BEGIN GENERATED: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- END GENERATED: (?P=name) -->)",
                    re.DOTALL)
#: Defaults that depend on the machine the reference is generated on: described instead of printed.
MACHINE_DEFAULTS = {("workflows run", "workers"): "half the CPU cores"}


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _default(value: Any) -> str:
    if isinstance(value, Enum):
        value = value.value
    if value is None or value == {} or value == [] or value == "":
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"`{value}`"


def _env(names: Any) -> str:
    if not names:
        return ""
    names = [names] if isinstance(names, str) else names
    return ", ".join(f"`{name}`" for name in names)


def settings_table() -> str:
    rows = ["| option | environment | default | meaning |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        env = (field.json_schema_extra or {}).get("env")
        rows.append(f"| `--{name.replace('_', '-')}` | {_env(env)} | {_default(field.default)} | "
                    f"{_cell(field.description)} |")
    return "\n".join(rows) + "\n"


def cluster_table() -> str:
    rows = ["| option | environment | default | meaning |", "|---|---|---|---|"]
    for name, field in ClusterConfig.model_fields.items():
        extra = field.json_schema_extra or {}
        option = extra.get("option", "--" + name.replace("_", "-"))
        if extra.get("metavar"):
            option += " " + extra["metavar"]
        rows.append(f"| `{option}` | {_env(extra.get('env'))} | {_default(field.default)} | "
                    f"{_cell(field.description)} |")
    return "\n".join(rows) + "\n"


def _click_command(main: Callable[..., Any]) -> Any:
    app = typer.Typer(add_completion=False)  # the shell-completion options are typer's, not ours
    app.command()(main)
    return typer.main.get_command(app)


def commands() -> dict[str, Any]:
    """Every command people run, by how they run it."""
    from steps import anonymize, discover, summarize
    from workflows.cli import app

    group = typer.main.get_command(app)
    found = {f"workflows {name}": command for name, command in group.commands.items()}
    for module in (discover, anonymize, summarize):
        found[f"steps.{module.__name__.rsplit('.', 1)[1]}"] = _click_command(module.main)
    return found


def _shared(name: str) -> bool:
    """Options documented once, in the settings and cluster tables."""
    return name in Settings.model_fields or name in ClusterConfig.model_fields


def command_tables() -> str:
    parts = []
    for label, command in commands().items():
        own = [p for p in command.params if not _shared(p.name) and p.name != "help"]
        arguments = " ".join(p.name.upper() for p in own if isinstance(p, typer.core.TyperArgument))
        shared = [kind for kind, model in (("settings", Settings), ("cluster options", ClusterConfig))
                  if any(p.name in model.model_fields for p in command.params)]
        summary = (command.help or "").strip().splitlines()[0] if command.help else ""
        head = f"`python -m {label}{' ' + arguments if arguments else ''}`: {summary}"
        if shared:
            head += f" Also takes every one of the {' and '.join(shared)} above."
        parts.append(head)
        if own:
            parts += ["", "| argument or option | environment | default | meaning |", "|---|---|---|---|"]
            for p in own:
                if isinstance(p, typer.core.TyperArgument):
                    name, default = p.name.upper(), "required" if p.required else _default(p.default)
                else:
                    name = " / ".join(p.opts + p.secondary_opts)
                    default = MACHINE_DEFAULTS.get((label, p.name)) or _default(p.default)
                parts.append(f"| `{name}` | {_env(p.envvar)} | {default} | {_cell(getattr(p, 'help', '') or '')} |")
        parts.append("")
    return "\n".join(parts)


GENERATORS: dict[str, Callable[[], str]] = {"settings": settings_table, "cluster": cluster_table,
                                            "commands": command_tables}


def render(text: str) -> str:
    """*text* (README.md) with every generated block replaced by what the code says today."""
    def replace(match: re.Match) -> str:
        name = match.group("name")
        if name not in GENERATORS:
            raise ValueError(f"README.md has a generated block {name!r} that nothing generates")
        return match.group(1) + GENERATORS[name]() + match.group(4)

    return _BLOCK.sub(replace, text)


def main(check: bool = typer.Option(False, "--check", help="Only say whether the file is current (exit 1 if not)."),
         readme: Path = typer.Option(README, help="The file whose generated blocks are rewritten.")) -> None:
    """Regenerate the configuration reference in README.md."""
    text = readme.read_text(encoding="utf-8")
    new = render(text)
    if check:
        if new != text:
            typer.echo(f"{readme.name}'s generated reference is stale: run python -m workflows.docs", err=True)
            raise typer.Exit(1)
        return
    if new != text:
        atomic_write_text(readme, new)
        typer.echo(f"{readme} updated", err=True)


if __name__ == "__main__":
    typer.run(main)
