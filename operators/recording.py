"""The base of renalnode's operators: each is given the run's record, to note its stage's time and
what it found or wrote, and, if it writes result objects, the output folder."""
from __future__ import annotations

from pathlib import Path

from holoscan.core import Operator

from renalnode.run_record import RunRecord


class RecordingOperator(Operator):
    def __init__(self, fragment, *args, record: RunRecord, output_folder: Path | None = None, **kwargs):
        self.record = record
        self.output_folder = Path(output_folder) if output_folder is not None else None
        super().__init__(fragment, *args, **kwargs)

    def results_folder(self) -> Path:
        """Where a writer puts its result objects."""
        if self.output_folder is None:
            raise ValueError(f"{type(self).__name__} writes results but was given no output folder")
        return self.output_folder
