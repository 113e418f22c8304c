"""`renalnode serve`: the listener plus loops (completion and routing, the worker, the dispatcher,
and the notifier when a webhook is configured), each in its own thread so a long job never delays
receiving, sending or alerting; worker processes instead of the worker thread when `[workers]`
asks for more than one (worker_pool.py); and the dashboard's web server when `[web]` is configured. At
start, associations left open and jobs left running by a crash are reset: the journal then
resumes exactly where the node stopped."""
from __future__ import annotations

import logging
import signal
import threading
import time

from deploy.node.completion import complete_quiet_series, route_complete_series
from deploy.node.config import NodeConfig
from deploy.node.dispatcher import Dispatcher, DispatchError, echo
from deploy.node.journal import Journal
from deploy.node.listener import Listener
from deploy.node.loops import run_loop
from deploy.node.metrics import NodeMetrics
from deploy.node.notify import Notifier
from deploy.node.routing import RulesFile
from deploy.node.spool import Spool
from deploy.node.task_queue import Publisher
from deploy.node.worker import Worker
from deploy.node.worker_pool import WorkerPool, worker_devices, worker_name

log = logging.getLogger("renalnode.node")


class Node:
    def __init__(self, config: NodeConfig):
        self.config = config
        self.rules = RulesFile(config.routing_rules, set(config.destinations), config.series_rules)
        self.spool = Spool(config.spool)
        self.journal = Journal(config.journal_url, notify=config.notifications is not None)
        self.metrics = NodeMetrics(self.journal, self.spool.root)
        self.listener = Listener(config.listener, self.spool, self.journal, self.metrics)
        self.worker: Worker | None = None
        self.pool: WorkerPool | None = None
        self.publisher: Publisher | None = None
        devices = [] if config.queue.broker else worker_devices(config.worker_count)
        if config.queue.broker:  # jobs go to Celery workers, on this machine or others
            self.publisher = Publisher(config, self.journal)
        elif len(devices) == 1:
            self.worker = Worker(config, self.journal, self.spool, self.metrics, worker_name(config, 0), devices[0])
        else:
            self.pool = WorkerPool(config, self.journal, devices)
        self.dispatcher = Dispatcher(config, self.journal, self.metrics)
        self.notifier = None
        if config.notifications:
            self.notifier = Notifier(config.notifications, self.journal, self.metrics, sorted(config.destinations),
                                     config.listener.ae_title, config.web.url if config.web else "",
                                     claim_as=config.node_name)
        self.stopping = threading.Event()
        self._health: dict[str, str] = {}
        self._health_checked = 0.0

    def _complete_and_route(self) -> bool:
        done = complete_quiet_series(self.journal, self.config.quiet_seconds, self.config.max_wait_seconds)
        return bool(route_complete_series(self.journal, self.rules.current())) or bool(done)

    # --- what the dashboard and /healthz ask ------------------------------------------------------
    def echo(self, name: str, who: str) -> tuple[bool, str]:
        """An operator's connectivity check of one destination, in the audit log."""
        try:
            message, ok = echo(self.config.destinations[name], self.config.listener.ae_title), True
        except DispatchError as exc:
            message, ok = str(exc), False
        self.journal.audit("echo.ok" if ok else "echo.failed", destination=name, detail=f"{message} (by {who})")
        return ok, message

    def _check_health(self) -> bool:
        """The slow checks, in their own thread every `health_check_seconds`: a journal write and an
        echo of each destination. /healthz only reads their last results."""
        every = self.config.web.health_check_seconds if self.config.web else 30.0
        if time.time() - self._health_checked < every:
            return False
        checks = {}
        try:
            self.journal.beat()
            checks["journal"] = "ok"
        except Exception as exc:  # whatever the database says, the node cannot record anything
            checks["journal"] = f"not writable ({type(exc).__name__})"
        for name, destination in sorted(self.config.destinations.items()):
            try:
                echo(destination, self.config.listener.ae_title)
                checks[f"destination {name}"] = "ok"
            except DispatchError:
                checks[f"destination {name}"] = "unreachable"   # the dashboard's echo tells why
        self._health, self._health_checked = checks, time.time()
        return False

    def health(self) -> dict[str, str]:
        """Listener accepting with a free slot (now), journal writable and destinations reachable (last check)."""
        listener = "ok" if self.listener.is_listening() else "not listening"
        return {"listener": (self.listener.saturation() or listener) if listener == "ok" else listener,
                **(self._health or {"journal": "not checked yet"})}

    # --- running ----------------------------------------------------------------------------------
    def _start_web(self) -> threading.Thread | None:
        if self.config.web is None:
            return None
        import uvicorn

        from deploy.node.web import create_app

        web = self.config.web
        self.web_server = uvicorn.Server(uvicorn.Config(create_app(self), host=web.host, port=web.port,
                                                        log_level="warning", access_log=False))
        thread = threading.Thread(target=self.web_server.run, name="web", daemon=True)
        thread.start()
        log.info("dashboard on http://%s:%d", web.host, web.port)
        return thread

    def run(self) -> None:
        self.journal.reset_open_associations()
        # Only this node's own work: other nodes on the same journal are running theirs (and in
        # distributed mode the broker delivers a lost worker's task again).
        if not self.publisher:
            reclaimed = self.journal.reclaim_running(self.config.max_attempts, node=self.config.node_name)
            if reclaimed:
                log.warning("%d job(s) left running by an earlier stop queued again", reclaimed)
        self.journal.release_claims(self.config.node_name)
        self.listener.start()
        steps = [("completion", self._complete_and_route), ("dispatcher", self.dispatcher.dispatch_due)]
        if self.worker:
            self.worker.register()
            steps.append(("worker", self.worker.run_one))
        if self.pool:
            self.pool.start()
        if self.publisher:
            steps.append(("publisher", self.publisher.publish_queued))
        if self.notifier:
            steps.append(("notifier", self.notifier.step))
        if self.config.web:
            steps.append(("health", self._check_health))
        threads = [threading.Thread(target=run_loop, args=(*step, self.stopping), name=step[0], daemon=True)
                   for step in steps]
        for thread in threads:
            thread.start()
        web = self._start_web()
        try:
            # The worker processes are supervised from this thread: each dies with the thread that started it.
            run_loop("workers", self.pool.step if self.pool else lambda: False, self.stopping)
        finally:
            if self.pool:
                self.pool.stop()
            if web:
                self.web_server.should_exit = True
                web.join(timeout=10)
            self.listener.stop()
            self.stopping.set()
            for thread in threads:
                thread.join()
            log.info("stopped")

    def stop(self, *_args) -> None:
        self.stopping.set()


def serve(config: NodeConfig) -> int:
    node = Node(config)
    signal.signal(signal.SIGTERM, node.stop)
    signal.signal(signal.SIGINT, node.stop)
    node.run()
    return 0
