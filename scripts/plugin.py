"""`make plugin`: the single-binary kubectl plugin and its krew archive and manifest.

PyInstaller bundles fireproof and its locked dependencies into one executable,
``kubectl-fireproof`` (no Python needed on the target). The build is cached outside the
repository like the control plane, under ``<cache>/plugin/<version>-<key>/``, where the key
hashes everything that goes in (fireproof's sources, uv.lock, this recipe); the archive is
packed reproducibly (fixed mtimes, owner and gzip header) and the krew manifest
(deploy/krew/fireproof.yaml) is rendered with its sha256. Prints the three paths, the size and
the sha256; copies them into ``dist/krew/``.

Usage: python scripts/plugin.py [--rebuild] [--out DIR]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

from fireproof.lab.binaries import cache_root, sha256_file

REPO = Path(__file__).resolve().parents[1]
RECIPE = "1"
NAME = "kubectl-fireproof"
ARCHIVE = f"{NAME}_linux_amd64.tar.gz"
EPOCH = 1_700_000_000
"""The archive's file times: fixed, so one binary always gives one sha256."""


def key() -> str:
    digest = hashlib.sha256(RECIPE.encode())
    inputs = [REPO / "uv.lock", REPO / "pyproject.toml", Path(__file__).resolve()]
    inputs += sorted(p for p in (REPO / "src" / "fireproof").rglob("*") if _source(p))
    for path in inputs:
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def _source(path: Path) -> bool:
    return path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"


def build(target: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix="fireproof-plugin-"))
    try:
        entry = work / "kubectl_fireproof.py"
        entry.write_text("from fireproof.cli.main import kubectl_main\n\nkubectl_main()\n")
        subprocess.run(
            [
                sys.executable, "-m", "PyInstaller", "--onefile", "--name", NAME,
                # Commands load lazily by module name: PyInstaller cannot see those imports.
                "--collect-submodules", "fireproof", "--collect-data", "fireproof",
                "--noconfirm", "--clean", "--log-level", "WARN",
                "--distpath", str(work / "dist"), "--workpath", str(work / "build"),
                "--specpath", str(work), str(entry),
            ],
            check=True,
        )  # fmt: skip
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        shutil.copy2(work / "dist" / NAME, staging / NAME)
        pack(staging / NAME, staging / ARCHIVE)
        render_manifest(staging / ARCHIVE, staging / "fireproof.yaml")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def pack(binary: Path, archive: Path) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tar.gettarinfo(str(binary), arcname=NAME)
        info.mtime, info.uid, info.gid, info.uname, info.gname = EPOCH, 0, 0, "root", "root"
        info.mode = 0o755
        with binary.open("rb") as handle:
            tar.addfile(info, handle)
    with (
        archive.open("wb") as out,
        gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=EPOCH) as gz,
    ):
        gz.write(raw.getvalue())


def render_manifest(archive: Path, out: Path) -> None:
    template = (REPO / "deploy" / "krew" / "fireproof.yaml").read_text()
    out.write_text(
        template.replace("{version}", version("fireproof")).replace(
            "{sha256}", sha256_file(archive)
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--out", type=Path, default=REPO / "dist" / "krew")
    args = parser.parse_args()
    target = cache_root() / "plugin" / f"{version('fireproof')}-{key()}"
    started = time.monotonic()
    if args.rebuild or not (target / "fireproof.yaml").is_file():
        print(f"building {NAME} with PyInstaller into {target}", flush=True)
        build(target)
        print(f"built in {time.monotonic() - started:.0f} s")
    else:
        print(f"{NAME} already built for these sources: {target}")
    args.out.mkdir(parents=True, exist_ok=True)
    for name in (NAME, ARCHIVE, "fireproof.yaml"):
        shutil.copy2(target / name, args.out / name)
        print(f"  {args.out / name}")
    size = (target / NAME).stat().st_size / 1e6
    print(f"{NAME}: {size:.1f} MB; {ARCHIVE} sha256 {sha256_file(target / ARCHIVE)}")


if __name__ == "__main__":
    main()
