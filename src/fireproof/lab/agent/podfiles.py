"""What a kubelet gives a container besides its process: volume files and environment.

ConfigMap, Secret, projected (ServiceAccount token from the TokenRequest API, ``kube-root-ca.crt``,
downward API) and emptyDir volumes are written under the pod's directory, with the modes and
group a kubelet gives them (``fsGroup`` makes them group-readable). Environment variables follow
the kubelet's rules: the image's, then ``envFrom``, then ``env`` with ``$(VAR)`` references.
"""

from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightkube
from lightkube.models.authentication_v1 import BoundObjectReference, TokenRequestSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, Pod, Secret, ServiceAccount

from fireproof.kube import KubeApiError, KubeNotFoundError, translate_errors

DEFAULT_MODE = 0o644
TOKEN_MODE = 0o600
DEFAULT_TOKEN_SECONDS = 3607  # what the ServiceAccount admission plugin asks for


class PodFileError(Exception):
    """A volume or variable the pod names cannot be provided (CreateContainerConfigError)."""


@dataclass(slots=True)
class TokenFile:
    path: Path
    audiences: list[str]
    seconds: int
    mode: int


@dataclass(slots=True)
class PodFiles:
    volumes: dict[str, Path] = field(default_factory=dict)
    tokens: list[TokenFile] = field(default_factory=list)


def _meta(pod: Pod) -> tuple[str, str, str]:
    meta = pod.metadata
    if meta is None or not meta.name:
        raise PodFileError("pod without a name")  # the API server never sends one
    return meta.namespace or "default", meta.name, meta.uid or ""


def field_value(pod: Pod, path: str) -> str:
    namespace, name, uid = _meta(pod)
    spec, status = pod.spec, pod.status
    values = {
        "metadata.name": name,
        "metadata.namespace": namespace,
        "metadata.uid": uid,
        "spec.nodeName": (spec.nodeName if spec else None) or "",
        "spec.serviceAccountName": (spec.serviceAccountName if spec else None) or "default",
        "status.podIP": (status.podIP if status else None) or "",
        "status.hostIP": (status.hostIP if status else None) or "",
    }
    match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if match:
        source = getattr(pod.metadata, match.group(1)) or {}
        return str(source.get(match.group(2), ""))
    if path not in values:
        raise PodFileError(f"unsupported fieldRef {path!r}")
    return values[path]


class PodFileMaker:
    def __init__(self, client: lightkube.AsyncClient) -> None:
        self.client = client

    async def data(self, kind: str, namespace: str, name: str, optional: bool) -> dict[str, bytes]:
        try:
            with translate_errors():
                if kind == "secret":
                    secret = await self.client.get(Secret, name, namespace=namespace)
                    raw = secret.data or {}
                    return {k: base64.b64decode(v) for k, v in raw.items()}
                cm = await self.client.get(ConfigMap, name, namespace=namespace)
                data = {k: v.encode() for k, v in (cm.data or {}).items()}
                data.update({k: base64.b64decode(v) for k, v in (cm.binaryData or {}).items()})
                return data
        except KubeNotFoundError:
            if optional:
                return {}
            raise PodFileError(f"{kind} {namespace}/{name} not found") from None
        except KubeApiError as exc:
            raise PodFileError(f"{kind} {namespace}/{name}: {exc}") from None

    async def token(self, pod: Pod, audiences: list[str], seconds: int) -> bytes:
        namespace, name, uid = _meta(pod)
        account = (pod.spec.serviceAccountName if pod.spec else None) or "default"
        request = ServiceAccount.Token(
            metadata=ObjectMeta(name=account, namespace=namespace),
            spec=TokenRequestSpec(
                audiences=audiences,
                expirationSeconds=seconds,
                boundObjectRef=BoundObjectReference(
                    kind="Pod", apiVersion="v1", name=name, uid=uid
                ),
            ),
        )
        try:
            with translate_errors():
                answer = await self.client.create(request, account, namespace=namespace)
        except KubeApiError as exc:
            raise PodFileError(f"token of ServiceAccount {namespace}/{account}: {exc}") from None
        return ((answer.status.token if answer.status else None) or "").encode()

    async def make(self, pod: Pod, root: Path, fs_group: int | None) -> PodFiles:
        namespace, _name, _uid = _meta(pod)
        files = PodFiles()
        for volume in (pod.spec.volumes if pod.spec else None) or []:
            where = root / volume.name
            where.mkdir(parents=True, exist_ok=True)
            _own(where, fs_group, 0o755)
            files.volumes[volume.name] = where
            if volume.emptyDir is not None:
                where.chmod(0o777)  # as the kubelet makes it: any container user writes there
            elif volume.configMap is not None:
                source = volume.configMap
                data = await self.data(
                    "configmap", namespace, source.name or "", bool(source.optional)
                )
                _write_items(where, data, source.items, source.defaultMode, fs_group)
            elif volume.secret is not None:
                secret = volume.secret
                data = await self.data(
                    "secret", namespace, secret.secretName or "", bool(secret.optional)
                )
                _write_items(where, data, secret.items, secret.defaultMode, fs_group)
            elif volume.projected is not None:
                await self._projected(pod, volume.projected, where, fs_group, files)
            else:
                kinds = "ConfigMap, Secret, projected and emptyDir volumes"
                raise PodFileError(f"volume {volume.name!r}: the lab's real containers get {kinds}")
        return files

    async def _projected(
        self, pod: Pod, projected: Any, where: Path, fs_group: int | None, files: PodFiles
    ) -> None:
        namespace = _meta(pod)[0]
        mode = projected.defaultMode
        for source in projected.sources or []:
            if source.serviceAccountToken is not None:
                sat = source.serviceAccountToken
                token = TokenFile(
                    where / sat.path,
                    [sat.audience] if sat.audience else [],
                    sat.expirationSeconds or DEFAULT_TOKEN_SECONDS,
                    mode if mode is not None else TOKEN_MODE,
                )
                await self.write_token(pod, token, fs_group)
                files.tokens.append(token)
            elif source.configMap is not None:
                cm = source.configMap
                data = await self.data("configmap", namespace, cm.name, bool(cm.optional))
                _write_items(where, data, cm.items, mode, fs_group)
            elif source.secret is not None:
                secret = source.secret
                data = await self.data("secret", namespace, secret.name, bool(secret.optional))
                _write_items(where, data, secret.items, mode, fs_group)
            elif source.downwardAPI is not None:
                for item in source.downwardAPI.items or []:
                    if item.fieldRef is None:
                        raise PodFileError(f"downward API item {item.path!r}: only fieldRef")
                    value = field_value(pod, item.fieldRef.fieldPath).encode()
                    _write(where / item.path, value, item.mode or mode or DEFAULT_MODE, fs_group)

    async def write_token(self, pod: Pod, token: TokenFile, fs_group: int | None) -> None:
        value = await self.token(pod, token.audiences, token.seconds)
        # Written beside and renamed: a reader never sees half a token.
        _write(token.path, value, token.mode, fs_group)


def _write_items(
    where: Path,
    data: dict[str, bytes],
    items: list[Any] | None,
    mode: int | None,
    fs_group: int | None,
) -> None:
    chosen = [(i.key, i.path, i.mode) for i in items] if items else [(k, k, None) for k in data]
    for key, path, item_mode in chosen:
        if key not in data:
            raise PodFileError(f"key {key!r} not found")
        _write(where / path, data[key], item_mode or mode or DEFAULT_MODE, fs_group)


def _write(path: Path, value: bytes, mode: int, fs_group: int | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.tmp")
    partial.write_bytes(value)
    _own(partial, fs_group, mode | (0o040 if fs_group is not None else 0))
    partial.replace(path)


def _own(path: Path, fs_group: int | None, mode: int) -> None:
    if fs_group is not None:
        os.chown(path, -1, fs_group)
    path.chmod(mode)


_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """The kubelet's ``$(VAR)`` expansion: known names are replaced, ``$$`` is a ``$``, the rest
    stays as written."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _REFERENCE.sub(one, text)


async def container_env(
    maker: PodFileMaker, pod: Pod, container: Any, base: dict[str, str]
) -> dict[str, str]:
    namespace = _meta(pod)[0]
    env = dict(base)
    for source in container.envFrom or []:
        if source.configMapRef is not None:
            ref, kind = source.configMapRef, "configmap"
        elif source.secretRef is not None:
            ref, kind = source.secretRef, "secret"
        else:
            continue
        data = await maker.data(kind, namespace, ref.name, bool(ref.optional))
        env.update({(source.prefix or "") + k: v.decode() for k, v in data.items()})
    for var in container.env or []:
        if var.valueFrom is None:
            env[var.name] = expand(var.value or "", env)
            continue
        origin = var.valueFrom
        if origin.fieldRef is not None:
            env[var.name] = field_value(pod, origin.fieldRef.fieldPath)
        elif origin.configMapKeyRef is not None or origin.secretKeyRef is not None:
            ref = origin.configMapKeyRef or origin.secretKeyRef
            kind = "configmap" if origin.configMapKeyRef is not None else "secret"
            data = await maker.data(kind, namespace, ref.name, bool(ref.optional))
            if ref.key in data:
                env[var.name] = data[ref.key].decode()
            elif not ref.optional:
                raise PodFileError(f"env {var.name}: key {ref.key!r} not in {kind} {ref.name}")
        else:
            raise PodFileError(f"env {var.name}: only fieldRef, configMapKeyRef, secretKeyRef")
    return env
