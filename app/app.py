"""The renalnode MONAI Deploy application: one study folder in; a DICOM SEG, a TID 1500 SR and an
Encapsulated PDF report out, plus `renalnode-run.json`, the record of what the run did and why.

    study reader -> series selection -> CT volume -> nnU-Net ensemble -> post-processing
        -> SEG writer -> SR writer
        -> PDF report writer

A study with no suitable series, or whose series cannot be made into a volume, ends with the reason
in the log and in the run record, and writes no DICOM object. The model package is loaded once per
process (operators/nnunet_ensemble.py), so a process that runs many studies loads it once.

Paths come from `-i/-o/-m` or, inside a MAP, from HOLOSCAN_INPUT_PATH, HOLOSCAN_OUTPUT_PATH and
HOLOSCAN_MODEL_PATH; without either the bundled demo model is used. Settings come from the
environment (`AppSettings`).
"""
from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from holoscan.conditions import CountCondition
from monai.deploy.core import Application

from operators.ct_volume import CTVolumeOperator
from operators.nnunet_ensemble import NnunetEnsembleOperator
from operators.pdf_report import PdfReportOperator
from operators.postprocessing import PostprocessingOperator
from operators.seg_writer import SegWriterOperator
from operators.series_selection import SelectionRules, SeriesSelectionOperator
from operators.sr_writer import SrWriterOperator
from operators.study_loader import StudyLoaderOperator
from renalnode.ensemble import InferenceSettings
from renalnode.model_package import find_model_package
from renalnode.privacy import identifiers_in, redact
from renalnode.run_record import COMPLETED, FAILED, RECORD_NAME, RUNNING, RunRecord
from renalnode.series_eligibility import DEFAULT_SERIES_RULES

log = logging.getLogger("renalnode.app")
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "models" / "renalnode-demo"
OUTPUT_NAMES = ("seg.dcm", "sr.dcm", "pdf.dcm", RECORD_NAME)


def _flag(value: str) -> bool:
    if value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if value.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a yes/no value: {value!r}")


@dataclass(frozen=True)
class AppSettings:
    """What a site may tune without code. Environment: RENALNODE_SERIES_RULES (a rules file),
    RENALNODE_TILE_STEP_SIZE (sliding-window step as a fraction of the patch, 0 < s <= 1; smaller is
    slower and smoother), RENALNODE_MIRRORING (test-time mirroring, 1 or 0), RENALNODE_PRECISION
    (auto, float32 or bfloat16 on a CPU), RENALNODE_REGION_FOCUS (1 or 0) and RENALNODE_BATCH_SIZE (network
    inputs per call; 0 chooses): see renalnode.ensemble.InferenceSettings."""
    series_rules: Path = DEFAULT_SERIES_RULES
    inference: InferenceSettings = InferenceSettings()

    @classmethod
    def from_environment(cls) -> AppSettings:
        env = os.environ
        inference = InferenceSettings(tile_step_size=float(env.get("RENALNODE_TILE_STEP_SIZE", 0.5)),
                                      use_mirroring=_flag(env.get("RENALNODE_MIRRORING", "1")),
                                      precision=env.get("RENALNODE_PRECISION", "auto"),
                                      region_focus=_flag(env.get("RENALNODE_REGION_FOCUS", "0")),
                                      batch_size=int(env.get("RENALNODE_BATCH_SIZE", "0")) or None)
        return cls(series_rules=Path(env.get("RENALNODE_SERIES_RULES", DEFAULT_SERIES_RULES)), inference=inference)


class RenalnodeApp(Application):
    """Segments kidneys, solid renal masses and renal cysts in the best abdominal CT series of a study."""

    def __init__(self, *args, input_folder: Path | None = None, output_folder: Path | None = None,
                 model_path: Path | None = None, settings: AppSettings | None = None, **kwargs):
        self.settings = settings or AppSettings.from_environment()
        self.record = RunRecord()
        super().__init__(*args, **kwargs)
        # Resolved before the graph runs, so that a wrong path or setting stops the app at once.
        self.input_folder, self.output_folder, self.model_dir = self._paths(input_folder, output_folder, model_path)
        self.rules = SelectionRules.load(self.settings.series_rules)

    def _paths(self, input_folder: Path | None, output_folder: Path | None, model_path: Path | None
               ) -> tuple[Path, Path, Path]:
        if input_folder is None or output_folder is None:
            context = Application.init_app_context(self.argv)
            input_folder, output_folder = input_folder or context.input_path, output_folder or context.output_path
            if model_path is None and (context.args.get("model") or os.environ.get("HOLOSCAN_MODEL_PATH")):
                model_path = context.model_path
        if not Path(input_folder).is_dir():
            raise FileNotFoundError(f"input folder {input_folder} does not exist")
        return Path(input_folder), Path(output_folder), find_model_package(Path(model_path or DEFAULT_MODEL))

    def compose(self):
        output_folder, record = self.output_folder, self.record
        output_folder.mkdir(parents=True, exist_ok=True)
        for name in OUTPUT_NAMES:  # a rerun must not leave an earlier run's objects behind
            (output_folder / name).unlink(missing_ok=True)
        log.info("model package %s; input %s; output %s", self.model_dir, self.input_folder, output_folder)

        reader = StudyLoaderOperator(self, CountCondition(self, 1), input_folder=self.input_folder, record=record,
                                     name="study_reader")
        selection = SeriesSelectionOperator(self, rules=self.rules, record=record, name="series_selection")
        volume = CTVolumeOperator(self, record=record, name="ct_volume")
        ensemble = NnunetEnsembleOperator(self, model_dir=self.model_dir, settings=self.settings.inference,
                                          record=record, name="nnunet_ensemble")
        postprocessing = PostprocessingOperator(self, record=record, name="postprocessing")
        seg = SegWriterOperator(self, output_folder=output_folder, record=record, name="seg_writer")
        sr = SrWriterOperator(self, output_folder=output_folder, record=record, name="sr_writer")
        pdf = PdfReportOperator(self, output_folder=output_folder, record=record, name="pdf_writer")

        self.add_flow(reader, selection, {("study", "study")})
        self.add_flow(selection, volume, {("series", "series")})
        self.add_flow(volume, ensemble, {("volume", "volume")})
        self.add_flow(ensemble, postprocessing, {("segmented", "segmented")})
        self.add_flow(postprocessing, seg, {("findings", "findings")})
        self.add_flow(postprocessing, pdf, {("findings", "findings")})
        self.add_flow(seg, sr, {("seg", "seg")})

    def run_and_record(self) -> RunRecord:
        """Run the study; write and return the run record (also when the run fails)."""
        try:
            self.run()
        except BaseException as exc:
            # A library's message may quote a header value: the record is read by operators.
            self.record.status = FAILED
            self.record.reason = redact(f"{type(exc).__name__}: {exc}", identifiers_in(self.input_folder))
            raise
        else:
            if self.record.status == RUNNING:
                self.record.status = COMPLETED
        finally:
            if self.output_folder.is_dir():
                self.record.write(self.output_folder)
        return self.record


def run_study(input_folder: Path, output_folder: Path, model_path: Path | None = None,
              settings: AppSettings | None = None) -> RunRecord:
    """Run the application on one study in this process (the node's worker, the tests, the benchmark)."""
    app = RenalnodeApp([sys.executable, "renalnode-app"], input_folder=input_folder, output_folder=output_folder,
                       model_path=model_path or DEFAULT_MODEL, settings=settings)
    return app.run_and_record()


def main() -> int:
    """Exit 0 when the study was handled (segmented, or not segmentable with a reason), 2 on a
    configuration error, 1 when the run failed (the record says why)."""
    try:
        app = RenalnodeApp()
    except (ValueError, OSError) as exc:  # settings, rules, model package, paths
        print(f"renalnode app: error: {exc}", file=sys.stderr)
        return 2
    logging.getLogger("highdicom").setLevel(logging.WARNING)  # it logs every attribute it copies
    record = app.run_and_record()
    log.info("run %s%s", record.status, f": {record.reason}" if record.reason else "")
    return 0
