"""The upstream control-plane binaries: built once from the Go module proxy, then cached.

The cache lives outside the repository (``$FIREPROOF_CACHE_DIR`` or
``$XDG_CACHE_HOME/fireproof`` or ``~/.cache/fireproof``) under ``k8s/<version>-<recipe>/`` where
the recipe hash covers the wrapper module's files and the build flags, so changing the pin
builds a new set and never reuses a stale one. A ``manifest.json`` with SHA-256 sums is written
last; a set whose files do not match it is reported as corrupted rather than run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fireproof.errors import PermanentError, UsageError

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
BIN_DIR_ENV = "FIREPROOF_K8S_BIN_DIR"
_PACKAGES = {
    "etcd": "./cmd/etcd",
    "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
    "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
    "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
    "kubectl": "k8s.io/kubernetes/cmd/kubectl",
}
_MODULE_FILES = ("go.mod", "go.sum", "tools.go", "cmd/etcd/main.go")
_RECIPE = "1"  # bump when the build command below changes meaning
_COMPAT_RECIPE = "components-1"  # an older release's build: only COMPAT_COMPONENTS


class BinaryCacheError(PermanentError):
    """The binaries are missing, incomplete or corrupted."""


@dataclass(frozen=True, slots=True)
class BinarySet:
    directory: Path
    version: str
    replaced: dict[str, str] = field(default_factory=dict)
    """component -> path of a binary of an older release that runs instead of ours."""

    def path(self, component: str) -> Path:
        return (
            Path(self.replaced[component])
            if component in self.replaced
            else (self.directory / component)
        )


COMPAT_RELEASES = ("1.36",)
"""Older releases with a wrapper module of their own (``lab/k8s-<release>``), for behaviour
that changed upstream (v1.37 renamed the attach/detach controller's Multi-Attach event)."""

COMPAT_COMPONENTS = ("kube-controller-manager",)
"""What an older release builds: only the component whose behaviour changed. It runs beside the
newest pin's etcd, API server and scheduler, which the version skew policy allows (a
kube-controller-manager may be one minor older than its kube-apiserver), and it costs a
fraction of a second full Kubernetes build in every cold run (issue 31)."""


def module_dir(release: str | None = None) -> Path:
    """The Go wrapper module: ``lab/k8s`` (newest pin) or ``lab/k8s-<release>``, from a checkout
    or from the copy shipped in the wheel."""
    if release is not None and release not in COMPAT_RELEASES:
        known = ", ".join(("default", *COMPAT_RELEASES))
        raise UsageError(f"no wrapper module for Kubernetes {release} (known: {known})")
    suffix = f"-{release}" if release else ""
    return go_module(f"k8s{suffix}", f"gomodule{suffix}")


def go_module(checkout_name: str, shipped_name: str) -> Path:
    """A Go module of ours: ``lab/<checkout_name>`` in a checkout, or the copy the wheel ships as
    ``fireproof/lab/<shipped_name>``."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parents[2] / "lab" / checkout_name, here / shipped_name):
        if (candidate / "go.mod").is_file():
            return candidate
    raise PermanentError(f"the Go module lab/{checkout_name}/go.mod is missing from this install")


def pinned(module: Path, dependency: str) -> str:
    """The version ``module``'s go.mod requires of ``dependency``."""
    text = (module / "go.mod").read_text()
    pattern = rf"^\s*(?:require\s+)?{re.escape(dependency)}\s+(v\d+\.\d+\.\d+)\s*$"
    match = re.search(pattern, text, re.MULTILINE)
    if not match:
        raise PermanentError(f"{module / 'go.mod'} does not pin {dependency}")
    return match.group(1)


def pinned_version(module: Path) -> str:
    return pinned(module, "k8s.io/kubernetes")


def required_go(module: Path) -> tuple[int, ...]:
    match = re.search(r"^go\s+(\d+(?:\.\d+)*)\s*$", (module / "go.mod").read_text(), re.MULTILINE)
    return tuple(int(p) for p in match.group(1).split(".")) if match else (1, 0)


def cache_root() -> Path:
    if env := os.environ.get("FIREPROOF_CACHE_DIR"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fireproof"


def recipe_key(module: Path, files: tuple[str, ...] = _MODULE_FILES, recipe: str = _RECIPE) -> str:
    """A hash of the build's inputs: the module's files and the build command's version."""
    digest = hashlib.sha256(recipe.encode())
    for name in files:
        digest.update(name.encode() + b"\0" + (module / name).read_bytes())
    return digest.hexdigest()[:12]


def cache_dir(module: Path | None = None, release: str | None = None) -> Path:
    module = module or module_dir(release)
    key = recipe_key(module, recipe=_COMPAT_RECIPE if release else _RECIPE)
    return cache_root() / "k8s" / f"{pinned_version(module)}-{key}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _components(release: str | None) -> tuple[str, ...]:
    return COMPAT_COMPONENTS if release else COMPONENTS


def _check_executables(directory: Path, what: str) -> None:
    missing = [c for c in COMPONENTS if not os.access(directory / c, os.X_OK)]
    if missing:
        raise BinaryCacheError(f"{what} {directory} lacks executable {', '.join(missing)}")


def _verify_manifest(directory: Path, components: tuple[str, ...] = COMPONENTS) -> str:
    manifest_path = directory / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
        sums: dict[str, str] = manifest["sha256"]
        version = str(manifest["version"])
    except (OSError, ValueError, KeyError, TypeError):
        raise BinaryCacheError(
            f"binary cache {directory} is corrupted (unreadable manifest)",
            hint="rebuild it with `fireproof lab build --rebuild`",
        ) from None
    for component in components:
        path = directory / component
        if not path.is_file() or sums.get(component) != sha256_file(path):
            raise BinaryCacheError(
                f"binary cache {directory} is corrupted ({component} does not match its checksum)",
                hint="rebuild it with `fireproof lab build --rebuild`",
            )
    return version


def locate(bin_dir: Path | None = None, release: str | None = None) -> BinarySet:
    """Binaries from ``bin_dir`` / ``$FIREPROOF_K8S_BIN_DIR``, else the verified cache; with
    ``release``, that release's ``COMPAT_COMPONENTS`` (from the cache) replace ours."""
    chosen = bin_dir or (Path(os.environ[BIN_DIR_ENV]) if os.environ.get(BIN_DIR_ENV) else None)
    if chosen is not None:
        if not chosen.is_dir():
            raise UsageError(f"--bin-dir {chosen} is not a directory")
        _check_executables(chosen, "--bin-dir")
        newest = BinarySet(chosen, _reported_version(chosen / "kube-apiserver"))
    else:
        newest = _cached(None)
    if release is None:
        return newest
    older = _cached(release)
    return BinarySet(
        newest.directory,
        newest.version,
        {c: str(older.directory / c) for c in COMPAT_COMPONENTS},
    )


def _cached(release: str | None) -> BinarySet:
    module = module_dir(release)
    directory = cache_dir(module, release)
    if not directory.exists():
        flag = f" --kubernetes {release}" if release else ""
        what = f"{', '.join(COMPAT_COMPONENTS)} binary" if release else "control-plane binaries"
        raise BinaryCacheError(
            f"{what} for Kubernetes {pinned_version(module)} are not built yet",
            hint=f"run `fireproof lab build{flag}` (minutes the first time) or pass --bin-dir",
        )
    return BinarySet(directory, _verify_manifest(directory, _components(release)))


def _reported_version(apiserver: Path) -> str:
    try:
        out = subprocess.run(
            [str(apiserver), "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise BinaryCacheError(f"{apiserver} does not run: {exc}") from None
    match = re.search(r"v\d+\.\d+\.\d+\S*", out)
    return match.group(0) if match else out.strip()


def go_version(go: str) -> tuple[int, ...]:
    out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=True)
    match = re.match(r"go(\d+(?:\.\d+)*)", out.stdout.strip())
    return tuple(int(p) for p in match.group(1).split(".")) if match else (0,)


def _ldflags(version: str) -> str:
    major, minor = version.lstrip("v").split(".")[:2]
    stamps = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        stamps += [
            f"-X {pkg}.gitVersion={version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
        ]
    # -s -w drop symbol tables: half the link time and size, and nobody debugs these here.
    return " ".join(["-s", "-w", *stamps])


def build(
    *,
    release: str | None = None,
    rebuild: bool = False,
    progress: Callable[[str], None] = lambda _m: None,
) -> tuple[BinarySet, bool]:
    """Build the pinned binaries into the cache unless a verified set is there.

    Returns the set and whether a build ran.
    """
    module = module_dir(release)
    version = pinned_version(module)
    target = cache_dir(module, release)
    if target.exists() and not rebuild:
        try:
            return BinarySet(target, _verify_manifest(target, _components(release))), False
        except BinaryCacheError:
            progress(f"cached binaries in {target} are corrupted; rebuilding")
    go = shutil.which("go")
    if go is None:
        raise PermanentError(
            "the Go toolchain (`go`) is not on PATH; `fireproof lab build` needs Go "
            f">= {'.'.join(map(str, required_go(module)))}",
            hint="install Go, or pass --bin-dir DIR with prebuilt control-plane binaries",
        )
    have, need = go_version(go), required_go(module)
    if have < need:
        raise PermanentError(
            f"Go {'.'.join(map(str, have))} is too old: Kubernetes {version} needs Go "
            f">= {'.'.join(map(str, need))}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    env = dict(os.environ, GOTOOLCHAIN="local", CGO_ENABLED="0", GOFLAGS="-mod=readonly")
    argv = [go, "build", "-trimpath", "-ldflags", _ldflags(version), "-o", f"{staging}/"]
    components = _components(release)
    argv += [_PACKAGES[c] for c in components]
    progress(f"building Kubernetes {version} {', '.join(components)} with {go} into {target}")
    progress("a cold build downloads ~1,000 modules and compiles for 5-20 minutes on 2 cores")
    started = time.monotonic()
    done = threading.Event()

    def ticker() -> None:
        while not done.wait(30):
            progress(f"  still building... {int(time.monotonic() - started)} s")

    thread = threading.Thread(target=ticker, daemon=True)
    thread.start()
    try:
        result = subprocess.run(argv, cwd=module, env=env, capture_output=True, text=True)
    finally:
        done.set()
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        tail = "\n".join(result.stderr.strip().splitlines()[-15:])
        raise PermanentError(f"go build failed (exit {result.returncode}):\n{tail}")
    sums = {c: sha256_file(staging / c) for c in components}
    (staging / "manifest.json").write_text(
        json.dumps({"version": version, "sha256": sums, "go": list(have)}, indent=2)
    )
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    progress(f"built in {int(time.monotonic() - started)} s")
    return BinarySet(target, version), True
