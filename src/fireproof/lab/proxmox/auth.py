"""Proxmox authentication: tickets with CSRF tokens, and API tokens with privileges.

Tickets look like the real ones (``PVE:user:HEXTIME::signature``) and are verified by HMAC
with a per-process secret; they expire after two hours, like Proxmox's. As in
pve-access-control:
- ``/access/ticket`` takes ``USER@REALM`` (or a ``realm`` parameter); a bare name is refused;
- a valid ticket is accepted as the password (proxmoxer renews its ticket that way);
- a token without privilege separation has its user's rights (root@pam: all); a separated
  token has only the privileges granted to it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass, field

TICKET_LIFETIME = 7200
ALL_PRIVILEGES: frozenset[str] | None = None


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
    privileges: frozenset[str] | None = ALL_PRIVILEGES
    """What this identity may do everywhere (None: everything, like root@pam)."""

    def may(self, privilege: str) -> bool:
        return self.privileges is None or privilege in self.privileges


@dataclass(frozen=True, slots=True)
class Token:
    secret: str
    privileges: frozenset[str] | None = field(default=ALL_PRIVILEGES)


class Authenticator:
    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        self._key = secrets.token_bytes(32)
        self.tokens: dict[str, Token] = {credentials.token_id: Token(credentials.token_secret)}

    def add_token(self, token_id: str, privileges: frozenset[str]) -> str:
        """A privilege-separated token with exactly ``privileges``; returns its secret."""
        secret = str(uuid.uuid4())
        self.tokens[token_id] = Token(secret, privileges)
        return secret

    def _sign(self, text: str) -> str:
        digest = hmac.new(self._key, text.encode(), hashlib.sha256).digest()
        return base64.b64encode(digest).decode().rstrip("=")

    def login(self, username: str, password: str) -> tuple[str, str, str] | None:
        """(user, ticket, CSRF token) for valid credentials, else None."""
        if "@" not in username:
            return None  # pve-access-control: "no realm" - the login fails
        user = username
        by_ticket = self.ticket_user(password)
        valid = (by_ticket is not None and hmac.compare_digest(by_ticket[0], user)) or (
            hmac.compare_digest(user, self.credentials.user)
            and hmac.compare_digest(password, self.credentials.password)
        )
        if not valid:
            return None
        stamp = f"{int(time.time()):08X}"
        plain = f"PVE:{user}:{stamp}"
        return user, f"{plain}::{self._sign(plain)}", self.csrf_token(user, stamp)

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

    def token_identity(self, header_value: str) -> Identity | None:
        """The token's identity if ``PVEAPIToken=USER@REALM!ID=SECRET`` is valid."""
        for prefix in ("PVEAPIToken=", "PVEAPIToken "):
            if header_value.startswith(prefix):
                body = header_value[len(prefix) :]
                break
        else:
            return None
        token_id, sep, secret = body.partition("=")
        token = self.tokens.get(token_id)
        if not sep or token is None or not hmac.compare_digest(secret, token.secret):
            return None
        return Identity(token_id, via_ticket=False, privileges=token.privileges)
