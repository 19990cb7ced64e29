from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fireproof.lab.pki import ADMIN, CLIENTS, CONTROLLER_MANAGER, LabPKI


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_certificates_chain_to_the_lab_ca_and_keys_are_private(tmp_path: Path) -> None:
    pki = LabPKI(tmp_path / "pki")
    pki.generate(extra_addresses=("192.0.2.71", "192.0.2.250"))
    ca = _load(pki.ca.cert)
    ca_key = ca.public_key()
    assert isinstance(ca_key, ec.EllipticCurvePublicKey)
    for pair in [pki.serving, *(pki.client(c) for c in CLIENTS)]:
        cert = _load(pair.cert)
        cert.verify_directly_issued_by(ca)
        assert stat.S_IMODE(pair.key.stat().st_mode) == 0o600
    assert stat.S_IMODE(pki.ca.key.stat().st_mode) == 0o600


def test_serving_certificate_covers_loopback_service_ip_and_cluster_addresses(
    tmp_path: Path,
) -> None:
    pki = LabPKI(tmp_path)
    pki.generate(extra_addresses=("192.0.2.71",))
    sans = (
        _load(pki.serving.cert)
        .extensions.get_extension_for_class(x509.SubjectAlternativeName)
        .value
    )
    ips = {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    assert {"127.0.0.1", "10.96.0.1", "192.0.2.71"} <= ips
    assert "kubernetes.default.svc" in sans.get_values_for_type(x509.DNSName)
    assert all(isinstance(ipaddress.ip_address(ip), ipaddress.IPv4Address) for ip in ips)


def test_client_identities_carry_rbac_user_and_group(tmp_path: Path) -> None:
    pki = LabPKI(tmp_path)
    pki.generate()
    admin = _load(pki.client(ADMIN).cert).subject
    assert admin.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"
    kcm = _load(pki.client(CONTROLLER_MANAGER).cert).subject
    assert kcm.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "system:kube-controller-manager"
    )


def test_embedded_kubeconfig_travels_without_the_pki_directory(tmp_path: Path) -> None:
    pki = LabPKI(tmp_path / "pki")
    pki.generate()
    path = tmp_path / "kubeconfig"
    pki.write_kubeconfig(path, ADMIN, "https://127.0.0.1:6443", embed=True)
    doc = yaml.safe_load(path.read_text())
    cluster = doc["clusters"][0]["cluster"]
    assert cluster["server"] == "https://127.0.0.1:6443"
    assert "certificate-authority-data" in cluster
    assert "client-key-data" in doc["users"][0]["user"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
