"""The container engine that runs here: Docker where its daemon answers, otherwise Podman (Debian's
`podman`, which needs no daemon). Both take the same `build`, `run`, `image` and `rm` commands; the
few flags they spell differently are chosen here."""
from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

# A label of the cached images: when their making began, so that their cold build time stays known.
BUILD_STARTED = "org.renalnode.build-started"
# Podman settings for kernels that refuse its default rlimits (deploy/container/containers.conf), as
# `make setup` installs them.
PODMAN_SETTINGS = Path("/etc/containers/containers.conf.d/50-renalnode.conf")


@dataclass(frozen=True)
class ContainerEngine:
    name: str  # "docker" or "podman"
    path: str

    def command(self, *arguments: str) -> list[str]:
        return [self.path, *arguments]

    def gpu_arguments(self) -> list[str]:
        """The GPUs this process may use (its CUDA_VISIBLE_DEVICES, as a worker pinned to a device has),
        every GPU where it is not pinned, nothing where the machine has none."""
        if shutil.which("nvidia-smi") is None:
            return []
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
        if self.name == "podman":  # NVIDIA GPUs reach Podman through CDI (nvidia-ctk cdi generate)
            return [f"--device=nvidia.com/gpu={device}" for device in visible.split(",")] if visible \
                else ["--device=nvidia.com/gpu=all"]
        return ["--gpus", f'"device={visible}"' if visible else "all"]

    def user_arguments(self) -> list[str]:
        """This process's user inside the container, so that what it writes is this user's files;
        rootless Podman maps it only with keep-id."""
        keep_id = ["--userns=keep-id"] if self.name == "podman" and os.geteuid() != 0 else []
        return [*keep_id, "--user", f"{os.getuid()}:{os.getgid()}"]

    def limit_arguments(self) -> list[str]:
        """The 32 MiB stack holoscan asks for; not where this project's Podman settings are installed:
        on such kernels any --ulimit makes Podman set the open-file and process limits too, which the
        kernel refuses. The app runs with the default 8 MiB stack in every test."""
        return [] if self.name == "podman" and PODMAN_SETTINGS.exists() else ["--ulimit", "stack=33554432"]

    def inspect_image(self, tag: str) -> dict | None:
        """The engine's description of an image, or None where there is no such image."""
        inspected = subprocess.run(self.command("image", "inspect", tag), capture_output=True, text=True)
        return json.loads(inspected.stdout)[0] if inspected.returncode == 0 else None

    def image_exists(self, tag: str) -> bool:
        return self.inspect_image(tag) is not None

    def build_seconds(self, tag: str) -> float | None:
        """How long the making of a cached image took: its creation time less the start its label
        records (None for an image without the label)."""
        image = self.inspect_image(tag)
        if image is None:
            return None
        started = ((image.get("Config") or {}).get("Labels") or {}).get(BUILD_STARTED)
        if not started:
            return None
        created = re.sub(r"(\.\d{6})\d*", r"\1", image["Created"]).replace("Z", "+00:00")  # to microseconds
        return datetime.fromisoformat(created).timestamp() - float(started)

    def remove_older(self, repository: str, keep: str) -> None:
        """Remove this repository's other tags (what an earlier recipe built), so that a cache made again
        after a change does not leave the old one on the disk; one still used by a container stays."""
        listed = subprocess.run(self.command("images", "--format", "{{.Repository}}:{{.Tag}}", repository),
                                capture_output=True, text=True).stdout.split()
        for tag in listed:
            if tag.split("/")[-1] != keep.split("/")[-1]:
                subprocess.run(self.command("rmi", tag), capture_output=True)


def _answers(path: str) -> bool:
    try:
        return subprocess.run([path, "info"], capture_output=True, timeout=60).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@functools.cache
def find_engine() -> ContainerEngine | None:
    """The first engine that answers `info` (a `docker` client without a daemon does not), or None.
    podman-docker's `docker` is Podman under Docker's name: it is named by what it says it is."""
    for command in ("docker", "podman"):
        path = shutil.which(command)
        if path and _answers(path):
            version = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
            return ContainerEngine("podman" if "podman" in version.lower() else "docker", path)
    return None
