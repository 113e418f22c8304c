"""From the ensemble's label map to findings: each kidney with its side, each lesion as an instance
with its side, class and measurements.

Sides come from patient coordinates, never from array indices: the body's midline is the mean
patient x of the body (voxels above -300 HU in the largest connected region), and a voxel on the
patient's right of it (lower x, LPS) is on the right. A lesion takes the side of its centroid.

Tiny components are removed before anything is reported: a lesion component under
MIN_LESION_ML becomes kidney when it touches kidney, background otherwise; a kidney fragment
under MIN_KIDNEY_FRAGMENT_ML that touches no lesion becomes background. Both limits are far
below what the report's readers act on (the smallest lesion of interest is about 5 mm, 0.07 ml).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from holoscan.core import OperatorSpec
from scipy import ndimage

from operators.ct_volume import CTVolume
from operators.recording import RecordingOperator
from renalnode import labels
from renalnode.model_package import ModelPackage
from renalnode.measurements import ObjectMeasurement, measure, voxel_centres_mm

MIN_LESION_ML = 0.05
MIN_KIDNEY_FRAGMENT_ML = 1.0
BODY_HU = -300.0
CONNECTIVITY = np.ones((3, 3, 3), bool)
KIND_OF_LABEL = {labels.KIDNEY: "kidney", labels.SOLID_MASS: "solid_mass", labels.CYST: "cyst"}


@dataclass
class Finding:
    kind: str            # "kidney", "solid_mass" or "cyst"
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
    def name(self) -> str:
        kind = {"kidney": "kidney", "solid_mass": "solid mass", "cyst": "cyst"}[self.kind]
        return f"{self.side.capitalize()} kidney" if self.kind == "kidney" else f"{kind.capitalize()} {self.number}"


def body_midline_x(ct: sitk.Image, hu: np.ndarray) -> float:
    """Patient x (mm) of the body's midline: the mean x of the largest region above BODY_HU."""
    components, count = ndimage.label(hu > BODY_HU)
    if count == 0:
        raise ValueError("no body in the image")
    sizes = ndimage.sum_labels(np.ones_like(components), components, index=np.arange(1, count + 1))
    body = components == (int(np.argmax(sizes)) + 1)
    # Columns suffice: x of a voxel depends on its indices through the direction matrix.
    sample = np.argwhere(body)[:: max(1, int(body.sum()) // 200_000)]
    return float(voxel_centres_mm(sample, ct)[:, 0].mean())


def _remove_tiny(label: np.ndarray, voxel_ml: float) -> np.ndarray:
    label = label.copy()
    kidney = label == labels.KIDNEY
    for value in labels.LESION_LABELS:
        components, count = ndimage.label(label == value, CONNECTIVITY)
        for index, size in enumerate(np.bincount(components.ravel())[1:], start=1):
            if size * voxel_ml < MIN_LESION_ML:
                part = components == index
                touches = (ndimage.binary_dilation(part, CONNECTIVITY) & kidney).any()
                label[part] = labels.KIDNEY if touches else labels.BACKGROUND
    lesion = np.isin(label, labels.LESION_LABELS)
    components, count = ndimage.label(label == labels.KIDNEY, CONNECTIVITY)
    for index, size in enumerate(np.bincount(components.ravel())[1:], start=1):
        if size * voxel_ml < MIN_KIDNEY_FRAGMENT_ML:
            part = components == index
            if not (ndimage.binary_dilation(part, CONNECTIVITY) & lesion).any():
                label[part] = labels.BACKGROUND
    return label


def find_findings(label: np.ndarray, ct: sitk.Image) -> tuple[np.ndarray, list[Finding]]:
    """The cleaned label map and its findings (kidneys first, then lesions by class)."""
    hu = sitk.GetArrayViewFromImage(ct)
    if label.shape != hu.shape:
        raise ValueError(f"label map {label.shape} is not on the CT grid {hu.shape}")
    voxel_ml = float(np.prod(ct.GetSpacing())) / 1000.0
    label = _remove_tiny(label, voxel_ml)
    midline = body_midline_x(ct, hu)
    kidney_voxels = np.argwhere(label == labels.KIDNEY)
    on_right = voxel_centres_mm(kidney_voxels, ct)[:, 0] < midline
    findings: list[Finding] = []
    for side, chosen in (("right", kidney_voxels[on_right]), ("left", kidney_voxels[~on_right])):
        if len(chosen):
            mask = np.zeros(label.shape, bool)
            mask[tuple(chosen.T)] = True
            findings.append(Finding("kidney", side, 1, mask, measure(mask, ct), float(hu[mask].mean())))
    for value in labels.LESION_LABELS:
        components, count = ndimage.label(label == value, CONNECTIVITY)
        lesions = []
        for index in range(1, count + 1):
            mask = components == index
            m = measure(mask, ct)
            side = "right" if m.centroid_mm[0] < midline else "left"
            lesions.append(Finding(KIND_OF_LABEL[value], side, 0, mask, m, float(hu[mask].mean())))
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
            label, findings = find_findings(segmented.label, segmented.volume.image)
        self.record.findings = [f.summary() for f in findings]
        op_output.emit(StudyFindings(segmented.volume, label, findings, segmented.model), "findings")
