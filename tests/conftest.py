"""Shared fixtures: phantom cases made once per test session, and the real validators."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

# nnU-Net reads these when it is first imported: no augmentation workers, one export worker, so
# every process a test starts ends with it.
os.environ.update(nnUNet_n_proc_DA="0", nnUNet_def_n_proc="1")

# Seed 3 gives both kidneys, cysts and solid masses in its first case (asserted where it matters).
PHANTOM_SEED = 3


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


def load_truth(folder: Path) -> dict:
    return json.loads((folder / "truth.json").read_text())


@pytest.fixture(scope="session")
def phantom_set(tmp_path_factory) -> Path:
    """Six small HFS phantoms in one folder: enough for nnU-Net's 5-fold split plus a test case."""
    out = tmp_path_factory.mktemp("phantom_set")
    run_renalnode("phantom", "--out", str(out), "--cases", "6", "--seed", "21", "--small")
    return out


def phantom_volume_and_label(folder: Path):
    """The case's CT series as a CTVolume (slices in volume order) and its label map on that grid."""
    import pydicom

    from operators.ct_volume import series_to_volume

    volume = series_to_volume([pydicom.dcmread(p) for p in (folder / "dicom").iterdir()])
    return volume, sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "label.nii.gz")))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition, timeout: float, interval: float = 0.5, what: str = "condition"):
    """Poll `condition` until it returns something true; fail with `what` after `timeout` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class OrthancServer:
    """A real Orthanc (Debian package) on loopback ports, with its own storage, started and stopped by a test."""

    def __init__(self, folder: Path, modalities: dict[str, list] | None = None):
        self.folder = folder
        self.http_port, self.dicom_port = free_port(), free_port()
        self.aet = "ORTHANC"
        self.config = {"Name": "renalnode-test", "StorageDirectory": str(folder / "db"),
                       "IndexDirectory": str(folder / "db"), "HttpPort": self.http_port,
                       "DicomPort": self.dicom_port, "DicomAet": self.aet, "RemoteAccessAllowed": False,
                       "AuthenticationEnabled": False, "HttpBindAddress": "127.0.0.1",
                       "DicomModalities": modalities or {}, "Plugins": [], "StableAge": 2}
        self.process = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> "OrthancServer":
        import urllib.request

        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "orthanc.json").write_text(json.dumps(self.config))
        self.log = open(self.folder / "orthanc.log", "ab")
        self.process = subprocess.Popen(["/usr/sbin/Orthanc", str(self.folder / "orthanc.json")],
                                        stdout=self.log, stderr=subprocess.STDOUT)

        def up():
            try:
                return urllib.request.urlopen(f"{self.url}/system", timeout=2).status == 200
            except OSError:
                return False

        wait_until(up, 60, what="Orthanc to start")
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        self.log.close()

    def series_by_modality(self) -> dict[str, list[dict]]:
        from pyorthanc import Orthanc

        client = Orthanc(self.url)
        found: dict[str, list[dict]] = {}
        for series_id in client.get_series():
            info = client.get_series_id(series_id)
            found.setdefault(info["MainDicomTags"].get("Modality", ""), []).append(info)
        return found


@pytest.fixture
def orthanc_server(tmp_path):
    servers = []

    def start(modalities=None) -> OrthancServer:
        server = OrthancServer(tmp_path / f"orthanc{len(servers)}", modalities).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
