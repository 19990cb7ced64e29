"""The timeline's phases, in the order the incident report meets them: shared by the drill
(which observes them) and the renderers (which order and colour them)."""

FAULT = "fault"
HOST_OFF = "host-off"
VM_OFF = "vm-off"
PARTITIONED = "partitioned"
LEASE_STALE = "lease-stale"
NOT_READY = "node-not-ready"
UNREACHABLE = "unreachable-taint"
TERMINATING = "pod-terminating"
REPLACEMENT = "replacement-created"
FAILED_ATTACH = "failed-attach-volume"
FENCED = "fenced"
HOST_FENCED = "host-fenced"
RELEASED = "released"
DETACHED = "volume-detached"
ATTACHED = "volume-attached-elsewhere"
RUNNING = "replacement-running"
NODE_READY = "node-ready"
RESTORED = "restored"
PHASES = (
    FAULT,
    HOST_OFF,
    VM_OFF,
    PARTITIONED,
    LEASE_STALE,
    NOT_READY,
    UNREACHABLE,
    TERMINATING,
    REPLACEMENT,
    FAILED_ATTACH,
    FENCED,
    HOST_FENCED,
    RELEASED,
    DETACHED,
    ATTACHED,
    RUNNING,
    NODE_READY,
    RESTORED,
)
