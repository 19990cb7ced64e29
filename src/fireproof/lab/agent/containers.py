"""Real processes for fireproof's own containers: the one exception to simulated pods.

A container whose image is fireproof's own (``ghcr.io/fireproof/fireproof`` unless the lab is
told otherwise) runs as a local process with the image's entry point and the pod's arguments,
in private mount, network and UTS namespaces (``nsinit``): the pod's volumes at their mount
paths, the ServiceAccount token from the TokenRequest API at the standard path, the in-cluster
environment pointing at the lab's API server, whose port (and the Proxmox emulator's) is
bridged into the container's own loopback. The pod's status follows the process: Ready from its
readiness probe, a restart (with back-off) when it exits or fails its liveness probe, killed
when its VM powers off or its node is cut off, and stopped with SIGTERM when the pod is deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightkube.resources.core_v1 import Pod

from fireproof.kube import KubeApiError, KubeUnreachableError, translate_errors
from fireproof.lab.agent.fleet import Fleet, SimNode
from fireproof.lab.agent.netns import Bridge, http_get
from fireproof.lab.agent.objects import readiness_patch
from fireproof.lab.agent.podfiles import (
    PodFileError,
    PodFileMaker,
    PodFiles,
    container_env,
    expand,
)
from fireproof.lab.agent.pods import Key, PodRunner, pod_key
from fireproof.lab.images import OWN_IMAGE_REPOSITORY

log = logging.getLogger(__name__)

SETUP_TIMEOUT = 20.0
DEFAULT_GRACE = 30.0


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """What the image would give a container: keep equal to the ``Containerfile``."""

    repository: str
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    user: int
    group: int


OWN_IMAGE = ImageConfig(
    repository=OWN_IMAGE_REPOSITORY,
    entrypoint=("fireproof",),
    cmd=(
        "guard",
        "run",
        "--config",
        "/etc/fireproof/fireproof.yaml",
        "--metrics-address",
        "0.0.0.0:9108",
    ),
    env=(
        ("XDG_STATE_HOME", "/var/lib/fireproof"),
        ("PYTHONDONTWRITEBYTECODE", "1"),
        ("PYTHONUNBUFFERED", "1"),
    ),
    user=65532,
    group=65532,
)


def image_from_oci(config: dict[str, Any], base: ImageConfig) -> ImageConfig:
    """The image's own entry point, command, environment and user (its OCI config)."""
    inner = config.get("config") or {}
    user, _, group = str(inner.get("User") or f"{base.user}:{base.group}").partition(":")
    env = tuple(
        tuple(e.split("=", 1))
        for e in inner.get("Env") or []
        if "=" in e and not e.startswith("PATH=")
    )
    return dataclasses.replace(
        base,
        entrypoint=tuple(inner.get("Entrypoint") or base.entrypoint),
        cmd=tuple(inner.get("Cmd") or base.cmd),
        env=env or base.env,
        user=int(user),
        group=int(group or user),
    )


def repository_of(image: str) -> str:
    """``REPO[:TAG][@DIGEST]`` -> ``REPO`` (a registry's port is not a tag)."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return name.rsplit(":", 1)[0] if ":" in last else name


@dataclass(slots=True)
class Container:
    key: Key
    uid: str
    name: str
    node: str
    directory: Path
    process: asyncio.subprocess.Process | None = None
    bridge: Bridge | None = None
    ready: bool = False
    stopping: bool = False
    files: PodFiles | None = None
    user: str = ""
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def log_path(self) -> Path:
        return self.directory / f"{self.name}.log"

    def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        if self.bridge is not None:
            self.bridge.close()


class ProcessRunner:
    def __init__(
        self,
        fleet: Fleet,
        pods: PodRunner,
        root: Path,
        *,
        image: ImageConfig,
        api_port: int,
        bridged_ports: tuple[int, ...],
        rootfs: Path | None = None,
    ) -> None:
        self.fleet = fleet
        self.pods = pods
        self.root = root
        self.image = image
        self.rootfs = rootfs
        """fireproof's image, unpacked: its containers run inside it (None: from this Python)."""
        self.api_port = api_port
        self.bridged_ports = bridged_ports
        self.files = PodFileMaker(fleet.client)
        self.containers: dict[tuple[str, str], Container] = {}
        """(pod uid, container name) -> the real container."""
        pods.on_started(self._started)
        pods.on_stopping(self._stopping)
        pods.on_pod_gone(self._gone)
        pods.probed_by(self._not_ready)
        pods.holds_not_ready(self._held)
        fleet.on_power_off(self._node_lost)
        fleet.on_disconnect(self._node_lost)

    # -- which containers are real ------------------------------------------------------------

    def real_containers(self, pod: Pod) -> list[Any]:
        spec = pod.spec
        containers = spec.containers if spec else []
        return [c for c in containers if repository_of(c.image or "") == self.image.repository]

    def _not_ready(self, pod: Pod) -> frozenset[str]:
        uid = (pod.metadata.uid if pod.metadata else None) or ""
        names = set()
        for c in self.real_containers(pod):
            running = self.containers.get((uid, c.name))
            if running is None or not running.ready:
                names.add(c.name)
        return frozenset(names)

    def _held(self, key: Key) -> bool:
        pod = self.pods.cache.get(key)
        return pod is not None and bool(self._not_ready(pod))

    # -- hooks ----------------------------------------------------------------------------------

    def _started(self, pod: Pod, node: SimNode) -> None:
        uid = (pod.metadata.uid if pod.metadata else None) or ""
        key = pod_key(pod)
        for spec in self.real_containers(pod):
            if (uid, spec.name) in self.containers:
                continue  # already supervised: it starts again on its own once the node can
            directory = self.root / f"{key[0]}_{key[1]}_{uid[:8]}"
            container = Container(key, uid, spec.name, node.spec.name, directory)
            self.containers[(uid, spec.name)] = container
            task = asyncio.get_running_loop().create_task(self._supervise(container))
            container.tasks.append(task)

    def _node_lost(self, node: SimNode) -> None:
        for container in self.containers.values():
            if container.node == node.spec.name:
                container.kill()

    async def _gone(self, key: Key, node_name: str) -> None:
        for (uid, name), container in list(self.containers.items()):
            if container.key == key and not self._wanted(container):
                container.stopping = True
                container.kill()
                self.containers.pop((uid, name), None)

    async def _stopping(self, pod: Pod) -> None:
        uid = (pod.metadata.uid if pod.metadata else None) or ""
        grace = float(
            (pod.metadata.deletionGracePeriodSeconds if pod.metadata else None)
            or (pod.spec.terminationGracePeriodSeconds if pod.spec else None)
            or 0
        )
        stopping = [c for c in self.containers.values() if c.uid == uid]
        for container in stopping:
            container.stopping = True
        await asyncio.gather(*(self._terminate(c, grace) for c in stopping))

    async def _terminate(self, container: Container, grace: float) -> None:
        process = container.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), timeout=min(grace, DEFAULT_GRACE))
            except TimeoutError:
                container.kill()
        container.kill()

    def close(self) -> None:
        for container in self.containers.values():
            container.stopping = True
            container.kill()
            for task in container.tasks:
                task.cancel()

    # -- the supervisor -----------------------------------------------------------------------

    def _wanted(self, container: Container) -> bool:
        pod = self.pods.cache.get(container.key)
        if container.stopping or pod is None or pod.metadata is None or pod.spec is None:
            return False
        return (
            pod.metadata.uid == container.uid
            and pod.spec.nodeName == container.node
            and pod.metadata.deletionTimestamp is None
        )

    async def _supervise(self, container: Container) -> None:
        node = self.fleet.nodes[container.node]
        backoff = self.fleet.profile.crash_backoff_seconds
        starts = 0
        try:
            while self._wanted(container):
                if not node.active or not node.booted.is_set():
                    await asyncio.sleep(0.2)
                    continue
                if starts:
                    await self._report_restart(container, node)
                starts += 1
                try:
                    code = await self._run_once(container, node)
                except Exception:  # a bug must show in the agent's log and not end supervision
                    log.exception("container %s of %s/%s failed", container.name, *container.key)
                    code = 1
                if not self._wanted(container):
                    break
                await self._set_ready(container, False)
                if code is None:
                    await asyncio.sleep(backoff)  # nothing to run (yet): never a busy loop
                elif node.active:
                    if code in (126, 127) and (why := _start_failure(container.log_path)):
                        await self._event(container, "Failed", why, True)
                    said = f"exited with code {code}; restarting in {backoff:g} s"
                    await self._event(container, "BackOff", f"{container.name} {said}", True)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self.fleet.profile.crash_backoff_seconds * 30)
        except Exception:  # a bug here must show in the agent's log, not vanish with the task
            log.exception(
                "container %s of %s/%s: supervisor failed", container.name, *container.key
            )
            raise
        finally:
            container.kill()
            if self.containers.get((container.uid, container.name)) is container:
                del self.containers[(container.uid, container.name)]

    async def _report_restart(self, container: Container, node: SimNode) -> None:
        pod = self.pods.cache.get(container.key)
        if pod is None:
            return
        statuses = (pod.status.containerStatuses if pod.status else None) or []
        restarts = max((s.restartCount for s in statuses), default=0) + 1
        await self.pods.restart(container.key, pod, node, restarts=restarts)

    async def _run_once(self, container: Container, node: SimNode) -> int | None:
        """Run the container's process until it exits; its exit code (None: never started)."""
        pod = self.pods.cache.get(container.key)
        if pod is None or pod.spec is None:
            return None
        spec = next((c for c in pod.spec.containers if c.name == container.name), None)
        if spec is None:
            return None
        try:
            process = await self._launch(container, pod, spec)
        except (PodFileError, OSError) as exc:
            await self._event(container, "Failed", f"container {container.name}: {exc}", True)
            return 1
        if process is None:
            return 1
        await self._event(
            container,
            "Started",
            f"Started container {container.name}: process {process.pid} as {container.user} "
            f"(log: {container.log_path})",
        )
        probes = [
            asyncio.create_task(self._probe(container, spec.readinessProbe, readiness=True)),
            asyncio.create_task(self._probe(container, spec.livenessProbe, readiness=False)),
            asyncio.create_task(self._refresh_tokens(container, pod)),
        ]
        try:
            return await process.wait()
        finally:
            for probe in probes:
                probe.cancel()
            if container.bridge is not None:
                container.bridge.close()
                container.bridge = None
            container.ready = False

    async def _launch(
        self, container: Container, pod: Pod, spec: Any
    ) -> asyncio.subprocess.Process | None:
        if os.geteuid() != 0:
            raise PodFileError(
                "the lab runs fireproof's own containers in private namespaces, which needs "
                f"root; it runs as uid {os.geteuid()}"
            )
        directory = container.directory
        directory.mkdir(parents=True, exist_ok=True)
        security = pod.spec.securityContext if pod.spec else None
        own = spec.securityContext
        uid = _first(
            own.runAsUser if own else None,
            security.runAsUser if security else None,
            self.image.user,
        )
        gid = _first(
            own.runAsGroup if own else None,
            security.runAsGroup if security else None,
            self.image.group,
        )
        fs_group = security.fsGroup if security else None
        container.files = container_files = await self.files.make(
            pod, directory / "volumes", fs_group
        )
        mounts = []
        for mount in spec.volumeMounts or []:
            source = container_files.volumes.get(mount.name)
            if source is None:
                raise PodFileError(f"volume mount {mount.name!r}: no such volume")
            mounts.append(
                {
                    "source": str(source / mount.subPath if mount.subPath else source),
                    "target": mount.mountPath,
                    "read_only": bool(mount.readOnly),
                }
            )
        env = await container_env(self.files, pod, spec, self._base_env(pod))
        command = list(spec.command or self.image.entrypoint)
        image_args = [] if spec.command else list(self.image.cmd)
        args = list(spec.args) if spec.args is not None else image_args
        argv = [expand(a, env) for a in command + args]
        # Inside the image its own Python runs, reachable by any user; from the lab's Python, a
        # user who cannot reach it runs as root without capabilities.
        as_root = self.rootfs is None and not runtime_reachable(uid)
        report_r, report_w = os.pipe()
        plan = {
            "argv": argv,
            "env": env,
            "hostname": container.key[1],
            "uid": 0 if as_root else uid,
            "gid": 0 if as_root else gid,
            "groups": [] if as_root else [g for g in {gid, fs_group} if g is not None],
            "drop_capabilities": as_root
            or bool(own and own.capabilities and "ALL" in (own.capabilities.drop or [])),
            "read_only_root": bool(own and own.readOnlyRootFilesystem),
            "mounts": mounts,
            "runtime": runtime_paths() if self.rootfs is None else [],
            "rootfs": str(self.rootfs) if self.rootfs is not None else None,
            "scratch": str(directory / "scratch"),
            "workdir": spec.workingDir or "/",
            "no_new_privs": bool(own and own.allowPrivilegeEscalation is False),
            "report_fd": report_w,
        }
        plan_file = directory / f"{container.name}.json"
        plan_file.write_text(json.dumps(plan))
        plan_file.chmod(0o600)
        with container.log_path.open("ab") as out:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "fireproof.lab.agent.nsinit",
                str(plan_file),
                stdin=asyncio.subprocess.PIPE,
                stdout=out,
                stderr=out,
                pass_fds=(report_w,),
            )
        os.close(report_w)
        container.process = process
        try:
            line = await asyncio.wait_for(asyncio.to_thread(_read_all, report_r), SETUP_TIMEOUT)
        except TimeoutError:
            line = "error: the namespace set-up did not answer"
        finally:
            os.close(report_r)
        if line != "ready":
            container.kill()
            raise PodFileError(f"set-up failed: {line.removeprefix('error ')}")
        container.user = "root without capabilities" if as_root else f"uid {uid}"
        container.bridge = Bridge(process.pid, self.bridged_ports)
        await container.bridge.open()
        assert process.stdin is not None  # noqa: S101 - asked for above
        process.stdin.write(b"go\n")
        await process.stdin.drain()
        process.stdin.close()
        return process

    def _base_env(self, pod: Pod) -> dict[str, str]:
        # From this Python, its venv stands in for the image's /usr/local/bin.
        venv = "" if self.rootfs is not None else f"{Path(sys.executable).parent}:"
        host, port = "127.0.0.1", str(self.api_port)
        return {
            "PATH": f"{venv}/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOSTNAME": pod_key(pod)[1],
            **dict(self.image.env),
            "KUBERNETES_SERVICE_HOST": host,
            "KUBERNETES_SERVICE_PORT": port,
            "KUBERNETES_SERVICE_PORT_HTTPS": port,
            "KUBERNETES_PORT": f"tcp://{host}:{port}",
        }

    # -- probes, tokens, status -----------------------------------------------------------------

    async def _probe(self, container: Container, probe: Any, *, readiness: bool) -> None:
        if probe is None:
            if readiness:
                await self._set_ready(container, True)
            return
        period = float(probe.periodSeconds or 10)
        threshold = int(probe.failureThreshold or 3)
        await asyncio.sleep(float(probe.initialDelaySeconds or 0))
        failures = 0
        while True:
            ok = await self._check(container, probe)
            failures = 0 if ok else failures + 1
            if readiness:
                if ok:
                    await self._set_ready(container, True)
                elif failures >= threshold or not container.ready:
                    await self._set_ready(container, False)
            elif failures >= threshold:
                await self._event(container, "Unhealthy", "liveness probe failed; killing", True)
                container.kill()
                return
            await asyncio.sleep(period)

    async def _check(self, container: Container, probe: Any) -> bool:
        process = container.process
        if process is None or process.returncode is not None:
            return False
        timeout = float(probe.timeoutSeconds or 1)
        pod = self.pods.cache.get(container.key)
        port = _port(pod, container.name, (probe.httpGet or probe.tcpSocket or probe).port)
        if probe.httpGet is not None and port is not None:
            code = await http_get(process.pid, port, probe.httpGet.path or "/", timeout)
            return 200 <= code < 400
        return True  # exec and TCP probes are not run by the lab: a running process passes

    async def _refresh_tokens(self, container: Container, pod: Pod) -> None:
        # The kubelet renews a projected token at 80 % of its life.
        tokens = container.files.tokens if container.files else []
        if not tokens:
            return
        security = pod.spec.securityContext if pod.spec else None
        fs_group = security.fsGroup if security else None
        while True:
            await asyncio.sleep(min(t.seconds for t in tokens) * 0.8)
            for token in tokens:
                with contextlib.suppress(PodFileError):
                    await self.files.write_token(pod, token, fs_group)

    async def _set_ready(self, container: Container, ready: bool) -> None:
        container.ready = ready
        pod = self.pods.cache.get(container.key)
        if pod is None or pod.status is None or not self.fleet.nodes[container.node].active:
            return
        statuses = [s.to_dict() for s in (pod.status.containerStatuses or [])]
        now = {s.get("name"): s.get("ready") for s in statuses}
        if now.get(container.name) is ready:
            return  # the API already says so
        patch = readiness_patch(statuses, self._not_ready(pod))
        patch["metadata"] = {"uid": container.uid}  # never another pod of the same name
        try:
            with translate_errors():
                await self.fleet.client.patch(
                    Pod.Status, container.key[1], patch, namespace=container.key[0]
                )
        except (KubeApiError, KubeUnreachableError) as exc:
            log.info("pod %s/%s readiness not reported: %s", *container.key, exc)

    async def _event(
        self, container: Container, reason: str, message: str, warning: bool = False
    ) -> None:
        pod = self.pods.cache.get(container.key)
        if pod is not None:
            await self.fleet.emit(
                self.pods.ref(pod), reason, message, warning=warning, host=container.node
            )


def runtime_paths() -> list[str]:
    """Where the entry point runs from: the virtualenv, the Python it links to, and the package
    (an editable install's src/). A pod's volume may hide them (an emptyDir at /tmp over a
    checkout under /tmp); the container's first process binds them back."""
    import fireproof

    package = os.path.dirname(os.path.dirname(os.path.realpath(fireproof.__file__)))
    found = [
        sys.prefix,
        sys.base_prefix,
        os.path.dirname(os.path.realpath(sys.executable)),
        package,
    ]
    return sorted({os.path.realpath(p) for p in found if os.path.isdir(p)})


def runtime_reachable(uid: int | None, paths: list[str] | None = None) -> bool:
    """Whether a process of ``uid`` can run this Python and fireproof: every directory on the
    way world-searchable. A pyenv under ``/root`` is not, and then the lab runs the container as
    uid 0 with every capability dropped (the only way to reach it) and says so."""
    if uid == 0:
        return True
    if paths is None:
        import fireproof  # where the package lives (an editable install: src/)

        paths = [os.path.realpath(sys.executable), sys.prefix, sys.base_prefix]
        paths.append(os.path.dirname(os.path.realpath(fireproof.__file__)))
    for path in paths:
        current = Path(path)
        for directory in (current, *current.parents):
            if directory.is_dir() and not os.stat(directory).st_mode & 0o001:
                return False
    return True


START_FAILURE = "lab container: "
"""How the container's first process says it could not exec the entry point (nsinit)."""


def _start_failure(log_path: Path) -> str | None:
    """The last "cannot run" line of the container's log: what `kubectl describe` should show,
    not only an exit code."""
    try:
        with log_path.open("rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - 8192))
            tail = log.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    said = [line for line in tail if line.startswith(START_FAILURE)]
    return said[-1].removeprefix(START_FAILURE) if said else None


def _first(*values: int | None) -> int | None:
    return next((v for v in values if v is not None), None)


def _read_all(fd: int) -> str:
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace").strip()


def _port(pod: Pod | None, container_name: str, port: int | str | None) -> int | None:
    if isinstance(port, int) or port is None:
        return port
    if port.isdigit():
        return int(port)
    spec = pod.spec if pod else None
    for c in spec.containers if spec else []:
        if c.name == container_name:
            for p in c.ports or []:
                if p.name == port:
                    return int(p.containerPort)
    return None
