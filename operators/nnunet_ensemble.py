"""The nnU-Net ensemble step: a CT volume in, a label map on the same grid out.

The model package is loaded once per process and kept for every later study (`cached_predictor`);
`LOAD_COUNT` counts real loads so that tests and metrics can prove it. nnU-Net ignores direction
cosines, so the volume is reoriented to LPS (as in training import) before inference and the labels
are put back on the CT's own grid afterwards, with the catalogue's values (the package maps its own).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from holoscan.core import OperatorSpec

from operators.ct_volume import CTVolume
from operators.recording import RecordingOperator
from renalnode.ensemble import EnsemblePredictor, InferenceSettings
from renalnode.model_package import ModelPackage, load_model_package

_CACHE: dict[tuple, tuple[ModelPackage, EnsemblePredictor]] = {}
_LOCK = threading.Lock()
LOAD_COUNT = 0


def cached_predictor(package_dir: Path, settings: InferenceSettings | None = None
                     ) -> tuple[ModelPackage, EnsemblePredictor]:
    """The package and its predictor (default settings when None), loaded on first use and reused afterwards."""
    global LOAD_COUNT
    settings = settings or InferenceSettings()
    key = (str(Path(package_dir).resolve()), settings)
    with _LOCK:
        if key not in _CACHE:
            package = load_model_package(Path(package_dir))
            _CACHE[key] = package, EnsemblePredictor(package.nnunet_dir, package.folds, settings,
                                                     input_antialiasing=package.input_antialiasing)
            LOAD_COUNT += 1
        return _CACHE[key]


@dataclass
class SegmentedVolume:
    volume: CTVolume
    label: np.ndarray      # uint8, numpy order (k, j, i) on the CT grid
    model: ModelPackage


class NnunetEnsembleOperator(RecordingOperator):
    """Segments the volume with the model package, loaded on this process's first study only."""

    def __init__(self, fragment, *args, model_dir: Path, settings: InferenceSettings, **kwargs):
        self.model_dir = Path(model_dir)
        self.settings = settings
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec):
        spec.input("volume")
        spec.output("segmented")

    def compute(self, op_input, op_output, context):
        volume = op_input.receive("volume")
        loads_before = LOAD_COUNT
        with self.record.stage("model"):
            package, predictor = cached_predictor(self.model_dir, self.settings)
        self.record.model = {"name": package.name, "version": package.version, "path": str(package.path),
                             "folds": package.folds, "decision_offsets": package.decision_offsets,
                             "input_antialiasing": package.input_antialiasing,
                             "device": str(predictor.device), "loaded_now": LOAD_COUNT > loads_before,
                             "tile_step_size": self.settings.tile_step_size, "mirroring": self.settings.use_mirroring,
                             "precision": self.settings.precision, "region_focus": self.settings.region_focus}
        with self.record.stage("inference"):
            label = package.to_catalogue(predictor.segment_image(volume.image, package.network_offsets))
        op_output.emit(SegmentedVolume(volume, label, package), "segmented")
