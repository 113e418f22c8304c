"""Soak: senders send small phantom studies to one node at once, some split over two associations,
while the destination PACS (Orthanc) is stopped and started every few minutes and the node is killed
with SIGKILL; it ends when every study is delivered or at the time limit. Prints what was received,
processed and delivered, and the duplicates at the destination: every study exactly once.

    .venv/bin/python bench/soak.py [--studies 24] [--senders 8] [--minutes 30] [--kill-at 60 300]

A sender behaves as a modality does: a send that fails (association refused or aborted, a failure
status) is sent again, whole, a few seconds later. A study counts as delivered when the PACS holds
its SEG, SR and PDF and the SEG references every CT instance that was sent; a duplicate is a second
result object of one kind for one study (a rerun that wrote new UIDs). The baseline of the closing
ratio is the app's own run time summed over the jobs that delivered results.
"""
from __future__ import annotations

import argparse
import io
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pydicom
from pyorthanc import Orthanc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploy.local_services import NODE_AET, LocalNode, LocalOrthanc, free_port, store_folder
from deploy.node.journal import JobState, Journal

RESULT_KINDS = ("SEG", "SR", "DOC")
DELIVERED_STATES = (JobState.RESULTS_READY, JobState.DISPATCHED)
IN_FLIGHT = (JobState.RUNNING, JobState.RESULTS_READY)


@dataclass
class Study:
    folder: Path
    study_uid: str
    series_uid: str
    instances: int
    split: bool                 # sent as two halves on two associations at once
    send_attempts: int = 0
    sent: bool = False
    parts: list[Path] = field(default_factory=list)


def make_studies(phantoms: Path, count: int, split_every: int) -> list[Study]:
    subprocess.run([sys.executable, "-m", "renalnode", "phantom", "--out", str(phantoms), "--cases", str(count),
                    "--seed", "41", "--small", "--position", "mixed"], check=True)
    studies = []
    for k, case in enumerate(sorted(p for p in phantoms.iterdir() if (p / "dicom").is_dir())[:count]):
        files = sorted((case / "dicom").glob("*.dcm"))
        header = pydicom.dcmread(files[0], stop_before_pixels=True)
        study = Study(case / "dicom", header.StudyInstanceUID, header.SeriesInstanceUID, len(files),
                      split=k % split_every == 1)
        if study.split:  # interleaved halves, so that both associations carry slices from the whole range
            for half in (0, 1):
                part = case / f"part{half}"
                part.mkdir(exist_ok=True)
                for f in files[half::2]:
                    if not (part / f.name).exists():
                        os.link(f, part / f.name)
                study.parts.append(part)
        studies.append(study)
    return studies


class Sender(threading.Thread):
    """One modality with its own AE title: it sends its studies `interval` seconds apart, from
    `offset` seconds after the start, and resends a failed one."""

    def __init__(self, aet: str, port: int, studies: list[Study], offset: float, interval: float, deadline: float):
        super().__init__(name=aet, daemon=True)
        self.aet, self.port, self.studies, self.deadline = aet, port, studies, deadline
        self.offset, self.interval = offset, interval
        self.sending = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        for k, study in enumerate(self.studies):
            time.sleep(max(0.0, started + self.offset + k * self.interval - time.monotonic()))
            while not study.sent and time.monotonic() < self.deadline:
                study.send_attempts += 1
                self.sending.set()
                folders = study.parts or [study.folder]
                with ThreadPoolExecutor(len(folders)) as pool:
                    codes = list(pool.map(lambda f: store_folder(self.port, NODE_AET, f, self.aet).returncode,
                                          folders))
                study.sent = not any(codes)
                self.sending.clear()
                if not study.sent:
                    time.sleep(5)


class Outages(threading.Thread):
    """Stops the destination every `every` seconds for `down` seconds."""

    def __init__(self, pacs: LocalOrthanc, every: float, down: float):
        super().__init__(name="outages", daemon=True)
        self.pacs, self.every, self.down = pacs, every, down
        self.count = 0
        self.finish = threading.Event()
        self.up = threading.Event()
        self.up.set()

    def run(self) -> None:
        while not self.finish.wait(self.every):
            self.up.clear()
            self.pacs.stop()
            self.count += 1
            self.finish.wait(self.down)
            self.pacs.start()
            self.up.set()


def seg_references(pacs: LocalOrthanc, study_uid: str) -> int:
    """CT instances the study's SEG references (0 when it has none)."""
    client = Orthanc(pacs.url)
    for series in client.get_series(params={"expand": True}):
        if series["MainDicomTags"].get("Modality") != "SEG":
            continue
        if client.get_studies_id(series["ParentStudy"])["MainDicomTags"]["StudyInstanceUID"] != study_uid:
            continue
        seg = pydicom.dcmread(io.BytesIO(client.get_instances_id_file(series["Instances"][0])))
        return sum(len(s.ReferencedInstanceSequence) for s in seg.ReferencedSeriesSequence)
    return 0


def delivered(studies: list[Study], found: dict[str, Counter]) -> list[Study]:
    return [s for s in studies if all(found.get(s.study_uid, Counter())[kind] for kind in RESULT_KINDS)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=24)
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--split-every", type=int, default=3, help="every n-th study is sent in two halves")
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--outage-every", type=float, default=120, help="seconds between destination stops")
    parser.add_argument("--outage-seconds", type=float, default=30, help="how long the destination stays down")
    parser.add_argument("--send-interval", type=float, default=60,
                        help="seconds between the studies of one sender (senders start evenly spread over it)")
    parser.add_argument("--kill-at", type=float, nargs="*", default=[60, 180],
                        help="seconds after the start from which the node is killed with SIGKILL, at the first "
                             "moment an association is open or a job is running")
    parser.add_argument("--work", type=Path, help="keep the phantoms and services here (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="renalnode-soak-") as tmp:
        work = args.work or Path(tmp)
        return soak(args, work)


def soak(args: argparse.Namespace, work: Path) -> int:
    studies = make_studies(work / "phantoms", args.studies, args.split_every)
    senders = [f"SOAK{n + 1}" for n in range(args.senders)]
    pacs = LocalOrthanc(work / "pacs").start()
    node = LocalNode(work / "node", pacs.dicom_port, free_port(), tuple(senders), quiet_seconds=5, sections={
        "node": {"spool": "spool", "quiet_seconds": 5, "max_wait_seconds": 600, "max_attempts": 3,
                 "mirroring": False}}).start()
    outages = Outages(pacs, args.outage_every, args.outage_seconds)
    started = time.monotonic()
    deadline = started + args.minutes * 60
    threads = [Sender(aet, node.port, studies[n::len(senders)], n * args.send_interval / len(senders),
                      args.send_interval, deadline) for n, aet in enumerate(senders)]
    journal = Journal(node.journal_url)
    kills = sorted(args.kill_at)
    killed = 0
    found: dict[str, Counter] = {}
    print(f"{len(studies)} studies ({sum(s.instances for s in studies)} instances, {sum(s.split for s in studies)} "
          f"split over two associations), {len(senders)} senders; destination down {args.outage_seconds:.0f} s "
          f"every {args.outage_every:.0f} s; SIGKILL at {', '.join(f'{k:.0f}' for k in kills)} s", flush=True)
    try:
        for thread in (*threads, outages):
            thread.start()
        last_report = last_poll = 0.0
        while time.monotonic() < deadline:
            elapsed = time.monotonic() - started
            receiving = any(t.sending.is_set() for t in threads)
            if killed < len(kills) and elapsed >= kills[killed] and (receiving or journal.jobs_in(IN_FLIGHT)):
                node.stop(signal.SIGKILL)
                killed += 1
                print(f"{elapsed:6.0f} s  node killed (SIGKILL {killed}) while "
                      f"{'receiving' if receiving else 'a job ran or waited to be sent'}", flush=True)
                node.start()
            if outages.up.is_set() and elapsed - last_poll >= 5:
                last_poll = elapsed
                try:
                    found = pacs.instances_by_study()
                except (httpx.HTTPError, OSError):
                    pass  # stopped between the check and the query
            done = delivered(studies, found)
            if elapsed - last_report >= 30:
                last_report = elapsed
                print(f"{elapsed:6.0f} s  sent {sum(s.sent for s in studies):2d}  delivered {len(done):2d}/"
                      f"{len(studies)}  destination {'up' if outages.up.is_set() else 'down'}  "
                      f"outages {outages.count}  kills {killed}", flush=True)
            if len(done) == len(studies):  # nothing is left in flight for a kill still due
                break
            time.sleep(0.5)
        seconds = time.monotonic() - started
        outages.finish.set()
        outages.join()
        for thread in threads:
            thread.join(timeout=1)
        found = pacs.instances_by_study()
        complete = {s.study_uid: seg_references(pacs, s.study_uid) == s.instances for s in delivered(studies, found)}
    finally:
        outages.finish.set()
        node.stop()
        pacs.stop()
    return report(studies, found, complete, journal, seconds, outages.count, killed, len(kills))


def report(studies: list[Study], found: dict[str, Counter], complete: dict[str, bool], journal: Journal,
           seconds: float, outage_count: int, killed: int, kills: int) -> int:
    rows = {s.series_uid: journal.series_row(s.series_uid) for s in studies}
    jobs = journal.recent_jobs(100000)
    processed = {job.series_uid for job in jobs if job.state in DELIVERED_STATES}
    duplicates = {s.study_uid: {k: n for k, n in found.get(s.study_uid, Counter()).items() if n > 1}
                  for s in studies}
    duplicates = {uid: kinds for uid, kinds in duplicates.items() if kinds}
    done = delivered(studies, found)
    sent_instances = sum(s.instances for s in studies if s.sent)
    received_instances = sum(row.instances for row in rows.values() if row)
    app_seconds = sum(job.finished - job.started for job in jobs
                      if job.state in DELIVERED_STATES and job.started and job.finished)
    print(f"\nafter {seconds:.0f} s, {outage_count} destination outage(s), {killed} SIGKILL(s) of the node"
          + (f" ({kills - killed} not made: everything was delivered before)" if killed < kills else "") + ":")
    print(f"  sent       {sum(s.sent for s in studies):3d} of {len(studies)} studies "
          f"({sum(s.send_attempts for s in studies)} send attempts), {sent_instances} instances")
    print(f"  received   {sum(1 for row in rows.values() if row):3d} series, {received_instances} instances")
    print(f"  processed  {len(processed & set(rows)):3d} series ({len(jobs)} jobs, by state: "
          f"{dict(Counter(str(job.state) for job in jobs))})")
    print(f"  delivered  {len(done):3d} studies with SEG, SR and PDF; "
          f"{sum(complete.values())} with a SEG over every instance sent")
    print(f"  duplicates {len(duplicates):3d} studies" + (f": {duplicates}" if duplicates else ""))
    if app_seconds:
        print(f"  wall time / the app's own time over its jobs: {seconds:.0f} / {app_seconds:.0f} s = "
              f"{seconds / app_seconds:.2f}")
    ok = len(done) == len(studies) and all(complete.values()) and not duplicates
    print("every study delivered exactly once" if ok else "NOT every study delivered exactly once")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
