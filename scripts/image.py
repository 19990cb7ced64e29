"""`make image`: fireproof's OCI image, built here from Debian packages and the wheel, with no
base-image pull; `make image-run ARGS='…'` runs it.

- the root filesystem: Debian bookworm by `mmdebstrap` (essential packages, python3,
  ca-certificates; `--fence-agents` adds Debian's fence-agents), Perl and docs left out;
- fireproof's wheel and its locked dependencies (uv.lock) installed for that Python into
  /opt/fireproof/lib, with `fireproof` and `kubectl-fireproof` in /usr/local/bin;
- the entry point, command, user and environment taken from the Containerfile (one source);
- every file time set to SOURCE_DATE_EPOCH (default: the last commit's time), the layer and
  config written by `umoci` with no history: the same sources give the same digest;
- an SBOM beside it (CycloneDX 1.5 JSON): the Python packages and the Debian packages.

The layout goes to dist/image/oci (tag `fireproof`), the SBOM to dist/image/sbom.cdx.json.
`run` unpacks it (cached per digest) and runs it with runc as the tests and users do: host
network, UID 65532, a read-only root, a tmpfs for XDG_STATE_HOME.

Usage: python scripts/image.py [build] [--fence-agents] [--out DIR] [--twice]
       python scripts/image.py run [--image DIR] [--mount PATH]… [--entrypoint ARG]… -- ARGS…
"""

from __future__ import annotations

import argparse
import datetime as dt
import email.parser
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
UV = REPO / ".tools" / "bin" / "uv"
TAG = "fireproof"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
EXCLUDED = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*", "/usr/share/info/*")
DROPPED = ("perl", "libperl5.36", "perl-modules-5.36")
"""Perl comes with Debian's essential set but nothing in the image runs it."""
PREFIX = "/opt/fireproof/lib"
EPOCH = 1_700_000_000
USER = "65532:65532"


def sh(*argv: str | Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], check=True, text=True, **kwargs)


def epoch() -> int:
    if "SOURCE_DATE_EPOCH" in os.environ:
        return int(os.environ["SOURCE_DATE_EPOCH"])
    done = subprocess.run(
        ["git", "-C", str(REPO), "log", "-1", "--format=%ct"],
        capture_output=True,
        text=True,
        check=False,
    )
    # Not a git checkout (an unpacked release): a fixed time, still one digest per source.
    return int(done.stdout.strip()) if done.returncode == 0 and done.stdout.strip() else EPOCH


def containerfile() -> dict[str, Any]:
    """ENTRYPOINT, CMD, USER and ENV of the Containerfile: the image's one source for them."""
    out: dict[str, Any] = {"env": {}}
    for line in (REPO / "Containerfile").read_text().splitlines():
        word, _, rest = line.partition(" ")
        if word in ("ENTRYPOINT", "CMD"):
            out[word.lower()] = json.loads(rest)
        elif word == "USER":
            out["user"] = rest.strip()
        elif word == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                out["env"][key] = value
    return out


def rootfs(work: Path, stamp: int, fence_agents: bool) -> Path:
    root = work / "rootfs"
    # fence_ipmilan drives the `ipmitool` program, which Debian's fence-agents does not pull in
    # (not even as a Recommends): without it the image cannot fence a host through its BMC.
    include = "python3,ca-certificates" + (",fence-agents,ipmitool" if fence_agents else "")
    options = [f"--dpkgopt=path-exclude={p}" for p in EXCLUDED]
    purge = " ".join(DROPPED)
    sh(
        "mmdebstrap", "--quiet", "--variant=essential", f"--include={include}", *options,
        f'--customize-hook=chroot "$1" dpkg --purge --force-depends {purge}',
        "--customize-hook=rm -rf \"$1\"/var/cache/* \"$1\"/var/log/* \"$1\"/var/lib/apt/lists/*",
        SUITE, root, MIRROR,
        env={**os.environ, "SOURCE_DATE_EPOCH": str(stamp)},
    )  # fmt: skip
    return root


def python_packages(work: Path, root: Path) -> None:
    dist = work / "dist"
    sh(UV, "build", "--wheel", "--package", "fireproof", "--out-dir", dist, "-q", cwd=REPO)
    requirements = work / "requirements.txt"
    exported = sh(
        UV, "export", "--frozen", "--no-dev", "--no-hashes", "--no-emit-project",
        "--no-emit-workspace", "-q", cwd=REPO, capture_output=True,
    )  # fmt: skip
    requirements.write_text(exported.stdout)
    target = root / PREFIX.lstrip("/")
    wheel = next(dist.glob("fireproof-*.whl"))
    # For the image's Python (Debian bookworm: CPython 3.11, glibc 2.36), not this machine's.
    sh(
        UV, "pip", "install", "-q", "--target", target, "--python-version", "3.11",
        "--python-platform", "x86_64-manylinux_2_36", "--no-compile", "--no-deps",
        "-r", requirements, wheel,
    )  # fmt: skip
    # The console scripts' shebangs name this machine's Python (its path: the checkout's), so
    # they go, and so do their lines in RECORD, whose hashes would carry that path into the image.
    shutil.rmtree(target / "bin", ignore_errors=True)
    # Installer notes that change from one build to the next (the wheel's temporary path, the
    # cache's times): out, and out of RECORD, or two builds differ by them alone.
    for info in target.glob("*.dist-info"):
        noted = [info / n for n in ("direct_url.json", "uv_cache.json") if (info / n).exists()]
        for path in noted:
            path.unlink()
        record = info / "RECORD"
        names = {f"{info.name}/{p.name}" for p in noted}
        kept = [
            line
            for line in record.read_text().splitlines()
            if (name := line.split(",", 1)[0]) not in names and not name.startswith("bin/")
        ]
        record.write_text("".join(f"{line}\n" for line in kept))
    scripts = {"fireproof": "main", "kubectl-fireproof": "kubectl_main"}
    for name, func in scripts.items():
        path = root / "usr" / "local" / "bin" / name
        path.write_text(
            "#!/usr/bin/python3\nimport sys\n\n"
            f'sys.path.insert(0, "{PREFIX}")\n'
            f"from fireproof.cli.main import {func}\n\n{func}()\n"
        )
        path.chmod(0o755)


def add_user(root: Path) -> None:
    uid, gid = USER.split(":")
    with (root / "etc" / "passwd").open("a") as passwd:
        passwd.write(f"fireproof:x:{uid}:{gid}:fireproof:/nonexistent:/usr/sbin/nologin\n")
    with (root / "etc" / "group").open("a") as group:
        group.write(f"fireproof:x:{gid}:\n")
    state = root / "var" / "lib" / "fireproof"
    state.mkdir(parents=True, exist_ok=True)
    os.chown(state, int(uid), int(gid))


def clamp(root: Path, stamp: int) -> None:
    """Every file time to the epoch: a rebuild gives the same layer byte for byte."""
    for path in sorted(root.rglob("*"), reverse=True):
        os.utime(path, (stamp, stamp), follow_symlinks=False)
    os.utime(root, (stamp, stamp))


def sbom(root: Path, stamp: int) -> dict[str, Any]:
    components: list[dict[str, Any]] = []
    for info in sorted((root / PREFIX.lstrip("/")).glob("*.dist-info")):
        meta = email.parser.Parser().parsestr((info / "METADATA").read_text())
        name, version = meta["Name"], meta["Version"]
        components.append(
            {
                "type": "library",
                "name": name,
                "version": version,
                "purl": f"pkg:pypi/{name.lower().replace('_', '-')}@{version}",
            }
        )
    status = (root / "var" / "lib" / "dpkg" / "status").read_text()
    for block in status.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if ": " in line and line[0] != " "
        )
        if "install ok installed" not in fields.get("Status", ""):
            continue
        name, version, arch = fields["Package"], fields["Version"], fields["Architecture"]
        components.append(
            {
                "type": "operating-system" if name == "base-files" else "library",
                "name": name,
                "version": version,
                "purl": f"pkg:deb/debian/{name}@{version}?arch={arch}&distro={SUITE}",
            }
        )
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "metadata": {
            "timestamp": dt.datetime.fromtimestamp(stamp, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "component": {"type": "container", "name": TAG},
        },
        "components": components,
    }


def oci(work: Path, root: Path, stamp: int, out: Path) -> str:
    layout = work / "oci"
    image = f"{layout}:{TAG}"
    sh("umoci", "init", "--layout", layout)
    sh("umoci", "new", "--image", image)
    bundle = work / "bundle"
    sh("umoci", "unpack", "--image", image, bundle)
    sh("cp", "-a", f"{root}/.", bundle / "rootfs")
    spec = containerfile()
    created = dt.datetime.fromtimestamp(stamp, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    sh(
        "umoci", "repack", "--image", image, "--history.created", created,
        "--history.created_by", "scripts/image.py (mmdebstrap, uv, umoci)",
        "--history.author", "fireproof", bundle,
    )  # fmt: skip
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", **spec["env"]}
    config = [
        "umoci", "config", "--no-history", "--image", image, "--created", created,
        "--author", "fireproof", "--config.user", spec["user"],
        *[f"--config.entrypoint={a}" for a in spec["entrypoint"]],
        *[f"--config.cmd={a}" for a in spec["cmd"]],
        *[f"--config.env={k}={v}" for k, v in env.items()],
        "--config.workingdir", "/",
    ]  # fmt: skip
    sh(*config)
    sh("umoci", "gc", "--layout", layout)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(layout, out, symlinks=True)
    index = json.loads((out / "index.json").read_text())
    return str(index["manifests"][0]["digest"])


def build(args: argparse.Namespace) -> str:
    stamp = epoch()
    started = time.monotonic()
    out = args.out
    work = Path(tempfile.mkdtemp(prefix="fireproof-image-"))
    try:
        print(f"root filesystem: mmdebstrap {SUITE} (SOURCE_DATE_EPOCH={stamp})", flush=True)
        root = rootfs(work, stamp, args.fence_agents)
        print("fireproof and its locked dependencies", flush=True)
        python_packages(work, root)
        add_user(root)
        bom = sbom(root, stamp)
        clamp(root, stamp)
        size = sum(p.lstat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())
        print("OCI layout: umoci", flush=True)
        digest = oci(work, root, stamp, out / "oci")
        (out / "sbom.cdx.json").write_text(json.dumps(bom, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    python = sum(1 for c in bom["components"] if c["purl"].startswith("pkg:pypi"))
    debian = len(bom["components"]) - python
    print(f"image {out / 'oci'}:{TAG}")
    print(f"  digest {digest}")
    print(f"  size {size / 1e6:.1f} MB uncompressed ({_blobs(out / 'oci') / 1e6:.1f} MB stored)")
    print(f"  SBOM {out / 'sbom.cdx.json'}: {python} Python packages, {debian} Debian packages")
    print(f"  built in {time.monotonic() - started:.0f} s")
    return digest


def _blobs(layout: Path) -> int:
    return sum(p.stat().st_size for p in (layout / "blobs").rglob("*") if p.is_file())


def run(args: argparse.Namespace) -> int:
    layout = args.image
    index = json.loads((layout / "index.json").read_text())
    digest = str(index["manifests"][0]["digest"]).split(":")[1]
    bundle = Path(tempfile.gettempdir()) / f"fireproof-image-{digest[:16]}"
    if not (bundle / "config.json").exists():
        partial = bundle.with_name(bundle.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        sh("umoci", "unpack", "--image", f"{layout}:{TAG}", partial, stdout=subprocess.DEVNULL)
        partial.rename(bundle)
    config = json.loads((bundle / "config.json").read_text())
    entrypoint = args.entrypoint or image_config(layout)["config"].get("Entrypoint") or []
    name = f"fireproof-{os.getpid()}-{int(time.time() * 1000) % 100000}"
    # A bundle of its own per run (runc reads BUNDLE/config.json), sharing the unpacked root.
    with tempfile.TemporaryDirectory(prefix=f"{name}-") as run_dir:
        spec = runtime_config(config, bundle, entrypoint, args.args)
        for mount in args.mount:
            source, _, destination = mount.partition(":")
            spec["mounts"].append(
                {
                    "destination": str(Path(destination or source).resolve()),
                    "type": "bind",
                    "source": str(Path(source).resolve()),
                    "options": ["rbind", "ro"],
                }
            )
        (Path(run_dir) / "config.json").write_text(json.dumps(spec))
        runc = subprocess.Popen(["runc", "run", "--bundle", run_dir, name])

        def forward(signum: int, _frame: object) -> None:
            # runc passes what it gets on to the container's process: guard stops cleanly.
            runc.send_signal(signum)

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, forward)
        return runc.wait()


def image_config(layout: Path) -> dict[str, Any]:
    """The image's OCI config (entry point, command, user, environment): the lab's reader."""
    sys.path.insert(0, str(REPO / "src"))
    from fireproof.lab.ownimage import image_config as read

    return read(layout)


def runtime_config(
    config: dict[str, Any], bundle: Path, entrypoint: list[str], argv: list[str]
) -> dict[str, Any]:
    """As the tests and users run it: the host's network (127.0.0.1 is the lab's), the image's
    user (65532), a read-only root, tmpfs for XDG_STATE_HOME and /tmp, no cgroup of its own (the
    machine's may be a v1/v2 hybrid), and the given arguments after the entry point."""
    process = config["process"]
    if argv:
        process["args"] = [*entrypoint, *argv]
    process["terminal"] = False
    linux = config["linux"]
    unshared = ("network", "cgroup")
    linux["namespaces"] = [n for n in linux["namespaces"] if n["type"] not in unshared]
    linux.pop("resources", None)
    linux.pop("cgroupsPath", None)
    config["root"] = {"path": str(bundle / "rootfs"), "readonly": True}
    mounts = [m for m in config["mounts"] if m["destination"] != "/sys/fs/cgroup"]
    # Writable: the state (journal) and /tmp, as the chart's emptyDirs are.
    for where in ("/var/lib/fireproof", "/tmp"):  # noqa: S108 - the container's own, a tmpfs
        mounts.append(
            {"destination": where, "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "nodev", "mode=0700", "uid=65532", "gid=65532"]}
        )  # fmt: skip
    config["mounts"] = mounts
    config["hostname"] = "fireproof"
    return config


def source_key(fence_agents: bool) -> str:
    """A hash of everything that goes into the image: fireproof's sources, the lock, the
    Containerfile, this recipe, the options and SOURCE_DATE_EPOCH."""
    # The epoch too: it is in every file time, so in the digest.
    digest = hashlib.sha256(f"fence-agents={fence_agents} epoch={epoch()}".encode())
    inputs = [REPO / "uv.lock", REPO / "pyproject.toml", REPO / "Containerfile"]
    inputs.append(Path(__file__).resolve())
    inputs += sorted(
        p
        for p in (REPO / "src" / "fireproof").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )
    for path in inputs:
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def cached(args: argparse.Namespace) -> None:
    """The image of these sources from the cache, built into it first if it is not there."""
    sys.path.insert(0, str(REPO / "src"))
    from fireproof.lab.binaries import cache_root

    store = cache_root() / "image" / source_key(args.fence_agents)
    if not (store / "oci" / "index.json").is_file():
        # Two test workers may build it at once: each into its own directory, the first rename
        # wins, the other's copy is dropped (the same sources give the same image).
        partial = store.with_name(f"{store.name}.partial-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        args.out = partial
        build(args)
        try:
            partial.rename(store)
        except OSError:
            shutil.rmtree(partial, ignore_errors=True)
    else:
        print(f"image of these sources already built: {store}")
    if args.warm:
        return
    target = args.out_requested
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(store, target, symlinks=True)
    index = json.loads((target / "oci" / "index.json").read_text())
    print(f"image {target / 'oci'}:{TAG}")
    print(f"  digest {index['manifests'][0]['digest']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    b = sub.add_parser("build", help="build the image (the default)")
    for p in (parser, b):
        p.add_argument("--fence-agents", action="store_true", help="add Debian's fence-agents")
        p.add_argument("--out", type=Path, default=REPO / "dist" / "image")
        p.add_argument("--twice", action="store_true", help="build twice, compare the digests")
        p.add_argument(
            "--cached",
            action="store_true",
            help="reuse a build of the same sources from the cache (the tests; make image "
            "always builds afresh)",
        )
        p.add_argument(
            "--warm",
            action="store_true",
            help="with --cached: only make sure the cache holds it (make test, before the tests)",
        )
    r = sub.add_parser("run", help="run the built image with runc")
    r.add_argument("--image", type=Path, default=REPO / "dist" / "image" / "oci")
    r.add_argument(
        "--mount",
        action="append",
        default=[],
        metavar="PATH[:AT]",
        help="a host path, read-only, at the same place (or at AT); the image's user (UID "
        "65532) must be able to read it",
    )
    r.add_argument("--entrypoint", action="append", help="replace the entry point (repeat)")
    r.add_argument("args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    if args.command == "run":
        if args.args[:1] == ["--"]:
            args.args = args.args[1:]
        sys.exit(run(args))
    if args.cached:
        args.out_requested = args.out
        cached(args)
        return
    first = build(args)
    if args.twice:
        second = build(args)
        same = "the same digest" if first == second else f"DIFFERENT digests: {first} {second}"
        print(f"reproducible: built twice, {same}")
        sys.exit(0 if first == second else 1)


if __name__ == "__main__":
    main()
