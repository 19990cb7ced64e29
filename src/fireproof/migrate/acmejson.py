"""Traefik's ``acme.json``, read and checked before anything is written from it.

The file is one object per certificate resolver (Traefik's ``LocalStore``, pkg/provider/acme):
``{RESOLVER: {"Account": {"Email", "Registration", "PrivateKey", "KeyType"},
"Certificates": [{"domain": {"main", "sans"}, "certificate", "key", "Store"}]}}``. ``certificate``
and ``key`` are base64 of PEM (the chain, then the key); the account's ``PrivateKey`` is base64
of a PKCS#1 RSA key. Every certificate is checked to be what it claims: its key matches it and
its names are the domain's, so that a Secret written from it serves, and cert-manager accepts it
as issued (see ``manifests.py``).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fireproof.errors import UsageError
from fireproof.files import read_text

ACME_JSON_LIMIT = 64 * 1024 * 1024
"""Hundreds of certificates of a few KB each, with room to spare."""


@dataclass(frozen=True, slots=True)
class KeySpec:
    """A private key's type as cert-manager's ``spec.privateKey`` names it."""

    algorithm: str
    """``RSA`` or ``ECDSA``."""
    size: int
    """Bits: 2048, 4096 (RSA); 256, 384 (ECDSA)."""


@dataclass(frozen=True, slots=True)
class StoredCertificate:
    resolver: str
    main: str
    sans: tuple[str, ...]
    chain_pem: bytes
    """The leaf first, then its intermediates, as Traefik stored them."""
    key_pem: bytes
    key: KeySpec
    serial: int
    dns_names: tuple[str, ...]
    """The leaf's subjectAltName DNS names and its common name: together they are what
    cert-manager compares with a Certificate's ``dnsNames`` (pki.FuzzyX509AltNamesMatchSpec)."""
    not_after: dt.datetime
    issuer: str
    store: str


@dataclass(frozen=True, slots=True)
class Account:
    email: str
    key_pem: bytes
    """The ACME account key, PEM: cert-manager's Issuer uses it, so no new account is made."""
    uri: str


@dataclass(frozen=True, slots=True)
class Resolver:
    name: str
    account: Account | None
    certificates: tuple[StoredCertificate, ...]


def load(path: Path) -> tuple[Resolver, ...]:
    """Every resolver of the file, each certificate checked; UsageError naming the file and
    the field when anything is not as Traefik writes it."""
    text = read_text(path, limit=ACME_JSON_LIMIT, what="Traefik acme.json")
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise UsageError(f"{path}: not JSON: {exc}") from None
    return parse(document, str(path))


def parse(document: Any, source: str) -> tuple[Resolver, ...]:
    if not isinstance(document, dict) or not document:
        raise UsageError(f"{source}: not a Traefik acme.json (no resolver object at the top)")
    return tuple(_resolver(str(name), data, f"{source}: {name}") for name, data in document.items())


def _resolver(name: str, data: Any, at: str) -> Resolver:
    if not isinstance(data, dict):
        raise UsageError(f"{at}: a resolver must be an object")
    account = _account(data.get("Account"), f"{at}.Account")
    certificates = data.get("Certificates")
    certificates = [] if certificates is None else certificates
    if not isinstance(certificates, list):
        raise UsageError(f"{at}.Certificates: must be a list")
    return Resolver(
        name,
        account,
        tuple(
            _certificate(name, entry, f"{at}.Certificates[{i}]")
            for i, entry in enumerate(certificates)
        ),
    )


def _account(data: Any, at: str) -> Account | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        raise UsageError(f"{at}: must be an object")
    der = _base64(data.get("PrivateKey"), f"{at}.PrivateKey")
    try:
        key = serialization.load_der_private_key(der, password=None)
    except ValueError:
        raise UsageError(f"{at}.PrivateKey: not a private key") from None
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    registration = data.get("Registration") or {}
    uri = registration.get("uri", "") if isinstance(registration, dict) else ""
    return Account(str(data.get("Email") or ""), pem, str(uri))


def _certificate(resolver: str, data: Any, at: str) -> StoredCertificate:
    if not isinstance(data, dict):
        raise UsageError(f"{at}: must be an object")
    domain = data.get("domain")
    if not isinstance(domain, dict) or not isinstance(domain.get("main"), str):
        raise UsageError(f"{at}.domain.main: missing")
    sans = domain.get("sans") or []
    if not isinstance(sans, list) or not all(isinstance(s, str) for s in sans):
        raise UsageError(f"{at}.domain.sans: must be a list of names")
    chain_pem = _base64(data.get("certificate"), f"{at}.certificate")
    key_pem = _base64(data.get("key"), f"{at}.key")
    try:
        chain = x509.load_pem_x509_certificates(chain_pem)
    except ValueError:
        raise UsageError(f"{at}.certificate: not a PEM certificate chain") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise UsageError(f"{at}.key: not a PEM private key") from None
    leaf = chain[0]
    if not _same_public_key(leaf, key):
        raise UsageError(f"{at}: the key does not belong to the certificate")
    names = _dns_names(leaf)
    claimed = {domain["main"], *sans}
    if not claimed <= set(names):
        raise UsageError(
            f"{at}: the certificate names {', '.join(names)}, not {', '.join(sorted(claimed))}"
        )
    return StoredCertificate(
        resolver=resolver,
        main=domain["main"],
        sans=tuple(sans),
        chain_pem=chain_pem,
        key_pem=key_pem,
        key=_key_spec(key),
        serial=leaf.serial_number,
        dns_names=names,
        not_after=leaf.not_valid_after_utc,
        issuer=leaf.issuer.rfc4514_string(),
        store=str(data.get("Store") or "default"),
    )


def _base64(value: Any, at: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise UsageError(f"{at}: missing")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise UsageError(f"{at}: not base64") from None


def _same_public_key(leaf: x509.Certificate, key: Any) -> bool:
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    mine = key.public_key().public_bytes(serialization.Encoding.DER, spki)
    return bool(mine == leaf.public_key().public_bytes(serialization.Encoding.DER, spki))


def _dns_names(leaf: x509.Certificate) -> tuple[str, ...]:
    try:
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans = names.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        sans = []
    common = [str(a.value) for a in leaf.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
    return tuple(sorted({*sans, *common}))


def _key_spec(key: Any) -> KeySpec:
    if isinstance(key, rsa.RSAPrivateKey):
        return KeySpec("RSA", key.key_size)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return KeySpec("ECDSA", key.curve.key_size)
    raise UsageError(f"a {type(key).__name__} key: cert-manager takes RSA and ECDSA keys only")
