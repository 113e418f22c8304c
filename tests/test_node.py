"""The DICOM node with the real tools: dcmtk's storescu/echoscu as the modality, a real Orthanc
(with renalnode's auto-routing script) as the PACS, the node as its own `renalnode serve` process."""
from __future__ import annotations

import shutil
import signal
import subprocess
import time

import pydicom
import pytest
from conftest import copy_series, run_renalnode
from pydicom.data import get_testdata_file

from deploy.local_services import NODE_AET, ORTHANC_AET, LocalNode, echo, free_port, store_folder, wait_until
from deploy.node.journal import JobState, Journal
from deploy.node.journal.rows import JobRow

MODALITY_AET = "MODALITY"
QUIET_SECONDS = 2.0


@pytest.fixture
def node(tmp_path, local_orthanc):
    """(Orthanc, start the node). The node's port is fixed before Orthanc starts, so that Orthanc
    knows the node as a modality; a restarted node keeps the port, folder and journal."""
    node_port = free_port()
    pacs = local_orthanc(node_port)
    started = []

    def start(**kwargs) -> LocalNode:
        process = LocalNode(tmp_path / "node", pacs.dicom_port, node_port, (MODALITY_AET, ORTHANC_AET),
                            QUIET_SECONDS, **kwargs).start()
        started.append(process)
        return process

    yield pacs, start
    for process in started:
        process.stop(signal.SIGKILL)


def jobs(process: LocalNode) -> list[JobRow]:
    return Journal(process.journal_url).recent_jobs()


def results_in(pacs) -> dict[str, int]:
    found = pacs.series_by_modality()
    return {modality: len(found.get(modality, [])) for modality in ("SEG", "SR", "DOC")}


ONE_RESULT_SET = {"SEG": 1, "SR": 1, "DOC": 1}


def test_study_stored_to_the_node_comes_back_to_the_pacs(node, phantom_cases):
    pacs, start = node
    process = start()
    study = phantom_cases("FFS") / "dicom"
    assert store_folder(process.port, NODE_AET, study, MODALITY_AET).returncode == 0
    wait_until(lambda: results_in(pacs) == ONE_RESULT_SET, 600, 2, what="SEG, SR and PDF in Orthanc")
    from pyorthanc import Orthanc

    ct = pydicom.dcmread(next(study.iterdir()), stop_before_pixels=True)
    for results in pacs.series_by_modality().values():  # all three in the CT's own study
        assert Orthanc(pacs.url).get_studies_id(results[0]["ParentStudy"])["MainDicomTags"]["StudyInstanceUID"] \
            == ct.StudyInstanceUID
    wait_until(lambda: [j.state for j in jobs(process)] == [JobState.DISPATCHED], 60,
               what="the job to be dispatched")
    status = run_renalnode("status", "--config", str(process.config))
    assert "dispatched 1" in status.stdout
    log = process.log_text()
    assert str(ct.PatientName) not in log and str(ct.PatientID) not in log


def _halve_pixels_of_slice_10(n: int, ds: pydicom.Dataset) -> None:
    if n == 10:
        ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]  # valid encoding, half the pixels


def test_bad_input_is_quarantined_while_a_good_series_succeeds(node, phantom_cases, tmp_path):
    """An unknown calling AE is refused; a slice whose pixel data is cut short gets a failure status
    at once (the sender knows); a non-CT series, a series with a missing slice and the series of the
    refused slice are quarantined with their reasons, sent together with a good series, which comes
    back to the PACS."""
    pacs, start = node
    process = start()
    assert echo(process.port, NODE_AET, "STRANGER").returncode != 0
    mr = tmp_path / "mr"
    mr.mkdir()
    shutil.copy(get_testdata_file("MR_small.dcm"), mr / "mr.dcm")
    partial = copy_series(phantom_cases("HFS"), tmp_path / "partial", skip={20})
    corrupt = copy_series(phantom_cases("HFP"), tmp_path / "corrupt", edit=_halve_pixels_of_slice_10)
    senders = [subprocess.Popen(["/usr/bin/storescu", "-aet", MODALITY_AET, "-aec", NODE_AET, "+sd", "+r",
                                 "127.0.0.1", str(process.port), str(folder)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
               for folder in (mr, partial, corrupt, phantom_cases("FFS") / "dicom")]
    exits = [sender.wait(300) for sender in senders]
    assert exits[:2] + exits[3:] == [0, 0, 0] and exits[2] != 0      # storescu saw the corrupt slice refused
    wait_until(lambda: results_in(pacs) == ONE_RESULT_SET, 600, 2, what="the good series' results")
    listing = wait_until(lambda: (r := run_renalnode("quarantine", "list", "--config", str(process.config)))
                         and sum(line.startswith("job ") for line in r.stdout.splitlines()) == 3 and r, 120,
                         what="three quarantined series")
    assert "not a series renalnode segments: modality MR is not CT" in listing.stdout
    assert listing.stdout.count(" missing slice(s) between") == 2
    refused = Journal(process.journal_url).audit_events(event_prefix="instance.refused")
    size = len(pydicom.dcmread(next((phantom_cases("HFP") / "dicom").iterdir())).PixelData)
    assert [e.detail.split(": ", 1)[1] for e in refused] == [
        f"pixel data of {size // 2} bytes, {size} expected from its rows, columns, frames and bits"]
    states = sorted(j.state for j in jobs(process))
    assert states == ["dispatched", "quarantined", "quarantined", "quarantined"]


def test_full_loop_through_orthanc_auto_routing(node, phantom_cases):
    """storescu -> Orthanc -> auto-routing (deploy/orthanc/autorouting.py) -> node -> Orthanc: the SEG,
    SR and PDF arrive in the source study, and the results themselves are not routed back."""
    pacs, start = node
    process = start()
    assert pacs.store(phantom_cases("HFP") / "dicom", MODALITY_AET).returncode == 0
    wait_until(lambda: results_in(pacs) == ONE_RESULT_SET, 600, 2, what="results in Orthanc")
    studies = {s["ParentStudy"] for series in pacs.series_by_modality().values() for s in series}
    assert len(studies) == 1  # CT, SEG, SR and PDF in one study
    wait_until(lambda: [j.state for j in jobs(process)] == [JobState.DISPATCHED], 60,
               what="the job to be dispatched")
    time.sleep(pacs.config["StableAge"] + QUIET_SECONDS + 3)  # long enough for a loop to show
    assert len(jobs(process)) == 1, "the node's own results were routed back to it"


def test_killed_during_a_job_the_restarted_node_sends_one_result_set(node, phantom_cases):
    pacs, start = node
    process = start()
    assert store_folder(process.port, NODE_AET, phantom_cases("HFS") / "dicom", MODALITY_AET).returncode == 0
    wait_until(lambda: any(j.state == JobState.RUNNING for j in jobs(process)), 120, what="the job to start")
    process.stop(signal.SIGKILL)
    restarted = start()
    wait_until(lambda: [j.state for j in jobs(restarted)] == [JobState.DISPATCHED], 600, 2,
               what="the reclaimed job to be dispatched")
    assert results_in(pacs) == ONE_RESULT_SET
    for series in pacs.series_by_modality()["SEG"] + pacs.series_by_modality()["SR"]:
        assert len(series["Instances"]) == 1
    assert "queued again" in restarted.log_text()


def test_results_wait_for_a_stopped_pacs(node, phantom_cases):
    pacs, start = node
    process = start()
    pacs.stop()
    assert store_folder(process.port, NODE_AET, phantom_cases("HFS") / "dicom", MODALITY_AET).returncode == 0
    journal = Journal(process.journal_url)
    wait_until(lambda: any(row.attempts >= 1 for job in journal.recent_jobs()
                           for row in journal.outbox_for(job.id)), 600, 2, what="a failed dispatch attempt")
    pacs.start()
    wait_until(lambda: results_in(pacs) == ONE_RESULT_SET, 120, 2, what="results after the restart")
    wait_until(lambda: [j.state for j in jobs(process)] == [JobState.DISPATCHED], 60,
               what="the job to be dispatched")


def test_four_senders_at_once(node, phantom_set):
    pacs, start = node
    process = start()
    cases = sorted(p / "dicom" for p in phantom_set.iterdir() if (p / "dicom").is_dir())[:4]
    senders = [subprocess.Popen(["/usr/bin/storescu", "-aet", MODALITY_AET, "-aec", NODE_AET, "+sd", "+r",
                                 "127.0.0.1", str(process.port), str(case)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL) for case in cases]
    assert [sender.wait(300) for sender in senders] == [0, 0, 0, 0]
    wait_until(lambda: [j.state for j in jobs(process)] == [JobState.DISPATCHED] * 4, 900, 2,
               what="four dispatched jobs")
    assert results_in(pacs) == {"SEG": 4, "SR": 4, "DOC": 4}


def test_results_by_stow_rs(tmp_path, local_orthanc, phantom_cases):
    """A DICOMweb destination: the results go to Orthanc's DICOMweb plugin by STOW-RS."""
    pacs = local_orthanc()
    process = LocalNode(tmp_path / "node", pacs.dicom_port, free_port(), (MODALITY_AET,), QUIET_SECONDS,
                        stow_url=f"{pacs.url}/dicom-web").start()
    try:
        assert store_folder(process.port, NODE_AET, phantom_cases("HFS") / "dicom", MODALITY_AET).returncode == 0
        wait_until(lambda: results_in(pacs) == ONE_RESULT_SET, 600, 2, what="results stored by STOW-RS")
        echoed = run_renalnode("echo", "pacs", "--config", str(process.config))
        assert f"QIDO-RS {pacs.url}/dicom-web: success" in echoed.stdout
    finally:
        process.stop()


def test_late_instances_are_processed_not_lost(node, phantom_cases, tmp_path):
    """A series that arrives without one slice is quarantined (missing slice); the slice arriving
    later reopens it, and the whole series is processed and sent."""
    pacs, start = node
    process = start()
    slices = sorted((phantom_cases("HFS") / "dicom").iterdir())
    first, late = tmp_path / "first", tmp_path / "late"
    first.mkdir(), late.mkdir()
    for n, path in enumerate(slices):
        shutil.copy(path, (late if n == 20 else first) / path.name)
    assert store_folder(process.port, NODE_AET, first, MODALITY_AET).returncode == 0
    wait_until(lambda: [j.state for j in jobs(process)] == [JobState.QUARANTINED], 120, what="the partial series")
    assert "missing slice" in jobs(process)[0].reason
    assert store_folder(process.port, NODE_AET, late, MODALITY_AET).returncode == 0
    wait_until(lambda: [j.state for j in jobs(process)] == [JobState.DISPATCHED, JobState.QUARANTINED], 600, 2,
               what="the completed series to be processed")
    assert results_in(pacs) == ONE_RESULT_SET


def test_access_control_at_association(tmp_path, local_orthanc):
    """Hosts outside allowed_hosts, and everyone while the spool disk is short of space, are refused;
    with TLS configured only TLS associations get in."""
    pacs = local_orthanc()

    def started(name: str, **listener) -> LocalNode:
        return LocalNode(tmp_path / name, pacs.dicom_port, free_port(), (MODALITY_AET,), listener=listener).start()

    nodes = [started("open"), started("hosts", allowed_hosts=["10.9.9.9"]),
             started("full", min_free_disk_mb=10 ** 12)]
    key, certificate = tmp_path / "node.key", tmp_path / "node.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(certificate), "-days", "1", "-subj", "/CN=localhost"], check=True, capture_output=True)
    nodes.append(started("tls", tls={"certificate": str(certificate), "private_key": str(key)}))
    try:
        open_node, hosts, full, tls = nodes
        assert echo(open_node.port, NODE_AET, MODALITY_AET).returncode == 0
        assert echo(hosts.port, NODE_AET, MODALITY_AET).returncode != 0
        assert "not in allowed_hosts" in hosts.log_text()
        assert echo(full.port, NODE_AET, MODALITY_AET).returncode != 0
        assert "free on the spool disk" in full.log_text()
        assert echo(tls.port, NODE_AET, MODALITY_AET).returncode != 0
        assert echo(tls.port, NODE_AET, MODALITY_AET, tls=True).returncode == 0
    finally:
        for process in nodes:
            process.stop()


def test_c_store_warnings_count_as_delivered_failures_do_not():
    """The dispatcher reads a C-STORE status by pynetdicom's category: success and warnings (coerced
    or discarded elements, ...) mean the object is stored; a failure raises with its code."""
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import CTImageStorage

    from deploy.node.config import DicomDestination
    from deploy.node.dispatcher import DispatchError, _store_scu

    answers = iter([0x0000, 0xB000, 0xB007, 0x0001, 0xA700, 0xC000, 0x0122])
    pacs = AE(ae_title=ORTHANC_AET)
    pacs.add_supported_context(CTImageStorage)
    port = free_port()
    server = pacs.start_server(("127.0.0.1", port), block=False,
                               evt_handlers=[(evt.EVT_C_STORE, lambda event: next(answers))])
    destination = DicomDestination(name="pacs", kind="dicom", host="127.0.0.1", port=port, ae_title=ORTHANC_AET)
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    try:
        for _ in range(4):
            _store_scu(destination, NODE_AET, [ct])
        for code in ("0xA700", "0xC000", "0x0122"):
            with pytest.raises(DispatchError, match=f"C-STORE of CT Image Storage refused: {code}"):
                _store_scu(destination, NODE_AET, [ct])
    finally:
        server.shutdown()


def test_results_reach_a_destination_over_dicom_tls(tmp_path, local_orthanc):
    """kind = "dicom-tls": C-STORE to Orthanc with DICOM TLS on; the node checks the PACS's certificate
    against the configured CA (a certificate it does not trust ends the association)."""
    from deploy.node.config import DicomTlsDestination
    from deploy.node.dispatcher import DispatchError, _store_scu, echo

    key, certificate, stranger = tmp_path / "pacs.key", tmp_path / "pacs.crt", tmp_path / "other.crt"
    for out, name in ((certificate, "pacs"), (stranger, "other")):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                        str(key if name == "pacs" else tmp_path / "other.key"), "-out", str(out), "-days", "1",
                        "-subj", f"/CN={name}", "-addext", "subjectAltName=IP:127.0.0.1"],
                       check=True, capture_output=True)
    pacs = local_orthanc(extra={"DicomTlsEnabled": True, "DicomTlsCertificate": str(certificate),
                                "DicomTlsPrivateKey": str(key), "DicomTlsTrustedCertificates": str(certificate),
                                "DicomTlsRemoteCertificateRequired": False})
    destination = DicomTlsDestination(name="pacs", kind="dicom-tls", host="127.0.0.1", port=pacs.dicom_port,
                                      ae_title=ORTHANC_AET, ca=certificate)
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    assert echo(destination, NODE_AET).startswith("C-ECHO")
    _store_scu(destination, NODE_AET, [ct])
    assert [s["MainDicomTags"]["SeriesInstanceUID"] for s in pacs.series_by_modality()["CT"]] == [ct.SeriesInstanceUID]
    untrusted = destination.model_copy(update={"ca": stranger})
    with pytest.raises(DispatchError, match="association with ORTHANC"):
        _store_scu(untrusted, NODE_AET, [ct])
