"""Reading kubeconfigs as kubectl does, with one clear error for every malformed shape.

kubectl merges every file of ``$KUBECONFIG`` (``:``-separated; missing files skipped; the first
file to name a cluster, user or context wins, and the first ``current-context`` wins). Each
entry's shape is checked before lightkube sees it: its own messages for these cases are a
``KeyError`` name or an SSL library code.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from fireproof.errors import UsageError
from fireproof.files import read_text

KUBECONFIG_LIMIT = 4 * 1024 * 1024
"""Bytes a kubeconfig may have (kubectl's are kilobytes; certificates inline are a few KiB)."""
SECTIONS = {"clusters": "cluster", "users": "user", "contexts": "context"}
FILE_KEYS = ("certificate-authority", "client-certificate", "client-key", "tokenFile")
PEM_DATA = {
    "certificate-authority-data": ("cluster", "CERTIFICATE"),
    "client-certificate-data": ("user", "CERTIFICATE"),
    "client-key-data": ("user", "PRIVATE KEY"),
}


def kubeconfig_paths(path: Path | None) -> list[Path]:
    """The files to merge: the one given, else ``$KUBECONFIG``'s that exist, else the default."""
    if path is not None:
        return [path]
    listed = [Path(p).expanduser() for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    if listed:
        present = [p for p in listed if p.exists()]
        if not present:
            shown = os.pathsep.join(str(p) for p in listed)
            raise UsageError(f"kubeconfig not found: none of $KUBECONFIG ({shown}) exists")
        return present
    return [Path("~/.kube/config").expanduser()]


def read_merged(paths: list[Path]) -> dict[str, Any]:
    """The files merged as kubectl merges them, file paths made absolute (each relative to its
    own file's directory), every entry's shape checked."""
    merged: dict[str, Any] = {name: [] for name in SECTIONS}
    seen: dict[str, set[str]] = {name: set() for name in SECTIONS}
    for path in paths:
        doc = _load(path)
        for section, inner in SECTIONS.items():
            for entry in _entries(doc, section, inner, path):
                if entry["name"] not in seen[section]:
                    seen[section].add(entry["name"])
                    merged[section].append(_absolute(entry, inner, path.parent))
        if "current-context" not in merged and doc.get("current-context"):
            merged["current-context"] = str(doc["current-context"])
    where = paths[0] if len(paths) == 1 else os.pathsep.join(str(p) for p in paths)
    for section in ("clusters", "contexts"):
        if not merged[section]:
            raise UsageError(f"kubeconfig {where} has no {section}: a kubeconfig needs both")
    return merged


def selected(
    merged: Mapping[str, Any], context: str | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The raw cluster and user entries the context names (empty when lightkube will say)."""
    name = context or merged.get("current-context")
    ctx: dict[str, Any] = next((c["context"] for c in merged["contexts"] if c["name"] == name), {})

    def find(section: str, inner: str, key: str) -> dict[str, Any]:
        wanted = ctx.get(key)
        found: dict[str, Any] = next((e[inner] for e in merged[section] if e["name"] == wanted), {})
        return dict(found)

    return find("clusters", "cluster", "cluster"), find("users", "user", "user")


def check_entry(where: str, cluster: Mapping[str, Any], user: Mapping[str, Any]) -> None:
    """The selected cluster's server URL and the inline certificates and key: decoded, PEM."""
    server = str(cluster.get("server") or "")
    parts = urlsplit(server)
    try:
        port = parts.port
    except ValueError:
        raise UsageError(f"kubeconfig {where}: the cluster's server port is not 1-65535") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UsageError(
            f"kubeconfig {where}: the cluster's server is not an https:// URL with a host "
            f"({_shown(server)!r})"
        )
    if port == 0:
        raise UsageError(f"kubeconfig {where}: the cluster's server port is not 1-65535")
    for key, (owner, kind) in PEM_DATA.items():
        entry = cluster if owner == "cluster" else user
        if key in entry:
            _pem(where, key, entry[key], kind)


def _load(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise UsageError(f"kubeconfig not found: {path}")
    if path.is_dir():
        raise UsageError(f"kubeconfig {path} is a directory, not a file")
    text = read_text(path, limit=KUBECONFIG_LIMIT, what="kubeconfig")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise UsageError(f"kubeconfig {path}{where}: malformed YAML: {problem}") from None
    except RecursionError:
        raise UsageError(f"kubeconfig {path} is nested too deeply") from None
    if doc is None:
        raise UsageError(f"kubeconfig {path} is empty")
    if not isinstance(doc, dict):
        raise UsageError(f"kubeconfig {path} is not a mapping of clusters, users and contexts")
    return doc


def _entries(doc: Mapping[str, Any], section: str, inner: str, path: Path) -> list[dict[str, Any]]:
    raw = doc.get(section)
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise UsageError(f"kubeconfig {path}: {section} must be a list, not {_kind(raw)}")
    out = []
    for index, entry in enumerate(raw):
        at = f"kubeconfig {path}: {section}[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise UsageError(f"{at} needs a name and a {inner} mapping")
        body = entry.get(inner)
        if body is None and inner == "user":
            body = {}  # an anonymous user is valid
        if not isinstance(body, dict):
            raise UsageError(
                f"{at} ({entry['name']}): {inner} must be a mapping, not {_kind(body)}"
            )
        out.append({**entry, inner: body})
    return out


def _absolute(entry: dict[str, Any], inner: str, base: Path) -> dict[str, Any]:
    body = dict(entry[inner])
    for key in FILE_KEYS:
        value = body.get(key)
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            body[key] = str(base / value)
    return {**entry, inner: body}


def _pem(where: str, key: str, value: Any, kind: str) -> None:
    try:
        raw = base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        raise UsageError(f"kubeconfig {where}: {key} is not base64") from None
    if b"-----BEGIN " not in raw or kind.encode() not in raw:
        raise UsageError(f"kubeconfig {where}: {key} is not a PEM {kind.lower()}")


def _kind(value: object) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return "a string" if isinstance(value, str) else type(value).__name__


def _shown(url: str) -> str:
    """The URL without any user-info part (never printed)."""
    parts = urlsplit(url)
    if "@" in parts.netloc:
        return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()
    return url
