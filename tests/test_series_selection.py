"""Series selection from the site-editable rules file: what qualifies, what is passed over and why,
and which series wins when several qualify."""
from __future__ import annotations

import copy

import numpy as np
import pydicom
import pytest

from operators.series_selection import SelectionRules, select_series


@pytest.fixture(scope="module")
def ct_headers(phantom_cases):
    folder = phantom_cases("HFS") / "dicom"
    return [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(folder.iterdir())]


@pytest.fixture(scope="module")
def rules():
    return SelectionRules.load()


def variant(headers, uid, **changes):
    """A copy of the series' headers with some attributes changed (None deletes); `uid` names it."""
    out = []
    for ds in headers:
        ds = copy.deepcopy(ds)
        for keyword, value in changes.items():
            if value is None:
                delattr(ds, keyword)
            else:
                setattr(ds, keyword, value)
        out.append(ds)
    return out


def test_phantom_series_qualifies(ct_headers, rules):
    ranked, passed_over = select_series({"ct": ct_headers}, rules)
    assert [c.series_uid for c in ranked] == ["ct"] and "contrast-enhanced" in ranked[0].reason
    assert passed_over == []


@pytest.mark.parametrize("changes, reason", [
    ({"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]}, "image type LOCALIZER is excluded"),
    ({"ImageType": ["DERIVED", "SECONDARY", "AXIAL"]}, "image type DERIVED/SECONDARY is excluded"),
    ({"Modality": "MR"}, "modality MR is not CT"),
    ({"SOPClassUID": "1.2.840.10008.5.1.4.1.1.88.67"}, "SOP class 1.2.840.10008.5.1.4.1.1.88.67"),
    ({"SeriesDescription": "Dose Report"}, "excluded pattern"),
    ({"BodyPartExamined": "HEAD"}, "body part HEAD is not abdomen"),
    ({"BodyPartExamined": None, "StudyDescription": "CT HEAD", "SeriesDescription": "Brain"},
     "no description that names the abdomen"),
    ({"SliceThickness": "8"}, "slice thickness 8 mm outside"),
    ({"ImageOrientationPatient": [1, 0, 0, 0, 0, -1]}, "not axial: plane 90 degrees from axial"),
])
def test_unsuitable_series_are_passed_over_with_reasons(ct_headers, rules, changes, reason):
    ranked, passed_over = select_series({"bad": variant(ct_headers, "bad", **changes)}, rules)
    assert ranked == []
    assert len(passed_over) == 1 and reason in passed_over[0].reason


def test_too_few_slices(ct_headers, rules):
    ranked, passed_over = select_series({"short": ct_headers[:10]}, rules)
    assert ranked == [] and "10 slices, fewer than 30" in passed_over[0].reason


def test_description_stands_in_for_a_missing_body_part(ct_headers, rules):
    headers = variant(ct_headers, "nobody", BodyPartExamined=None, SeriesDescription="Abd/Pelvis venous")
    ranked, _ = select_series({"nobody": headers}, rules)
    assert [c.series_uid for c in ranked] == ["nobody"]


def test_best_series_wins_by_the_documented_order(ct_headers, rules):
    series = {
        "plain": variant(ct_headers, "plain", ContrastBolusAgent=None),
        "thick": variant(ct_headers, "thick", SliceThickness="5"),
        "ideal": variant(ct_headers, "ideal", SliceThickness="2"),
        "scout": variant(ct_headers[:1], "scout", ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"]),
    }
    ranked, passed_over = select_series(series, rules)
    assert [c.series_uid for c in ranked] == ["ideal", "thick", "plain"]  # contrast beats slice thickness
    assert "LOCALIZER" in {c.series_uid: c.reason for c in passed_over}["scout"]


def test_bad_rules_file_is_reported(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("modality: CT\n")
    with pytest.raises(ValueError, match="series rules"):
        SelectionRules.load(path)
    assert np.isfinite(SelectionRules.load().max_tilt_from_axial_degrees)
