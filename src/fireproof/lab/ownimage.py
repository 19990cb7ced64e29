"""fireproof's own image for the lab's real containers: the OCI layout `make image` writes,
unpacked once per lab with umoci. Given one (`lab up --own-image-layout`, or
$FIREPROOF_LAB_IMAGE), the chart's guard pods run inside the image's root filesystem, exactly
what users pull; without one they run from the lab's own Python, and `lab up` says so."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fireproof.errors import PermanentError, UsageError

IMAGE_ENV = "FIREPROOF_LAB_IMAGE"
TAG = "fireproof"


@dataclass(frozen=True, slots=True)
class UnpackedImage:
    rootfs: Path
    config: Path
    """The image's OCI config (entry point, command, environment, user) as JSON."""
    digest: str


def layout_from(option: Path | None) -> Path | None:
    """The layout to use: the option, else $FIREPROOF_LAB_IMAGE, else none."""
    chosen = option or (Path(os.environ[IMAGE_ENV]) if os.environ.get(IMAGE_ENV) else None)
    if chosen is not None and not (chosen / "index.json").is_file():
        raise UsageError(
            f"{chosen} is not an OCI image layout (no index.json)",
            hint="build one with `make image` (it writes dist/image/oci)",
        )
    return chosen


def unpack(layout: Path, into: Path) -> UnpackedImage:
    """The image's root filesystem and config under ``into`` (replaced on every lab start)."""
    if shutil.which("umoci") is None:
        raise PermanentError(
            "umoci is not installed: the lab cannot unpack the image",
            hint="apt-get install umoci (make system-deps does)",
        )
    index = json.loads((layout / "index.json").read_text())
    digest = str(index["manifests"][0]["digest"])
    shutil.rmtree(into, ignore_errors=True)
    done = subprocess.run(
        ["umoci", "unpack", "--image", f"{layout}:{TAG}", str(into / "bundle")],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise PermanentError(f"umoci unpack of {layout} failed: {done.stderr.strip()[-400:]}")
    config = into / "oci-config.json"
    config.write_text(json.dumps(image_config(layout)))
    return UnpackedImage(into / "bundle" / "rootfs", config, digest)


def image_config(layout: Path) -> dict[str, Any]:
    """The OCI config (entry point, command, user, environment) of the layout's one image."""

    def blob(digest: str) -> dict[str, Any]:
        algorithm, _, value = digest.partition(":")
        data: dict[str, Any] = json.loads((layout / "blobs" / algorithm / value).read_text())
        return data

    index = json.loads((layout / "index.json").read_text())
    return blob(blob(index["manifests"][0]["digest"])["config"]["digest"])
