"""The release-before-fence checker over the lab's own evidence (audit log + power history):
it must catch a planted release of a running node's volumes, and must not blame what
Kubernetes' own components do as a consequence of a release."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from fireproof.lab.evidence import (
    OUT_OF_SERVICE,
    fenced_twice,
    read_power_history,
    read_power_tasks,
    read_releases,
    released_while_running,
    running_at,
)

T0 = 1_800_000_000.0


def _stamp(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _event(t: float, verb: str, ref: dict[str, str], user: str = "guard", **extra: Any) -> str:
    event = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "stage": "ResponseComplete",
        "verb": verb,
        "user": {"username": user},
        "objectRef": ref,
        "responseStatus": {"code": 200},
        "requestReceivedTimestamp": _stamp(t),
        "requestURI": "/api/v1/x",
        **extra,
    }
    return json.dumps(event)


def _taint(t: float, node: str, user: str = "guard") -> str:
    ops = [{"op": "add", "path": "/spec/taints", "value": [{"key": OUT_OF_SERVICE}]}]
    return _event(t, "patch", {"resource": "nodes", "name": node}, user, requestObject=ops)


def _pod_delete(t: float, node: str, grace: int = 0, code: int = 200) -> str:
    return _event(
        t,
        "delete",
        {"resource": "pods", "namespace": "blog", "name": "postgres-0"},
        requestObject={"kind": "DeleteOptions", "gracePeriodSeconds": grace},
        responseObject={"spec": {"nodeName": node}},
        responseStatus={"code": code},
    )


def _files(tmp_path: Path, audit: list[str]) -> tuple[Path, Path]:
    power = tmp_path / "power.jsonl"
    power.write_text(
        json.dumps({"t": T0 + 10, "vm": "w2", "running": False, "cause": "qmstop by guard"})
        + "\n"
        + json.dumps({"t": T0 + 50, "vm": "w2", "running": True, "cause": "qmstart by guard"})
        + "\n"
    )
    log = tmp_path / "audit.jsonl"
    log.write_text("\n".join(audit) + "\n")
    return log, power


def test_a_planted_release_before_fence_is_caught(tmp_path: Path) -> None:
    audit, power = _files(
        tmp_path,
        [
            _taint(T0 + 9.5, "w2"),  # planted: the VM still runs until T0+10
            _pod_delete(T0 + 11, "w2"),  # after the fence: fine
            _taint(T0 + 12, "w2"),  # fine
            _taint(T0 + 51, "w2"),  # planted: the VM runs again since T0+50
        ],
    )
    history = read_power_history(power)
    caught = released_while_running(read_releases(audit), history)
    assert [(round(r.t - T0, 1), r.what) for r in caught] == [
        (9.5, "out-of-service taint"),
        (51.0, "out-of-service taint"),
    ]


def test_what_is_not_a_release_decision_is_not_blamed(tmp_path: Path) -> None:
    audit, power = _files(
        tmp_path,
        [
            _taint(T0 + 1, "w2", user="system:serviceaccount:kube-system:node-controller"),
            _pod_delete(T0 + 2, "w2", grace=30),  # graceful: the kubelet must still confirm
            _pod_delete(T0 + 3, "w2", code=409),  # refused by the UID precondition
            _event(
                T0 + 4,
                "delete",
                {"resource": "pods", "namespace": "blog", "name": "p"},
                user="fireproof-lab-agent",  # a kubelet deleting the pod it stopped
                requestObject={"gracePeriodSeconds": 0},
                responseObject={"spec": {"nodeName": "w2"}},
            ),
            _event(
                T0 + 5,
                "patch",
                {"resource": "nodes", "name": "w2"},
                requestObject={"spec": {"unschedulable": True}},
            ),
        ],
    )
    assert read_releases(audit) == []
    assert released_while_running(read_releases(audit), read_power_history(power)) == []


def test_running_at_replays_the_power_history(tmp_path: Path) -> None:
    _audit, power = _files(tmp_path, [])
    history = read_power_history(power)
    assert running_at(history, "w2", T0)
    assert not running_at(history, "w2", T0 + 10)
    assert not running_at(history, "w2", T0 + 49.9)
    assert running_at(history, "w2", T0 + 50)
    assert running_at(history, "w1", T0 + 20)  # never changed: running since the lab started


def test_a_second_fence_in_one_death_is_caught_a_retry_after_a_swallowed_stop_is_not(
    tmp_path: Path,
) -> None:
    def task(t: float, changes: bool, user: str = "root@pam!guard") -> str:
        fields = {"t": T0 + t, "vm": "w2", "task": "hastop", "user": user, "upid": "U"}
        return json.dumps({**fields, "changes": changes})

    def change(t: float, running: bool) -> str:
        return json.dumps({"t": T0 + t, "vm": "w2", "running": running, "cause": "x"})

    power = tmp_path / "power.jsonl"
    power.write_text(
        "\n".join(
            [
                task(1, False),  # swallowed by a fault (ignore-stop): changed nothing
                task(3, True),  # the fence
                task(3.5, True),  # a second leader, or a resumed guard fencing again
                change(5, False),
                task(6, True, user="root@pam"),  # a person: not guard's
                change(20, True),  # guard's reboot: a new life
                task(30, True),  # the next death's fence
                change(31, False),
            ]
        )
        + "\n"
    )
    found = fenced_twice(read_power_tasks(power), read_power_history(power), user="root@pam!guard")
    assert [(vm, round(a - T0, 1), round(b - T0, 1)) for vm, a, b in found] == [("w2", 3.0, 3.5)]
