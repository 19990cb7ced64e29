"""The timeline's phases, in the order the incident report meets them: shared by the drill
(which observes them) and the renderers (which order and colour them)."""

FAULT = "fault"
SCALED = "scaled"
ADDRESS_CHANGED = "address-changed"
ENDPOINTS_STALE = "endpoints-stale"
API_CRASHLOOP = "api-client-crashloop"
ENDPOINTS_REPAIRED = "endpoints-repaired"
API_CLIENTS_READY = "api-clients-ready"
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
HA_FENCE = "ha-fence"
"""Proxmox HA put the lost host in ``fence`` (it waits for the host's agent lock)."""
HA_FENCE_ACK = "ha-fence-acknowledged"
"""HA got the lost host's agent lock ("fencing: acknowledged"): its watchdog reset it."""
HA_RECOVERED = "ha-recovered"
"""A node of the lost host is back, its VM restarted on another host (an HA recovery): pods
and volumes there are elsewhere."""
HOST_FENCED = "host-fenced"
RELEASED = "released"
DETACHED = "volume-detached"
ATTACHED = "volume-attached-elsewhere"
RUNNING = "replacement-running"
REPLICA_CREATED = "replica-created"
REPLICA_RUNNING = "replica-running"
WORKLOAD_READY = "workload-ready"
NODE_READY = "node-ready"
RESTORED = "restored"
PHASES = (
    FAULT,
    SCALED,
    ADDRESS_CHANGED,
    ENDPOINTS_STALE,
    API_CRASHLOOP,
    ENDPOINTS_REPAIRED,
    API_CLIENTS_READY,
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
    HA_FENCE,
    HA_FENCE_ACK,
    HA_RECOVERED,
    HOST_FENCED,
    RELEASED,
    DETACHED,
    ATTACHED,
    RUNNING,
    REPLICA_CREATED,
    REPLICA_RUNNING,
    WORKLOAD_READY,
    NODE_READY,
    RESTORED,
)
