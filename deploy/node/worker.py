"""The worker: claims one job at a time and runs the MONAI Deploy application on its series in this
process, where the model stays loaded between jobs. A study the app cannot segment is quarantined
with the app's reason; an error is retried up to `max_attempts` times, then quarantined."""
from __future__ import annotations

import logging
import traceback

from app.app import AppSettings, run_study
from deploy.node.config import NodeConfig
from deploy.node.journal import QUARANTINED, QUEUED, RESULTS_READY, Journal
from deploy.node.spool import Spool
from renalnode.run_record import COMPLETED

log = logging.getLogger("renalnode.node")


class Worker:
    def __init__(self, config: NodeConfig, journal: Journal, spool: Spool):
        self.config, self.journal, self.spool = config, journal, spool
        self.settings = AppSettings(tile_step_size=config.tile_step_size, use_mirroring=config.mirroring)

    def run_one(self) -> bool:
        """Run the next queued job; False when there was none."""
        job = self.journal.claim()
        if job is None:
            return False
        row = self.journal.series_row(job.series_uid)
        output = self.config.results / str(job.id)
        log.info("job %d: series %s, attempt %d", job.id, job.series_uid, job.attempts)
        try:
            record = run_study(self.spool.series_folder(row["study_uid"], job.series_uid), output, self.config.model,
                               self.settings)
        except Exception as exc:  # the app failed: retried, and quarantined when attempts run out
            reason = f"{type(exc).__name__}: {exc}"
            log.error("job %d failed: %s\n%s", job.id, reason, traceback.format_exc(limit=5))
            final = job.attempts >= self.config.max_attempts
            self.journal.finish(job.id, QUARANTINED if final else QUEUED,
                                f"{reason} (attempt {job.attempts} of {self.config.max_attempts})")
            return True
        if record.status == COMPLETED:
            self.journal.finish(job.id, RESULTS_READY, output=str(output))
            log.info("job %d: results ready (%s)", job.id, ", ".join(sorted(record.outputs)))
        else:
            self.journal.finish(job.id, QUARANTINED, record.reason)
            log.warning("job %d quarantined: %s", job.id, record.reason)
        return True
