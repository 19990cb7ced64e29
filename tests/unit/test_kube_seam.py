"""The kube seam: the one reach into lightkube's internals, and the watch cache's bookkeeping."""

from __future__ import annotations

import inspect
from pathlib import Path

import httpx2 as httpx
import yaml
from lightkube.resources.core_v1 import Node

from fireproof.kube import load_kubeconfig, sync_client
from fireproof.kube.cache import ClusterCache, node_facts
from fireproof.kube.transport import http_client


def _kubeconfig(tmp_path: Path) -> Path:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_the_http_client_behind_lightkube_is_where_the_seam_expects_it(tmp_path: Path) -> None:
    # Fails when a lightkube release moves its HTTP client: then kube/transport.py must follow.
    client = sync_client(load_kubeconfig(_kubeconfig(tmp_path)))
    transport = http_client(client)
    assert isinstance(transport, httpx.Client)
    assert str(transport.base_url).startswith("https://127.0.0.1:6443")
    transport.close()


def _node(version: str, annotation: str) -> Node:
    return Node.from_dict(
        {
            "metadata": {
                "name": "w1",
                "resourceVersion": version,
                "annotations": {"fireproof.io/remediation": annotation},
            }
        }
    )


def test_the_cache_keeps_our_own_write_until_the_watch_catches_up(tmp_path: Path) -> None:
    cache = ClusterCache(_kubeconfig(tmp_path), None)
    cache.on_list("Node", [_node("10", "old")])
    cache.on_list("Lease", [])
    cache.on_list("VolumeAttachment", [])
    assert cache.view().synced
    cache.wrote_node(_node("12", "ours"))
    cache.on_change("Node", "MODIFIED", _node("11", "older event"))  # late, older: ignored
    assert cache.view().nodes["w1"].annotations["fireproof.io/remediation"] == "ours"
    cache.on_change("Node", "MODIFIED", _node("13", "newer"))
    assert cache.view().nodes["w1"].annotations["fireproof.io/remediation"] == "newer"
    cache.on_lost("Lease")
    assert not cache.view().synced  # a lost watch: guard sees nothing until it lists again
    assert node_facts(_node("1", "x")).name == "w1"


def test_exec_plugins_run_through_fireproofs_bounded_runners() -> None:
    # lightkube's ExecAuth looks its runners up as module globals: a release that renames or
    # moves them must fail here, not hang a guard on a plugin that never answers.
    from lightkube.config import client_adapter

    import fireproof.kube  # noqa: F401 - installs the runners
    from fireproof.kube import execauth

    assert client_adapter.sync_check_output is execauth.sync_check_output
    assert client_adapter.async_check_output is execauth.async_check_output
    assert "sync_check_output(command" in inspect.getsource(client_adapter.ExecAuth)
