"""Proxmox authentication: tickets with CSRF tokens, and API tokens.

Tickets look like the real ones (``PVE:user:HEXTIME::signature``) and are verified by HMAC
with a per-process secret; they expire after two hours, like Proxmox's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

TICKET_LIFETIME = 7200


@dataclass(frozen=True, slots=True)
class Credentials:
    user: str
    """``root@pam``"""
    password: str
    token_id: str
    """``root@pam!fireproof``"""
    token_secret: str


@dataclass(frozen=True, slots=True)
class Identity:
    user: str
    """The authenticated user; for a token ``user@realm!tokenid``, as Proxmox reports it."""
    via_ticket: bool


class Authenticator:
    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        self._key = secrets.token_bytes(32)

    def _sign(self, text: str) -> str:
        digest = hmac.new(self._key, text.encode(), hashlib.sha256).digest()
        return base64.b64encode(digest).decode().rstrip("=")

    def login(self, username: str, password: str) -> tuple[str, str] | None:
        """Ticket and CSRF token for valid credentials, else None."""
        user = username if "@" in username else f"{username}@pam"
        if not (
            hmac.compare_digest(user, self.credentials.user)
            and hmac.compare_digest(password, self.credentials.password)
        ):
            return None
        stamp = f"{int(time.time()):08X}"
        plain = f"PVE:{user}:{stamp}"
        return f"{plain}::{self._sign(plain)}", self.csrf_token(user, stamp)

    def csrf_token(self, user: str, stamp: str) -> str:
        return f"{stamp}:{self._sign(f'csrf:{user}:{stamp}')}"

    def ticket_user(self, ticket: str) -> tuple[str, str] | None:
        """(user, stamp) of a valid, unexpired ticket."""
        plain, sep, signature = ticket.partition("::")
        parts = plain.split(":")
        if not sep or len(parts) != 3 or parts[0] != "PVE":
            return None
        if not hmac.compare_digest(signature, self._sign(plain)):
            return None
        try:
            issued = int(parts[2], 16)
        except ValueError:
            return None
        if time.time() - issued > TICKET_LIFETIME:
            return None
        return parts[1], parts[2]

    def token_ok(self, header_value: str) -> str | None:
        """The token's identity if ``PVEAPIToken=USER@REALM!ID=SECRET`` is valid."""
        for prefix in ("PVEAPIToken=", "PVEAPIToken "):
            if header_value.startswith(prefix):
                body = header_value[len(prefix) :]
                break
        else:
            return None
        token_id, sep, secret = body.partition("=")
        if not sep:
            return None
        if hmac.compare_digest(token_id, self.credentials.token_id) and hmac.compare_digest(
            secret, self.credentials.token_secret
        ):
            return token_id
        return None
