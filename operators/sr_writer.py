"""The TID 1500 Measurement Report (Comprehensive 3D SR) of the findings, for machines: one
volumetric measurement group per kidney and per lesion, each referencing its SEG segment, with
volume (ml), mean attenuation (HU) and maximum 3D diameter (mm), and its finding site with
laterality. UIDs derive from the input series and the model version, as for the SEG."""
from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
from holoscan.core import OperatorSpec
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from operators.postprocessing import Finding
from operators.recording import RecordingOperator
from operators.seg_writer import KIDNEY_REGION, LATERALITY, output_uids
from renalnode.uids import deterministic_uid

SR_SERIES_NUMBER = 9902
SR_SERIES_DESCRIPTION = "renalnode kidney and renal lesion measurements (TID 1500)"
CT_OF_ABDOMEN = Code("169070004", "SCT", "CT of abdomen")
VOLUME = Code("118565006", "SCT", "Volume")
MEAN_ATTENUATION = Code("112031", "DCM", "Attenuation Coefficient")
MEAN = Code("373098007", "SCT", "Mean")
DIAMETER = Code("81827009", "SCT", "Diameter")
MAXIMUM = Code("56851009", "SCT", "Maximum")
MILLILITRE = Code("ml", "UCUM", "milliliter")
MILLIMETRE = Code("mm", "UCUM", "millimeter")
HOUNSFIELD = Code("[hnsf'U]", "UCUM", "Hounsfield unit")


def measurement_group(finding: Finding, segment_number: int, seg: hd.seg.Segmentation,
                      source_series_uid: str) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    m = finding.measurement
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=deterministic_uid("tracking", source_series_uid, finding.kind, finding.side, finding.number),
            identifier=finding.name),
        referenced_segment=hd.sr.ReferencedSegment.from_segmentation(seg, segment_number=segment_number),
        finding_type=finding.label_class.property_type,
        finding_sites=[hd.sr.FindingSite(anatomic_location=KIDNEY_REGION, laterality=LATERALITY[finding.side])],
        measurements=[
            hd.sr.Measurement(name=VOLUME, value=round(m.volume_ml, 3), unit=MILLILITRE),
            hd.sr.Measurement(name=MEAN_ATTENUATION, value=round(finding.mean_hu, 1), unit=HOUNSFIELD,
                              derivation=MEAN),
            hd.sr.Measurement(name=DIAMETER, value=round(m.max_diameter_mm, 1), unit=MILLIMETRE,
                              derivation=MAXIMUM),
        ])


def write_sr(instances: Sequence[Dataset], seg: hd.seg.Segmentation, findings: Sequence[Finding], model_name: str,
             model_version: str) -> hd.sr.Comprehensive3DSR:
    """The report; `instances` are the segmented CT's, `findings` are in the order of the SEG's
    segments (segment n is findings[n - 1])."""
    source_series = instances[0].SeriesInstanceUID
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=deterministic_uid("device", model_name, model_version), name=model_name,
            manufacturer_name="renalnode", model_name=model_version))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=CT_OF_ABDOMEN,
        imaging_measurements=[measurement_group(f, n, seg, source_series) for n, f in enumerate(findings, start=1)])
    series_uid, instance_uid = output_uids(source_series, model_name, model_version, "SR")
    return hd.sr.Comprehensive3DSR(
        evidence=[*instances, seg], content=report[0], series_instance_uid=series_uid, series_number=SR_SERIES_NUMBER,
        sop_instance_uid=instance_uid, instance_number=1, manufacturer="renalnode",
        series_description=SR_SERIES_DESCRIPTION, is_complete=True)


class SrWriterOperator(RecordingOperator):
    """Writes `sr.dcm` for the findings of the SEG just written."""


    def setup(self, spec: OperatorSpec):
        spec.input("seg")

    def compute(self, op_input, op_output, context):
        study, seg = op_input.receive("seg")
        with self.record.stage("sr"):
            sr = write_sr(study.volume.instances, seg, study.findings, study.model.name, study.model.version)
            self.record.save_output("SR", sr, self.results_folder())
