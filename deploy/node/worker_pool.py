"""Workers per device on one machine (`[workers] count`): the devices the jobs run on, the worker
processes (`renalnode worker`) that run them when there is more than one, and their supervision.

Each worker process is pinned to its device (CUDA_VISIBLE_DEVICES), keeps its model loaded between
jobs and claims jobs from the journal, which already hands each job to exactly one claimant. The
supervisor, in the main thread of `renalnode serve`, restarts a worker process that exited and first queues
its job again (the attempt counted, as after a crash of the whole node).
"""
from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Literal

from deploy.node.config import NodeConfig
from deploy.node.journal import Journal
from deploy.node.loops import run_loop
from deploy.node.metrics import NodeMetrics
from deploy.node.spool import Spool
from deploy.node.worker import Worker

log = logging.getLogger("renalnode.node")
RESTART_DELAY_SECONDS = 5.0   # a worker that dies at once is not restarted in a tight loop
STOP_SECONDS = 60.0           # a stopping worker finishes its step first; after this it is killed
SUPERVISOR_ENV = "RENALNODE_SUPERVISOR_PID"
PR_SET_PDEATHSIG = 1


def worker_name(config: NodeConfig, slot: int) -> str:
    return f"{config.node_name}/{slot}"


def worker_devices(count: int | Literal["auto"]) -> list[str]:
    """The device of each worker slot: CUDA devices in turn, or the CPU on a machine without one."""
    import torch  # the app needs it anyway; only the number of devices is asked here

    gpus = torch.cuda.device_count()
    slots = max(gpus, 1) if count == "auto" else count
    return [f"cuda:{slot % gpus}" if gpus else "cpu" for slot in range(slots)]


class WorkerPool:
    def __init__(self, config: NodeConfig, journal: Journal, devices: list[str]):
        self.config, self.journal, self.devices = config, journal, devices
        self.processes: dict[int, subprocess.Popen] = {}
        self.started: dict[int, float] = {}

    def _start(self, slot: int) -> None:
        device = self.devices[slot]
        env = dict(os.environ, **{SUPERVISOR_ENV: str(os.getpid())})
        if device.startswith("cuda:"):  # the process sees its one device, as cuda:0
            env["CUDA_VISIBLE_DEVICES"] = device.removeprefix("cuda:")
        self.processes[slot] = subprocess.Popen(
            [sys.executable, "-m", "renalnode", "worker", "--config", str(self.config.source), "--slot", str(slot),
             "--device", device], env=env)
        self.started[slot] = time.monotonic()
        log.info("worker %s started on %s (pid %d)", worker_name(self.config, slot), device, self.processes[slot].pid)

    def start(self) -> None:
        for slot in range(len(self.devices)):
            self._start(slot)

    def step(self) -> bool:
        """Restart each worker process that exited, after queueing its job again."""
        for slot, process in list(self.processes.items()):
            code = process.poll()
            if code is None or time.monotonic() - self.started[slot] < RESTART_DELAY_SECONDS:
                continue
            name = worker_name(self.config, slot)
            requeued = self.journal.reclaim_running(self.config.max_attempts, worker=name)
            log.warning("worker %s exited with status %d; %d job(s) queued again; restarting it", name, code, requeued)
            self.journal.audit("worker.exited", detail=f"{name}: exit status {code}, {requeued} job(s) queued again")
            self._start(slot)
        return False

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _die_with_supervisor() -> None:
    """A worker must not outlive a node killed with SIGKILL: the restarted node queues its job again
    and a second worker would run it. Linux kills this process when its parent thread ends."""
    supervisor = os.environ.get(SUPERVISOR_ENV)
    if supervisor is None:
        return  # started by hand: nobody to die with
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != int(supervisor):  # it died before the line above
        sys.exit(1)


def run_worker(config: NodeConfig, slot: int, device: str) -> int:
    """`renalnode worker`: one worker process, until SIGTERM or SIGINT (after the job it runs): on
    the journal's queue, or a Celery worker in distributed mode (`[queue] broker`)."""
    _die_with_supervisor()
    journal = Journal(config.journal_url)
    spool = Spool(config.spool)
    worker = Worker(config, journal, spool, NodeMetrics(journal, spool.root), worker_name(config, slot), device)
    if config.queue.broker:
        from deploy.node.task_queue import run_celery_worker

        return run_celery_worker(config, worker)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    worker.register()
    run_loop(worker.name, worker.run_one, stopping)
    return 0
