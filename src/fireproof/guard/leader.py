"""Leader election on a ``coordination.k8s.io`` Lease, with a fencing token.

client-go's and kopf's elections do not promise a single actor: a leader paused past its lease
(GC, a stopped VM, a lost network) wakes up still believing it leads. So guard re-reads the Lease
before every destructive step (:meth:`LeaderElector.assert_leading`): the holder must be this
process, with the epoch (``leaseTransitions``) it won, and the lease must not be about to expire.
Node writes that record progress are conditional on the Node's resourceVersion, so a stale
leader's write fails instead of overwriting the new leader's.
"""

from __future__ import annotations

import contextlib
import datetime as dt

from fireproof.clock import SYSTEM_CLOCK, Clock
from fireproof.errors import TransientError
from fireproof.kube import Cluster, KubeConflictError, Lease, lease_fresh, lease_spec, new_lease


class NotLeading(TransientError):
    """This process does not (or no longer surely) hold the guard Lease: it must not act."""


def _utc(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


class LeaderElector:
    def __init__(
        self,
        cluster: Cluster,
        namespace: str,
        name: str,
        identity: str,
        duration: float,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.duration = duration
        self.clock = clock
        self.epoch: int | None = None
        self.paused = False
        """The Lease carries the pause annotation: guard is paused cluster-wide."""

    @property
    def leading(self) -> bool:
        return self.epoch is not None

    def _expired(self, lease: Lease, now: float) -> bool:
        return not lease_fresh(lease, now, self.duration)

    def step(self) -> bool:
        """Acquire, renew or observe: returns whether this process leads after the call."""
        from fireproof.guard.record import PAUSE_ANNOTATION

        now = self.clock.time()
        lease = self.cluster.lease(self.namespace, self.name)
        try:
            if lease is None:
                held = new_lease(self.namespace, self.name, self.identity, self.duration, _utc(now))
                lease = self.cluster.create_lease(held)
            else:
                annotations = (lease.metadata.annotations if lease.metadata else None) or {}
                self.paused = PAUSE_ANNOTATION in annotations
                spec = lease_spec(lease)
                if spec.holderIdentity == self.identity and not self._expired(lease, now):
                    spec.renewTime = _utc(now)
                elif self._expired(lease, now) or not spec.holderIdentity:
                    spec.holderIdentity = self.identity
                    spec.acquireTime = _utc(now)
                    spec.renewTime = _utc(now)
                    spec.leaseDurationSeconds = int(self.duration)
                    spec.leaseTransitions = (spec.leaseTransitions or 0) + 1
                else:
                    self.epoch = None
                    return False
                lease = self.cluster.replace_lease(lease)  # conditional: resourceVersion
        except KubeConflictError:
            self.epoch = None  # someone else wrote first; look again next time
            return False
        self.epoch = (lease.spec.leaseTransitions or 0) if lease.spec else 0
        return True

    def assert_leading(self) -> int:
        """The fencing token check: re-read the Lease; raise NotLeading unless this process
        holds it with its epoch and at least a third of the lease left. Returns the epoch."""
        if self.epoch is None:
            raise NotLeading(f"{self.identity} does not hold the guard Lease")
        lease = self.cluster.lease(self.namespace, self.name)
        spec = lease.spec if lease else None
        if spec is None or spec.holderIdentity != self.identity:
            self.epoch = None
            raise NotLeading(f"{self.identity} lost the guard Lease")
        if (spec.leaseTransitions or 0) != self.epoch:
            self.epoch = None
            raise NotLeading(f"the guard Lease moved to a new epoch ({spec.leaseTransitions})")
        renewed = spec.renewTime.timestamp() if spec.renewTime else 0.0
        if renewed + self.duration * 2 / 3 < self.clock.time():
            raise NotLeading(f"{self.identity}'s hold on the guard Lease is about to expire")
        return self.epoch

    def release(self) -> None:
        """Step down on a clean exit so another replica takes over at once."""
        if self.epoch is None:
            return
        lease = self.cluster.lease(self.namespace, self.name)
        if lease is not None and lease.spec and lease.spec.holderIdentity == self.identity:
            lease.spec.holderIdentity = None
            lease.spec.renewTime = None
            with contextlib.suppress(KubeConflictError):
                self.cluster.replace_lease(lease)
        self.epoch = None
