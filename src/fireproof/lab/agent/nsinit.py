"""The first process of a lab container: ``python -m fireproof.lab.agent.nsinit SPEC``.

It runs as root, moves itself into private mount, network and UTS namespaces, puts the pod's
volumes at their mount paths, says "ready" on the pipe the agent gave it, waits for "go" on
stdin (the agent builds the network bridges in between), drops to the pod's user and execs the
container's command.
What it builds disappears with the process: the host's own files and network stay untouched.

SPEC is a JSON file: ``{"argv": [...], "env": {...}, "hostname": …, "uid": …, "gid": …,
"groups": [...], "mounts": [{"source": …, "target": …, "read_only": …}], "scratch": DIR,
"runtime": [PATH, …] (the installation the entry point runs from), and optionally "rootfs": DIR
(an unpacked image: the container's root, an overlay over it, volumes inside it),
"report_fd": N, "read_only_root": …, "drop_capabilities": …, "no_new_privs": …}``.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import socket
import struct
import sys
from pathlib import Path
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
CAP_LAST = 63  # above the kernel's last capability, PR_CAPBSET_DROP says EINVAL: ignored
CAPABILITY_VERSION_3 = 0x20080522
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1

_libc = ctypes.CDLL(None, use_errno=True)


class SetupError(Exception):
    pass


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise SetupError(f"{what}: {os.strerror(errno)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str) -> None:
    _check(
        _libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


def _loopback_up() -> None:
    # A new network namespace has only `lo`, and it is down.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))


class MountPoints:
    """Creates missing mount points without touching the host: the first missing path under a
    top-level directory (``/etc``, ``/var``, ``/run``) gets a private overlay of that directory,
    so the new directories exist only in this namespace, as they would in an image."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.overlaid: set[str] = set()

    def prepare(self, target: Path, is_file: bool) -> None:
        if target.exists():
            return
        real = Path(os.path.realpath(target))
        top = "/" + real.parts[1] if len(real.parts) > 2 else None
        if top is None:
            raise SetupError(f"mount path {target}: the lab cannot create a top-level directory")
        if top not in self.overlaid:
            name = top.strip("/")
            upper, work = self.scratch / f"{name}.upper", self.scratch / f"{name}.work"
            upper.mkdir(parents=True)
            work.mkdir(parents=True)
            _mount("overlay", top, "overlay", 0, f"lowerdir={top},upperdir={upper},workdir={work}")
            self.overlaid.add(top)
        if is_file:
            real.parent.mkdir(parents=True, exist_ok=True)
            real.touch()
        else:
            real.mkdir(parents=True, exist_ok=True)


def _inside(root: Path, target: str) -> Path:
    """``target`` within ``root``, its symlinks resolved there (Debian's /var/run -> /run must
    not lead out of the image to the host's /run)."""
    here = root
    parts = list(Path(target).parts[1:])
    for _ in range(64):
        if not parts:
            return here
        part = parts.pop(0)
        if part == "..":
            here = here.parent if here != root else root  # never above the image's root
            continue
        step = here / part
        if step.is_symlink():
            link = os.readlink(step)
            parts = [*Path(link).parts[1 if link.startswith("/") else 0 :], *parts]
            if link.startswith("/"):
                here = root
            continue
        here = step
    raise SetupError(f"mount path {target}: too many symbolic links in the image")


def setup_image(spec: dict[str, Any], scratch: Path) -> Path:
    """The container's root: an overlay over the unpacked image (its own writable layer on the
    scratch tmpfs, gone with the namespace), the pod's volumes inside it, /proc and /dev."""
    root, upper, work = scratch / "root", scratch / "root.upper", scratch / "root.work"
    for directory in (root, upper, work):
        directory.mkdir(parents=True)
    lower = spec["rootfs"]
    _mount("overlay", str(root), "overlay", 0, f"lowerdir={lower},upperdir={upper},workdir={work}")
    mounts = sorted(spec["mounts"], key=lambda m: len(Path(m["target"]).parts))
    for mount in mounts:
        fd = os.open(mount["source"], os.O_PATH | os.O_CLOEXEC)
        target = _inside(root, mount["target"])
        if os.path.isfile(f"/proc/self/fd/{fd}"):
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch(exist_ok=True)
        else:
            target.mkdir(parents=True, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", str(target), None, MS_BIND | MS_REC, "")
        if mount.get("read_only"):
            _mount(None, str(target), None, MS_BIND | MS_REMOUNT | MS_RDONLY, "")
        os.close(fd)
    _mount("proc", str(root / "proc"), "proc", MS_NOSUID | MS_NODEV, "")
    _mount("/dev", str(root / "dev"), None, MS_BIND | MS_REC, "")
    if spec.get("read_only_root"):
        _mount(str(root), str(root), None, MS_BIND | MS_REC, "")  # the volumes come along
        _mount(None, str(root), None, MS_BIND | MS_REMOUNT | MS_RDONLY, "")
    return root


def setup(spec: dict[str, Any]) -> None:
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWUTS), "unshare")
    _mount(None, "/", None, MS_REC | MS_PRIVATE, "")  # nothing we mount leaks to the host
    scratch = Path(spec["scratch"])
    # The overlays' upper layers live on a tmpfs of their own: they vanish with the namespace.
    scratch.mkdir(parents=True, exist_ok=True)
    _mount("tmpfs", str(scratch), "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700")
    if spec.get("rootfs"):
        root = setup_image(spec, scratch)
        _loopback_up()
        socket.sethostname(spec["hostname"])
        os.chroot(root)  # the image is the container's whole world from here on
        os.chdir("/")
        return
    # Every source is opened before anything is mounted: a volume at /tmp would otherwise hide
    # the sources (and the scratch) of the lab's state directory when it lives under /tmp.
    mounts = sorted(spec["mounts"], key=lambda m: len(Path(m["target"]).parts))
    sources = [os.open(m["source"], os.O_PATH | os.O_CLOEXEC) for m in mounts]
    runtime = sorted(spec.get("runtime", []), key=lambda p: len(Path(p).parts))
    installed = [os.open(path, os.O_PATH | os.O_CLOEXEC) for path in runtime]
    points = MountPoints(scratch)
    for mount, fd in zip(mounts, sources, strict=True):
        points.prepare(Path(mount["target"]), os.path.isfile(f"/proc/self/fd/{fd}"))
    for mount, fd in zip(mounts, sources, strict=True):
        target = mount["target"]
        _mount(f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC, "")
        if mount.get("read_only"):
            _mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY, "")
        os.close(fd)
    for path, fd in zip(runtime, installed, strict=True):
        _keep_visible(path, fd)
    if spec.get("read_only_root"):
        # readOnlyRootFilesystem: the root mount, in this namespace only; volumes stay writable.
        _mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY, "")
    _loopback_up()
    socket.sethostname(spec["hostname"])


def _keep_visible(path: str, fd: int) -> None:
    """The entry point's installation, bound back at its own path when a volume hid it (an
    emptyDir at /tmp over a checkout under /tmp): an image has its programs in its root, never
    under a volume. Read-only, as an image's files are to a non-root user."""
    try:
        here = os.stat(path)
    except OSError:
        here = None
    found = os.fstat(fd)
    if here is None or (here.st_dev, here.st_ino) != (found.st_dev, found.st_ino):
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as exc:
            raise SetupError(
                f"a volume hides the lab's installation at {path}, and no mount point can be "
                f"made there ({exc.strerror})"
            ) from None
        _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC, "")
        _mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY, "")
    os.close(fd)


def drop_capabilities() -> None:
    """uid 0 with no capability at all, now or after exec: the owner of root's files, no more."""
    for cap in range(CAP_LAST + 1):
        _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    _check(_libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "clear ambient")
    header = (ctypes.c_uint32 * 2)(CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable: twice 32 bits of zeros
    _check(_libc.capset(header, data), "capset")


def become(spec: dict[str, Any]) -> None:
    uid, gid = spec.get("uid"), spec.get("gid")
    if gid is not None:
        os.setgroups([int(g) for g in spec.get("groups", [])])
        os.setgid(int(gid))
    if uid is not None:
        os.setuid(int(uid))
    if spec.get("drop_capabilities"):
        drop_capabilities()
    if spec.get("no_new_privs"):
        _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    # After the credential change (which clears it): if the agent dies, so does the container.
    _check(_libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0), "pdeathsig")


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    report = os.fdopen(int(spec["report_fd"]), "w")
    try:
        setup(spec)
    except (SetupError, OSError) as exc:
        report.write(f"error {exc}\n")
        report.close()
        return 1
    report.write("ready\n")
    report.close()
    if sys.stdin.readline().strip() != "go":
        return 1
    try:
        become(spec)
        os.chdir(spec.get("workdir") or "/")
        os.execvpe(spec["argv"][0], spec["argv"], spec["env"])  # noqa: S606 - the pod's command
    except OSError as exc:
        print(f"lab container: cannot run {spec['argv'][0]}: {exc}", file=sys.stderr)
        return 126 if isinstance(exc, PermissionError) else 127  # as a shell says
    return 0  # not reached: exec replaced the process


if __name__ == "__main__":
    sys.exit(main())
