"""Every check, in report order: an explicit tuple, no discovery."""

from __future__ import annotations

from fireproof.doctor import checks_api, checks_arch, checks_domains, checks_nodes
from fireproof.doctor.model import Check

CHECKS: tuple[Check, ...] = (
    *checks_api.CHECKS,
    *checks_nodes.CHECKS,
    *checks_arch.CHECKS,
    *checks_domains.CHECKS,
)
BY_ID: dict[str, Check] = {c.id: c for c in CHECKS}
