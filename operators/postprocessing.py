"""From the ensemble's label map to findings: each kidney with its side, each lesion as an instance
with its side, class and measurements.

First the model package's own post-processing rules run (those its cross-validation kept, see
renalnode/postprocessing_rules.py; none for a package that names none).

Sides come from patient coordinates, never from array indices: the body's midline is the mean
patient x of the body (voxels above -300 HU in the largest connected region), and a voxel on the
patient's right of it (lower x, LPS) is on the right. A lesion takes the side of its centroid.

Tiny components are removed before anything is reported: a lesion component under
MIN_LESION_ML becomes kidney when it touches kidney, background otherwise; a kidney fragment
under MIN_KIDNEY_FRAGMENT_ML that touches no lesion becomes background. Both limits are far
below what the report's readers act on (the smallest lesion of interest is about 5 mm, 0.07 ml).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from holoscan.core import OperatorSpec
from scipy import ndimage

from operators.ct_volume import CTVolume
from operators.recording import RecordingOperator
from renalnode import labels
from renalnode.measurements import ObjectMeasurement, measure, voxel_centres_mm
from renalnode.model_package import ModelPackage
from renalnode.postprocessing_rules import (
    CONNECTIVITY,
    PostprocessingRules,
    apply_rules,
    body_midline_x,
    components,
    drop_small_lesions,
)

MIN_LESION_ML = 0.05
MIN_KIDNEY_FRAGMENT_ML = 1.0


@dataclass
class Finding:
    kind: str            # its class's catalogue key: "kidney", "solid_mass" or "cyst"
    side: str            # "right" or "left" (the patient's)
    number: int          # 1.. within its kind, ordered right to left then head to feet
    mask: np.ndarray     # boolean, numpy order (k, j, i) on the CT grid
    measurement: ObjectMeasurement
    mean_hu: float

    def summary(self) -> dict:
        """The finding's figures without its mask, as the run record and the node show them."""
        return {"name": self.name, "kind": self.kind, "side": self.side,
                "volume_ml": round(self.measurement.volume_ml, 3), "mean_hu": round(self.mean_hu, 1),
                "max_diameter_mm": round(self.measurement.max_diameter_mm, 1)}

    @property
    def label_class(self) -> labels.LabelClass:
        return labels.CLASS_OF_KEY[self.kind]

    @property
    def name(self) -> str:
        if self.label_class.is_lesion:
            return f"{self.label_class.display_name.capitalize()} {self.number}"
        return f"{self.side.capitalize()} {self.label_class.display_name}"


def segment_map(findings: Sequence[Finding], shape: tuple[int, ...]) -> np.ndarray:
    """The segment number (1-based, in `findings` order) of every voxel, 0 outside all findings.
    Findings never overlap, so one array holds them all: the SEG and the key images use it instead
    of a stack of masks, which would take a whole volume per finding."""
    numbers = np.zeros(shape, np.uint8 if len(findings) < 256 else np.uint16)
    for number, finding in enumerate(findings, start=1):
        numbers[finding.mask] = number
    return numbers


def _remove_tiny(label: np.ndarray, voxel_ml: float) -> np.ndarray:
    label = drop_small_lesions(label, voxel_ml, {value: MIN_LESION_ML for value in labels.LESION_LABELS})
    lesion = np.isin(label, labels.LESION_LABELS)
    found, parts = components(label == labels.KIDNEY)
    for index, size, box in parts:
        if size * voxel_ml < MIN_KIDNEY_FRAGMENT_ML:
            part = found[box] == index
            if not (ndimage.binary_dilation(part, CONNECTIVITY) & lesion[box]).any():
                label[box][part] = labels.BACKGROUND
    return label


def _finding(kind: str, side: str, mask: np.ndarray, ct: sitk.Image, hu: np.ndarray) -> Finding:
    return Finding(kind, side, 1, mask, measure(mask, ct), float(hu[mask].mean()))


def find_findings(label: np.ndarray, ct: sitk.Image, rules: PostprocessingRules = PostprocessingRules(),
                  ) -> tuple[np.ndarray, list[Finding]]:
    """The cleaned label map and its findings (kidneys first, then lesions by class), after the
    model's post-processing `rules`."""
    hu = sitk.GetArrayViewFromImage(ct)
    if label.shape != hu.shape:
        raise ValueError(f"label map {label.shape} is not on the CT grid {hu.shape}")
    voxel_ml = float(np.prod(ct.GetSpacing())) / 1000.0
    midline = body_midline_x(ct, hu)
    label = _remove_tiny(apply_rules(label, ct, hu, rules, midline), voxel_ml)
    kidney_voxels = np.argwhere(label == labels.KIDNEY)
    on_right = voxel_centres_mm(kidney_voxels, ct)[:, 0] < midline
    findings: list[Finding] = []
    for side, chosen in (("right", kidney_voxels[on_right]), ("left", kidney_voxels[~on_right])):
        if len(chosen):
            mask = np.zeros(label.shape, bool)  # zeroed pages cost no memory until written
            mask[tuple(chosen.T)] = True
            findings.append(_finding(labels.KIDNEY_CLASS.key, side, mask, ct, hu))
    for value in labels.LESION_LABELS:
        found, parts = components(label == value)
        lesions = []
        for index, _, box in parts:
            mask = np.zeros(label.shape, bool)
            mask[box] = found[box] == index
            lesion = _finding(labels.CLASS_OF_VALUE[value].key, "", mask, ct, hu)
            lesion.side = "right" if lesion.measurement.centroid_mm[0] < midline else "left"
            lesions.append(lesion)
        lesions.sort(key=lambda f: (f.side != "right", -f.measurement.centroid_mm[2]))
        for number, finding in enumerate(lesions, start=1):
            finding.number = number
        findings += lesions
    return label, findings


@dataclass
class StudyFindings:
    volume: CTVolume
    label: np.ndarray          # the cleaned label map
    findings: list[Finding]
    model: ModelPackage


class PostprocessingOperator(RecordingOperator):
    """Emits the study's findings to the writers."""


    def setup(self, spec: OperatorSpec):
        spec.input("segmented")
        spec.output("findings")

    def compute(self, op_input, op_output, context):
        segmented = op_input.receive("segmented")
        with self.record.stage("postprocessing"):
            label, findings = find_findings(segmented.label, segmented.volume.image, segmented.model.postprocessing)
        self.record.findings = [f.summary() for f in findings]
        op_output.emit(StudyFindings(segmented.volume, label, findings, segmented.model), "findings")
