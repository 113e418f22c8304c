"""The DICOM node with the real tools: dcmtk's storescu/echoscu as the modality, a real Orthanc as
the PACS receiving the results, the node as its own process (`renalnode serve`)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from conftest import free_port, run_renalnode, wait_until
from deploy.node.journal import DISPATCHED, Journal

ROOT = Path(__file__).resolve().parents[1]
MODALITY_AET = "MODALITY"


class NodeProcess:
    def __init__(self, folder: Path, pacs_port: int, quiet_seconds: float = 2.0):
        self.folder = folder
        self.port = free_port()
        self.config = folder / "node.toml"
        folder.mkdir(parents=True, exist_ok=True)
        self.config.write_text(f"""
[listener]
ae_title = "RENALNODE"
host = "127.0.0.1"
port = {self.port}
allowed_calling_aets = ["{MODALITY_AET}", "ORTHANC"]
min_free_disk_mb = 64

[node]
spool = "spool"
quiet_seconds = {quiet_seconds}
max_wait_seconds = 300
max_attempts = 2
mirroring = false

[destinations.pacs]
kind = "dicom"
host = "127.0.0.1"
port = {pacs_port}
ae_title = "ORTHANC"

[dispatch]
retry_base_seconds = 1
retry_max_seconds = 4
""")
        self.process = None

    def start(self) -> "NodeProcess":
        env = dict(os.environ, nnUNet_n_proc_DA="0", nnUNet_def_n_proc="1")
        self.log = open(self.folder / "node.log", "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "renalnode", "serve", "--config", str(self.config)],
                                        cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(lambda: echo(self.port, MODALITY_AET).returncode == 0 or self.process.poll() is not None, 120,
                   what="the node to listen")
        assert self.process.poll() is None, self.log_text()
        return self

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def log_text(self) -> str:
        return (self.folder / "node.log").read_text(errors="replace")[-4000:]

    def journal(self) -> Journal:
        return Journal(f"sqlite:///{self.folder / 'spool' / 'journal.sqlite'}")


def echo(port: int, calling: str) -> subprocess.CompletedProcess:
    return subprocess.run(["/usr/bin/echoscu", "-aet", calling, "-aec", "RENALNODE", "127.0.0.1", str(port)],
                          capture_output=True, text=True, timeout=30)


def store(port: int, files: list[Path] | Path, calling: str = MODALITY_AET) -> subprocess.CompletedProcess:
    paths = [str(files)] if isinstance(files, Path) else [str(f) for f in files]
    return subprocess.run(["/usr/bin/storescu", "-aet", calling, "-aec", "RENALNODE", "+sd", "+r",
                           "127.0.0.1", str(port), *paths], capture_output=True, text=True, timeout=300)


@pytest.fixture
def node(tmp_path, orthanc_server):
    pacs = orthanc_server()
    started = []

    def start(**kwargs) -> NodeProcess:
        process = NodeProcess(tmp_path / "node", pacs.dicom_port, **kwargs).start()
        started.append(process)
        return process

    yield pacs, start
    for process in started:
        process.stop(signal.SIGKILL)


def results_in(pacs) -> dict[str, int]:
    found = pacs.series_by_modality()
    return {modality: len(found.get(modality, [])) for modality in ("SEG", "SR", "DOC")}


def test_study_stored_to_the_node_comes_back_to_the_pacs(node, phantom_cases):
    pacs, start = node
    process = start()
    sent = store(process.port, phantom_cases("FFS") / "dicom")
    assert sent.returncode == 0, sent.stderr
    wait_until(lambda: results_in(pacs) == {"SEG": 1, "SR": 1, "DOC": 1}, 600, 2,
               what="SEG, SR and PDF in Orthanc")
    from pyorthanc import Orthanc

    ct = pydicom.dcmread(next((phantom_cases("FFS") / "dicom").iterdir()), stop_before_pixels=True)
    for results in pacs.series_by_modality().values():  # all three in the CT's own study
        study = Orthanc(pacs.url).get_studies_id(results[0]["ParentStudy"])
        assert study["MainDicomTags"]["StudyInstanceUID"] == ct.StudyInstanceUID
    jobs = process.journal().recent_jobs()
    assert [job["state"] for job in jobs] == [DISPATCHED]
    status = run_renalnode("status", "--config", str(process.config))
    assert "dispatched 1" in status.stdout
    assert str(ct.PatientName) not in process.log_text() and str(ct.PatientID) not in process.log_text()


def test_unknown_calling_ae_is_rejected_and_non_ct_is_quarantined(node, tmp_path):
    pacs, start = node
    process = start()
    refused = echo(process.port, "STRANGER")
    assert refused.returncode != 0
    mr = tmp_path / "mr"
    mr.mkdir()
    shutil.copy(get_testdata_file("MR_small.dcm"), mr / "mr.dcm")
    assert store(process.port, mr).returncode == 0
    listing = wait_until(lambda: (r := run_renalnode("quarantine", "list", "--config", str(process.config)))
                         and "modality MR" in r.stdout and r, 60, what="the MR series in quarantine")
    assert "no routing rule matches" in listing.stdout
    assert results_in(pacs) == {"SEG": 0, "SR": 0, "DOC": 0}
