"""The container engine that runs here: Docker where its daemon answers, otherwise Podman (Debian's
`podman`, which needs no daemon). Both take the same `build`, `run`, `image` and `rm` commands; the
few flags they spell differently are chosen here."""
from __future__ import annotations

import functools
import shutil
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class ContainerEngine:
    name: str  # "docker" or "podman"
    path: str

    def command(self, *arguments: str) -> list[str]:
        return [self.path, *arguments]

    def gpu_arguments(self) -> list[str]:
        """Every GPU of the machine for a container, or nothing where the machine has none."""
        if shutil.which("nvidia-smi") is None:
            return []
        # Podman reaches NVIDIA GPUs through CDI (nvidia-ctk cdi generate); Docker through its runtime hook.
        return ["--device", "nvidia.com/gpu=all"] if self.name == "podman" else ["--gpus", "all"]

    def limit_arguments(self) -> list[str]:
        """The 32 MiB stack holoscan asks for. Not with Podman: any --ulimit makes it set the open-file and
        process limits too, which a kernel like this project's machines refuse (containers.conf); the app
        runs with the default 8 MiB stack in every test."""
        return [] if self.name == "podman" else ["--ulimit", "stack=33554432"]

    def image_exists(self, tag: str) -> bool:
        return subprocess.run(self.command("image", "inspect", tag), capture_output=True).returncode == 0

    def remove_older(self, repository: str, keep: str) -> None:
        """Remove this repository's other tags (what an earlier recipe built), so that a cache made again
        after a change does not leave the old one on the disk; one still used by a container stays."""
        listed = subprocess.run(self.command("images", "--format", "{{.Repository}}:{{.Tag}}", repository),
                                capture_output=True, text=True).stdout.split()
        for tag in listed:
            if tag.split("/")[-1] != keep.split("/")[-1]:
                subprocess.run(self.command("rmi", tag), capture_output=True)


@functools.cache
def find_engine() -> ContainerEngine | None:
    """The first engine that answers `info` (a `docker` client without a daemon does not), or None.
    podman-docker's `docker` is Podman under Docker's name: it is named by what it says it is."""
    for command in ("docker", "podman"):
        path = shutil.which(command)
        if path and subprocess.run([path, "info"], capture_output=True, timeout=60).returncode == 0:
            version = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
            return ContainerEngine("podman" if "podman" in version.lower() else "docker", path)
    return None
