"""Go commands the lab and the tests drive for real, built once from the Go module proxy into the
cache as the control plane is (``<cache>/<name>/<version>-<recipe>/<name>`` with a checksum
manifest): helm for the chart's tests, krew for the kubectl plugin's, Traefik for the lab's
ingress, Pebble and pebble-challtestsrv for its ACME server.

Most are built from a wrapper module (``lab/<name>/tools.go``). Traefik is built as the main
module from its own downloaded source, so that its ``replace`` directives apply."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
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
_RECIPE = "1"
_MAIN_MODULE_RECIPE = "main-module-1"


@dataclass(frozen=True, slots=True)
class GoTool:
    name: str
    checkout: str
    """``lab/<checkout>`` in a checkout."""
    shipped: str
    """``fireproof/lab/<shipped>`` in the wheel."""
    package: str
    dependency: str
    """The module whose pinned version is the tool's."""
    stamp: str = ""
    """An ``-X`` linker flag that stamps the version (``{version}`` filled in)."""
    as_main_module: bool = False
    """Build from ``dependency``'s own source as the main module (``package`` relative to it):
    its ``replace`` directives apply, and ``placeholders`` are written into it first."""
    placeholders: tuple[tuple[str, str], ...] = ()
    """(path in the source, content): files the build needs that the module does not carry."""

    def module(self) -> Path:
        return go_module(self.checkout, self.shipped)

    def version(self, module: Path | None = None) -> str:
        return pinned(module or self.module(), self.dependency)

    def directory(self, module: Path | None = None) -> Path:
        module = module or self.module()
        if self.as_main_module:
            key = recipe_key(module, ("go.mod", "go.sum"), _MAIN_MODULE_RECIPE + repr(self))
        else:
            key = recipe_key(module, _FILES, _RECIPE)
        return cache_root() / self.name / f"{self.version(module)}-{key}"


HELM = GoTool(
    "helm",
    "helm",
    "gomodule-helm",
    "helm.sh/helm/v3/cmd/helm",
    "helm.sh/helm/v3",
    "-X helm.sh/helm/v3/internal/version.version={version}",
)
KREW = GoTool(
    "krew",
    "krew",
    "gomodule-krew",
    "sigs.k8s.io/krew/cmd/krew",
    "sigs.k8s.io/krew",
    "-X sigs.k8s.io/krew/internal/version.gitTag={version}",
)
TRAEFIK = GoTool(
    "traefik",
    "traefik",
    "gomodule-traefik",
    "./cmd/traefik",
    "github.com/traefik/traefik/v3",
    "-X github.com/traefik/traefik/v3/pkg/version.Version={version}",
    as_main_module=True,
    # The dashboard's assets are built by npm and are not in the Go module: the binary embeds
    # this page instead (the lab serves no dashboard).
    placeholders=(
        (
            "webui/static/index.html",
            "<!doctype html><title>Traefik</title><p>Dashboard assets not built in the lab.\n",
        ),
    ),
)
PEBBLE = GoTool(
    "pebble",
    "pebble",
    "gomodule-pebble",
    "github.com/letsencrypt/pebble/v2/cmd/pebble",
    "github.com/letsencrypt/pebble/v2",
)
CHALLTESTSRV = GoTool(
    "pebble-challtestsrv",
    "pebble",
    "gomodule-pebble",
    "github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv",
    "github.com/letsencrypt/pebble/v2",
)
LAB_TOOLS = (HELM, KREW, TRAEFIK, PEBBLE, CHALLTESTSRV)
"""What `fireproof lab build` builds after the control plane, in this order."""


def locate(tool: GoTool) -> Path:
    """The verified cached build of ``tool``."""
    directory = tool.directory()
    try:
        manifest = json.loads((directory / "manifest.json").read_text())
        expected = str(manifest["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        raise BinaryCacheError(
            f"{tool.name} {tool.version()} is not built yet",
            hint="run `fireproof lab build` (a few minutes the first time)",
        ) from None
    if sha256_file(directory / tool.name) != expected:
        raise BinaryCacheError(
            f"{directory / tool.name} does not match its checksum",
            hint="rebuild it with `fireproof lab build --rebuild`",
        )
    return directory / tool.name


def build(
    tool: GoTool, *, rebuild: bool = False, progress: Callable[[str], None] = lambda _m: None
) -> tuple[Path, bool]:
    """Build the pinned ``tool`` into the cache unless a verified one is there."""
    if not rebuild:
        try:
            return locate(tool), False
        except BinaryCacheError:
            pass
    module = tool.module()
    go = shutil.which("go")
    if go is None:
        raise PermanentError(
            f"the Go toolchain (`go`) is not on PATH; building {tool.name} needs Go",
            hint="install Go (https://go.dev/dl/)",
        )
    target = tool.directory(module)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    env = dict(os.environ, GOTOOLCHAIN="local", CGO_ENABLED="0", GOFLAGS="-mod=readonly")
    version = tool.version(module)
    flags = f"-s -w {tool.stamp.format(version=version)}".strip()
    argv = [go, "build", "-trimpath", "-ldflags", flags, "-o", str(staging / tool.name)]
    progress(f"building {tool.name} {version} with {go} into {target}")
    started = time.monotonic()
    try:
        source = _main_module_source(tool, module, staging, env) if tool.as_main_module else module
        done = subprocess.run(
            [*argv, tool.package], cwd=source, env=env, capture_output=True, text=True
        )
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(staging / "src", ignore_errors=True)
    if done.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise PermanentError(f"go build of {tool.name} failed (exit {done.returncode}):\n{tail}")
    progress(f"built {tool.name} {version} in {time.monotonic() - started:.0f} s")
    manifest = {"version": version, "sha256": sha256_file(staging / tool.name)}
    manifest["go"] = ".".join(map(str, go_version(go)))
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2))
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return target / tool.name, True


def _main_module_source(tool: GoTool, pin: Path, staging: Path, env: dict[str, str]) -> Path:
    """A writable copy of ``tool.dependency``'s source at the pinned version, checked against
    ``pin``'s go.sum by `go mod download`, with the placeholders written in."""
    downloaded = _downloaded(tool.dependency, pin, env)
    source = staging / "src"
    # The module cache is read-only; the copy is not, so that placeholders can be written.
    shutil.copytree(downloaded, source, copy_function=shutil.copyfile)
    for directory, _dirs, _files in os.walk(source):
        os.chmod(directory, 0o700)
    for relative, content in tool.placeholders:
        (source / relative).parent.mkdir(parents=True, exist_ok=True)
        (source / relative).write_text(content)
    return source


@dataclass(frozen=True, slots=True)
class ModuleFiles:
    """Files of a pinned Go module (not a build): Kubernetes manifests a project publishes in
    its module, fetched through the Go module proxy and checked against the pin's go.sum."""

    name: str
    checkout: str
    shipped: str
    dependency: str
    paths: tuple[str, ...]

    def module(self) -> Path:
        return go_module(self.checkout, self.shipped)

    def directory(self) -> Path:
        module = self.module()
        key = recipe_key(module, ("go.mod", "go.sum"), "files-1" + repr(self.paths))
        return cache_root() / self.name / f"{pinned(module, self.dependency)}-{key}"

    def files(self) -> list[Path]:
        """The cached files, in ``paths`` order (BinaryCacheError until `lab build`)."""
        directory = self.directory()
        found = [directory / Path(p).name for p in self.paths]
        if not all(f.is_file() for f in found):
            raise BinaryCacheError(
                f"{self.name} is not fetched yet", hint="run `fireproof lab build` (seconds)"
            )
        return found

    def fetch(self, progress: Callable[[str], None] = lambda _m: None) -> tuple[Path, bool]:
        target = self.directory()
        if all((target / Path(p).name).is_file() for p in self.paths):
            return target, False
        module = self.module()
        env = dict(os.environ, GOTOOLCHAIN="local", GOFLAGS="-mod=readonly")
        progress(f"fetching {self.name} ({self.dependency} {pinned(module, self.dependency)})")
        source = _downloaded(self.dependency, module, env)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".fetch-", dir=target.parent))
        for relative in self.paths:
            shutil.copyfile(source / relative, staging / Path(relative).name)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
        return target, True


CERT_MANAGER_CRDS = ModuleFiles(
    "cert-manager-crds",
    "cert-manager",
    "gomodule-cert-manager",
    "github.com/cert-manager/cert-manager",
    tuple(
        f"deploy/crds/{name}.yaml"
        for name in (
            "cert-manager.io_certificates",
            "cert-manager.io_certificaterequests",
            "cert-manager.io_issuers",
            "cert-manager.io_clusterissuers",
            "acme.cert-manager.io_orders",
            "acme.cert-manager.io_challenges",
        )
    ),
)
TRAEFIK_CRDS = ModuleFiles(
    "traefik-crds",
    "traefik",
    "gomodule-traefik",
    "github.com/traefik/traefik/v3",
    ("docs/content/reference/dynamic-configuration/kubernetes-crd-definition-v1.yml",),
)
LAB_FILES = (CERT_MANAGER_CRDS, TRAEFIK_CRDS)
"""What `fireproof lab build` fetches, and `lab up` installs."""


def _downloaded(dependency: str, pin: Path, env: dict[str, str]) -> Path:
    """Where `go mod download` put ``dependency`` at the version ``pin`` requires, checked
    against ``pin``'s go.sum."""
    done = subprocess.run(
        ["go", "mod", "download", "-json", dependency],
        cwd=pin, env=env, capture_output=True, text=True,
    )  # fmt: skip
    try:
        return Path(json.loads(done.stdout)["Dir"])
    except (ValueError, KeyError, TypeError):
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-10:])
        raise PermanentError(f"go mod download of {dependency} failed:\n{tail}") from None


def locate_helm() -> Path:
    return locate(HELM)


def build_helm(
    *, rebuild: bool = False, progress: Callable[[str], None] = lambda _m: None
) -> tuple[Path, bool]:
    return build(HELM, rebuild=rebuild, progress=progress)
