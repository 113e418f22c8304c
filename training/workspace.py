"""The training workspace: one folder holding nnU-Net's raw, preprocessed and results folders.

nnU-Net finds its folders through environment variables; `Workspace.activate` sets them (and
adds the folder of renalnode's own trainers to those a user names) for this process and any process it starts.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from renalnode.nnunet_trainers import add_trainers_folder

DEFAULT_WORKSPACE = Path(os.environ.get("RENALNODE_WORKSPACE", "workspace"))
DATASET_NAME = re.compile(r"^Dataset(\d{3})_([A-Za-z0-9_-]+)$")


@dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def raw(self) -> Path:
        return self.root / "nnUNet_raw"

    @property
    def preprocessed(self) -> Path:
        return self.root / "nnUNet_preprocessed"

    @property
    def results(self) -> Path:
        return self.root / "nnUNet_results"

    def activate(self) -> Workspace:
        for path in (self.raw, self.preprocessed, self.results):
            path.mkdir(parents=True, exist_ok=True)
        os.environ["nnUNet_raw"] = str(self.raw.resolve())
        os.environ["nnUNet_preprocessed"] = str(self.preprocessed.resolve())
        os.environ["nnUNet_results"] = str(self.results.resolve())
        add_trainers_folder()
        return self

    def dataset_name(self, dataset_id: int) -> str:
        """`DatasetNNN_Name` of an imported data set, by its id."""
        matches = [p.name for p in self.raw.glob(f"Dataset{dataset_id:03d}_*") if p.is_dir()]
        if not matches:
            raise ValueError(f"no data set with id {dataset_id} in {self.raw}; run `renalnode train import` first")
        if len(matches) > 1:
            raise ValueError(f"several data sets with id {dataset_id} in {self.raw}: {sorted(matches)}")
        return matches[0]
