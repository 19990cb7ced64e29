"""Traefik's certificate resolvers, read from its command line as a Deployment passes it.

Traefik's flags are case-insensitive dotted paths (``--certificatesResolvers.le.acme.email=…``,
``--certificatesresolvers.le.acme.tlschallenge=true``); a bare flag is ``true``. Only the ACME
resolvers' settings are read: what acme.json does not record (the server, the challenge).
"""

from __future__ import annotations

from dataclasses import dataclass

from fireproof.migrate.manifests import Challenge, ResolverSettings

LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
"""Traefik's default ``caServer`` (lego.DirectoryURLLetsEncrypt)."""
PREFIX = "--certificatesresolvers."


@dataclass(frozen=True, slots=True)
class ResolverFlags:
    name: str
    values: dict[str, str]
    """``acme.<key>`` (lower case) -> value, e.g. ``caserver``, ``storage``."""

    @property
    def storage(self) -> str:
        return self.values.get("storage", "acme.json")

    def settings(self) -> ResolverSettings:
        return ResolverSettings(
            server=self.values.get("caserver", LETS_ENCRYPT),
            email=self.values.get("email", ""),
            challenge=self._challenge(),
        )

    def _challenge(self) -> Challenge:
        for challenge in (Challenge.DNS, Challenge.HTTP, Challenge.TLS_ALPN):
            key = challenge.value.lower()
            named = any(k == key or k.startswith(key + ".") for k in self.values)
            if named and self.values.get(key, "true").lower() != "false":
                return challenge
        return Challenge.TLS_ALPN


def resolvers(args: list[str]) -> dict[str, ResolverFlags]:
    """Each ACME resolver the arguments configure, by name (as acme.json keys them)."""
    found: dict[str, dict[str, str]] = {}
    names: dict[str, str] = {}
    for arg in args:
        flag, _, value = arg.partition("=")
        if not flag.lower().startswith(PREFIX):
            continue
        name, _, rest = flag[len(PREFIX) :].partition(".")
        kind, _, key = rest.partition(".")
        if kind.lower() != "acme" or not name:
            continue
        # acme.json keys resolvers by the name as written; flags match it case-insensitively.
        names.setdefault(name.lower(), name)
        found.setdefault(name.lower(), {})[key.lower()] = value if value else "true"
    return {names[k]: ResolverFlags(names[k], v) for k, v in found.items()}
