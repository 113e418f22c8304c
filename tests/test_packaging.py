"""A wheel built from the source holds every file the packages read next to their code."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("renalnode", "app", "operators", "training", "deploy")
NOT_SHIPPED = ("deploy/screenshots/",)  # the README's pictures


def test_the_wheel_holds_every_file_of_the_packages(tmp_path):
    tracked = subprocess.run(["git", "ls-files", *PACKAGES], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    # Built from a copy: setuptools builds in the source folder's build/, which holds the viewer here.
    source = tmp_path / "source"
    for name in [*tracked, "pyproject.toml", "README.md"]:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "--wheel-dir", str(tmp_path / "wheel"), str(source)], check=True, timeout=300)
    wheel = next((tmp_path / "wheel").glob("renalnode-*.whl"))
    shipped = set(zipfile.ZipFile(wheel).namelist())
    expected = {name for name in tracked if not name.startswith(NOT_SHIPPED)}
    assert {"renalnode/series_rules.yaml", "deploy/node/templates/base.html",
            "deploy/node/journal/migrations/versions/0001_baseline.py"} <= expected
    assert sorted(expected - shipped) == []
