"""Writes that never leave a half-written file under the final name: write a temporary file in the
same folder, fsync it, rename it over the final name, fsync the folder (docs/architecture.md: nothing lost
on a crash). Readers see either the old complete file or the new complete file."""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

from pydicom import Dataset


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_atomic(tmp: Path, path: Path) -> Path:
    """Put a complete file written at `tmp` (in `path`'s folder) under `path`, durably: for writers
    that need a file name of their own (SimpleITK picks the format from its extension)."""
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_folder(path.parent)
    return path


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    path = Path(path)
    # A unique temporary name: two threads writing the same file never share one.
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_folder(path.parent)
    return path


def save_dicom_atomic(ds: Dataset, path: Path) -> Path:
    """A DICOM file with its file meta (Part 10), written atomically."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return write_bytes_atomic(path, buffer.getvalue())
