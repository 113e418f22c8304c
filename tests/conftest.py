"""Shared fixtures: phantom cases made once per test session, and the real validators."""
from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

# nnU-Net reads these when it is first imported: no augmentation workers, one export worker, so
# every process a test starts ends with it.
os.environ.update(nnUNet_n_proc_DA="0", nnUNet_def_n_proc="1")

# Seed 11 gives both kidneys, cysts and solid masses in its first case, nephrographic phase, 4 mm
# slices (asserted where it matters).
PHANTOM_SEED = 11


def run_renalnode(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the installed command line exactly as a user would."""
    result = subprocess.run([sys.executable, "-m", "renalnode", *args], capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"renalnode {' '.join(args)} exited {result.returncode}:\n{result.stderr[-4000:]}")
    return result


def read_dicom_series(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def dciodvfy_errors(path: Path) -> list[str]:
    """The error lines dicom3tools' validator reports for one file (warnings are not errors)."""
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]


def lesion_components(label: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(label value, mask) for each 26-connected lesion in a label map."""
    out = []
    for value in (2, 3):
        components, n = ndimage.label(label == value, structure=np.ones((3, 3, 3)))
        out += [(value, components == i) for i in range(1, n + 1)]
    return out


@pytest.fixture(scope="session")
def phantom_cases(tmp_path_factory):
    """make_phantom(position, transfer_syntax) -> case folder, each made once via the CLI."""
    made: dict[tuple[str, str], Path] = {}

    def make_phantom(position: str = "HFS", transfer_syntax: str = "explicit") -> Path:
        key = (position, transfer_syntax)
        if key not in made:
            out = tmp_path_factory.mktemp(f"phantom_{position}_{transfer_syntax}")
            run_renalnode("phantom", "--out", str(out), "--cases", "1", "--seed", str(PHANTOM_SEED), "--small",
                          "--position", position, "--transfer-syntax", transfer_syntax)
            (made[key],) = [p for p in out.iterdir() if not p.name.startswith(".")]
        return made[key]

    return make_phantom


def copy_series(case: Path, destination: Path, skip=(), edit=None) -> Path:
    """A phantom case's DICOM series copied slice by slice, leaving out the slice indices in `skip`
    (in file-name order) and passing each kept slice with its index to `edit(n, ds)` first."""
    import pydicom

    destination.mkdir(parents=True)
    for n, path in enumerate(sorted((case / "dicom").iterdir())):
        if n in skip:
            continue
        ds = pydicom.dcmread(path)
        if edit:
            edit(n, ds)
        ds.save_as(destination / path.name)
    return destination


def load_truth(folder: Path) -> dict:
    return json.loads((folder / "truth.json").read_text())


@pytest.fixture(scope="session")
def phantom_set(tmp_path_factory) -> Path:
    """Six small HFS phantoms in one folder: enough for nnU-Net's 5-fold split plus a test case."""
    out = tmp_path_factory.mktemp("phantom_set")
    run_renalnode("phantom", "--out", str(out), "--cases", "6", "--seed", "21", "--small")
    return out


def seg_class_map(seg, slices) -> tuple[np.ndarray, dict[int, int]]:
    """A highdicom SEG read back on the CT's slices (volume order) as segment numbers, and each
    segment's class (renalnode.labels) from its segmented property type."""
    from renalnode.labels import CATALOGUE

    class_of_property = {c.property_type.value: c.value for c in CATALOGUE}
    numbers = seg.get_pixels_by_source_instance([ds.SOPInstanceUID for ds in slices], combine_segments=True,
                                                 skip_overlap_checks=False)
    classes = {n: class_of_property[seg.get_segment_description(n).segmented_property_type.value]
               for n in seg.get_segment_numbers()}
    return numbers, classes


def phantom_volume_and_label(folder: Path):
    """The case's CT series as a CTVolume (slices in volume order) and its label map on that grid."""
    import pydicom

    from operators.ct_volume import series_to_volume

    volume = series_to_volume([pydicom.dcmread(p) for p in (folder / "dicom").iterdir()])
    return volume, sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "label.nii.gz")))



@pytest.fixture
def local_orthanc(tmp_path):
    """start(node_port=None, extra=None) -> a running LocalOrthanc (`extra`: more Orthanc settings);
    every one started is stopped after the test."""
    from deploy.local_services import LocalOrthanc

    servers = []

    def start(node_port: int | None = None, extra: dict | None = None) -> LocalOrthanc:
        server = LocalOrthanc(tmp_path / f"orthanc{len(servers)}", node_port, extra).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def postgres():
    """One PostgreSQL server for the test session (Debian's package, `make setup`); each test that
    needs a journal on it gets a new database from `journal_url`."""
    from deploy.local_services import LocalPostgres

    server = LocalPostgres().start()
    yield server
    server.remove()


@pytest.fixture
def rabbitmq():
    """A RabbitMQ broker of the test's own (deploy/local_services.py), removed after it."""
    from deploy.local_services import LocalRabbitMQ

    broker = LocalRabbitMQ().start()
    yield broker
    broker.remove()


@pytest.fixture(params=["sqlite", "postgresql"])
def journal_url(request, tmp_path):
    """new() -> the URL of a new, empty journal database, on SQLite (a file) or on the session's PostgreSQL."""
    made = []

    def new() -> str:
        made.append(None)
        if request.param == "sqlite":
            return f"sqlite:///{tmp_path / f'journal{len(made)}.sqlite'}"
        return request.getfixturevalue("postgres").create_database(f"journal_{os.getpid()}_{next(_databases)}")

    return new


_databases = itertools.count()


@pytest.fixture
def browser():
    """Debian's headless Chromium driven by Selenium (deploy/viewer/browser.py), closed after the test."""
    from deploy.viewer.browser import chromium

    driver = chromium()
    yield driver
    driver.quit()


class WebhookReceiver:
    """A webhook endpoint on loopback: keeps every JSON body, answers 500 to the first `failures` requests."""

    def __init__(self, failures: int = 0):
        self.bodies, self.failures, self.requests = [], failures, 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.requests += 1
                ok = receiver.requests > receiver.failures
                if ok:
                    receiver.bodies.append(body)
                self.send_response(204 if ok else 500)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook?token=SECRET-TOKEN"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def newest_jobs_if_dispatched(journal, series_count: int) -> dict | None:
    """The newest job of each series when there are `series_count` series and each newest job is
    dispatched (older ones were superseded by resent or late instances); otherwise None."""
    from deploy.node.journal import JobState

    newest = {}
    for job in sorted(journal.recent_jobs(10000), key=lambda j: j.id):
        newest[job.series_uid] = job
    done = len(newest) == series_count and all(j.state == JobState.DISPATCHED for j in newest.values())
    return newest if done else None
