"""Is a received instance usable? Checked before it is stored and acknowledged, so that a sender
never gets success for an instance the node cannot process later (a modality that got success
believes the study was delivered).

An instance passes when it is encoded as the transfer syntax of its presentation context says
(pydicom reads implicit VR bytes offered as explicit VR, and notes what it found: such an instance is
refused), every element parses, and, when it has
pixel data, that data fits its description: native pixel data is as long as rows x columns x frames
x samples x bits allocated say; encapsulated pixel data holds at least one fragment per frame.
"""
from __future__ import annotations

from io import BytesIO

from pydicom import Dataset
from pydicom.encaps import generate_fragmented_frames
from pydicom.pixels.utils import get_expected_length
from pydicom.uid import UID
from pynetdicom.dsutils import decode

# C-STORE failure statuses (PS3.4 Annex B.2.3)
DATA_SET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC000


def _unparsable_element(ds: Dataset) -> str | None:
    """The first element whose value does not parse (its tag and the error's kind: a library's message
    may quote a patient's value, which must not reach the log or the audit trail)."""
    elements = ds.iterall()   # pydicom converts raw values on access: a bad encoding raises here
    tag = "the data set"
    while True:
        try:
            element = next(elements)
            tag = f"{element.tag} {element.keyword}".strip()
            _ = element.value
        except StopIteration:
            return None
        except Exception as exc:   # whatever a malformed encoding raises inside pydicom
            return f"{tag} ({type(exc).__name__})"


def _pixel_data_problem(ds: Dataset, transfer_syntax: UID) -> str | None:
    missing = [k for k in ("Rows", "Columns", "BitsAllocated", "SamplesPerPixel") if k not in ds]
    if missing:
        return f"pixel data without {', '.join(missing)}"
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if transfer_syntax.is_encapsulated:
        found = sum(1 for _ in generate_fragmented_frames(ds.PixelData, number_of_frames=frames))
        if found < frames:
            return f"encapsulated pixel data holds {found} frame(s), {frames} declared"
        return None
    expected = get_expected_length(ds, "bytes")
    length = len(ds.PixelData)
    if length not in (expected, expected + expected % 2):
        return f"pixel data of {length} bytes, {expected} expected from its rows, columns, frames and bits"
    return None


def decode_received(encoded: BytesIO, transfer_syntax: UID) -> Dataset:
    """The data set as received (without file meta), decoded once for the check and the listener.
    Decoded here rather than taken from pynetdicom's event, which labels the data set with the
    context's encoding whatever pydicom found."""
    return decode(BytesIO(encoded.getvalue()), transfer_syntax.is_implicit_VR, transfer_syntax.is_little_endian,
                  transfer_syntax.is_deflated)


def instance_problem(ds: Dataset, transfer_syntax: UID) -> tuple[int, str] | None:
    """(C-STORE failure status, reason) when the decoded data set `ds` cannot be used, None when it can."""
    implicit, little_endian = ds.original_encoding
    if implicit is not None and (implicit, little_endian) != (transfer_syntax.is_implicit_VR,
                                                              transfer_syntax.is_little_endian):
        found = f"{'implicit' if implicit else 'explicit'} VR {'little' if little_endian else 'big'} endian"
        return CANNOT_UNDERSTAND, f"encoded as {found}, not as its presentation context's {transfer_syntax.name}"
    unparsable = _unparsable_element(ds)
    if unparsable:
        return CANNOT_UNDERSTAND, f"does not parse as {transfer_syntax.name} at {unparsable}"
    if "PixelData" not in ds:
        return None
    try:
        problem = _pixel_data_problem(ds, transfer_syntax)
    except Exception as exc:   # a fragment table that does not parse
        return CANNOT_UNDERSTAND, f"pixel data does not parse ({type(exc).__name__})"
    return (DATA_SET_DOES_NOT_MATCH_SOP_CLASS, problem) if problem else None
