"""Certificates and kubeconfigs for the lab's control plane, generated at every start.

ECDSA P-256 keys keep generation fast; everything is valid for loopback and the lab's
documentation-range addresses only.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fireproof.lab.addresses import KUBERNETES_SERVICE_IP

_VALIDITY = dt.timedelta(days=365)


@dataclass(frozen=True, slots=True)
class KeyPair:
    cert: Path
    key: Path


@dataclass(frozen=True, slots=True)
class ClientIdentity:
    """A client certificate's subject: CN is the user, O the groups."""

    file_stem: str
    common_name: str
    organization: str | None = None


ADMIN = ClientIdentity("admin", "fireproof-lab-admin", "system:masters")
CONTROLLER_MANAGER = ClientIdentity("controller-manager", "system:kube-controller-manager")
SCHEDULER = ClientIdentity("scheduler", "system:kube-scheduler")
# One identity drives every simulated kubelet; per-node certificates would only matter to the
# Node authorizer, which the lab does not enable.
AGENT = ClientIdentity("agent", "fireproof-lab-agent", "system:masters")
CLIENTS = (ADMIN, CONTROLLER_MANAGER, SCHEDULER, AGENT)


def _write_private(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _make_ca(
    pair: KeyPair, common_name: str, now: dt.datetime
) -> tuple[ec.EllipticCurvePrivateKey, x509.Name]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_private(pair.key, _key_pem(key))
    return key, name


def _issue(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_name: x509.Name,
    now: dt.datetime,
    pair: KeyPair,
    subject: x509.Name,
    usage: x509.ObjectIdentifier,
    sans: list[x509.GeneralName] | None = None,
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_private(pair.key, _key_pem(key))


@dataclass(frozen=True, slots=True)
class LabPKI:
    directory: Path

    @property
    def ca(self) -> KeyPair:
        return KeyPair(self.directory / "ca.crt", self.directory / "ca.key")

    @property
    def serving(self) -> KeyPair:
        """Serving certificate shared by every component on 127.0.0.1."""
        return KeyPair(self.directory / "serving.crt", self.directory / "serving.key")

    @property
    def service_account_key(self) -> Path:
        return self.directory / "sa.key"

    @property
    def service_account_pub(self) -> Path:
        return self.directory / "sa.pub"

    def client(self, who: ClientIdentity) -> KeyPair:
        return KeyPair(
            self.directory / f"{who.file_stem}.crt", self.directory / f"{who.file_stem}.key"
        )

    @property
    def pve_ca(self) -> KeyPair:
        """The emulated Proxmox cluster's own CA (pve-root-ca), separate from Kubernetes'."""
        return KeyPair(self.directory / "pve-root-ca.pem", self.directory / "pve-root-ca.key")

    @property
    def pve_serving(self) -> KeyPair:
        return KeyPair(self.directory / "pve-ssl.pem", self.directory / "pve-ssl.key")

    def generate_pve(self) -> None:
        """Proxmox CA and the API's serving certificate for 127.0.0.1."""
        self._local_server(
            self.pve_ca, self.pve_serving, "Proxmox Virtual Environment (fireproof lab)", "pve-lab"
        )

    @property
    def acme_listener_ca(self) -> KeyPair:
        """The CA of the ACME server's own HTTPS listener (not of the certificates it issues:
        Pebble makes a new issuing root at every start)."""
        return KeyPair(
            self.directory / "acme-listener-ca.crt", self.directory / "acme-listener-ca.key"
        )

    @property
    def acme_listener(self) -> KeyPair:
        return KeyPair(self.directory / "acme-listener.crt", self.directory / "acme-listener.key")

    def generate_acme(self) -> None:
        """The ACME server's listener CA and its serving certificate for 127.0.0.1."""
        self._local_server(
            self.acme_listener_ca,
            self.acme_listener,
            "ACME server listener (fireproof lab)",
            "acme",
        )

    def _local_server(self, ca: KeyPair, serving: KeyPair, ca_name: str, name: str) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
        ca_key, ca_subject = _make_ca(ca, ca_name, now)
        _issue(
            ca_key,
            ca_subject,
            now,
            serving,
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]),
            ExtendedKeyUsageOID.SERVER_AUTH,
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        )

    def generate(self, extra_addresses: tuple[str, ...] = ()) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o700)
        now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
        ca_key, ca_name = _make_ca(self.ca, "fireproof-lab-ca", now)

        def issue(
            pair: KeyPair,
            subject: x509.Name,
            usage: x509.ObjectIdentifier,
            sans: list[x509.GeneralName] | None = None,
        ) -> None:
            _issue(ca_key, ca_name, now, pair, subject, usage, sans)

        dns = [
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ]
        ips = ["127.0.0.1", KUBERNETES_SERVICE_IP, *extra_addresses]
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in dict.fromkeys(ips)]
        issue(
            self.serving,
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fireproof-lab-serving")]),
            ExtendedKeyUsageOID.SERVER_AUTH,
            sans,
        )
        for who in CLIENTS:
            attrs = [x509.NameAttribute(NameOID.COMMON_NAME, who.common_name)]
            if who.organization:
                attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, who.organization))
            issue(self.client(who), x509.Name(attrs), ExtendedKeyUsageOID.CLIENT_AUTH)

        sa_key = ec.generate_private_key(ec.SECP256R1())
        _write_private(self.service_account_key, _key_pem(sa_key))
        self.service_account_pub.write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def write_kubeconfig(
        self, path: Path, who: ClientIdentity, server: str, *, embed: bool
    ) -> None:
        """Write a kubeconfig for ``who``; ``embed`` copies the PEMs in so the file travels."""
        pair = self.client(who)
        cluster: dict[str, str] = {"server": server}
        user: dict[str, str] = {}
        if embed:
            cluster["certificate-authority-data"] = base64.b64encode(
                self.ca.cert.read_bytes()
            ).decode()
            user["client-certificate-data"] = base64.b64encode(pair.cert.read_bytes()).decode()
            user["client-key-data"] = base64.b64encode(pair.key.read_bytes()).decode()
        else:
            cluster["certificate-authority"] = str(self.ca.cert)
            user["client-certificate"] = str(pair.cert)
            user["client-key"] = str(pair.key)
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fireproof-lab", "cluster": cluster}],
            "users": [{"name": who.common_name, "user": user}],
            "contexts": [
                {
                    "name": "fireproof-lab",
                    "context": {"cluster": "fireproof-lab", "user": who.common_name},
                }
            ],
            "current-context": "fireproof-lab",
        }
        _write_private(path, yaml.safe_dump(doc, sort_keys=False).encode())
