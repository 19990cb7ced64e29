"""Client of the lab agent's admin API (power switches, heartbeat statistics)."""

from __future__ import annotations

from typing import Any

import httpx2 as httpx

from fireproof.errors import NotFoundError, TransientError, UsageError
from fireproof.lab.localhttp import plain_client
from fireproof.lab.state import LabPaths, LabState


class AgentClient:
    def __init__(self, paths: LabPaths, state: LabState) -> None:
        self._url = state.agent_url
        self._token = paths.agent_token.read_text().strip()

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            with plain_client(10.0) as client:
                response = client.request(
                    method,
                    self._url + path,
                    json=body,
                    headers={"Authorization": f"Bearer {self._token}"},
                )
        except httpx.HTTPError as exc:
            raise TransientError(f"the lab agent at {self._url} does not answer: {exc}") from None
        if response.status_code == 404:
            raise NotFoundError(response.json().get("error", f"not found: {path}"))
        if response.status_code >= 400:
            try:
                reason = str(response.json()["error"])
            except (ValueError, KeyError, TypeError):
                reason = response.text.strip()
            raise UsageError(reason)
        return response.json()

    def nodes(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._request("GET", "/v1/nodes")["nodes"]
        return result

    def partition(self, node: str, reachable: bool) -> dict[str, Any]:
        result: dict[str, Any] = self._request(
            "POST", f"/v1/nodes/{node}/partition", {"reachable": reachable}
        )
        return result

    def set_address(self, node: str, address: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request(
            "POST", f"/v1/nodes/{node}/address", {"address": address}
        )
        return result

    def host_power(self, host: str, on: bool) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", f"/v1/hosts/{host}/power", {"on": on})
        return result

    def hosts(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._request("GET", "/v1/hosts")
        return result

    def etcd(self) -> dict[str, Any]:
        """etcd's quorum as the control-plane VMs give it: quorate, members, up."""
        result: dict[str, Any] = self._request("GET", "/v1/etcd")
        return result

    def host_hang(self, host: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", f"/v1/hosts/{host}/hang", {})
        return result

    def bmc_fault(self, host: str, fault: str | None) -> dict[str, Any]:
        result: dict[str, Any] = self._request(
            "POST", f"/v1/hosts/{host}/bmc-fault", {"fault": fault}
        )
        return result

    def faults(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._request("GET", "/v1/faults")["faults"]
        return result

    def add_fault(self, fault: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", "/v1/faults", fault)
        return result

    def clear_faults(self) -> int:
        return int(self._request("DELETE", "/v1/faults")["cleared"])

    def heartbeats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", "/v1/stats/heartbeats")
        return result

    def vms(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._request("GET", "/v1/vms")["vms"]
        return result

    def add_vm(self, spec: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", "/v1/vms", spec)
        return result

    def remove_vm(self, vmid: int) -> None:
        self._request("DELETE", f"/v1/vms/{vmid}")

    def add_pve_token(self, token_id: str, privileges: list[str]) -> dict[str, Any]:
        result: dict[str, Any] = self._request(
            "POST", "/v1/pve-tokens", {"token_id": token_id, "privileges": privileges}
        )
        return result
