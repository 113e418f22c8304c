"""The spool: received instances on disk exactly as they arrived (no decoding, no transcoding),
one folder per series, each file written under a temporary name, fsynced and renamed before the
sender is told it was stored. Paths are built from UIDs, which are checked first: a UID is the
only thing a sender controls here, and it must never become '..'."""
from __future__ import annotations

import re
from pathlib import Path

from renalnode.atomic import write_bytes_atomic

UID = re.compile(r"[0-9]+(\.[0-9]+)*")


def valid_uid(uid: str) -> bool:
    return bool(uid) and len(uid) <= 64 and UID.fullmatch(uid) is not None


class Spool:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.incoming = self.root / "incoming"
        self.incoming.mkdir(parents=True, exist_ok=True)

    def series_folder(self, study_uid: str, series_uid: str) -> Path:
        if not (valid_uid(study_uid) and valid_uid(series_uid)):
            raise ValueError("invalid study or series UID")
        return self.incoming / study_uid / series_uid

    def store(self, study_uid: str, series_uid: str, sop_uid: str, encoded: bytes) -> Path:
        if not valid_uid(sop_uid):
            raise ValueError("invalid SOP instance UID")
        folder = self.series_folder(study_uid, series_uid)
        folder.mkdir(parents=True, exist_ok=True)
        return write_bytes_atomic(folder / f"{sop_uid}.dcm", encoded)
