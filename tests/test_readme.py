"""README.md says what the code does: the configuration reference is generated and current, the quick start runs."""

from __future__ import annotations

import os

import typer
from typer.testing import CliRunner

from steps.settings import Settings
from tests.conftest import ROOT
from workflows import docs
from workflows.argo import ClusterConfig
from workflows.docs import README, commands, render


def test_configuration_reference_is_current():
    text = README.read_text(encoding="utf-8")
    for block in ("settings", "cluster", "commands"):
        assert f"<!-- BEGIN GENERATED: {block} -->" in text, block
    assert render(text) == text, "README.md's configuration reference is stale: run python -m workflows.docs"
    for name in Settings.model_fields:
        assert f"| `--{name.replace('_', '-')}` |" in text, name
    for name, field in ClusterConfig.model_fields.items():
        option = (field.json_schema_extra or {}).get("option", "--" + name.replace("_", "-"))
        assert f"| `{option}" in text, name
    for label, command in commands().items():
        assert f"`python -m {label}" in text, label
        for param in command.params:
            if param.name not in Settings.model_fields and param.name not in ClusterConfig.model_fields:
                shown = param.name.upper() if not param.opts[0].startswith("-") else param.opts[0]
                assert f"| `{shown}" in text, (label, param.name)


def test_check_mode_fails_on_a_stale_reference_and_the_rewrite_fixes_it(tmp_path):
    app = typer.Typer()
    app.command()(docs.main)  # in-process: what `python -m workflows.docs` runs
    runner = CliRunner()
    copy = tmp_path / "README.md"
    copy.write_text(README.read_text(encoding="utf-8").replace("| `--mask-scale` |", "| `--mask-size` |"))
    stale = runner.invoke(app, ["--check", "--readme", str(copy)])
    assert stale.exit_code == 1 and "stale" in stale.output
    assert runner.invoke(app, ["--readme", str(copy)]).exit_code == 0
    assert copy.read_text() == README.read_text(encoding="utf-8")
    assert runner.invoke(app, ["--check", "--readme", str(copy)]).exit_code == 0


def test_quick_start_is_two_commands_that_exist():
    text = README.read_text(encoding="utf-8")
    assert "./quickstart.sh " in text and ".venv/bin/python -m pytest" in text
    assert os.access(ROOT / "quickstart.sh", os.X_OK)
    assert ".venv/bin/python -m pytest" in (ROOT / ".ci" / "run").read_text()
