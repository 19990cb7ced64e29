"""`fireproof --help` and `--version` load no command module (the start-up benchmark measures
the time); the lazy command list stays true to the commands themselves."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fireproof.cli.main import COMMANDS, cli


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_listed_summary_is_the_commands_own_short_help(name: str) -> None:
    import click

    command = cli.get_command(click.Context(cli), name)
    assert command is not None
    assert command.name == name
    assert command.get_short_help_str(limit=1000) == COMMANDS[name][2]


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_help_and_version_load_no_command_module(flag: str) -> None:
    probe = (
        "import sys\n"
        "from fireproof.cli.main import cli\n"
        f"try:\n    cli.main([{flag!r}], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('lightkube', 'httpx2', 'yaml', 'jinja2') or m.startswith('fireproof.lab'))\n"
        "print(heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout
