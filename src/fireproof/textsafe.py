"""Text from the cluster or a hypervisor, made safe for a terminal.

Whoever can write an Event, a VM name or an error message must not be able to write escape
sequences (OSC, CSI, C1) to the operator's terminal: every control character but newline and
tab goes.
"""

from __future__ import annotations

_CONTROL = dict.fromkeys([*range(9), *range(11, 32), 127, *range(128, 160)])
_NOT_XML = dict.fromkeys(
    [*range(9), 11, 12, *range(14, 32), *range(0xD800, 0xE000), 0xFFFE, 0xFFFF]
)


def terminal_safe(text: object) -> str:
    return str(text).translate(_CONTROL)


def has_userinfo(url: str) -> bool:
    """Whether the URL carries ``user[:password]@`` before its host."""
    rest = url.partition("://")[2] if "://" in url else url
    authority = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    return "@" in authority


def xml_safe(text: str) -> str:
    """Text with every character XML 1.0 forbids removed (control characters, lone
    surrogates): a report built from cluster text or a run document stays well-formed XML."""
    return text.translate(_NOT_XML)
