"""`make map`: the MONAI Application Package (MAP) of the app and a model package, with holoscan-cli.

    python -m deploy.map [--model models/renalnode-demo] [--out build/map] [--tag renalnode:0.1.0] [--no-image]

1. Stages the application source (`app`, `operators`, `renalnode` and a `__main__.py`)
   and its runtime requirements (requirements.txt without the development tools and the SDK pins;
   holoscan-cli's Dockerfile installs the Holoscan and MONAI Deploy SDKs itself) in OUT/source.
2. Writes the build context holoscan-cli would build (OUT/context: the Dockerfile, map/app.json,
   map/pkg.json, app/, models/, pip/) with holoscan-cli's own packager code, and checks it: the
   manifests name the MAP's input, output and model folders and the resources of app.yaml, the staged
   app imports, and the copied model package loads.
3. Where a container engine runs (Docker, or Podman as on this project's machines), builds the image
   from that context on a Debian base made here (`deploy/container/`), cached layer by layer. Without
   one it says so and stops after step 2 (exit 0): the context is what `holoscan package` builds on a
   machine with Docker and NVIDIA's registry.

holoscan-cli normally downloads its list of base images; `--source` points it at
deploy/map_artifacts.json instead, so nothing is fetched while the context is written.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from deploy.container.engine import find_engine
from deploy.container.map_image import build_map_image, runtime_requirements
from renalnode.model_package import find_model_package, load_model_package

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("app", "operators", "renalnode")
ARTIFACTS = Path(__file__).resolve().parent / "map_artifacts.json"
# Installed by holoscan-cli's own Dockerfile: left out of the requirements it is given.
SDKS = re.compile(r"^(holoscan[\w-]*|monai-deploy-app-sdk)\s*(==|\[|$)", re.I)
MAIN = '''"""Entry point of the packaged application (python3 /opt/holoscan/app)."""
import sys

from app.app import main

sys.exit(main())
'''


def stage_source(out: Path) -> Path:
    source = out / "source"
    shutil.rmtree(source, ignore_errors=True)
    source.mkdir(parents=True)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (source / "__main__.py").write_text(MAIN)
    runtime = [line for line in runtime_requirements().splitlines() if not SDKS.match(line.strip())]
    (source / "requirements.txt").write_text("\n".join(runtime) + "\n")
    return source


def stage_model(model: Path, out: Path) -> Path:
    """A models folder holding just the package: holoscan-cli takes each subfolder of a folder it is
    given as a separate model, which would split the package's nnunet/ from its card."""
    models = out / "models"
    shutil.rmtree(models, ignore_errors=True)
    shutil.copytree(model, models / model.name)
    return models


def holoscan_arguments(source: Path, models: Path, tag: str, out: Path) -> list[str]:
    return [str(source), "--config", str(ROOT / "app.yaml"), "--models", str(models), "--platform", "x86_64",
            "--tag", tag, "--sdk", "monai-deploy", "--source", str(ARTIFACTS), "--output", str(out)]


def write_context(arguments: list[str], context: Path) -> None:
    """The build context as `holoscan package` writes it before calling Docker (its own code)."""
    from holoscan_cli.__main__ import parse_args
    from holoscan_cli.packager import packager
    from holoscan_cli.packager.arguments import PackagingArguments
    from holoscan_cli.packager.container_builder import PythonAppBuilder

    shutil.rmtree(context, ignore_errors=True)
    context.mkdir(parents=True)
    args = parse_args(["holoscan", "package", *arguments])
    packaging = PackagingArguments(args, str(context))
    packager._create_app_manifest(packaging.application_manifest, str(context))
    packager._create_package_manifest(packaging.package_manifest, str(context))
    builder = PythonAppBuilder(packaging.build_parameters, str(context))
    platform = packaging.platforms[0]
    builder._copy_supporting_files(platform)
    builder._write_dockerfile(platform)


def check_context(context: Path, model: Path) -> list[str]:
    """What is wrong with the build context (empty when it is complete)."""
    problems = []
    app_json = json.loads((context / "map" / "app.json").read_text())
    pkg_json = json.loads((context / "map" / "pkg.json").read_text())
    environment = app_json.get("environment", {})
    for variable in ("HOLOSCAN_INPUT_PATH", "HOLOSCAN_OUTPUT_PATH", "HOLOSCAN_MODEL_PATH"):
        if not environment.get(variable):
            problems.append(f"app.json sets no {variable}")
    if "python3" not in " ".join(json.loads(app_json["command"]) if isinstance(app_json.get("command"), str)
                                 else app_json.get("command", [])):
        problems.append(f"app.json command {app_json.get('command')!r} does not run python3")
    wanted = yaml.safe_load((ROOT / "app.yaml").read_text())["resources"]
    resources = pkg_json.get("resources", {})
    for key, value in wanted.items():
        if str(resources.get(key)) != str(value):
            problems.append(f"pkg.json resource {key} is {resources.get(key)!r}, app.yaml says {value!r}")
    if list(pkg_json.get("models", {})) != [model.name]:
        problems.append(f"pkg.json lists models {pkg_json.get('models')}, not {model.name}")
    packaged_model = context / "models" / model.name
    try:
        load_model_package(packaged_model)
    except (ValueError, OSError) as exc:
        problems.append(f"packaged model: {exc}")
    if not (context / "app" / "__main__.py").is_file():
        problems.append("app/__main__.py is missing from the context")
    # Imported from the context's own copy: modules that would come from this checkout instead are missing.
    probe = ("import sys, app.app; print('\\n'.join(m.__file__ for n, m in list(sys.modules.items()) "
             f"if n.split('.')[0] in {PACKAGES!r} and getattr(m, '__file__', None)))")
    imported = subprocess.run([sys.executable, "-c", probe], cwd=context / "app", capture_output=True, text=True)
    if imported.returncode:
        problems.append(f"the packaged app does not import: {imported.stderr.strip().splitlines()[-1:]}")
    outside = [f for f in imported.stdout.split() if not Path(f).resolve().is_relative_to(context.resolve())]
    if outside:
        problems.append(f"modules missing from the context (found elsewhere): {outside}")
    dockerfile = (context / "Dockerfile").read_text()
    for needed in ("COPY ./models", "COPY ./pip/requirements.txt", "monai-deploy-app-sdk"):
        if needed not in dockerfile:
            problems.append(f"Dockerfile lacks {needed!r}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.map", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "renalnode-demo")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "map")
    version = yaml.safe_load((ROOT / "app.yaml").read_text())["application"]["version"]
    parser.add_argument("--tag", default=f"renalnode:{version}")
    parser.add_argument("--no-image", action="store_true", help="write and check the build context only")
    args = parser.parse_args(argv)
    model = find_model_package(args.model)
    load_model_package(model)
    out = args.out.resolve()
    source = stage_source(out)
    arguments = holoscan_arguments(source, stage_model(model, out), args.tag, out)
    context = out / "context"
    write_context(arguments, context)
    problems = check_context(context, model)
    if problems:
        print("MAP build context is incomplete:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    print(f"MAP build context checked: {context} (Dockerfile, map/app.json, map/pkg.json, app/, models/{model.name})")
    if args.no_image:
        return 0
    engine = find_engine()
    if engine is None:
        print("No container engine (Docker or Podman) runs on this machine: the image was not built. On a machine "
              f"with Docker and NVIDIA's registry run\n  holoscan package {' '.join(arguments)}")
        return 0
    try:
        steps = build_map_image(engine, context, args.tag)
    except (RuntimeError, subprocess.SubprocessError) as exc:
        print(f"the MAP image was not built: {exc}", file=sys.stderr)
        return 1
    size = subprocess.run(engine.command("image", "inspect", "--format", "{{.Size}}", args.tag), capture_output=True,
                          text=True).stdout.strip() or "0"
    print(f"MAP image {args.tag} built with {engine.name} ({int(size) / 2**30:.1f} GiB); seconds per step, this "
          "time and cold: " + ", ".join(f"{step} {now:.0f} / {cold:.0f}" for step, (now, cold) in steps.items())
          + f"; a cold build takes {sum(cold for _, cold in steps.values()):.0f} s")
    print(f"run it: {engine.name} run --rm --network none --user $(id -u):$(id -g) "
          f"-v STUDY:/var/holoscan/input:ro -v OUT:/var/holoscan/output {args.tag}")
    return 0

if __name__ == "__main__":
    sys.exit(main())
