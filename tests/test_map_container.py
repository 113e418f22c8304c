"""The MAP as a real container, as IT runs it: `make map` builds the image with this machine's engine
(Podman here, `make setup` installs it), the image holds manifests that holoscan-cli's own loader reads
and runs as a non-root user, its SEG and SR equal the in-process app's on the same study, and a node
with `runner = "map"` runs it for a study sent by dcmtk's storescu and sends the results to Orthanc."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import highdicom as hd
import pydicom
import pytest
from conftest import seg_class_map

from app.app import AppSettings, run_study
from deploy.container.engine import ContainerEngine, find_engine
from deploy.local_services import NODE_AET, ORTHANC_AET, LocalNode, free_port, store_folder, wait_until
from deploy.node.journal import JobState, Journal
from operators.ct_volume import series_to_volume
from operators.sr_writer import VOLUME
from renalnode.ensemble import InferenceSettings
from renalnode.run_record import COMPLETED, RECORD_NAME, RunRecord

ROOT = Path(__file__).resolve().parents[1]
TAG = "localhost/renalnode-test:map"
MODALITY_AET = "MODALITY"
TILE_STEP_SIZE = 0.5
FAST = AppSettings(inference=InferenceSettings(use_mirroring=False, tile_step_size=TILE_STEP_SIZE))


@pytest.fixture(scope="module")
def engine() -> ContainerEngine:
    found = find_engine()
    assert found is not None, "no container engine answers: `make setup` installs podman"
    return found


@pytest.fixture(scope="module")
def map_build(engine, tmp_path_factory, request) -> tuple[Path, str]:
    """`python -m deploy.map` with a test tag: (its output folder, the line that reports the image). The
    base and dependency images stay cached for the next run; the MAP image is removed."""
    out = tmp_path_factory.mktemp("map")
    start = time.monotonic()
    try:
        result = subprocess.run([sys.executable, "-m", "deploy.map", "--out", str(out), "--tag", TAG], cwd=ROOT,
                                capture_output=True, text=True, timeout=3600)
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
        built = next(line for line in result.stdout.splitlines() if line.startswith("MAP image"))
        # Shown in the test run's output, past pytest's capture (as capsys.disabled() does).
        with request.config.pluginmanager.getplugin("capturemanager").global_and_fixture_disabled():
            request.config.pluginmanager.get_plugin("terminalreporter").write_line(
                f"\n{built}; {time.monotonic() - start:.0f} s in all this time")
        yield out, built
    finally:
        subprocess.run(engine.command("rmi", "-f", TAG), capture_output=True)


@pytest.fixture(scope="module")
def map_image(map_build) -> Path:
    return map_build[0]


def test_the_build_says_what_each_step_costs_cold(map_build):
    """Cached steps take about 0 s, and each cached image keeps how long its making took."""
    cold = {step: float(seconds) for step, seconds in re.findall(r"(\w+) \d+ / (\d+)", map_build[1])}
    assert set(cold) == {"base", "dependencies", "application"}
    assert cold["base"] > 0 and cold["dependencies"] > 0


def readable_copy(folder: Path, destination: Path) -> Path:
    """The study where any user can read it: pytest's own folders are private to their owner."""
    shutil.copytree(folder, destination)
    for path in [destination, *destination.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    destination.parent.chmod(0o755)
    return destination


def test_image_follows_the_map_contract(engine, map_image, monkeypatch, tmp_path):
    inspected = json.loads(subprocess.run(engine.command("image", "inspect", TAG), capture_output=True, text=True,
                                          check=True).stdout)[0]
    config = inspected["Config"]
    assert config["User"] == "holoscan"
    assert config["Entrypoint"] == ["/var/holoscan/tools"]
    environment = dict(item.split("=", 1) for item in config["Env"])
    assert environment["HOLOSCAN_INPUT_PATH"] == "/var/holoscan/input"
    assert environment["HOLOSCAN_OUTPUT_PATH"] == "/var/holoscan/output"
    assert environment["HOLOSCAN_MODEL_PATH"] == "/opt/holoscan/models"
    assert config["Labels"]["org.monai.deploy.app-sdk"] == "4.0.0"
    assert config["Labels"]["base"].startswith("renalnode-base:bookworm-")
    # The default user is not root.
    uid = subprocess.run(engine.command("run", "--rm", "--network", "none", "--entrypoint", "id", TAG, "-u"),
                         capture_output=True, text=True, check=True).stdout.strip()
    assert uid != "0"
    # A failing app fails the container (holoscan-cli's entry script alone would exit 0).
    failed = subprocess.run(engine.command("run", "--rm", "--network", "none", "-e", "HOLOSCAN_MODEL_PATH=/nowhere",
                                           TAG), capture_output=True, text=True, timeout=300)
    assert failed.returncode == 2 and "no model package" in failed.stdout + failed.stderr

    # holoscan-cli's own reader of a MAP's manifests (what `holoscan run` does first) calls `docker`.
    from holoscan_cli.common.utils import get_requested_gpus
    from holoscan_cli.runner.runner import _fetch_map_manifest
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "docker").symlink_to(engine.path)
    monkeypatch.setenv("PATH", f"{shim}{os.pathsep}{os.environ['PATH']}")
    app_info, pkg_info = _fetch_map_manifest(TAG)
    context = map_image / "context" / "map"
    assert app_info == json.loads((context / "app.json").read_text())
    assert pkg_info == json.loads((context / "pkg.json").read_text())
    assert json.loads(app_info["command"]) == ["python3", "/opt/holoscan/app"]
    assert get_requested_gpus(pkg_info) == 1
    assert pkg_info["models"] == {"renalnode-demo": "/opt/holoscan/models/renalnode-demo"}


def test_container_writes_what_the_in_process_app_writes(engine, map_image, phantom_cases, tmp_path):
    study = readable_copy(phantom_cases("HFS") / "dicom", tmp_path / "shared" / "study")
    output = tmp_path / "shared" / "container"
    output.mkdir()
    output.chmod(0o777)  # written by the image's own user, as `docker run IMAGE` does
    ran = subprocess.run(engine.command(
        "run", "--rm", "--network", "none", "-v", f"{study}:/var/holoscan/input:ro",
        "-v", f"{output}:/var/holoscan/output", "-e", "RENALNODE_MIRRORING=0",
        "-e", f"RENALNODE_TILE_STEP_SIZE={TILE_STEP_SIZE}", TAG), capture_output=True, text=True, timeout=900)
    assert ran.returncode == 0, (ran.stdout + ran.stderr)[-3000:]
    record = RunRecord.read(output)
    assert record.status == COMPLETED, record.reason
    assert record.model["path"] == "/opt/holoscan/models/renalnode-demo"
    in_process = run_study(study, tmp_path / "in-process", ROOT / "models" / "renalnode-demo", FAST)
    assert in_process.status == COMPLETED
    assert sorted(record.outputs) == sorted(in_process.outputs) == ["PDF", "SEG", "SR"]
    assert (output / RECORD_NAME).stat().st_uid != 0  # the container did not run as root

    volume = series_to_volume([pydicom.dcmread(p) for p in study.iterdir()])
    segs = [hd.seg.segread(folder / "seg.dcm") for folder in (output, tmp_path / "in-process")]
    maps = [seg_class_map(seg, volume.slices) for seg in segs]
    assert (maps[0][0] == maps[1][0]).all() and maps[0][1] == maps[1][1]
    descriptions = [[(d.segment_label, d.segmented_property_category, d.segmented_property_type)
                     for d in seg.SegmentSequence] for seg in segs]
    assert descriptions[0] == descriptions[1] and descriptions[0]
    srs = [hd.sr.srread(folder / "sr.dcm") for folder in (output, tmp_path / "in-process")]
    groups = [[(g.tracking_identifier, g.finding_type, g.get_measurements(name=VOLUME)[0].value)
               for g in sr.content.get_volumetric_roi_measurement_groups()] for sr in srs]
    assert groups[0] == groups[1] and groups[0]


def test_node_runs_the_map_for_a_stored_study(engine, map_image, local_orthanc, phantom_cases, tmp_path):
    node_port = free_port()
    pacs = local_orthanc(node_port)
    node = LocalNode(tmp_path / "node", pacs.dicom_port, node_port, (MODALITY_AET, ORTHANC_AET), sections={
        "node": {"spool": "spool", "quiet_seconds": 2, "max_wait_seconds": 300, "max_attempts": 1,
                 "mirroring": False, "runner": "map", "map_image": TAG, "map_timeout_seconds": 600}}).start()
    try:
        assert store_folder(node_port, NODE_AET, phantom_cases("HFS") / "dicom", MODALITY_AET).returncode == 0
        journal = Journal(node.journal_url)
        wait_until(lambda: [j.state for j in journal.recent_jobs()] == [JobState.DISPATCHED], 900, 2,
                   what="the MAP's results sent")
        found = pacs.series_by_modality()
        assert {modality: len(found.get(modality, [])) for modality in ("SEG", "SR", "DOC")} == \
            {"SEG": 1, "SR": 1, "DOC": 1}
        # The container is gone once the job ends.
        names = subprocess.run(engine.command("ps", "-a", "--format", "{{.Names}}"), capture_output=True,
                               text=True, check=True).stdout.split()
        assert not [name for name in names if name.startswith("renalnode-job-")]
    finally:
        node.stop(signal.SIGTERM)
    assert "job 1: results ready" in node.log_text()
