"""`fireproof migrate traefik-acme` as a user runs it, on the lab: a Traefik Deployment with its
acme.json on a ReadWriteOnce claim (one replica) becomes stateless with 3 replicas, serving the
same certificates from Secrets, adopted by cert-manager objects the API server validates
against cert-manager's real CRDs.

The acme.json is real: Traefik wrote it after a real ACME exchange with Pebble (acmetools).
The lab's Traefik pods themselves are simulated, so what every replica serves is not read
here; the Secrets, the objects and the rollout are.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from acmetools import Issued, issued
from labtools import LabHandle, run_cli, wait_for

pytestmark = pytest.mark.lab

SITES = ["blog.tazlab.test", "photos.tazlab.test"]


@pytest.fixture(scope="module")
def acme_json(tmp_path_factory: pytest.TempPathFactory) -> Issued:
    return issued(tmp_path_factory.mktemp("acme"), SITES, resolver="le")


def _traefik(namespace: str, directory: str) -> str:
    flags = [
        "--certificatesresolvers.le.acme.storage=/data/acme.json",
        f"--certificatesResolvers.le.acme.caServer={directory}",
        "--certificatesresolvers.le.acme.email=admin@tazlab.test",
        "--certificatesresolvers.le.acme.tlschallenge=true",
        "--providers.kubernetescrd",
    ]
    return f"""
apiVersion: v1
kind: Namespace
metadata: {{name: {namespace}}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: traefik, namespace: {namespace}}}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: longhorn
  resources: {{requests: {{storage: 128Mi}}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: traefik, namespace: {namespace}, labels: {{app.kubernetes.io/name: traefik}}}}
spec:
  replicas: 1
  strategy: {{type: Recreate}}
  selector: {{matchLabels: {{app.kubernetes.io/name: traefik, test: {namespace}}}}}
  template:
    metadata: {{labels: {{app.kubernetes.io/name: traefik, test: {namespace}}}}}
    spec:
      containers:
      - name: traefik
        image: docker.io/traefik:v3.6
        args: {json.dumps(flags)}
        volumeMounts: [{{name: data, mountPath: /data}}, {{name: tmp, mountPath: /tmp}}]
      volumes:
      - {{name: data, persistentVolumeClaim: {{claimName: traefik}}}}
      - {{name: tmp, emptyDir: {{}}}}
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {{name: blog, namespace: {namespace}}}
spec:
  entryPoints: [websecure]
  routes:
  - match: Host(`blog.tazlab.test`)
    kind: Rule
    services: [{{name: blog, port: 80}}]
  tls: {{certResolver: le}}
"""


@pytest.fixture
def traefik_ns(healthy_lab: LabHandle, acme_json: Issued) -> Iterator[str]:
    namespace = f"mig-{uuid.uuid4().hex[:6]}"
    manifest = _traefik(namespace, acme_json.acme.directory_url)
    done = healthy_lab.kubectl("apply", "-f", "-", input=manifest)
    assert done.returncode == 0, done.stderr
    wait_for("Traefik's one replica Running", lambda: _running(healthy_lab, namespace) == 1)
    try:
        yield namespace
    finally:
        healthy_lab.kubectl("delete", "namespace", namespace, "--wait=true", "--timeout=120s")


def _running(lab: LabHandle, namespace: str) -> int:
    pods = lab.kubectl_json("get", "pods", "-n", namespace)["items"]
    return sum(
        1
        for p in pods
        if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
    )


def _migrate(lab: LabHandle, tmp_path: Path, namespace: str, *extra: str) -> Any:
    env = {"FIREPROOF_LAB_DIR": str(lab.state_dir), "XDG_STATE_HOME": str(tmp_path / "state")}
    return run_cli(
        "migrate", "traefik-acme", "--lab", "--from-file", str(tmp_path / "acme.json"),
        "-n", namespace, *extra, env=env, timeout=600,
    )  # fmt: skip


def _serial(secret: dict[str, Any]) -> int:
    pem = base64.b64decode(secret["data"]["tls.crt"])
    return x509.load_pem_x509_certificates(pem)[0].serial_number


def test_migration_serves_the_same_certificates_from_secrets_with_three_replicas(
    healthy_lab: LabHandle, acme_json: Issued, traefik_ns: str, tmp_path: Path
) -> None:
    lab, namespace = healthy_lab, traefik_ns
    (tmp_path / "acme.json").write_bytes(acme_json.storage.read_bytes())

    refused = _migrate(lab, tmp_path, namespace)  # no --yes, no terminal: the plan only
    assert refused.returncode == 1, refused.stderr
    assert "refusing to migrate Traefik off acme.json without confirmation" in refused.stderr
    assert "blog.tazlab.test" in refused.stdout
    assert lab.kubectl_json("get", "secrets", "-n", namespace)["items"] == []

    done = _migrate(lab, tmp_path, namespace, "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verified: 2 certificate(s) in Secrets, 3 replicas" in done.stderr
    assert "Traceback" not in done.stderr

    # The same certificates, in Secrets, as cert-manager expects to find them issued.
    secrets = {
        s["metadata"]["name"]: s
        for s in lab.kubectl_json("get", "secrets", "-n", namespace)["items"]
        if s["type"] == "kubernetes.io/tls"
    }
    certificates = lab.kubectl_json("get", "certificates.cert-manager.io", "-n", namespace)
    by_secret = {c["spec"]["secretName"]: c for c in certificates["items"]}
    assert set(by_secret) == set(secrets)
    served = {s.serial_number for s in acme_json.served.values()}
    assert {_serial(s) for s in secrets.values()} == served  # nothing re-issued
    for name, secret in secrets.items():
        certificate = by_secret[name]
        notes = secret["metadata"]["annotations"]
        assert notes["cert-manager.io/certificate-name"] == certificate["metadata"]["name"]
        assert notes["cert-manager.io/issuer-name"] == certificate["spec"]["issuerRef"]["name"]
        assert notes["cert-manager.io/issuer-kind"] == certificate["spec"]["issuerRef"]["kind"]
        leaf = x509.load_pem_x509_certificates(base64.b64decode(secret["data"]["tls.crt"]))[0]
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sorted(certificate["spec"]["dnsNames"]) == sorted(
            names.get_values_for_type(x509.DNSName)
        )
    issuer = lab.kubectl_json("get", "issuers.cert-manager.io", "le", "-n", namespace)
    assert issuer["spec"]["acme"]["server"] == acme_json.acme.directory_url
    account = issuer["spec"]["acme"]["privateKeySecretRef"]["name"]
    assert lab.kubectl_json("get", "secret", account, "-n", namespace)["data"]["tls.key"]

    # Traefik serves them from its default TLSStore; the route no longer asks the resolver.
    store = lab.kubectl_json("get", "tlsstores.traefik.io", "default", "-n", namespace)
    assert {c["secretName"] for c in store["spec"]["certificates"]} == set(secrets)
    route = lab.kubectl_json("get", "ingressroutes.traefik.io", "blog", "-n", namespace)
    assert "certResolver" not in route["spec"]["tls"]

    # Stateless: no claim, no resolver, three replicas on three nodes; the claim is kept.
    deployment = lab.kubectl_json("get", "deployment", "traefik", "-n", namespace)
    template = deployment["spec"]["template"]["spec"]
    assert [v["name"] for v in template["volumes"]] == ["tmp"]
    assert not any("certificatesresolvers" in a.lower() for a in template["containers"][0]["args"])
    assert "--providers.kubernetescrd" in template["containers"][0]["args"]
    assert deployment["spec"]["replicas"] == 3
    pods = [
        p
        for p in lab.kubectl_json("get", "pods", "-n", namespace)["items"]
        if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
    ]
    assert len({p["spec"]["nodeName"] for p in pods}) == 3
    assert lab.kubectl_json("get", "pvc", "traefik", "-n", namespace)["metadata"]["name"]
    budget = lab.kubectl_json("get", "pdb", "traefik", "-n", namespace)
    assert budget["spec"]["minAvailable"] == 2

    # The rollback names the Deployment as it was, claim and all.
    rollbacks = list((tmp_path / "state" / "fireproof" / "migrations").glob("*.json"))
    assert len(rollbacks) == 1
    before = json.loads(rollbacks[0].read_text())
    assert before["spec"]["replicas"] == 1
    assert "claimName" in json.dumps(before["spec"]["template"]["spec"]["volumes"])
    assert str(rollbacks[0]) in done.stderr


def test_the_manifests_alone_are_valid_for_the_api_server(
    healthy_lab: LabHandle, acme_json: Issued, traefik_ns: str, tmp_path: Path
) -> None:
    (tmp_path / "acme.json").write_bytes(acme_json.storage.read_bytes())
    done = _migrate(healthy_lab, tmp_path, traefik_ns, "-o", "yaml")
    assert done.returncode == 0, done.stderr
    documents = [d for d in yaml.safe_load_all(done.stdout) if d]
    kinds = [d["kind"] for d in documents]
    assert kinds.count("Secret") == 3  # two certificates and the ACME account
    assert {"Issuer", "Certificate", "TLSStore", "PodDisruptionBudget", "Deployment"} <= set(kinds)
    checked = healthy_lab.kubectl("apply", "--dry-run=server", "-f", "-", input=done.stdout)
    assert checked.returncode == 0, checked.stderr
    assert healthy_lab.kubectl_json("get", "secrets", "-n", traefik_ns)["items"] == []


def test_an_acme_json_that_is_not_one_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "acme.json"
    bad.write_text('{"le": {"Certificates": [{"domain": {"main": "a.test"}, "certificate": "!"}]}}')
    done = run_cli("migrate", "traefik-acme", "--from-file", str(bad), "--kubeconfig", "/nope")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "le.Certificates[0].certificate: not base64" in done.stderr
