"""Shell completion as a bash user gets it: the script `fireproof completion bash` prints is
sourced into a real bash, which completes node names from the lab."""

from __future__ import annotations

import os
import shlex
import subprocess

import pytest

from labtools import FIREPROOF, LabHandle, run_cli


def _complete(*words: str) -> tuple[list[str], str]:
    """What bash offers for the last of ``words`` (the word being typed), and its stderr."""
    script = run_cli("completion", "bash")
    assert script.returncode == 0, script.stderr
    line = " ".join(shlex.quote(w) for w in ("fireproof", *words))
    program = (
        f"{script.stdout}\n"
        f"COMP_WORDS=({line}); COMP_CWORD={len(words)}\n"
        '_fireproof_completion fireproof; printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", program],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PATH": f"{FIREPROOF.parent}:{os.environ['PATH']}"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [w for w in done.stdout.splitlines() if w], done.stderr


@pytest.mark.lab
def test_node_names_complete_from_the_lab_and_from_the_api(healthy_lab: LabHandle) -> None:
    lab = str(healthy_lab.state_dir)
    offered, _ = _complete("lab", "power-off", "--state-dir", lab, "tazlab-worker-0")
    assert offered == [f"tazlab-worker-0{i}" for i in (1, 2, 3, 4)]
    # A cluster-facing command asks the API server of its --config.
    config = str(healthy_lab.state_dir / "fireproof.yaml")
    offered, _ = _complete("heal", "node", "--config", config, "tazlab-cp")
    assert offered == ["tazlab-cp-01", "tazlab-cp-02", "tazlab-cp-03"]
    # Commands and options complete too.
    assert "power-off" in _complete("lab", "pow")[0]


def test_completion_offers_nothing_quietly_when_the_cluster_cannot_be_asked() -> None:
    offered, stderr = _complete("heal", "node", "--config", "/nonexistent/fireproof.yaml", "n")
    assert offered == []
    assert stderr == ""  # no error text in the middle of the user's command line
    offered, stderr = _complete("lab", "power-on", "--state-dir", "/nonexistent", "n")
    assert (offered, stderr) == ([], "")


@pytest.mark.parametrize(("shell", "marker"), [("zsh", "compdef"), ("fish", "complete ")])
def test_zsh_and_fish_scripts_are_printed(shell: str, marker: str) -> None:
    done = run_cli("completion", shell)
    assert done.returncode == 0
    assert marker in done.stdout
    assert "_FIREPROOF_COMPLETE" in done.stdout
