"""The PDF report: findings table, a key image per finding with the paper's colours in display
orientation, the notice, and a valid Encapsulated PDF in the source study."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest
from conftest import dciodvfy_errors, load_truth, phantom_volume_and_label

from operators.pdf_report import NOTICE, KeyImages, encapsulate_pdf, render_pdf
from operators.postprocessing import find_findings


def _findings(folder):
    volume, label = phantom_volume_and_label(folder)
    return volume, find_findings(label, volume.image)[1]


@pytest.mark.parametrize("position", ["HFS", "FFS", "HFP"])
def test_key_images_show_the_right_kidney_on_the_left(phantom_cases, position):
    volume, findings = _findings(phantom_cases(position))
    right = next(f for f in findings if f.kind == "kidney" and f.side == "right")
    picture = np.asarray(KeyImages(volume.image, [right]).through(0)).astype(int)
    green = (picture[..., 1] - picture[..., 0] > 40) & (picture[..., 1] - picture[..., 2] > 40)
    columns = np.nonzero(green)[1]
    # Displayed as radiologists read: the patient's right kidney on the image's left half.
    assert len(columns) and np.median(columns) < picture.shape[1] / 2


def test_pdf_holds_table_images_and_notice(phantom_cases, tmp_path):
    folder = phantom_cases("HFS")
    volume, findings = _findings(folder)
    key_images = KeyImages(volume.image, findings)
    pictures = [key_images.through(n) for n in range(len(findings))]
    pdf = render_pdf(findings, pictures, "test-model", "1.2.3", volume.slices[0])
    assert pdf.startswith(b"%PDF")
    assert NOTICE[:40].encode() in pdf
    assert b"test-model" in pdf
    for finding in findings:
        assert finding.name.encode() in pdf
    assert pdf.count(b"/Subtype /Image") == len(findings)
    assert len(load_truth(folder)["lesions"]) + 2 == len(findings)

    ds = encapsulate_pdf(pdf, volume.slices[0], "test-model", "1.2.3")
    ds.save_as(tmp_path / "report.dcm", enforce_file_format=True)
    assert dciodvfy_errors(tmp_path / "report.dcm") == []
    back = pydicom.dcmread(tmp_path / "report.dcm")
    assert back.StudyInstanceUID == volume.slices[0].StudyInstanceUID
    assert bytes(back.EncapsulatedDocument)[: back.EncapsulatedDocumentLength] == pdf
    assert back.SeriesDescription.startswith("renalnode")
