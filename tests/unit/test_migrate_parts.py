"""The migration's pure parts: acme.json read and checked, the objects cert-manager adopts
without re-issuing, Traefik's Deployment made stateless, Traefik's flags read."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from fireproof.errors import UsageError
from fireproof.migrate import acmejson, deployment, manifests, traefikargs
from fireproof.migrate.traefik import describe

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def _issue(names: list[str], key: Any, common_name: str | None = None) -> bytes:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else []
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Pebble Intermediate")]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def _pem(key: Any) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _entry(main: str, sans: list[str], key: Any, cert: bytes | None = None) -> dict[str, Any]:
    cert = cert if cert is not None else _issue([main, *sans], key)
    return {
        "domain": {"main": main, "sans": sans},
        "certificate": base64.b64encode(cert).decode(),
        "key": base64.b64encode(_pem(key)).decode(),
        "Store": "default",
    }


def _acme_json(*entries: dict[str, Any], resolver: str = "le") -> dict[str, Any]:
    account = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = account.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    return {
        resolver: {
            "Account": {
                "Email": "admin@tazlab.test",
                "Registration": {"uri": "https://acme.test/acct/1"},
                "PrivateKey": base64.b64encode(der).decode(),
                "KeyType": "4096",
            },
            "Certificates": list(entries),
        }
    }


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_a_certificate_is_read_with_its_key_type_names_and_account(rsa_key: Any) -> None:
    ec_key = ec.generate_private_key(ec.SECP384R1())
    document = _acme_json(
        _entry("blog.tazlab.test", ["www.tazlab.test"], rsa_key),
        _entry("photos.tazlab.test", [], ec_key),
    )
    (resolver,) = acmejson.parse(document, "acme.json")
    assert resolver.name == "le"
    assert resolver.account is not None
    assert resolver.account.email == "admin@tazlab.test"
    assert b"RSA PRIVATE KEY" in resolver.account.key_pem  # PKCS#1, as cert-manager reads it
    blog, photos = resolver.certificates
    assert blog.key == acmejson.KeySpec("RSA", 2048)
    assert photos.key == acmejson.KeySpec("ECDSA", 384)
    assert blog.dns_names == ("blog.tazlab.test", "www.tazlab.test")


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (
            lambda e, k: e.update(certificate="not base64!"),
            "Certificates[0].certificate: not base64",
        ),
        (lambda e, k: e.update(key=base64.b64encode(b"junk").decode()), "[0].key: not a PEM"),
        (lambda e, k: e.pop("domain"), "Certificates[0].domain.main: missing"),
        (lambda e, k: e["domain"].update(sans="x"), "domain.sans: must be a list"),
        (
            lambda e, k: e.update(
                key=base64.b64encode(_pem(ec.generate_private_key(ec.SECP256R1()))).decode()
            ),
            "the key does not belong to the certificate",
        ),
        (
            lambda e, k: e.update(certificate=base64.b64encode(_issue(["other.test"], k)).decode()),
            "the certificate names other.test, not blog.tazlab.test",
        ),
    ],
)
def test_a_certificate_that_is_not_what_it_claims_is_refused_naming_the_field(
    rsa_key: Any, change: Any, said: str
) -> None:
    entry = _entry("blog.tazlab.test", [], rsa_key)
    change(entry, rsa_key)
    with pytest.raises(UsageError) as info:
        acmejson.parse(_acme_json(entry), "acme.json")
    assert said in info.value.message
    assert info.value.message.startswith("acme.json: le")


@pytest.mark.parametrize("document", [[], {}, {"le": []}, {"le": {"Certificates": {}}}, "x"])
def test_a_file_that_is_not_an_acme_json_is_refused(document: Any) -> None:
    with pytest.raises(UsageError):
        acmejson.parse(document, "acme.json")


def test_the_secret_and_certificate_meet_cert_managers_no_reissue_checks(rsa_key: Any) -> None:
    cert = _issue(["blog.tazlab.test"], rsa_key, common_name="blog.tazlab.test")
    (resolver,) = acmejson.parse(_acme_json(_entry("blog.tazlab.test", [], rsa_key, cert)), "f")
    (stored,) = resolver.certificates
    secret = manifests.tls_secret(stored, "traefik")
    certificate = manifests.certificate(stored, "traefik")
    notes = secret["metadata"]["annotations"]
    # SecretIssuerAnnotationsMismatch, SecretCertificateNameAnnotationsMismatch
    assert notes["cert-manager.io/issuer-name"] == certificate["spec"]["issuerRef"]["name"]
    assert notes["cert-manager.io/issuer-kind"] == certificate["spec"]["issuerRef"]["kind"]
    assert notes["cert-manager.io/issuer-group"] == certificate["spec"]["issuerRef"]["group"]
    assert notes["cert-manager.io/certificate-name"] == certificate["metadata"]["name"]
    # SecretIsMissingData, and the same bytes Traefik serves
    assert base64.b64decode(secret["data"]["tls.crt"]) == cert
    assert secret["type"] == "kubernetes.io/tls"
    # SecretPrivateKeyMismatchesSpec
    assert certificate["spec"]["privateKey"]["algorithm"] == "RSA"
    assert certificate["spec"]["privateKey"]["size"] == 2048
    # FuzzyX509AltNamesMatchSpec: SANs and common name together equal dnsNames
    assert certificate["spec"]["dnsNames"] == ["blog.tazlab.test"]
    assert certificate["spec"]["secretName"] == secret["metadata"]["name"]


def test_the_issuer_is_the_resolver_with_its_account_and_server(rsa_key: Any) -> None:
    (resolver,) = acmejson.parse(_acme_json(_entry("a.test", [], rsa_key)), "f")
    settings = manifests.ResolverSettings(
        "https://pebble:14000/dir", "", manifests.Challenge.TLS_ALPN
    )
    objects = manifests.cert_manager_objects((resolver,), {"le": settings}, "traefik")
    assert [o["kind"] for o in objects] == ["Secret", "Issuer", "Certificate"]
    account, issuer, _certificate = objects
    acme = issuer["spec"]["acme"]
    assert acme["server"] == "https://pebble:14000/dir"
    assert acme["email"] == "admin@tazlab.test"  # from the account when the flags have none
    assert acme["privateKeySecretRef"]["name"] == account["metadata"]["name"]
    assert acme["solvers"] == [{"http01": {"ingress": {"ingressClassName": "traefik"}}}]


@pytest.mark.parametrize(
    ("main", "expected"),
    [
        ("blog.tazlab.test", "le-blog-tazlab-test-tls"),
        ("*.tazlab.test", "le-wildcard-tazlab-test-tls"),
        ("BLOG.Tazlab.TEST", "le-blog-tazlab-test-tls"),
    ],
)
def test_secret_names_are_valid_object_names(rsa_key: Any, main: str, expected: str) -> None:
    (resolver,) = acmejson.parse(_acme_json(_entry(main, [], rsa_key)), "f")
    assert manifests.secret_name(resolver.certificates[0]) == expected


def test_a_long_domain_gets_a_short_unique_name(rsa_key: Any) -> None:
    long_a, long_b = "a" * 60 + ".test", "a" * 60 + ".example"
    (resolver,) = acmejson.parse(
        _acme_json(_entry(long_a, [], rsa_key), _entry(long_b, [], rsa_key)), "f"
    )
    names = [manifests.secret_name(c) for c in resolver.certificates]
    assert all(len(n) <= 63 for n in names)
    assert names[0] != names[1]


DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {
        "name": "traefik",
        "namespace": "traefik",
        "resourceVersion": "42",
        "uid": "u",
        "managedFields": [],
        "annotations": {"deployment.kubernetes.io/revision": "3", "team": "web"},
    },
    "spec": {
        "replicas": 1,
        "strategy": {"type": "Recreate"},
        "selector": {"matchLabels": {"app": "traefik"}},
        "template": {
            "metadata": {"labels": {"app": "traefik"}},
            "spec": {
                "containers": [
                    {
                        "name": "traefik",
                        "args": [
                            "--entrypoints.websecure.address=:443",
                            "--certificatesResolvers.le.acme.storage=/data/acme.json",
                            "--certificatesresolvers.le.acme.tlschallenge",
                        ],
                        "volumeMounts": [
                            {"name": "data", "mountPath": "/data"},
                            {"name": "plugins", "mountPath": "/plugins"},
                        ],
                    }
                ],
                "volumes": [
                    {"name": "data", "persistentVolumeClaim": {"claimName": "traefik"}},
                    {"name": "plugins", "persistentVolumeClaim": {"claimName": "plugins"}},
                ],
            },
        },
    },
    "status": {"replicas": 1},
}


def test_the_deployment_loses_its_resolvers_and_their_claim_only() -> None:
    original = copy.deepcopy(DEPLOYMENT)
    claims = deployment.claims_at(DEPLOYMENT, ["/data/acme.json"])
    assert claims == ["traefik"]
    after = deployment.stateless(DEPLOYMENT, claims, 3)
    assert original == DEPLOYMENT  # a new object; the original is the rollback
    spec = after["spec"]
    pod = spec["template"]["spec"]
    assert pod["containers"][0]["args"] == ["--entrypoints.websecure.address=:443"]
    assert [v["name"] for v in pod["volumes"]] == ["plugins"]  # another claim is not touched
    assert [m["name"] for m in pod["containers"][0]["volumeMounts"]] == ["plugins"]
    assert spec["replicas"] == 3
    assert spec["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    keys = [c["topologyKey"] for c in pod["topologySpreadConstraints"]]
    assert keys == ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
    assert "status" not in after
    assert after["metadata"]["resourceVersion"] == "42"  # the replace is conditional on it
    assert "uid" not in after["metadata"]
    assert after["metadata"]["annotations"] == {"team": "web"}


def test_a_helm_release_gets_values_not_patches() -> None:
    helm = copy.deepcopy(DEPLOYMENT)
    helm["metadata"]["labels"] = {"app.kubernetes.io/managed-by": "Helm"}
    helm["metadata"]["annotations"]["meta.helm.sh/release-name"] = "edge"
    assert deployment.helm_release(DEPLOYMENT) is None
    assert deployment.helm_release(helm) == "edge"
    values = deployment.helm_values(helm, 3)
    assert values["deployment"] == {"replicas": 3}
    assert values["persistence"] == {"enabled": False}
    assert values["podDisruptionBudget"] == {"enabled": True, "minAvailable": 2}


def test_traefik_flags_are_read_case_insensitively_with_defaults() -> None:
    found = traefikargs.resolvers(
        [
            "--certificatesResolvers.LE.acme.caServer=https://pebble/dir",
            "--certificatesresolvers.le.acme.httpchallenge.entrypoint=web",
            "--certificatesresolvers.dns.acme.dnschallenge.provider=cloudflare",
            "--certificatesresolvers.dns.acme.storage=/data/dns.json",
            "--providers.kubernetescrd",
            "--certificatesresolvers.bad",
        ]
    )
    assert set(found) == {"LE", "dns"}
    le = found["LE"].settings()
    assert le.server == "https://pebble/dir"
    assert le.challenge is manifests.Challenge.HTTP
    assert found["LE"].storage == "acme.json"
    assert found["dns"].settings().server == traefikargs.LETS_ENCRYPT
    assert found["dns"].settings().challenge is manifests.Challenge.DNS
    assert found["dns"].storage == "/data/dns.json"
    assert json.dumps(found["dns"].values)  # plain strings, printable in a plan


def _plan(resolver_args: list[str], *entries: dict[str, Any]) -> Any:
    from fireproof.migrate.traefik import Plan

    stored = acmejson.parse(_acme_json(*entries), "acme.json")
    live = copy.deepcopy(DEPLOYMENT)
    live["spec"]["template"]["spec"]["containers"][0]["args"] = resolver_args
    return Plan(
        namespace="traefik",
        deployment=live,
        resolvers=stored,
        flags=traefikargs.resolvers(resolver_args),
        claims=("traefik",),
        replicas=3,
        helm_release=None,
        cert_manager=True,
        routes=(),
    )


def test_the_plan_lists_each_write_in_the_apply_order_and_what_it_keeps(rsa_key: Any) -> None:
    plan = _plan(
        ["--certificatesresolvers.le.acme.storage=/data/acme.json"],
        _entry("blog.tazlab.test", [], rsa_key),
    )
    steps = describe(plan, NOW.timestamp())
    assert steps[0].startswith("read acme.json: 1 certificate(s) of resolver(s) le")
    assert "write Secret traefik/le-blog-tazlab-test-tls: blog.tazlab.test" in steps[1]
    assert "expires in 90 days" in steps[1]
    kinds = [s.split()[1] for s in steps[1:] if s.startswith("write")]
    assert kinds == [
        "Secret", "Secret", "Issuer", "Certificate", "TLSStore", "PodDisruptionBudget",
    ]  # fmt: skip
    assert steps[-2].startswith("replace Deployment traefik/traefik: no resolver flags")
    assert steps[-1].startswith("keep PersistentVolumeClaim(s) traefik with acme.json")
    assert not [s for s in steps if s.startswith("warn")]


def test_a_dns_resolver_is_warned_about_and_its_wildcards_named(rsa_key: Any) -> None:
    plan = _plan(
        [
            "--certificatesresolvers.le.acme.dnschallenge.provider=cloudflare",
            "--certificatesresolvers.le.acme.storage=/data/acme.json",
        ],
        _entry("*.tazlab.test", [], rsa_key),
    )
    (warning,) = [s for s in describe(plan, NOW.timestamp()) if s.startswith("warn")]
    assert "resolver le used DNS-01 (cloudflare)" in warning
    assert "*.tazlab.test cannot renew without one" in warning
