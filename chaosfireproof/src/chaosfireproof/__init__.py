"""Chaos Toolkit extension: fireproof's actions and probes for `chaos run` experiments.

Its own distribution (``chaosfireproof/`` in fireproof's repository, ``pip install
./chaosfireproof``); point an experiment's activities at ``chaosfireproof.actions``,
``chaosfireproof.scenes`` (hosts, IP change, scale, Endpoints) and ``chaosfireproof.probes``.
Configuration keys:

- ``fireproof_lab_dir``: the running lab (its own fireproof.yaml), or
- ``fireproof_config`` (a fireproof.yaml) with the optional ``fireproof_context``.

Annotations here are real types (no postponed evaluation): Chaos Toolkit's discovery reads them.
"""

from pathlib import Path
from typing import Any

from fireproof.errors import UsageError
from fireproof.wiring import Target

__version__ = "0.1.0"
__all__ = ["__version__", "discover", "target_from"]


def target_from(configuration: dict[str, Any] | None) -> Target:
    """The cluster an activity acts on, from the experiment's configuration."""
    configuration = configuration or {}
    lab_dir = configuration.get("fireproof_lab_dir")
    config = configuration.get("fireproof_config")
    if lab_dir and config:
        raise UsageError("give fireproof_lab_dir or fireproof_config, not both")
    if lab_dir:
        path = Path(str(lab_dir)) / "fireproof.yaml"
        if not path.is_file():
            raise UsageError(f"fireproof_lab_dir: no running lab at {lab_dir}")
        return Target.load(path)
    if config:
        return Target.load(Path(str(config)), context=configuration.get("fireproof_context"))
    raise UsageError("set fireproof_lab_dir or fireproof_config in the experiment's configuration")


def discover(discover_system: bool = True) -> dict[str, Any]:
    """Chaos Toolkit discovery: the activities this extension offers."""
    from chaoslib.discovery.discover import (  # the extra: only when Chaos Toolkit asks
        discover_actions,
        discover_probes,
        initialize_discovery_result,
    )

    discovery: dict[str, Any] = initialize_discovery_result(
        "chaosfireproof", __version__, "fireproof"
    )
    discovery["activities"].extend(discover_actions("chaosfireproof.actions"))
    discovery["activities"].extend(discover_actions("chaosfireproof.scenes"))
    discovery["activities"].extend(discover_probes("chaosfireproof.probes"))
    return discovery
