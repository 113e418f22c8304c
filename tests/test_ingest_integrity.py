"""Nothing is acknowledged that cannot be processed: a running node (`renalnode serve`) answers a
failure status to instances whose bytes are cut short, whose pixel data declares a length it does
not have, whose encoding is not the transfer syntax of their presentation context, and to UIDs
that contradict what it received before; it keeps nothing of them and audits each refusal. The
bytes are sent as written (pynetdicom's chunked sending from a file, as a broken device would)."""
from __future__ import annotations

import struct
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom import AE, _config
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from deploy.local_services import NODE_AET, LocalNode, free_port
from deploy.node.journal import Journal

SENDER = "MODALITY"
SUCCESS = 0x0000


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    process = LocalNode(tmp_path_factory.mktemp("ingest"), free_port(), free_port(), (SENDER,)).start()
    yield process
    process.stop()


def _instance(study: str | None = None, series: str | None = None, sop: str | None = None) -> pydicom.Dataset:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study or generate_uid(), series or generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop or generate_uid()
    return ds


def _file(ds: pydicom.Dataset, folder: Path, name: str, implicit_body: bool = False) -> Path:
    """The instance as a file; `implicit_body` encodes the data set implicit VR under a file meta
    (and so a presentation context) that says explicit VR."""
    path = folder / name
    if not implicit_body:
        ds.save_as(path, enforce_file_format=True)
        return path
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buffer = DicomBytesIO()
    buffer.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(buffer, ds.file_meta)
    buffer.is_little_endian, buffer.is_implicit_VR = True, True
    write_dataset(buffer, ds)
    path.write_bytes(buffer.getvalue())
    return path


def _pixel_data_offset(raw: bytes) -> int:
    """Where the (7FE0,0010) element of an explicit VR little endian file starts."""
    return raw.rindex(b"\xe0\x7f\x10\x00OW")


def _send(node: LocalNode, *paths: Path) -> list[int]:
    ae = AE(ae_title=SENDER)
    for syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):   # one context each: both accepted
        ae.add_requested_context(CTImageStorage, syntax)
    chunked, _config.STORE_SEND_CHUNKED_DATASET = _config.STORE_SEND_CHUNKED_DATASET, True
    try:
        assoc = ae.associate("127.0.0.1", node.port, ae_title=NODE_AET)
        assert assoc.is_established
        statuses = [int(assoc.send_c_store(path).Status) for path in paths]
        assoc.release()
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = chunked
    return statuses


def _stored(node: LocalNode) -> set[str]:
    return {p.stem for p in (node.folder / "spool").rglob("*.dcm")}


def test_unusable_bytes_get_a_failure_status_and_leave_nothing(node, tmp_path):
    good = _file(_instance(), tmp_path, "good.dcm")
    raw = good.read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(raw[:-5000])                                  # pixel data cut short
    offset = _pixel_data_offset(raw) + 8                          # tag, VR, 2 reserved bytes: then the length
    huge = tmp_path / "huge.dcm"
    huge.write_bytes(raw[:offset] + struct.pack("<I", 0x7FFFFFFE) + raw[offset + 4:])   # declares 2 GB
    short_rows = _instance()
    short_rows.Rows = 256                                         # 128 x 128 pixels, described as 256 x 128
    wrong_size = _file(short_rows, tmp_path, "rows.dcm")
    mismatched = _file(_instance(), tmp_path, "implicit.dcm", implicit_body=True)
    bad = {path.name: pydicom.dcmread(good if path in (cut, huge) else path, stop_before_pixels=True).SOPInstanceUID
           for path in (wrong_size, mismatched)}

    statuses = _send(node, cut, huge, wrong_size, mismatched, good)
    assert all(status >= 0xA000 for status in statuses[:4]), [hex(s) for s in statuses]
    assert statuses[4] == SUCCESS
    stored = _stored(node)
    assert pydicom.dcmread(good).SOPInstanceUID in stored
    assert not stored & set(bad.values())
    refusals = [e.detail for e in Journal(node.journal_url).audit_events(event_prefix="instance.refused")]
    assert len(refusals) >= 3 and any("pixel data of" in r for r in refusals)
    assert any("encoded as implicit VR little endian, not as" in r for r in refusals)


def test_contradicting_uids_are_refused_and_every_acknowledged_instance_has_its_series(node, tmp_path):
    study, series, sop = generate_uid(), generate_uid(), generate_uid()
    first = _file(_instance(study, series, sop), tmp_path, "first.dcm")
    same_sop_other_series = _file(_instance(study, generate_uid(), sop), tmp_path, "sop.dcm")
    same_series_other_study = _file(_instance(generate_uid(), series), tmp_path, "series.dcm")
    resend = first                                                   # the same instance again: harmless
    statuses = _send(node, first, same_sop_other_series, same_series_other_study, resend)
    assert statuses[0] == SUCCESS and statuses[3] == SUCCESS
    assert statuses[1] >= 0xA000 and statuses[2] >= 0xA000
    journal = Journal(node.journal_url)
    row = journal.series_row(series)
    assert row is not None and row.study_uid == study and row.instances == 1
    assert [p.parent.name for p in (node.folder / "spool").rglob(f"{sop}.dcm")] == [series]
    details = [e.detail for e in journal.audit_events(event_prefix="instance.refused")]
    assert any(f"was already received in series {series}" in d for d in details)
    assert any(f"was already received in study {study}" in d for d in details)
