"""The PDF report for radiologists, as an Encapsulated PDF in the source study: a findings table,
a key image per kidney and per lesion with the paper's colours as overlay, the model's name and
version, and the not-for-diagnostic-use notice.

Key images are axial slices through each finding's centroid (also written as PNG files next to the
run record, for the node's dashboard, never sent), shown as radiologists read them
(patient's right on the image's left, anterior up) whatever the patient position: the CT and
labels are reoriented to LPS first, whose array order is exactly that display order.
"""
from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk
from holoscan.core import OperatorSpec
from PIL import Image
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Image as FlowImage
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from operators.postprocessing import Finding, StudyFindings, segment_map
from operators.recording import RecordingOperator
from operators.seg_writer import output_uids
from renalnode import __version__

ENCAPSULATED_PDF_STORAGE = UID("1.2.840.10008.5.1.4.1.1.104.1")
PDF_SERIES_NUMBER = 9903
PDF_SERIES_DESCRIPTION = "renalnode kidney and renal lesion report (PDF)"
NOTICE = ("NOT FOR DIAGNOSTIC USE. Automatic segmentation by research software; every finding must be "
          "confirmed by a radiologist. Use for diagnosis only after the site has validated the model.")
WINDOW = (40.0, 400.0)  # soft-tissue level and width, HU


class KeyImages:
    """The CT and every finding's mask reoriented to LPS once, to cut key images from."""

    def __init__(self, ct: sitk.Image, findings: Sequence[Finding]):
        self.lps = sitk.DICOMOrient(ct, "LPS")
        self.hu = sitk.GetArrayViewFromImage(self.lps)
        self.findings = list(findings)
        numbers = sitk.GetImageFromArray(segment_map(findings, sitk.GetArrayViewFromImage(ct).shape))
        numbers.CopyInformation(ct)
        self.numbers = sitk.GetArrayFromImage(sitk.DICOMOrient(numbers, "LPS"))  # segment number per voxel

    def through(self, focus: int, width_px: int = 320) -> Image.Image:
        """The axial slice through finding `focus`'s centroid, every finding's colour overlaid."""
        index = self.lps.TransformPhysicalPointToIndex(self.findings[focus].measurement.centroid_mm)
        k = int(np.clip(index[2], 0, self.hu.shape[0] - 1))
        level, width = WINDOW
        grey = np.clip((self.hu[k] - (level - width / 2)) / width, 0, 1)
        rgb = np.repeat(grey[..., None], 3, axis=2)
        for n, finding in enumerate(self.findings):
            inside = self.numbers[k] == n + 1
            alpha = 0.55 if n == focus else 0.35
            rgb[inside] = (1 - alpha) * rgb[inside] + alpha * np.array(finding.label_class.colour) / 255
        picture = Image.fromarray((rgb * 255).astype(np.uint8))
        sx, sy = self.lps.GetSpacing()[:2]  # rows may be spaced unlike columns
        rows, columns = self.hu.shape[1:]
        return picture.resize((width_px, max(1, round(width_px * (rows * sy) / (columns * sx)))))


def png_bytes(picture: Image.Image) -> bytes:
    png = io.BytesIO()
    picture.save(png, format="PNG")
    return png.getvalue()


def render_pdf(findings: Sequence[Finding], key_images: Sequence[Image.Image], model_name: str, model_version: str,
               study: Dataset) -> bytes:
    """The report; `key_images[n]` is finding n's key image."""
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(buffer, pagesize=A4, title="renalnode report", author="renalnode",
                            leftMargin=15 * mm, rightMargin=15 * mm, topMargin=15 * mm, bottomMargin=15 * mm,
                            pageCompression=0)
    styles = getSampleStyleSheet()
    story = [Paragraph("Kidneys, solid renal masses and renal cysts", styles["Title"]),
             Paragraph(f"<b>{NOTICE}</b>", styles["Normal"]), Spacer(1, 4 * mm),
             Paragraph(f"Study date {study.get('StudyDate', '')}, accession {study.get('AccessionNumber', '')}, "
                       f"series {study.get('SeriesNumber', '')} ({study.get('SeriesDescription', '')}).",
                       styles["Normal"]),
             Paragraph(f"Model {model_name} version {model_version}; renalnode {__version__}.", styles["Normal"]),
             Spacer(1, 4 * mm)]
    rows = [["Finding", "Type", "Side", "Volume (ml)", "Mean (HU)", "Max. diameter (mm)"]]
    for f in findings:
        rows.append([f.name, f.label_class.display_name.capitalize(), f.side, f"{f.measurement.volume_ml:.1f}",
                     f"{f.mean_hu:.0f}",
                     f"{f.measurement.max_diameter_mm:.1f}"])
    if len(rows) == 1:
        rows.append(["No kidney or renal lesion found", "", "", "", "", ""])
    table = Table(rows, repeatRows=1)
    table.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.4, colors.grey),
                               ("BACKGROUND", (0, 0), (-1, 0), colors.lightgrey)]))
    story += [table, Spacer(1, 6 * mm), Paragraph("Key images (patient's right on the left, anterior up; "
                                                   "kidney green, cyst blue, solid mass red)", styles["Heading3"])]
    for f, picture in zip(findings, key_images, strict=True):
        width = 80 * mm
        story += [Paragraph(f.name, styles["Heading4"]),
                  FlowImage(io.BytesIO(png_bytes(picture)), width=width, height=width * picture.height / picture.width)]
    doc.build(story)
    return buffer.getvalue()


def encapsulate_pdf(pdf: bytes, source: Dataset, model_name: str, model_version: str) -> Dataset:
    """An Encapsulated PDF instance in the source study (patient and study attributes copied)."""
    series_uid, instance_uid = output_uids(source.SeriesInstanceUID, model_name, model_version, "PDF")
    now = dt.datetime.now()
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ENCAPSULATED_PDF_STORAGE
    ds.file_meta.MediaStorageSOPInstanceUID = UID(instance_uid)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.SpecificCharacterSet = source.get("SpecificCharacterSet", "ISO_IR 100")
    ds.SOPClassUID = ENCAPSULATED_PDF_STORAGE
    ds.SOPInstanceUID = instance_uid
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
                    "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber", "StudyDescription"):
        setattr(ds, keyword, source.get(keyword, ""))
    ds.Modality = "DOC"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = PDF_SERIES_NUMBER
    ds.SeriesDescription = PDF_SERIES_DESCRIPTION
    ds.Manufacturer = "renalnode"
    ds.ManufacturerModelName = model_name
    ds.SoftwareVersions = [f"renalnode {__version__}", f"model {model_version}"]
    ds.ConversionType = "WSD"
    ds.InstanceNumber = 1
    ds.ContentDate = now.strftime("%Y%m%d")
    ds.ContentTime = now.strftime("%H%M%S")
    ds.AcquisitionDateTime = now.strftime("%Y%m%d%H%M%S")
    ds.BurnedInAnnotation = "YES"
    ds.DocumentTitle = "renalnode kidney and renal lesion report"
    concept = Dataset()
    concept.CodeValue, concept.CodingSchemeDesignator, concept.CodeMeaning = "18748-4", "LN", "Diagnostic imaging study"
    ds.ConceptNameCodeSequence = [concept]
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = pdf + (b"\0" if len(pdf) % 2 else b"")
    ds.EncapsulatedDocumentLength = len(pdf)
    return ds


class PdfReportOperator(RecordingOperator):
    """Writes `pdf.dcm`, the report as an Encapsulated PDF in the source study."""


    def setup(self, spec: OperatorSpec):
        spec.input("findings")

    def compute(self, op_input, op_output, context):
        study: StudyFindings = op_input.receive("findings")
        source = study.volume.slices[0]
        with self.record.stage("pdf"):
            key_images = KeyImages(study.volume.image, study.findings)
            pictures = [key_images.through(n) for n in range(len(study.findings))]
            pdf = render_pdf(study.findings, pictures, study.model.name, study.model.version, source)
            for finding, picture in zip(study.findings, pictures):
                self.record.save_key_image(finding.name, png_bytes(picture), self.results_folder())
            self.record.save_output("PDF", encapsulate_pdf(pdf, source, study.model.name, study.model.version),
                                    self.results_folder())
