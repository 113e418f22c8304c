"""What one run of the application did, for operators (the node, IT, the benchmark): the series it
chose and why every other series was passed over, why it stopped when it produced nothing, the
objects it wrote, the findings (no patient data) and the seconds each stage took. The app writes it
as `renalnode-run.json` next to its outputs."""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pydicom import Dataset

from renalnode.atomic import save_dicom_atomic, write_bytes_atomic

RECORD_NAME = "renalnode-run.json"
KEY_IMAGE_FOLDER = "key-images"
log = logging.getLogger("renalnode.app")

# How a run ended. Only COMPLETED writes DICOM objects.
COMPLETED = "completed"
NO_SUITABLE_SERIES = "no_suitable_series"
VOLUME_REJECTED = "volume_rejected"
FAILED = "failed"        # an error nobody foresaw: the record holds it, the app exits non-zero
RUNNING = "running"


@dataclass
class RunRecord:
    status: str = RUNNING
    reason: str = ""                      # why the run ended without outputs, empty when completed
    series_uid: str = ""                  # the series segmented
    selection_reason: str = ""
    passed_over: dict[str, str] = field(default_factory=dict)   # series UID -> reason
    volume_attempts: dict[str, str] = field(default_factory=dict)  # series UID -> "used" or why no volume
    skipped_files: dict[str, str] = field(default_factory=dict)  # file name -> reason
    model: dict = field(default_factory=dict)
    findings: list[dict] = field(default_factory=list)
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)  # kind -> file, SOP class and instance UIDs
    key_images: dict[str, str] = field(default_factory=dict)  # finding name -> PNG file under key-images/
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            seconds = time.perf_counter() - start
            self.stage_seconds[name] = round(self.stage_seconds.get(name, 0.0) + seconds, 4)
            log.info("stage %s: %.2f s", name, seconds)

    def stop(self, status: str, reason: str) -> None:
        """The run ends here without outputs, for a reason a person can act on."""
        self.status, self.reason = status, reason
        log.warning("no output: %s", reason)

    def save_output(self, kind: str, ds: Dataset, folder: Path) -> Path:
        """Write one result object (`kind`: SEG, SR or PDF) atomically and note it."""
        path = save_dicom_atomic(ds, Path(folder) / f"{kind.lower()}.dcm")
        self.outputs[kind] = {"file": path.name, "sop_class_uid": str(ds.SOPClassUID),
                              "sop_instance_uid": str(ds.SOPInstanceUID),
                              "series_instance_uid": str(ds.SeriesInstanceUID)}
        log.info("wrote %s %s", kind, path.name)
        return path

    def save_key_image(self, finding_name: str, png: bytes, folder: Path) -> Path:
        """A key image for people watching the node (its dashboard); not one of the DICOM outputs."""
        name = f"{len(self.key_images) + 1:02d}.png"
        (Path(folder) / KEY_IMAGE_FOLDER).mkdir(parents=True, exist_ok=True)
        path = write_bytes_atomic(Path(folder) / KEY_IMAGE_FOLDER / name, png)
        self.key_images[finding_name] = f"{KEY_IMAGE_FOLDER}/{name}"
        return path

    def as_dict(self) -> dict:
        return asdict(self)

    def write(self, folder: Path) -> Path:
        return write_bytes_atomic(Path(folder) / RECORD_NAME, json.dumps(self.as_dict(), indent=2).encode())

    @classmethod
    def read(cls, folder: Path) -> RunRecord:
        return cls(**json.loads((Path(folder) / RECORD_NAME).read_text()))
