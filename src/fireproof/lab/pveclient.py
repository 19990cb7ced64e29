"""A minimal Proxmox VE API client for the lab's own commands (power buttons).

fireproof's fencing talks to Proxmox through proxmoxer; the lab keeps this small client so its
power buttons work without the fencing layer, and uses the same API a person would.
"""

from __future__ import annotations

import time
from typing import Any

import httpx2 as httpx

from fireproof.errors import PermanentError, TransientError
from fireproof.lab.exports import ProxmoxAccess


class PveClient:
    def __init__(self, access: ProxmoxAccess, timeout: float = 10.0) -> None:
        self._access = access
        self._client = httpx.Client(
            base_url=access.api_url,
            verify=access.ca_file,
            headers={"Authorization": f"PVEAPIToken={access.token_id}={access.token_secret}"},
            timeout=httpx.Timeout(timeout),
            trust_env=False,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> PveClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str) -> Any:
        try:
            response = self._client.request(method, path)
        except httpx.TimeoutException:
            raise TransientError(f"Proxmox API {self._access.url} timed out on {path}") from None
        except httpx.HTTPError as exc:
            raise TransientError(f"Proxmox API {self._access.url} unreachable: {exc}") from None
        if response.status_code >= 400:
            raise PermanentError(
                f"Proxmox API {method} {path}: {response.status_code} {response.reason_phrase}"
            )
        return response.json()["data"]

    def vm_status(self, host: str, vmid: int) -> str:
        return str(self._call("GET", f"/nodes/{host}/qemu/{vmid}/status/current")["status"])

    def power(self, host: str, vmid: int, action: str, *, timeout: float = 60.0) -> str:
        """Run stop/start on the VM and wait until ``status/current`` shows the result."""
        want = {"stop": "stopped", "start": "running"}[action]
        if self.vm_status(host, vmid) == want:
            return "unchanged"
        upid = str(self._call("POST", f"/nodes/{host}/qemu/{vmid}/status/{action}"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.vm_status(host, vmid) == want:
                return upid
            time.sleep(0.2)
        raise TransientError(f"VM {vmid} on {host} is not {want} {timeout:.0f} s after {action}")
