"""The MAP image, built by the container engine in two cached steps on the Debian base:

1. the dependency image (`renalnode-deps:HASH`): the pinned runtime requirements in /opt/holoscan/venv,
   installed from a wheelhouse that pip fills on this machine (the same pins and sources as .venv);
   its tag hashes the base and the requirements, so it is built again only when either changes;
2. the MAP (`renalnode:VERSION`) from holoscan-cli's build context: its manifests, entry script,
   labels and HOLOSCAN_* variables, the app and the model, run as the non-root user `holoscan`.

holoscan-cli's own `holoscan package` builds from NVIDIA's Ubuntu 24.04 CUDA image with Docker's buildx
(a builder image from Docker Hub, pinned Python 3.12 from Ubuntu, NVIDIA's apt key from the web); where
none of that can be fetched, this builds the same contract from Debian's packages instead.
"""
from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from deploy.container.base_image import ensure_base_image
from deploy.container.engine import BUILD_STARTED, ContainerEngine

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DEPS_REPOSITORY = "renalnode-deps"
IMAGE_PYTHON = (3, 11)  # Debian bookworm's python3: the wheelhouse is filled for it
# Checks, tests and deployment tools of this repository, not the app's: left out of the image.
DEVELOPMENT_ONLY = re.compile(r"^(pytest[\w-]*|mypy|ruff|selenium|podman-compose)\s*==", re.I)
LABELS_AND_ENVIRONMENT = "# HOLOSCAN_CLI_LABELS_AND_ENVIRONMENT"
LAUNCH_FAILED = '\n        else\n            fatal "Failed to launch application'


def runtime_requirements() -> str:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return "\n".join(line for line in lines if line.strip() and not line.startswith("#")
                     and not DEVELOPMENT_ONLY.match(line.strip())) + "\n"


def deps_tag(base: str, requirements: str) -> str:
    recipe = (HERE / "deps.Containerfile").read_text()
    digest = hashlib.sha256("\n".join((base, recipe, requirements)).encode()).hexdigest()[:12]
    return f"{DEPS_REPOSITORY}:{digest}"


def build(engine: ContainerEngine, context: Path, containerfile: Path, tag: str, build_args: dict[str, str],
          labels: dict[str, str] | None = None) -> None:
    arguments = [f"--build-arg={key}={value}" for key, value in build_args.items()]
    arguments += [f"--label={key}={value}" for key, value in (labels or {}).items()]
    # No network while building: everything comes from the context (the base was made from Debian's mirror).
    result = subprocess.run(engine.command("build", "--network", "none", "-f", str(containerfile), "-t", tag,
                                           *arguments, str(context)), capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"building {tag} failed:\n{(result.stdout + result.stderr)[-3000:]}")


def fill_wheelhouse(folder: Path, *wanted: str) -> None:
    """Wheels of `wanted` (pip's requirement arguments, without their dependencies) into `folder`, from
    the sources this machine's pip is configured with."""
    filled = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", *wanted, "-w", str(folder)],
                            capture_output=True, text=True)
    if filled.returncode:
        raise RuntimeError(f"pip could not fill the wheelhouse with {' '.join(wanted)}:\n{filled.stderr[-3000:]}")


def ensure_deps_image(engine: ContainerEngine, base: str, log=print) -> str:
    requirements = runtime_requirements()
    tag = deps_tag(base, requirements)
    if engine.image_exists(tag):
        return tag
    if sys.version_info[:2] != IMAGE_PYTHON:
        raise RuntimeError(f"the wheelhouse is filled by this Python ({sys.version.split()[0]}), the image runs "
                           f"Python {'.'.join(map(str, IMAGE_PYTHON))}: run `make map` from .venv on Python 3.11")
    start = time.time()
    with tempfile.TemporaryDirectory(prefix="renalnode-deps-") as work:
        context = Path(work)
        (context / "requirements.txt").write_text(requirements)
        log(f"making the dependency image {tag}: filling the wheelhouse")
        fill_wheelhouse(context / "wheels", "-r", str(context / "requirements.txt"))
        log(f"installing {len(list((context / 'wheels').iterdir()))} wheels into {tag}")
        build(engine, context, HERE / "deps.Containerfile", tag, {"BASE": base}, {BUILD_STARTED: str(start)})
    engine.remove_older(DEPS_REPOSITORY, keep=tag)
    log(f"dependency image {tag} made in {time.time() - start:.0f} s")
    return tag


def map_containerfile(context: Path, base: str) -> str:
    """map.Containerfile with holoscan-cli's labels and HOLOSCAN_* variables from the Dockerfile it wrote."""
    holoscan = (context / "Dockerfile").read_text().splitlines()
    lines = [line for line in holoscan if line.startswith("ENV HOLOSCAN_")
             or (line.startswith("LABEL ") and not line.startswith("LABEL base="))]
    lines.insert(0, f'LABEL base="{base}"')
    return (HERE / "map.Containerfile").read_text().replace(LABELS_AND_ENVIRONMENT, "\n".join(lines))


def entry_script(context: Path) -> None:
    """holoscan-cli's entry script with the app's exit status as its own: as written it exits 0 whatever
    the app returned, and IT's scripts and the node read the status."""
    tools = context / "tools"
    text = tools.read_text()
    if LAUNCH_FAILED not in text:
        raise RuntimeError(f"holoscan-cli's entry script changed: {LAUNCH_FAILED.strip()!r} not found in {tools}")
    tools.write_text(text.replace(LAUNCH_FAILED, "\n            return ${exit_code}" + LAUNCH_FAILED, 1))


def build_map_image(engine: ContainerEngine, context: Path, tag: str, log=print) -> dict[str, tuple[float, float]]:
    """Build the MAP from holoscan-cli's build context. Per step, (seconds now, seconds of its cold
    build): a cached step takes about 0 s now, and its cold time is what its image records."""
    steps = {}
    start = time.monotonic()
    base = ensure_base_image(engine, log)
    steps["base"] = (time.monotonic() - start, engine.build_seconds(base) or 0.0)
    start = time.monotonic()
    deps = ensure_deps_image(engine, base, log)
    steps["dependencies"] = (time.monotonic() - start, engine.build_seconds(deps) or 0.0)
    start = time.monotonic()
    entry_script(context)
    containerfile = context / "Containerfile"
    containerfile.write_text(map_containerfile(context, base))
    build(engine, context, containerfile, tag, {"DEPS": deps})
    seconds = time.monotonic() - start
    steps["application"] = (seconds, seconds)
    return steps
