"""Text from the cluster or a hypervisor, made safe for a terminal.

Whoever can write an Event, a VM name or an error message must not be able to write escape
sequences (OSC, CSI, C1) to the operator's terminal: every control character but newline and
tab goes.
"""

from __future__ import annotations

_CONTROL = dict.fromkeys([*range(9), *range(11, 32), 127, *range(128, 160)])


def terminal_safe(text: object) -> str:
    return str(text).translate(_CONTROL)
