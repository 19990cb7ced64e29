"""Bounded kubeconfig exec credential plugins: the second place fireproof reaches inside
lightkube (beside :mod:`fireproof.kube.transport`).

lightkube runs a kubeconfig's ``exec`` plugin with no timeout, and reads its output with no
check: a plugin that never answers hangs every command, and a missing program, a non-JSON
answer or an ExecCredential without a token end in an internal error. Its two runner functions
are replaced by these, which bound the run and turn every failure into lightkube's own
ConfigError, which the client translates into one clear error.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Mapping, Sequence

from lightkube import ConfigError
from lightkube.config import client_adapter

DEFAULT_TIMEOUT = 30.0
"""Seconds a plugin may take (``FIREPROOF_EXEC_TIMEOUT`` overrides): a browser login flow is
interactive and is not run here."""


def exec_timeout() -> float:
    raw = os.environ.get("FIREPROOF_EXEC_TIMEOUT", "")
    try:
        value = float(raw) if raw else DEFAULT_TIMEOUT
    except ValueError:
        return DEFAULT_TIMEOUT
    return value if 0 < value < 3600 else DEFAULT_TIMEOUT


def checked(command: Sequence[str], code: int | None, stdout: bytes, stderr: bytes) -> bytes:
    """The plugin's output when it is an ExecCredential with a token; ConfigError otherwise."""
    name = command[0] if command else "?"
    if code != 0:
        last = (stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
        raise ConfigError(f"exec credential plugin {name} exited {code}: {last[:200]}")
    try:
        token = json.loads(stdout)["status"]["token"]
    except (ValueError, KeyError, TypeError):
        raise ConfigError(
            f"exec credential plugin {name} did not answer an ExecCredential with a token"
        ) from None
    if not isinstance(token, str) or not token:
        raise ConfigError(f"exec credential plugin {name} answered an empty token")
    return stdout


def sync_check_output(command: Sequence[str], env: Mapping[str, str]) -> bytes:
    timeout = exec_timeout()
    try:
        done = subprocess.run(
            list(command), env=dict(env), stdin=subprocess.DEVNULL, capture_output=True,
            timeout=timeout, check=False,
        )  # fmt: skip
    except FileNotFoundError:
        raise ConfigError(f"exec credential plugin {command[0]!r} is not installed") from None
    except PermissionError:
        raise ConfigError(f"exec credential plugin {command[0]!r} cannot be run") from None
    except subprocess.TimeoutExpired:
        raise ConfigError(
            f"exec credential plugin {command[0]} did not answer within {timeout:g} s"
        ) from None
    return checked(command, done.returncode, done.stdout, done.stderr)


async def async_check_output(command: Sequence[str], env: Mapping[str, str]) -> bytes:
    timeout = exec_timeout()
    try:
        proc = await asyncio.create_subprocess_exec(
            *command, env=dict(env), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
    except FileNotFoundError:
        raise ConfigError(f"exec credential plugin {command[0]!r} is not installed") from None
    except PermissionError:
        raise ConfigError(f"exec credential plugin {command[0]!r} cannot be run") from None
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise ConfigError(
            f"exec credential plugin {command[0]} did not answer within {timeout:g} s"
        ) from None
    return checked(command, proc.returncode, stdout, stderr)


def install() -> None:
    """Put the bounded runners where lightkube's ExecAuth looks them up (module globals)."""
    for name, runner in (
        ("sync_check_output", sync_check_output),
        ("async_check_output", async_check_output),
    ):
        if not callable(getattr(client_adapter, name, None)):
            raise TypeError(
                f"lightkube.config.client_adapter.{name} is gone; fireproof.kube.execauth must "
                "follow lightkube"
            )
        setattr(client_adapter, name, runner)
