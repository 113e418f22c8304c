"""Phantom content: CT numbers of every tissue within the ranges of the case's contrast phase, the
phases, kidney variants and lesion kinds and sizes promised, acquisition and reconstruction drawn
within their ranges (or fixed), truth.json consistent with the label map, and the same case from
the same seed."""
from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from conftest import PHANTOM_SEED, lesion_components, load_truth
from scipy import ndimage

from training.phantom.acquisition import FULL_SLICE_THICKNESSES, SMALL_SLICE_THICKNESSES, sample_acquisition
from training.phantom.generate import make_case, write_case
from training.phantom.scanner import NOISE_HU, PSF_FWHM_MM, sample_reconstruction
from training.phantom.tissues import HU_MODEL, PHASES
from training.phantom.tissues import Tissue as T

# Seeds whose first small case is in each contrast phase (asserted).
PHASE_SEEDS = {"corticomedullary": 1, "non_contrast": 6, "excretory": 14, "nephrographic": PHANTOM_SEED}
# Not checked against the table: tissues drawn against another (masses against the kidney), those
# with a second distribution (excreted contrast, oral contrast), air and gas (clipped at -1024), and
# thin skin, bowel wall and spinal canal, whose interiors are all edge (kernel overshoot, oral
# contrast, bone).
UNCHECKED = {T.SOLID_MASS, T.NECROSIS, T.URINE, T.BOWEL_FLUID, T.AIR, T.GAS, T.SKIN, T.CSF, T.BOWEL_WALL}


def _interior_median(case, tissue, small_structure: bool = False) -> float | None:
    # Interior voxels only: partial volume at the edges is expected to mix tissues. A small
    # structure (the renal pelvis at 3 mm voxels) may have no interior: then all its voxels count.
    mask = case.tissue == tissue
    interior = ndimage.binary_erosion(mask, iterations=1)
    if interior.sum() < 20 and small_structure:
        interior = mask
    return float(np.median(case.hu[interior])) if interior.sum() >= 5 else None


@pytest.fixture(scope="module")
def cases():
    return [make_case(PHANTOM_SEED, i, "HFS", small=i > 0) for i in range(4)]


@pytest.fixture(scope="module")
def phase_cases():
    return {phase: make_case(seed, 0, "HFS", small=True) for phase, seed in PHASE_SEEDS.items()}


def test_tissue_hu_within_the_ranges_of_its_phase(cases, phase_cases):
    seen = set()
    for case in cases + list(phase_cases.values()):
        column = list(PHASES).index(case.phase)
        for tissue, (means, spread, texture) in HU_MODEL.items():
            median = _interior_median(case, tissue)
            if median is None or tissue in UNCHECKED:
                continue
            seen.add(tissue)
            margin = spread + 3 * texture * 2 + 15  # texture gain up to 2, noise and blur
            assert abs(median - means[column]) <= margin, (case.case_id, case.phase, tissue.name, median)
    assert {T.SUBCUTANEOUS_FAT, T.MUSCLE, T.LIVER, T.KIDNEY_CORTEX, T.KIDNEY_MEDULLA, T.BONE_CORTEX} <= seen


def test_contrast_phases_look_like_their_names(phase_cases, tmp_path):
    for phase, case in phase_cases.items():
        assert case.phase == phase
    cm = phase_cases["corticomedullary"]
    assert _interior_median(cm, T.KIDNEY_CORTEX) - _interior_median(cm, T.KIDNEY_MEDULLA) >= 60  # distinct cortex
    nc = phase_cases["non_contrast"]
    assert _interior_median(nc, T.KIDNEY_CORTEX) < 80 and _interior_median(nc, T.ARTERY, True) < 80
    assert _interior_median(phase_cases["excretory"], T.URINE, True) > 250  # dense collecting system
    ng = phase_cases["nephrographic"]
    assert _interior_median(ng, T.KIDNEY_MEDULLA) > 100  # both cortex and medulla enhance
    # Solid masses enhance less than the kidney around them whenever contrast was given.
    for case in (cm, ng):
        mass = _interior_median(case, T.SOLID_MASS)
        assert mass is not None and mass < _interior_median(case, T.KIDNEY_CORTEX)
    # The DICOM header says whether contrast was given.
    folders = {phase: write_case(phase_cases[phase], tmp_path / phase) for phase in ("non_contrast", "nephrographic")}
    headers = {phase: pydicom.dcmread(next((f / "dicom").iterdir())) for phase, f in folders.items()}
    assert "ContrastBolusAgent" not in headers["non_contrast"] and headers["nephrographic"].ContrastBolusAgent
    assert "non-contrast" in headers["non_contrast"].SeriesDescription
    assert load_truth(folders["non_contrast"])["contrast_phase"] == "non_contrast"


def test_full_size_case_is_scanner_sized(cases):
    acq = cases[0].acquisition
    assert acq.matrix == 512
    assert 0.6 <= acq.pixel_mm <= 1.0
    assert 0.625 <= acq.slice_mm <= 5.0
    assert cases[0].stored.dtype == np.int16


def test_lesions_and_kidneys_as_promised(cases, phase_cases):
    kinds = set()
    for case in cases + list(phase_cases.values()):
        assert 1 <= len(case.anatomy.kidneys) <= 2
        for lesion in case.anatomy.lesions:
            kinds.add((lesion.kind, lesion.subtype))
            assert 5 <= 2 * lesion.radius <= 80
            assert lesion.growth in ("endophytic", "exophytic", "central")
        per_kidney = [sum(lesion.side == k.side for lesion in case.anatomy.lesions) for k in case.anatomy.kidneys]
        assert all(n <= 4 for n in per_kidney)
    assert {kind for kind, _ in kinds} == {"cyst", "solid_mass"}
    assert len(kinds) >= 3


def test_kidney_variants_occur():
    single = make_case(14, 0, "HFS", small=True)
    assert single.anatomy.variant == "single" and len(single.anatomy.kidneys) == 1
    assert (single.label == 1).any()
    horseshoe = make_case(25, 0, "HFS", small=True)
    assert horseshoe.anatomy.variant == "horseshoe"
    # The isthmus joins the two halves: one connected kidney crossing the midline.
    _, count = ndimage.label(horseshoe.label == 1, np.ones((3, 3, 3)))
    assert count == 1


def test_acquisition_and_reconstruction_are_drawn_within_their_ranges():
    rng = np.random.default_rng(0)
    acquisitions = [sample_acquisition(rng, 160.0, -8.0, "HFS", small=False) for _ in range(300)]
    assert all(0.6 <= a.pixel_mm <= 1.0 and a.slice_mm in FULL_SLICE_THICKNESSES for a in acquisitions)
    assert len({a.slice_mm for a in acquisitions}) == len(FULL_SLICE_THICKNESSES)
    cut = np.mean([a.matrix * a.pixel_mm < 2 * 160 for a in acquisitions])
    partial = np.mean([abs(a.centre[2] - a.anatomy_origin[2] + 8) > 50 for a in acquisitions])
    assert 0.04 < cut < 0.25 and 0.04 < partial < 0.25
    small = [sample_acquisition(rng, 160.0, -8.0, "HFS", small=True) for _ in range(50)]
    assert all(a.matrix == 128 and a.slice_mm in SMALL_SLICE_THICKNESSES for a in small)
    recons = [sample_reconstruction(rng) for _ in range(300)]
    assert all(NOISE_HU[0] <= r.noise_hu <= NOISE_HU[1] and PSF_FWHM_MM[0] <= r.psf_fwhm_mm <= PSF_FWHM_MM[1]
               for r in recons)
    assert 0.2 < np.mean([r.streak_hu > 0 for r in recons]) < 0.5
    assert 0.35 < np.mean([r.cupping_hu > 0 for r in recons]) < 0.65
    assert sample_reconstruction(rng, noise_hu=55.0).noise_hu == 55.0


def test_fixed_slice_thickness_and_noise_render_outside_the_drawn_ranges():
    quiet = make_case(PHANTOM_SEED, 0, "HFS", small=True, slice_mm=1.0, noise_hu=2.0)
    loud = make_case(PHANTOM_SEED, 0, "HFS", small=True, slice_mm=1.0, noise_hu=60.0)
    assert quiet.acquisition.slice_mm == loud.acquisition.slice_mm == 1.0
    assert quiet.parameters() == {"seed": PHANTOM_SEED, "index": 0, "position": "HFS", "small": True,
                                  "slice_mm": 1.0, "noise_hu": 2.0}
    np.testing.assert_array_equal(quiet.label, loud.label)  # same anatomy and grid

    def fat_noise(case):
        interior = ndimage.binary_erosion(case.tissue == T.SUBCUTANEOUS_FAT, iterations=2)
        return float(np.std(case.hu[interior]))

    assert fat_noise(loud) > 5 * fat_noise(quiet)
    assert 40 < fat_noise(loud) < 80


def test_truth_volumes_equal_label_voxels(phantom_cases):
    folder = phantom_cases("HFP")
    truth = load_truth(folder)
    label_img = sitk.ReadImage(str(folder / "label.nii.gz"))
    label = sitk.GetArrayFromImage(label_img)
    voxel_ml = float(np.prod(label_img.GetSpacing())) / 1000
    assert truth["voxel_volume_ml"] == pytest.approx(voxel_ml, rel=1e-6)

    # Kidneys: split the kidney label at the midpoint between the two kidneys' patient x.
    x_of_column = np.array([label_img.TransformIndexToPhysicalPoint((i, 0, 0))[0] for i in range(label.shape[2])])
    midline = np.mean([k["centroid_mm"][0] for k in truth["kidneys"]])
    for kidney in truth["kidneys"]:
        side = x_of_column < midline if kidney["side"] == "right" else x_of_column > midline
        count = int(((label == 1) & side[None, None, :]).sum())
        assert kidney["voxels"] == count
        assert kidney["volume_ml"] == pytest.approx(count * voxel_ml, abs=1e-4)

    counts = sorted(int(mask.sum()) for _, mask in lesion_components(label))
    assert counts == sorted(lesion["voxels"] for lesion in truth["lesions"])
    for lesion in truth["lesions"]:
        assert lesion["volume_ml"] == pytest.approx(lesion["voxels"] * voxel_ml, abs=1e-4)
        assert 0 < lesion["max_diameter_mm"] <= lesion["nominal_diameter_mm"] * 2.6


def test_same_seed_same_case(tmp_path):
    first, second = (write_case(make_case(11, 0, "FFS", small=True), tmp_path / name) for name in ("a", "b"))
    assert json.loads((first / "truth.json").read_text()) == json.loads((second / "truth.json").read_text())
    for a, b in zip(sorted((first / "dicom").iterdir()), sorted((second / "dicom").iterdir())):
        assert a.read_bytes() == b.read_bytes()
    other = make_case(12, 0, "FFS", small=True)
    assert not np.array_equal(other.label, make_case(11, 0, "FFS", small=True).label)
