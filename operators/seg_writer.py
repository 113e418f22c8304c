"""The DICOM SEG of the findings: highdicom BINARY, one segment per kidney side and per lesion,
on the source CT's own slices (or the frames of its multi-frame instance) whatever the patient
position, with the label catalogue's codes and colours and UIDs derived from the input series and
the model version."""
from __future__ import annotations

import logging
from collections.abc import Sequence

import highdicom as hd
import numpy as np
from holoscan.core import OperatorSpec
from pydicom import Dataset
from pydicom.sr.coding import Code

from operators.ct_volume import CTVolume
from operators.frames import FrameDataset
from operators.postprocessing import Finding, StudyFindings, segment_map
from operators.recording import RecordingOperator
from renalnode import __version__
from renalnode.labels import KIDNEY_CLASS, SCT
from renalnode.uids import deterministic_uid

KIDNEY_REGION = KIDNEY_CLASS.property_type  # every finding's anatomic region
LATERALITY = {"right": Code("24028007", SCT, "Right"), "left": Code("7771000", SCT, "Left")}
SEG_SERIES_NUMBER = 9901
SEG_SERIES_DESCRIPTION = "renalnode kidney and renal lesion segmentation"
log = logging.getLogger("renalnode.app")


def segment_description(number: int, finding: Finding, algorithm: hd.AlgorithmIdentificationSequence,
                        series_uid: str) -> hd.seg.SegmentDescription:
    label_class = finding.label_class
    description = hd.seg.SegmentDescription(
        segment_number=number, segment_label=finding.name, segmented_property_category=label_class.category,
        segmented_property_type=label_class.property_type, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm, tracking_id=finding.name,
        tracking_uid=deterministic_uid("tracking", series_uid, finding.kind, finding.side, finding.number),
        anatomic_regions=[KIDNEY_REGION], display_color=hd.color.CIELabColor.from_rgb(*label_class.colour))
    # Laterality qualifies the property type (PS3.3 C.8.20.2: nested in its code item) and the region.
    description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
        hd.sr.CodedConcept.from_code(LATERALITY[finding.side])]
    description.AnatomicRegionSequence[0].AnatomicRegionModifierSequence = [
        hd.sr.CodedConcept.from_code(LATERALITY[finding.side])]
    return description


def output_uids(source_series_uid: str, model_name: str, model_version: str, kind: str) -> tuple[str, str]:
    """(series UID, SOP instance UID) of an output object: the same inputs always give the same UIDs."""
    key = (source_series_uid, model_name, model_version, kind)
    return deterministic_uid("series", *key), deterministic_uid("instance", *key)


def _source_frames(volume: CTVolume, numbers: np.ndarray) -> tuple[list[Dataset], np.ndarray]:
    """highdicom's source images and the segment numbers in their frame order: the volume's slices
    as they are, or a multi-frame instance's frames in the order it stores them."""
    if not isinstance(volume.slices[0], FrameDataset):
        return list(volume.slices), numbers
    (instance,) = volume.instances
    by_frame = np.zeros((int(instance.NumberOfFrames), *numbers.shape[1:]), numbers.dtype)
    members = [(frame, k) for k, frame in enumerate(volume.slices)] + list(volume.merged)
    for frame, k in members:
        by_frame[frame.frame_index] = numbers[k]
    return [instance], by_frame


def write_seg(volume: CTVolume, findings: Sequence[Finding], model_name: str,
              model_version: str) -> hd.seg.Segmentation:
    """The SEG of `findings` (masks on the grid of `volume`, in volume order)."""
    if not findings:
        raise ValueError("a SEG needs at least one finding")
    slices = volume.slices
    algorithm = hd.AlgorithmIdentificationSequence(name=model_name, version=model_version,
                                                   family=hd.sr.CodedConcept.from_code(
                                                       Code("123109", "DCM", "Artificial Intelligence")))
    source_series = slices[0].SeriesInstanceUID
    descriptions = [segment_description(n, f, algorithm, source_series) for n, f in enumerate(findings, start=1)]
    numbers = segment_map(findings, findings[0].mask.shape)  # highdicom's label-map form
    source_images, pixel_array = _source_frames(volume, numbers)
    series_uid, instance_uid = output_uids(source_series, model_name, model_version, "SEG")
    return hd.seg.Segmentation(
        source_images=source_images, pixel_array=pixel_array, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=series_uid, series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=instance_uid, instance_number=1, manufacturer="renalnode",
        manufacturer_model_name=model_name, software_versions=f"renalnode {__version__}; model {model_version}",
        device_serial_number="renalnode", series_description=SEG_SERIES_DESCRIPTION, omit_empty_frames=True,
        content_label="KIDNEYS", content_description="Kidneys, solid renal masses and renal cysts")


class SegWriterOperator(RecordingOperator):
    """Writes `seg.dcm` and passes the findings with their SEG on to the SR writer. A study without
    any finding gets no SEG (a SEG needs a segment); its PDF says nothing was found."""


    def setup(self, spec: OperatorSpec):
        spec.input("findings")
        spec.output("seg")

    def compute(self, op_input, op_output, context):
        study: StudyFindings = op_input.receive("findings")
        if not study.findings:
            log.info("no kidney or lesion found: no SEG and no SR")
            return
        with self.record.stage("seg"):
            seg = write_seg(study.volume, study.findings, study.model.name, study.model.version)
            self.record.save_output("SEG", seg, self.results_folder())
        op_output.emit((study, seg), "seg")
