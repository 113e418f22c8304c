"""One rule decides which series are abdominal CTs: the same series, fed to the app's series
selection, the node's routing and the Orthanc auto-routing script (inside a real Orthanc, sending
to a real dcmtk receiver), get the same answers, and the answers a radiologist expects."""
from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from deploy.local_services import LocalOrthanc, free_port, stop_process, wait_until
from deploy.node.routing import SeriesFacts, load_rules, route
from operators.series_selection import SelectionRules, rejection
from renalnode.series_eligibility import DEFAULT_SERIES_RULES, SeriesEligibility

ROOT = Path(__file__).resolve().parents[1]

# (modality, BodyPartExamined, SeriesDescription, StudyDescription, an abdominal CT renalnode segments?)
SERIES = [
    ("CT", "ABDOMEN", "Abd/Pel 2mm", "", True),
    ("CT", "abdomen", "Portal venous", "", True),
    ("CT", "ABDOMENPELVIS", "", "", True),
    ("CT", "CHEST_ABDOMEN_PELVIS", "CAP portal venous 3mm", "", True),
    ("CT", "CHESTABDOMENPELVIS", "Axial 3mm", "", True),
    ("CT", "KIDNEY", "Renal mass protocol", "", True),
    ("CT", "", "Abdomen 1.25mm", "", True),
    ("CT", "", "Axial 2mm", "CT ABDOMEN PELVIS W CONTRAST", True),
    ("CT", "", "CAP 3mm", "", True),
    ("CT", "", "CT Urogram excretory", "", True),
    ("CT", "", "Kidney stone protocol", "", True),
    ("CT", "", "Pelvis 3mm", "", True),
    ("CT", "", "Axial 2mm", "", False),
    ("CT", "", "Capsule view", "", False),
    ("CT", "HEAD", "Head routine", "", False),
    ("CT", "CHEST", "Chest 1mm", "Thorax", False),
    ("CT", "CHEST", "Axial 2mm", "CT abdomen", False),
    ("CT", "PELVIS", "Pelvis 3mm", "", False),
    ("CT", "ABDOMEN", "Scout", "", False),
    ("CT", "", "Topogram 0.6", "CT abdomen", False),
    ("CT", "ABDOMEN", "Dose Report", "", False),
    ("CT", "ABDOMEN", "MIP coronal", "", False),
    ("CT", "", "Abd VR", "", False),
    ("CT", "", "Localizer", "Abdomen", False),
    ("MR", "ABDOMEN", "T2 abdomen", "", False),
]


def test_there_are_enough_cases_of_both_answers():
    assert len(SERIES) >= 20
    assert sum(s[-1] for s in SERIES) >= 10 and sum(not s[-1] for s in SERIES) >= 10


@pytest.fixture(scope="module")
def series_headers(phantom_cases):
    """One header per case: a phantom CT slice with the case's modality, body part and descriptions,
    in a series and study of its own."""
    template = pydicom.dcmread(next(iter(sorted((phantom_cases("HFS") / "dicom").iterdir()))))
    headers = []
    for modality, body_part, series_description, study_description, _ in SERIES:
        ds = copy.deepcopy(template)
        ds.Modality, ds.SeriesDescription, ds.StudyDescription = modality, series_description, study_description
        if body_part:
            ds.BodyPartExamined = body_part
        elif "BodyPartExamined" in ds:
            del ds.BodyPartExamined
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        headers.append(ds)
    return headers


def app_accepts(ds: pydicom.Dataset, rules: SelectionRules) -> bool:
    return rejection([ds] * rules.min_slices, rules) is None


def node_accepts(ds: pydicom.Dataset, routing) -> bool:
    facts = SeriesFacts(ds.Modality, ds.get("BodyPartExamined", ""), ds.SeriesDescription, ds.StudyDescription,
                        "ORTHANC")
    return route(routing, facts)[0] is not None


def test_app_and_node_give_the_expected_answers(series_headers):
    rules = SelectionRules.load()
    routing = load_rules(ROOT / "deploy" / "node" / "routing.yaml", {"pacs"})
    for ds, case in zip(series_headers, SERIES):
        assert (app_accepts(ds, rules), node_accepts(ds, routing)) == (case[-1], case[-1]), case


def test_orthanc_routes_exactly_the_expected_series(series_headers, tmp_path):
    received, port = tmp_path / "received", free_port()
    received.mkdir()
    receiver = subprocess.Popen(["/usr/bin/storescp", "--output-directory", str(received), str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    orthanc = LocalOrthanc(tmp_path / "orthanc", node_port=port, extra={"StableAge": 1})
    try:
        orthanc.start()
        outgoing = tmp_path / "outgoing"
        outgoing.mkdir()
        for n, ds in enumerate(series_headers):
            ds.save_as(outgoing / f"{n:02d}.dcm", enforce_file_format=True)
        assert orthanc.store(outgoing, "CTROOM").returncode == 0
        expected = {ds.SeriesInstanceUID for ds, case in zip(series_headers, SERIES) if case[-1]}

        def routed() -> set[str]:
            return {pydicom.dcmread(p, stop_before_pixels=True).SeriesInstanceUID for p in received.iterdir()}

        wait_until(lambda: routed() >= expected, 90, what="Orthanc to route the abdominal CT series")
        # Every series has become stable (so the script has seen it) and every store job has ended.
        wait_until(lambda: _all_stable_and_sent(orthanc), 60, what="Orthanc to finish routing")
        assert routed() == expected
    finally:
        orthanc.stop()
        stop_process(receiver)


def _all_stable_and_sent(orthanc: LocalOrthanc) -> bool:
    import requests

    series = requests.get(f"{orthanc.url}/series", params={"expand": 1}, timeout=10).json()
    jobs = requests.get(f"{orthanc.url}/jobs", params={"expand": 1}, timeout=10).json()
    return (len(series) == len(SERIES) and all(s["IsStable"] for s in series)
            and all(j["State"] in ("Success", "Failure") for j in jobs))


def test_orthanc_settings_are_the_rule(tmp_path):
    """What is rendered into Orthanc's configuration is the series rules file, not a copy."""
    rules = tmp_path / "series_rules.yaml"
    rules.write_text(DEFAULT_SERIES_RULES.read_text().replace(
        "KIDNEY, RENAL]", "KIDNEY, RENAL, TORSO]"))
    orthanc = LocalOrthanc(tmp_path / "orthanc", node_port=free_port(), series_rules=rules)
    assert "TORSO" in orthanc.config["Renalnode"]["Series"]["BodyParts"]
    assert orthanc.config["Renalnode"]["Series"] == SeriesEligibility.load(rules).orthanc_settings()
