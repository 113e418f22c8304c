"""The base image of the MAP on a machine that cannot pull one: Debian bookworm made by debootstrap from
Debian's own packages, then `import`ed into the container engine. Its tag carries a hash of what it is
made of, so it is made once per machine and again only when that list changes.

    python -m deploy.container.base_image      # prints the tag, building it if it is missing
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from deploy.container.engine import BUILD_STARTED, ContainerEngine, find_engine

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# The app's Python (3.11, as .venv), its virtual environment, TLS roots, and jq for holoscan-cli's entry script.
PACKAGES = ("python3", "python3-venv", "ca-certificates", "jq")
REPOSITORY = "renalnode-base"


def base_tag() -> str:
    inputs = json.dumps({"suite": SUITE, "mirror": MIRROR, "variant": "minbase", "packages": PACKAGES})
    return f"{REPOSITORY}:{SUITE}-{hashlib.sha256(inputs.encode()).hexdigest()[:12]}"


def ensure_base_image(engine: ContainerEngine, log=print) -> str:
    """The base image's tag, made now if this machine does not have it (about a minute, as root)."""
    tag = base_tag()
    if engine.image_exists(tag):
        return tag
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    if not Path(debootstrap).exists():
        raise RuntimeError("debootstrap is not installed (make setup installs it)")
    if os.geteuid() != 0:
        raise RuntimeError(f"making the base image {tag} needs root (debootstrap): run `make map` as root, as the "
                           "account that runs the engine's images")
    start = time.time()
    log(f"making the base image {tag}: debootstrap {SUITE} with {', '.join(PACKAGES)}")
    with tempfile.TemporaryDirectory(prefix="renalnode-base-") as work:
        rootfs = Path(work) / "rootfs"
        subprocess.run([debootstrap, "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(rootfs),
                        MIRROR], check=True, stdout=subprocess.DEVNULL)
        shutil.rmtree(rootfs / "var" / "cache" / "apt" / "archives", ignore_errors=True)
        shutil.rmtree(rootfs / "var" / "lib" / "apt" / "lists", ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(engine.command("import", "--change", "CMD /bin/bash", "--change",
                                                 f"LABEL {BUILD_STARTED}={start}", "-", tag), stdin=tar.stdout,
                                  capture_output=True, text=True)
        assert tar.stdout is not None
        tar.stdout.close()  # an import that stopped early must not leave tar blocked on the pipe
        tar.wait(timeout=600)
        if imported.returncode or tar.returncode:
            raise RuntimeError(f"importing {tag} failed: {imported.stderr.strip()[-500:]}")
    engine.remove_older(REPOSITORY, keep=tag)
    log(f"base image {tag} made in {time.time() - start:.0f} s")
    return tag


def main() -> int:
    engine = find_engine()
    if engine is None:
        print("no container engine answers here (docker or podman)", file=sys.stderr)
        return 1
    print(ensure_base_image(engine, log=lambda line: print(line, file=sys.stderr)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
