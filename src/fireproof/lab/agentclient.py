"""Client of the lab agent's admin API (power switches, heartbeat statistics)."""

from __future__ import annotations

from typing import Any

import httpx2 as httpx

from fireproof.errors import NotFoundError, PermanentError, TransientError
from fireproof.lab.state import LabPaths, LabState


class AgentClient:
    def __init__(self, paths: LabPaths, state: LabState) -> None:
        self._url = state.agent_url
        self._token = paths.agent_token.read_text().strip()

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            with httpx.Client(timeout=httpx.Timeout(10.0), trust_env=False) as client:
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
            raise PermanentError(f"lab agent refused {method} {path}: {response.text.strip()}")
        return response.json()

    def nodes(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._request("GET", "/v1/nodes")["nodes"]
        return result

    def power(self, node: str, on: bool) -> dict[str, Any]:
        result: dict[str, Any] = self._request(
            "POST", f"/v1/nodes/{node}/power", {"state": "on" if on else "off"}
        )
        return result

    def heartbeats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", "/v1/stats/heartbeats")
        return result
