from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from fireproof.errors import PermanentError, UsageError
from fireproof.lab import binaries


@pytest.fixture
def module(tmp_path: Path) -> Path:
    copy = tmp_path / "module"
    shutil.copytree(binaries.module_dir(), copy)
    return copy


def test_pin_is_read_from_the_wrapper_module() -> None:
    version = binaries.pinned_version(binaries.module_dir())
    assert version.startswith("v1.")
    mod = (binaries.module_dir() / "go.mod").read_text()
    # Every staging module is pinned to the matching v0.Y.Z.
    minor = version.split(".")[1]
    assert f"k8s.io/client-go => k8s.io/client-go v0.{minor}." in mod


def test_recipe_key_changes_when_the_pin_changes(module: Path) -> None:
    before = binaries.recipe_key(module)
    gomod = module / "go.mod"
    gomod.write_text(gomod.read_text().replace("k8s.io/kubernetes v1.", "k8s.io/kubernetes v9."))
    assert binaries.recipe_key(module) != before
    assert binaries.pinned_version(module).startswith("v9.")


def test_cache_dir_follows_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIREPROOF_CACHE_DIR", str(tmp_path))
    assert binaries.cache_dir().parent == tmp_path / "k8s"


def _fake_cache(directory: Path) -> None:
    directory.mkdir(parents=True)
    sums = {}
    for component in binaries.COMPONENTS:
        exe = directory / component
        exe.write_text(f"#!/bin/sh\necho {component}\n")
        exe.chmod(0o755)
        sums[component] = hashlib.sha256(exe.read_bytes()).hexdigest()
    (directory / "manifest.json").write_text(json.dumps({"version": "v1.2.3", "sha256": sums}))


def test_verified_cache_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIREPROOF_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv(binaries.BIN_DIR_ENV, raising=False)
    _fake_cache(binaries.cache_dir())
    found = binaries.locate()
    assert found.version == "v1.2.3"
    assert found.path("kubectl").exists()


def test_tampered_binary_is_reported_as_corruption(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FIREPROOF_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv(binaries.BIN_DIR_ENV, raising=False)
    target = binaries.cache_dir()
    _fake_cache(target)
    (target / "kube-apiserver").write_text("truncated")
    with pytest.raises(binaries.BinaryCacheError, match="kube-apiserver does not match"):
        binaries.locate()


def test_missing_cache_tells_how_to_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIREPROOF_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv(binaries.BIN_DIR_ENV, raising=False)
    with pytest.raises(binaries.BinaryCacheError) as info:
        binaries.locate()
    assert info.value.hint is not None
    assert "fireproof lab build" in info.value.hint


def test_bin_dir_must_hold_every_component(tmp_path: Path) -> None:
    with pytest.raises(PermanentError, match="lacks executable etcd"):
        binaries.locate(tmp_path)
    with pytest.raises(UsageError, match="not a directory"):
        binaries.locate(tmp_path / "missing")


def test_ldflags_stamp_the_version_for_server_and_client() -> None:
    flags = binaries._ldflags("v1.37.2")
    assert "-X k8s.io/component-base/version.gitVersion=v1.37.2" in flags
    assert "-X k8s.io/client-go/pkg/version.gitMinor=37" in flags
