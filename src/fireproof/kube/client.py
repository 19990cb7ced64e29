"""Client construction and error translation for the Kubernetes API."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2 as httpx
import lightkube
import yaml
from lightkube.config.kubeconfig import KubeConfig, SingleConfig

from fireproof.errors import FireproofError, PermanentError, TransientError, UsageError
from fireproof.kube import execauth
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
    """Load one context of a kubeconfig (``$KUBECONFIG`` / ``~/.kube/config`` when path is None)."""
    try:
        config = KubeConfig.from_file(path) if path is not None else KubeConfig.from_env()
        single = config.get(context_name=context)
    except FileNotFoundError as exc:
        raise UsageError(f"kubeconfig not found: {exc.filename or path}") from None
    except lightkube.ConfigError as exc:
        raise UsageError(f"kubeconfig {path or '(default)'} is not usable: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise UsageError(
            f"kubeconfig {path or '(default)'}{where}: malformed YAML: {problem}"
        ) from None
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"kubeconfig {path or '(default)'}: not UTF-8 text (byte {exc.start})"
        ) from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UsageError(f"kubeconfig {path or '(default)'} is malformed: {exc}") from None
    except RecursionError:
        raise UsageError(f"kubeconfig {path or '(default)'} is nested too deeply") from None
    if single is None:
        raise UsageError(f"kubeconfig {path or '(default)'} has no current context")
    server = str(single.cluster.server or "")
    if has_userinfo(server):
        raise UsageError(
            f"kubeconfig {path or '(default)'}: the cluster's server URL carries a user name or "
            "password (user@ in the URL; not shown); put credentials in the user entry",
        )
    return single


def _timeout(seconds: float) -> httpx.Timeout:
    return httpx.Timeout(seconds, connect=min(seconds, 5.0))


def sync_client(config: SingleConfig, *, timeout: float = 30.0) -> lightkube.Client:
    return lightkube.Client(
        config=config, timeout=_timeout(timeout), field_manager=_FIELD_MANAGER, trust_env=False
    )


def async_client(config: SingleConfig, *, timeout: float = 30.0) -> lightkube.AsyncClient:
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
