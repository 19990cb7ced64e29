"""The objects that take Traefik's certificates over from ``acme.json``, without re-issuing.

One ``kubernetes.io/tls`` Secret per certificate, the same bytes Traefik serves today. Then
cert-manager objects that adopt those Secrets as already issued. cert-manager decides to issue
from what it finds (cert-manager v1.21, internal/controller/certificates/policies, the
trigger chain ``NewTriggerPolicyChain``), and each of its checks is met here:

- ``SecretDoesNotExist``, ``SecretIsMissingData``: the Secret exists with ``tls.crt`` and
  ``tls.key``;
- ``SecretPublicKeysDiffer``: the key is the certificate's (checked in ``acmejson``);
- ``SecretIssuerAnnotationsMismatch``: the ``cert-manager.io/issuer-name``, ``-kind`` and
  ``-group`` annotations name the Certificate's ``issuerRef``;
- ``SecretCertificateNameAnnotationsMismatch``: ``cert-manager.io/certificate-name`` is the
  Certificate's name;
- ``SecretPrivateKeyMismatchesSpec``: ``spec.privateKey`` has the key's algorithm and size
  (pki.PrivateKeyMatchesSpec: an RSA key's size must equal it, 2048 when unset);
- ``CurrentCertificateRequestMismatchesSpec``: with no CertificateRequest yet it falls back to
  pki.FuzzyX509AltNamesMatchSpec: the certificate's DNS names and common name, as one set,
  equal ``spec.dnsNames``;
- ``CurrentCertificateNearingExpiry``: nothing to do; a certificate within its renewal window
  is renewed, as it would be under Traefik.

The Issuer is the resolver: its ACME server, its e-mail, and its account key (from acme.json,
so cert-manager finds the existing account instead of registering a new one).
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from fireproof.migrate.acmejson import Resolver, StoredCertificate

CERT_MANAGER_GROUP = "cert-manager.io"
MANAGED_BY = "fireproof"
_LABELS = {"app.kubernetes.io/managed-by": MANAGED_BY}


class Challenge(StrEnum):
    """How the resolver proves control of a name (Traefik's static configuration)."""

    TLS_ALPN = "tlsChallenge"
    HTTP = "httpChallenge"
    DNS = "dnsChallenge"


@dataclass(frozen=True, slots=True)
class ResolverSettings:
    """What Traefik's static configuration says of a resolver, which acme.json does not."""

    server: str
    """``caServer``: the ACME directory URL."""
    email: str
    challenge: Challenge
    ingress_class: str = "traefik"


def secret_name(certificate: StoredCertificate) -> str:
    """``<resolver>-<main name>-tls``, a valid object name however long the domain is."""
    domain = certificate.main.lower().replace("*", "wildcard")
    base = re.sub(r"[^a-z0-9-]+", "-", f"{certificate.resolver.lower()}-{domain}").strip("-")
    if len(base) > 59:  # 63 (a label's length) with "-tls"; kept unique by a hash
        digest = hashlib.sha256(base.encode()).hexdigest()[:8]
        base = f"{base[:50].rstrip('-')}-{digest}"
    return f"{base}-tls"


def issuer_name(resolver: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", resolver.lower()).strip("-") or "acme"


def account_secret_name(resolver: str) -> str:
    return f"{issuer_name(resolver)}-acme-account"


def tls_secret(certificate: StoredCertificate, namespace: str) -> dict[str, Any]:
    name = secret_name(certificate)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": dict(_LABELS),
            "annotations": {
                "cert-manager.io/issuer-name": issuer_name(certificate.resolver),
                "cert-manager.io/issuer-kind": "Issuer",
                "cert-manager.io/issuer-group": CERT_MANAGER_GROUP,
                "cert-manager.io/certificate-name": name,
                "fireproof.io/migrated-from": f"acme.json resolver {certificate.resolver}",
                "fireproof.io/serial": format(certificate.serial, "x"),
            },
        },
        "data": {
            "tls.crt": base64.b64encode(certificate.chain_pem).decode(),
            "tls.key": base64.b64encode(certificate.key_pem).decode(),
        },
    }


def account_secret(resolver: Resolver, namespace: str) -> dict[str, Any] | None:
    if resolver.account is None:
        return None
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": account_secret_name(resolver.name),
            "namespace": namespace,
            "labels": dict(_LABELS),
        },
        "data": {"tls.key": base64.b64encode(resolver.account.key_pem).decode()},
    }


def issuer(resolver: Resolver, settings: ResolverSettings, namespace: str) -> dict[str, Any]:
    email = settings.email or (resolver.account.email if resolver.account else "")
    acme: dict[str, Any] = {
        "server": settings.server,
        "privateKeySecretRef": {"name": account_secret_name(resolver.name)},
        # cert-manager has no TLS-ALPN-01 solver: a resolver on tlsChallenge renews by HTTP-01
        # through the same Traefik (port 80 must reach it, as Let's Encrypt needs).
        "solvers": [{"http01": {"ingress": {"ingressClassName": settings.ingress_class}}}],
    }
    if email:
        acme["email"] = email
    return {
        "apiVersion": f"{CERT_MANAGER_GROUP}/v1",
        "kind": "Issuer",
        "metadata": {
            "name": issuer_name(resolver.name),
            "namespace": namespace,
            "labels": dict(_LABELS),
        },
        "spec": {"acme": acme},
    }


def certificate(stored: StoredCertificate, namespace: str) -> dict[str, Any]:
    name = secret_name(stored)
    return {
        "apiVersion": f"{CERT_MANAGER_GROUP}/v1",
        "kind": "Certificate",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(_LABELS)},
        "spec": {
            "secretName": name,
            "dnsNames": list(stored.dns_names),
            "issuerRef": {
                "name": issuer_name(stored.resolver),
                "kind": "Issuer",
                "group": CERT_MANAGER_GROUP,
            },
            "privateKey": {
                "algorithm": stored.key.algorithm,
                "size": stored.key.size,
                "rotationPolicy": "Always",
            },
        },
    }


def tls_store(certificates: list[StoredCertificate], namespace: str) -> dict[str, Any]:
    """Traefik's ``default`` TLSStore: it serves every Secret by SNI to every TLS router, so
    no IngressRoute has to change (they keep ``tls: {}``, without ``certResolver``)."""
    return {
        "apiVersion": "traefik.io/v1alpha1",
        "kind": "TLSStore",
        "metadata": {"name": "default", "namespace": namespace, "labels": dict(_LABELS)},
        "spec": {"certificates": [{"secretName": secret_name(c)} for c in certificates]},
    }


def cert_manager_objects(
    resolvers: tuple[Resolver, ...], settings: dict[str, ResolverSettings], namespace: str
) -> list[dict[str, Any]]:
    """Per resolver with certificates: its account Secret and Issuer; then one Certificate
    per certificate."""
    objects: list[dict[str, Any]] = []
    for resolver in resolvers:
        if not resolver.certificates or resolver.name not in settings:
            continue
        if (account := account_secret(resolver, namespace)) is not None:
            objects.append(account)
        objects.append(issuer(resolver, settings[resolver.name], namespace))
        objects += [certificate(c, namespace) for c in resolver.certificates]
    return objects
