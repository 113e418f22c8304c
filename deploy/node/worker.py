"""The worker: claims one job at a time and runs the MONAI Deploy application on its series, in this
process where the model stays loaded between jobs (the default), or as the MAP container
(`runner = "map"`, run by Docker or Podman), which reads the series and writes the same run record. A study the
app cannot segment is quarantined with the app's reason; an error is retried up to `max_attempts`
times, then the job has failed (and its series is quarantined for an operator's retry)."""
from __future__ import annotations

import logging
import os
import socket
import subprocess
import threading
import time
import traceback
from pathlib import Path

from app.app import AppSettings, run_study
from deploy.container.engine import find_engine
from deploy.node.config import NodeConfig
from deploy.node.journal import JobState, Journal
from deploy.node.journal.rows import JobRow
from deploy.node.metrics import NodeMetrics
from deploy.node.spool import Spool
from renalnode.ensemble import InferenceSettings
from renalnode.privacy import identifiers_in, redact
from renalnode.run_record import COMPLETED, RECORD_NAME, RunRecord

log = logging.getLogger("renalnode.node")
MAP_SERIES_RULES = "/etc/renalnode/series_rules.yaml"
MAP_MODEL = "/etc/renalnode/model"  # [node] model, where map_model = "node"
SEEN_EVERY_SECONDS = 5.0   # the worker's heartbeat in its journal row, idle or in a job


class Worker:
    def __init__(self, config: NodeConfig, journal: Journal, spool: Spool, metrics: NodeMetrics, name: str = "",
                 device: str = "cpu"):
        """`name` (host/slot) is what the journal records for the jobs it holds and its own row;
        `device` is shown there (the process's CUDA devices were chosen before it started)."""
        self.config, self.journal, self.spool, self.metrics = config, journal, spool, metrics
        self.name, self.device = name, device
        self.settings = AppSettings(series_rules=config.series_rules, inference=InferenceSettings(
            tile_step_size=config.tile_step_size, use_mirroring=config.mirroring, precision=config.precision,
            region_focus=config.region_focus))
        self.engine = find_engine() if config.runner == "map" else None
        if config.runner == "map" and self.engine is None:
            raise ValueError("node.runner is 'map' but no container engine (docker or podman) runs on this machine")

    def map_command(self, input_folder: Path, output_folder: Path, name: str) -> list[str]:
        """`run` of the MAP on one series, as README's MAP section shows IT: no network (it needs none), as the
        node's own user (so the results are the node's files), the series and the node's rules read-only."""
        assert self.engine is not None
        model = []
        if self.config.map_model == "node":
            model = ["-v", f"{self.config.model}:{MAP_MODEL}:ro", "-e", f"HOLOSCAN_MODEL_PATH={MAP_MODEL}"]
        return self.engine.command(
            "run", "--rm", "--name", name, "--network", "none", *self.engine.user_arguments(),
            *self.engine.gpu_arguments(), *self.engine.limit_arguments(), "--shm-size", "2g",
            "-v", f"{input_folder}:/var/holoscan/input:ro", "-v", f"{output_folder}:/var/holoscan/output",
            # The node's own series rules, so the container selects exactly what was routed to it.
            "-v", f"{self.config.series_rules}:{MAP_SERIES_RULES}:ro", *model,
            "-e", f"RENALNODE_SERIES_RULES={MAP_SERIES_RULES}",
            "-e", f"RENALNODE_MIRRORING={int(self.config.mirroring)}",
            "-e", f"RENALNODE_TILE_STEP_SIZE={self.config.tile_step_size}",
            "-e", f"RENALNODE_PRECISION={self.config.precision}",
            "-e", f"RENALNODE_REGION_FOCUS={int(self.config.region_focus)}", self.config.map_image)

    def run_app(self, input_folder: Path, output_folder: Path, job_id: int) -> RunRecord:
        if self.config.runner == "in-process":
            return run_study(input_folder, output_folder, self.config.model, self.settings)
        output_folder.mkdir(parents=True, exist_ok=True)
        # Named after the job: a container left by a timeout or by a killed node is removed, never doubled.
        assert self.engine is not None
        name = f"renalnode-job-{job_id}"
        subprocess.run(self.engine.command("rm", "-f", name), capture_output=True)
        try:
            result = subprocess.run(self.map_command(input_folder, output_folder, name), capture_output=True,
                                    text=True, timeout=self.config.map_timeout_seconds)
        finally:
            subprocess.run(self.engine.command("rm", "-f", name), capture_output=True)
        if result.returncode:
            raise RuntimeError(f"the MAP exited {result.returncode}: {result.stderr.strip()[-500:]}")
        if not (output_folder / RECORD_NAME).is_file():
            raise RuntimeError(f"the MAP wrote no run record: {result.stderr.strip()[-500:]}")
        return RunRecord.read(output_folder)

    def register(self) -> None:
        """Its journal row, kept fresh by a heartbeat thread: a Celery worker waiting for a task, or any
        worker in a long job, still shows as alive on the dashboard and in /metrics."""
        self.journal.worker_started(self.name, socket.gethostname(), self.device, os.getpid())
        threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True).start()

    def _heartbeat(self) -> None:
        while True:
            time.sleep(SEEN_EVERY_SECONDS)
            try:
                self.journal.worker_alive(self.name)
            except Exception as exc:  # the journal away for a moment: the next beat tries again
                log.warning("worker %s: heartbeat not written: %s", self.name, exc)

    def run_one(self) -> bool:
        """Run the next queued job; False when there was none."""
        job = self.journal.claim(self.name)
        if job is None:
            return False
        self.run(job)
        return True

    def run(self, job: JobRow) -> None:
        """Run a job this worker has claimed, and record how it ended."""
        self.journal.worker_seen(self.name, job.id)
        series = self.journal.series_row(job.series_uid)
        assert series is not None and job.started is not None  # a claimed job has both
        output = self.config.results / str(job.id)
        log.info("job %d: series %s, attempt %d", job.id, job.series_uid, job.attempts)
        if job.attempts == 1:  # later attempts' waits are the node's retry delays, not the queue
            self._observe("queue", job.started - job.created)
        folder = self.spool.series_folder(series.study_uid, job.series_uid)
        start = time.perf_counter()
        try:
            record = self.run_app(folder, output, job.id)
        except Exception as exc:  # the app failed: retried, and failed for good when attempts run out
            # A library's message may quote a header value: the journal, log and webhook must not.
            private = identifiers_in(folder)
            reason = redact(f"{type(exc).__name__}: {exc}", private)
            log.error("job %d failed: %s\n%s", job.id, reason, redact(traceback.format_exc(limit=5), private))
            final = job.attempts >= self.config.max_attempts
            self._finish(job.id, JobState.FAILED if final else JobState.QUEUED,
                         f"{reason} (attempt {job.attempts} of {self.config.max_attempts})")
            return
        self._observe("app", time.perf_counter() - start)
        if record.model.get("loaded_now"):
            self.metrics.model_loads.inc()
        for stage, seconds in record.stage_seconds.items():
            self._observe(stage, seconds)
        if record.status == COMPLETED:
            self._finish(job.id, JobState.RESULTS_READY, output=str(output))
            log.info("job %d: results ready (%s)", job.id, ", ".join(sorted(record.outputs)))
        else:
            reason = redact(record.reason, identifiers_in(folder))
            self._finish(job.id, JobState.QUARANTINED, reason)
            log.warning("job %d quarantined: %s", job.id, reason)

    def _finish(self, job_id: int, state: JobState, reason: str = "", output: str = "") -> None:
        self.metrics.jobs_finished.labels(self.journal.finish(job_id, state, reason, output)).inc()
        self.journal.worker_seen(self.name, None, done=True)

    def _observe(self, stage: str, seconds: float) -> None:
        self.metrics.stage_seconds.labels(stage).observe(seconds)
