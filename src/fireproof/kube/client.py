"""Client construction and error translation for the Kubernetes API."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2 as httpx
import lightkube
from lightkube.config.kubeconfig import SERVICE_ACCOUNT, KubeConfig, SingleConfig

from fireproof.errors import FireproofError, PermanentError, TransientError, UsageError
from fireproof.kube import execauth
from fireproof.kube.kubeconfig import check_entry, kubeconfig_paths, read_merged, selected
from fireproof.textsafe import has_userinfo

execauth.install()  # a kubeconfig's exec plugin is bounded in time and checked

_FIELD_MANAGER = "fireproof"


class KubeUnreachableError(TransientError):
    """The API server did not answer (refused, timed out, TLS failure)."""


class KubeApiError(FireproofError):
    """The API server answered with an error status."""

    def __init__(self, message: str, *, status: int, reason: str, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.status = status
        self.reason = reason


class KubeNotFoundError(KubeApiError):
    """The object does not exist (HTTP 404)."""


class KubeConflictError(KubeApiError):
    """The object changed or already exists (HTTP 409); re-read and retry."""


def load_kubeconfig(path: Path | None = None, context: str | None = None) -> SingleConfig:
    """One context of a kubeconfig: ``path``, else every file of ``$KUBECONFIG`` merged as
    kubectl merges them, else the pod's service account, else ``~/.kube/config``."""
    if path is None and not os.environ.get("KUBECONFIG") and Path(SERVICE_ACCOUNT).is_dir():
        try:
            in_cluster = KubeConfig.from_service_account().get()
        except lightkube.ConfigError as exc:
            raise UsageError(f"in-cluster service account is not usable: {exc}") from None
        if in_cluster is None:
            raise UsageError("in-cluster service account gave no context")
        return in_cluster
    paths = kubeconfig_paths(path)
    where = str(paths[0]) if len(paths) == 1 else os.pathsep.join(str(p) for p in paths)
    merged = read_merged(paths)
    try:
        single = KubeConfig.from_dict(merged, fname=paths[0]).get(context_name=context)
    except lightkube.ConfigError as exc:
        raise UsageError(f"kubeconfig {where} is not usable: {exc}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UsageError(f"kubeconfig {where} is malformed: {exc}") from None
    if single is None:
        raise UsageError(f"kubeconfig {where} has no current context", hint="pass --context")
    server = str(single.cluster.server or "")
    if has_userinfo(server):
        raise UsageError(
            f"kubeconfig {where}: the cluster's server URL carries a user name or "
            "password (user@ in the URL; not shown); put credentials in the user entry",
        )
    check_entry(where, *selected(merged, context))
    return single


def _timeout(seconds: float) -> httpx.Timeout:
    return httpx.Timeout(seconds, connect=min(seconds, 5.0))


@contextmanager
def _writable_temp() -> Iterator[None]:
    # lightkube writes a kubeconfig's inline certificates and keys to temporary files when it
    # makes a client. In a container with a read-only root and no /tmp mount, Python finds no
    # temporary directory at all: the user's setup, not a bug.
    try:
        yield
    except FileNotFoundError as exc:
        if "No usable temporary directory" not in str(exc):
            raise
        raise UsageError(
            "no writable temporary directory: the Kubernetes client writes the kubeconfig's "
            "inline certificates to one",
            hint="mount a writable /tmp (a tmpfs, as the chart and `make image-run` do) or set "
            "TMPDIR to a writable directory",
        ) from None


def sync_client(config: SingleConfig, *, timeout: float = 30.0) -> lightkube.Client:
    with _writable_temp():
        return lightkube.Client(
            config=config, timeout=_timeout(timeout), field_manager=_FIELD_MANAGER, trust_env=False
        )


def async_client(config: SingleConfig, *, timeout: float = 30.0) -> lightkube.AsyncClient:
    with _writable_temp():
        return lightkube.AsyncClient(
            config=config, timeout=_timeout(timeout), field_manager=_FIELD_MANAGER, trust_env=False
        )


def api_error(exc: lightkube.ApiError) -> KubeApiError:
    """Turn a lightkube error into ours, keeping the server's own message."""
    status = exc.status
    code = int(status.code or 0)
    reason = str(status.reason or "")
    message = f"Kubernetes API: {status.message or reason or code}"
    if code == 404:
        return KubeNotFoundError(message, status=code, reason=reason)
    if code == 409:
        return KubeConflictError(message, status=code, reason=reason)
    if code in (401, 403):
        return KubeApiError(
            message,
            status=code,
            reason=reason,
            hint="check the kubeconfig's credentials and RBAC permissions",
        )
    return KubeApiError(message, status=code, reason=reason)


@contextmanager
def translate_errors(server: str = "the API server") -> Iterator[None]:
    """Re-raise client and transport errors as fireproof errors (no HTTP library types leak)."""
    try:
        yield
    except lightkube.ApiError as exc:
        raise api_error(exc) from None
    except httpx.HTTPStatusError as exc:
        # Answers without a Status body (e.g. an API group the server does not serve).
        code = exc.response.status_code
        message = f"Kubernetes API: {code} {exc.response.reason_phrase} for {exc.request.url.path}"
        error = KubeNotFoundError if code == 404 else KubeApiError
        raise error(message, status=code, reason=exc.response.reason_phrase) from None
    except httpx.TimeoutException:
        raise KubeUnreachableError(f"{server} timed out") from None
    except httpx.TransportError as exc:
        raise KubeUnreachableError(f"cannot reach {server}: {exc}") from None
    except lightkube.ConfigError as exc:
        raise PermanentError(f"Kubernetes client configuration: {exc}") from None
