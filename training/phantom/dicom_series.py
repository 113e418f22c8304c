"""Writes a CT volume as a scanner does: one CT Image Storage instance per slice, signed 16-bit
stored values with a rescale to HU, full patient, study, series, frame of reference, equipment,
image plane, contrast and VOI attributes, in the chosen transfer syntax."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, CTImageStorage, ExplicitVRLittleEndian, JPEGLSLossless, RLELossless

from renalnode import __version__
from renalnode.uids import deterministic_uid
from training.phantom.acquisition import Acquisition

TRANSFER_SYNTAXES = {"explicit": ExplicitVRLittleEndian, "jpegls": JPEGLSLossless, "rle": RLELossless}
RESCALE_INTERCEPT = -1024.0
RESCALE_SLOPE = 1.0


@dataclass(frozen=True)
class StudyIdentity:
    """Who and what the series belongs to. Names and IDs are synthetic."""
    patient_name: str
    patient_id: str
    patient_birth_date: str
    patient_sex: str
    study_uid: str
    series_uid: str
    frame_of_reference_uid: str
    study_date: str
    study_time: str
    accession_number: str
    study_id: str
    study_description: str = "CT ABDOMEN WITH CONTRAST"
    series_description: str = "Abdomen nephrographic"
    series_number: int = 3
    contrast: bool = True  # an iodinated contrast agent was given


def hu_to_stored(hu: np.ndarray) -> np.ndarray:
    """Round HU to the int16 stored values that the rescale maps back to the same HU."""
    return np.round((hu - RESCALE_INTERCEPT) / RESCALE_SLOPE).astype(np.int16)


def stored_to_hu(stored: np.ndarray) -> np.ndarray:
    return stored.astype(np.int16) * RESCALE_SLOPE + RESCALE_INTERCEPT


def _slice_dataset(identity: StudyIdentity, acq: Acquisition, k: int, instance: int) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = deterministic_uid(identity.series_uid, k)
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = identity.study_date
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = identity.study_time
    ds.AccessionNumber = identity.accession_number
    ds.Modality = "CT"
    ds.Manufacturer = "renalnode"
    ds.InstitutionName = "Synthetic Phantom Hospital"
    ds.ReferringPhysicianName = ""
    ds.StationName = "PHANTOM01"
    ds.StudyDescription = identity.study_description
    ds.SeriesDescription = identity.series_description
    ds.ManufacturerModelName = "renalnode phantom"
    ds.PatientName = identity.patient_name
    ds.PatientID = identity.patient_id
    ds.PatientBirthDate = identity.patient_birth_date
    ds.PatientSex = identity.patient_sex
    if identity.contrast:
        ds.ContrastBolusAgent = "Iohexol 350 mg I/ml"
        ds.ContrastBolusRoute = "IV"
    ds.BodyPartExamined = "ABDOMEN"
    ds.SliceThickness = f"{acq.slice_mm:g}"
    ds.KVP = "120"
    ds.DataCollectionDiameter = "500"
    ds.SoftwareVersions = f"renalnode {__version__}"
    ds.ReconstructionDiameter = f"{acq.pixel_mm * acq.matrix:.2f}"
    ds.GantryDetectorTilt = "0"
    ds.TableHeight = "150"
    ds.RotationDirection = "CW"
    ds.ExposureTime = "500"
    ds.XRayTubeCurrent = "250"
    ds.ConvolutionKernel = "STANDARD"
    ds.PatientPosition = acq.position
    ds.StudyInstanceUID = identity.study_uid
    ds.SeriesInstanceUID = identity.series_uid
    ds.StudyID = identity.study_id
    ds.SeriesNumber = identity.series_number
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = instance
    position = acq.slice_position(k)
    ds.ImagePositionPatient = [f"{v:.4f}" for v in position]
    ds.ImageOrientationPatient = [f"{v:g}" for v in acq.direction[:, :2].T.ravel()]
    ds.FrameOfReferenceUID = identity.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.SliceLocation = f"{position[2]:.4f}"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = acq.matrix
    ds.PixelSpacing = [f"{acq.pixel_mm:g}", f"{acq.pixel_mm:g}"]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    ds.RescaleIntercept = f"{RESCALE_INTERCEPT:g}"
    ds.RescaleSlope = f"{RESCALE_SLOPE:g}"
    ds.RescaleType = "HU"
    return ds


def write_ct_series(stored: np.ndarray, acq: Acquisition, identity: StudyIdentity, out_dir: Path,
                    transfer_syntax: str = "explicit") -> list[Path]:
    """Write `stored` (int16, indexed slice k, row j, column i on `acq`'s grid) as one file a slice.

    Instances are numbered from the head down, as a craniocaudal scan would number them, so that
    their order differs from slice index order in some patient positions: readers must sort by
    position. Returns the written paths.
    """
    if transfer_syntax not in TRANSFER_SYNTAXES:
        raise ValueError(f"unknown transfer syntax {transfer_syntax!r}; expected one of {sorted(TRANSFER_SYNTAXES)}")
    if stored.dtype != np.int16 or stored.shape != (acq.slices, acq.matrix, acq.matrix):
        raise ValueError(f"expected int16 array of shape {(acq.slices, acq.matrix, acq.matrix)}, "
                         f"got {stored.dtype} {stored.shape}")
    uid = TRANSFER_SYNTAXES[transfer_syntax]
    out_dir.mkdir(parents=True, exist_ok=True)
    head_first = sorted(range(acq.slices), key=lambda k: -acq.slice_position(k)[2])
    paths = []
    for instance, k in enumerate(head_first, start=1):
        ds = _slice_dataset(identity, acq, k, instance)
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        if uid == ExplicitVRLittleEndian:
            ds.PixelData = stored[k].tobytes()
        else:
            ds.compress(uid, stored[k], generate_instance_uid=False)
        path = out_dir / f"CT{instance:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
