"""The lab agent: one asyncio process that plays every node's kubelet (and, later, the
hypervisor and storage). Started by ``fireproof lab up``; driven through its admin API."""
