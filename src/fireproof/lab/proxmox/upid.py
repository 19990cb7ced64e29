"""Proxmox task identifiers: ``UPID:node:pid:pstart:starttime:type:id:user:``."""

from __future__ import annotations

import re
from dataclasses import dataclass

_UPID = re.compile(
    r"^UPID:(?P<node>[a-zA-Z0-9](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?):(?P<pid>[0-9A-Fa-f]{8}):"
    r"(?P<pstart>[0-9A-Fa-f]{8,9}):(?P<starttime>[0-9A-Fa-f]{8}):(?P<type>[^:\s]+):"
    r"(?P<id>[^:\s]*):(?P<user>[^:\s]+):$"
)


@dataclass(frozen=True, slots=True)
class Upid:
    node: str
    pid: int
    pstart: int
    starttime: int
    type: str
    id: str
    user: str

    def __str__(self) -> str:
        return (
            f"UPID:{self.node}:{self.pid:08X}:{self.pstart:08X}:{self.starttime:08X}:"
            f"{self.type}:{self.id}:{self.user}:"
        )


def parse_upid(text: str) -> Upid | None:
    match = _UPID.match(text)
    if match is None:
        return None
    return Upid(
        node=match["node"],
        pid=int(match["pid"], 16),
        pstart=int(match["pstart"], 16),
        starttime=int(match["starttime"], 16),
        type=match["type"],
        id=match["id"],
        user=match["user"],
    )
