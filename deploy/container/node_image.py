"""The node's image (`renalnode-node:VERSION`): the repository's packages and the bundled model on the
MAP's cached dependency image, for the distributed deployment (deploy/distributed/compose.yaml), where
nodes and workers run as containers.

    python -m deploy.container.node_image [--tag renalnode-node:0.1.0]
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import yaml

from deploy.container.base_image import ensure_base_image
from deploy.container.engine import ContainerEngine, find_engine
from deploy.container.map_image import HERE, ROOT, build, ensure_deps_image, fill_wheelhouse

# What `renalnode` imports at run time, the model package it runs by default, and its project file.
CONTENT = ("renalnode", "app", "operators", "training", "deploy", "models")
PROJECT_FILES = ("pyproject.toml", "README.md")


def shipped_files() -> list[str]:
    """The image's files: in a git checkout only the tracked ones (never a local model, workspace or
    results that happen to lie in the tree), otherwise every file but caches."""
    if (ROOT / ".git").exists():
        listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--", *CONTENT, *PROJECT_FILES],
                                capture_output=True, text=True, check=True).stdout
        return [path for path in listed.split("\0") if path and (ROOT / path).is_file()]
    found = [*PROJECT_FILES]
    for name in CONTENT:
        found += [str(p.relative_to(ROOT)) for p in (ROOT / name).rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts]
    return found


def build_node_image(engine: ContainerEngine, tag: str, log=print) -> float:
    """Seconds taken (the base and dependency images are built first where this machine lacks them)."""
    start = time.monotonic()
    deps = ensure_deps_image(engine, ensure_base_image(engine, log), log)
    with tempfile.TemporaryDirectory(prefix="renalnode-node-") as work:
        context = Path(work)
        source = context / "renalnode-source"
        for path in shipped_files():
            (source / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / path, source / path)
        setuptools = f"setuptools=={version('setuptools')}"  # the build backend .venv installs with
        fill_wheelhouse(context / "wheels", setuptools)
        build(engine, context, HERE / "node.Containerfile", tag, {"DEPS": deps, "SETUPTOOLS": setuptools})
    return time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    app_version = yaml.safe_load((ROOT / "app.yaml").read_text())["application"]["version"]
    parser = argparse.ArgumentParser(prog="python -m deploy.container.node_image", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tag", default=f"renalnode-node:{app_version}")
    args = parser.parse_args(argv)
    engine = find_engine()
    if engine is None:
        print("no container engine (docker or podman) runs on this machine", file=sys.stderr)
        return 1
    try:
        seconds = build_node_image(engine, args.tag)
    except (RuntimeError, subprocess.SubprocessError) as exc:
        print(f"the node image was not built: {exc}", file=sys.stderr)
        return 1
    print(f"node image {args.tag} built with {engine.name} in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
