"""`make map`'s first step: holoscan-cli's build context is written and checked, and the packaged app
runs exactly as the MAP's entry point would, from the context's own files and model (the image built
from it: tests/test_map_container.py)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.map import check_context
from renalnode.run_record import COMPLETED, RECORD_NAME

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def map_build(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("map")
    result = subprocess.run([sys.executable, "-m", "deploy.map", "--out", str(out), "--no-image"], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    return out, result


def test_context_and_manifests_are_written_and_checked(map_build):
    out, result = map_build
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MAP build context checked" in result.stdout and "MAP image" not in result.stdout
    context = out / "context"
    app_json = json.loads((context / "map" / "app.json").read_text())
    pkg_json = json.loads((context / "map" / "pkg.json").read_text())
    assert app_json["sdk"] == "monai-deploy" and app_json["sdkVersion"] == "4.0.0"
    assert pkg_json["models"] == {"renalnode-demo": "/opt/holoscan/models/renalnode-demo"}
    requirements = (context / "pip" / "requirements.txt").read_text()
    assert "nnunetv2==" in requirements and "pytest" not in requirements


def test_check_context_reports_what_is_missing(map_build, tmp_path):
    out, _ = map_build
    broken = tmp_path / "context"
    shutil.copytree(out / "context", broken)
    shutil.rmtree(broken / "models" / "renalnode-demo" / "nnunet" / next(
        p.name for p in (broken / "models" / "renalnode-demo" / "nnunet").iterdir() if p.name.startswith("fold_")))
    (broken / "app" / "__main__.py").unlink()
    problems = check_context(broken, ROOT / "models" / "renalnode-demo")
    assert any("packaged model" in p and "folds" in p for p in problems), problems
    assert "app/__main__.py is missing from the context" in problems


def test_packaged_app_runs_like_the_map_entry_point(map_build, phantom_cases, tmp_path):
    """`python3 /opt/holoscan/app` with the MAP's variables, on the context's own copy of app and model."""
    out, _ = map_build
    context = out / "context"
    env = dict(os.environ, HOLOSCAN_INPUT_PATH=str(phantom_cases("HFS") / "dicom"),
               HOLOSCAN_OUTPUT_PATH=str(tmp_path / "output"), HOLOSCAN_MODEL_PATH=str(context / "models"),
               RENALNODE_MIRRORING="0")
    result = subprocess.run([sys.executable, str(context / "app")], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((tmp_path / "output" / RECORD_NAME).read_text())
    assert record["status"] == COMPLETED
    assert sorted(record["outputs"]) == ["PDF", "SEG", "SR"]
    assert record["model"]["path"] == str(context / "models" / "renalnode-demo")
