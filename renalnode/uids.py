"""Deterministic DICOM UIDs: the same inputs give the same UID, so regenerating an object (a
phantom, or a result written again after a crash) never creates a duplicate."""
from __future__ import annotations

import uuid

_NAMESPACE = uuid.UUID("6f0c8d2e-5a57-4f43-9d35-2f1f4c3e7a10")


def deterministic_uid(*parts: object) -> str:
    """2.25 followed by the decimal form of a name-based (version 5) UUID of the parts (PS3.5 B.2)."""
    return f"2.25.{uuid.uuid5(_NAMESPACE, '/'.join(map(str, parts))).int}"
