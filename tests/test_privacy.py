"""Patient identity never reaches operators' texts, even through a library's error message."""
from __future__ import annotations

import pydicom
import pytest
from pydicom import config
from pydicom.valuerep import validate_value

from renalnode.privacy import REDACTED, identifiers, identifiers_in, redact


def patient(tmp_path) -> pydicom.Dataset:
    ds = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    ds.PatientName, ds.PatientID, ds.AccessionNumber = "Quixote^Alonso^Q", "RN-004217", "ACC77120"
    with config.disable_value_validation():
        ds.PatientBirthDate = "1605XX16"   # invalid on purpose: pydicom will quote it
    ds.save_as(tmp_path / "ct.dcm")
    (tmp_path / "notes.txt").write_text("not DICOM")
    return ds


def test_a_library_error_quoting_a_header_value_is_redacted(tmp_path):
    ds = patient(tmp_path)
    with pytest.raises(ValueError) as raised:
        validate_value("DA", ds.PatientBirthDate, config.RAISE)
    message = f"ValueError: {raised.value} while reading {ds.PatientName} ({ds.PatientID}), accession ACC77120"
    assert "1605XX16" in message
    found = identifiers_in(tmp_path)            # the first readable DICOM file of the folder
    assert found == identifiers(ds)
    assert found >= {"Quixote^Alonso^Q", "Quixote", "Alonso", "RN-004217", "1605XX16", "ACC77120"}
    cleaned = redact(message, found)
    for value in ("Quixote", "Alonso", "RN-004217", "1605XX16", "ACC77120"):
        assert value not in cleaned
    assert cleaned.startswith("ValueError: Invalid value for VR DA: ") and cleaned.count(REDACTED) == 4
    assert redact("series 1.2.3 has 4 slices", found) == "series 1.2.3 has 4 slices"
    assert "Q" not in found                      # an initial would blank out ordinary text
