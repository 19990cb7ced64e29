"""helm, for the chart's tests: built once from the Go module proxy into the cache, as the
control plane is (``<cache>/helm/<version>-<recipe>/helm`` with a checksum manifest)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from fireproof.errors import PermanentError
from fireproof.lab.binaries import (
    BinaryCacheError,
    cache_root,
    go_module,
    go_version,
    pinned,
    recipe_key,
    sha256_file,
)

_FILES = ("go.mod", "go.sum", "tools.go")
_PACKAGE = "helm.sh/helm/v3/cmd/helm"
_RECIPE = "1"


def helm_module() -> Path:
    return go_module("helm", "gomodule-helm")


def pinned_helm(module: Path) -> str:
    return pinned(module, "helm.sh/helm/v3")


def helm_dir(module: Path | None = None) -> Path:
    module = module or helm_module()
    key = recipe_key(module, _FILES, _RECIPE)
    return cache_root() / "helm" / f"{pinned_helm(module)}-{key}"


def locate_helm() -> Path:
    """The verified cached helm."""
    directory = helm_dir()
    try:
        manifest = json.loads((directory / "manifest.json").read_text())
        expected = str(manifest["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        raise BinaryCacheError(
            f"helm {pinned_helm(helm_module())} is not built yet",
            hint="run `fireproof lab build` (a few minutes the first time)",
        ) from None
    if sha256_file(directory / "helm") != expected:
        raise BinaryCacheError(
            f"{directory / 'helm'} does not match its checksum",
            hint="rebuild it with `fireproof lab build --rebuild`",
        )
    return directory / "helm"


def build_helm(
    *, rebuild: bool = False, progress: Callable[[str], None] = lambda _m: None
) -> tuple[Path, bool]:
    """Build the pinned helm into the cache unless a verified one is there."""
    if not rebuild:
        try:
            return locate_helm(), False
        except BinaryCacheError:
            pass
    module = helm_module()
    go = shutil.which("go")
    if go is None:
        raise PermanentError(
            "the Go toolchain (`go`) is not on PATH; building helm needs Go",
            hint="install Go (https://go.dev/dl/)",
        )
    target = helm_dir(module)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    env = dict(os.environ, GOTOOLCHAIN="local", CGO_ENABLED="0", GOFLAGS="-mod=readonly")
    version = pinned_helm(module)
    stamp = f"-X helm.sh/helm/v3/internal/version.version={version}"
    argv = [go, "build", "-trimpath", "-ldflags", f"-s -w {stamp}", "-o", str(staging / "helm")]
    progress(f"building helm {version} with {go} into {target}")
    done = subprocess.run([*argv, _PACKAGE], cwd=module, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise PermanentError(f"go build of helm failed (exit {done.returncode}):\n{tail}")
    manifest = {"version": version, "sha256": sha256_file(staging / "helm")}
    manifest["go"] = ".".join(map(str, go_version(go)))
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2))
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return target / "helm", True
