"""Fencing with any ClusterLabs fence agent (fence_pve, fence_ipmilan, fence_redfish, ...).

Options go to the agent on stdin, one ``name=value`` per line, as the FenceAgentAPI defines:
nothing secret ever appears in a process listing. Exit codes: ``status`` 0 = on, 2 = off,
anything else = error; ``on``/``off`` 0 = done (the agent itself waits for the new state).
fireproof still reads the status afterwards: off is believed only when ``status`` says so.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from fireproof.config import FenceAgentDevice, SecretReader, has_control_character
from fireproof.fencing.base import FencingError, Machine, PermanentFencingError, PowerState

NOTHING_RELEASED = "nothing was released"

SEARCH_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"  # Debian installs fence agents in /usr/sbin


class FenceAgentFencer:
    def __init__(self, device: FenceAgentDevice, read_secret: SecretReader | None = None) -> None:
        self.name = device.name
        self.device = device
        # Resolved now: a missing secret fails before anything is written to the cluster.
        self._secret = device.password.resolve(read_secret) if device.password else None

    def _program(self) -> str:
        found = shutil.which(self.device.agent) or shutil.which(self.device.agent, path=SEARCH_PATH)
        if found is None:
            raise FencingError(
                f"fence agent {self.device.agent!r} of device {self.name!r} is not installed",
                hint="Debian: apt-get install fence-agents",
            )
        return found

    def _run(self, machine: Machine, action: str) -> subprocess.CompletedProcess[str]:
        options = dict(self.device.options)
        plug = machine.plug or (str(machine.vmid) if machine.vmid is not None else None)
        if plug is not None:
            options["plug"] = plug
        secret = self._secret
        if secret is not None:
            options["password"] = secret
        options["action"] = action
        for key, value in options.items():
            # One option per line: a line break in a value would add an option of its own
            # (`plug=…`), and the agent would act on another machine.
            if has_control_character(key) or has_control_character(value):
                raise PermanentFencingError(
                    f"{self.device.agent}: the value of option {key!r} for {machine.node} "
                    "contains a line break or control character; refused",
                    hint=NOTHING_RELEASED,
                )
        stdin = "".join(f"{key}={value}\n" for key, value in options.items())
        try:
            done = subprocess.run(
                [self._program()],
                input=stdin,
                capture_output=True,
                text=True,
                timeout=self.device.timeout_seconds,
                check=False,
                env=self._environment(),
            )
        except subprocess.TimeoutExpired:
            raise FencingError(
                f"{self.device.agent} {action} for {machine.node} did not finish within "
                f"{self.device.timeout_seconds:g} s",
                hint="nothing was released",
            ) from None
        if secret:
            done = subprocess.CompletedProcess(
                done.args,
                done.returncode,
                done.stdout.replace(secret, "***"),
                done.stderr.replace(secret, "***"),
            )
        return done

    def _environment(self) -> dict[str, str] | None:
        """The agent's environment: ours, plus the device's CA bundle when it has one."""
        ca_file = self.device.ca_file
        if ca_file is None:
            return None
        if not ca_file.is_file():
            raise PermanentFencingError(
                f"ca_file {ca_file} of device {self.name!r} is not a readable file",
                hint=NOTHING_RELEASED,
            )
        # Agents built on Python requests (fence_redfish) verify the device against it.
        return {**os.environ, "REQUESTS_CA_BUNDLE": str(ca_file)}

    def _failure(
        self, machine: Machine, action: str, done: subprocess.CompletedProcess[str]
    ) -> FencingError:
        lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        detail = lines[-1].strip() if lines else "no output"
        return FencingError(
            f"{self.device.agent} {action} for {machine.node} failed (exit {done.returncode}): "
            f"{detail}",
            hint="nothing was released",
        )

    def status(self, machine: Machine) -> PowerState:
        done = self._run(machine, "status")
        if done.returncode == 0:
            return PowerState.ON
        if done.returncode == 2:
            return PowerState.OFF
        raise self._failure(machine, "status", done)

    def off(self, machine: Machine) -> PowerState:
        return self._power(machine, "off", PowerState.OFF)

    def on(self, machine: Machine) -> PowerState:
        return self._power(machine, "on", PowerState.ON)

    def _power(self, machine: Machine, action: str, want: PowerState) -> PowerState:
        done = self._run(machine, action)
        if done.returncode != 0:
            raise self._failure(machine, action, done)
        state = self.status(machine)
        if state is not want:
            raise FencingError(
                f"{self.device.agent} reported {action} done but {machine.node} reads {state}",
                hint="nothing was released",
            )
        return state
