"""`renalnode serve`: the listener plus loops (completion and routing, the worker, the dispatcher,
and the notifier when a webhook is configured), each in its own thread so a long job never delays
receiving, sending or alerting; and the dashboard's web server when `[web]` is configured. At
start, associations left open and jobs left running by a crash are reset: the journal then
resumes exactly where the node stopped."""
from __future__ import annotations

import logging
import signal
import socket
import threading
import time

from deploy.node.completion import complete_quiet_series, route_complete_series
from deploy.node.config import NodeConfig
from deploy.node.dispatcher import Dispatcher, DispatchError, echo
from deploy.node.journal import Journal
from deploy.node.listener import Listener
from deploy.node.metrics import NodeMetrics
from deploy.node.notify import Notifier
from deploy.node.routing import RulesFile
from deploy.node.spool import Spool
from deploy.node.worker import Worker

log = logging.getLogger("renalnode.node")
IDLE_SECONDS = 0.5


class Node:
    def __init__(self, config: NodeConfig):
        self.config = config
        self.rules = RulesFile(config.routing_rules, set(config.destinations))
        self.spool = Spool(config.spool)
        self.journal = Journal(config.journal_url, notify=config.notifications is not None)
        self.metrics = NodeMetrics(self.journal, self.spool.root)
        self.listener = Listener(config.listener, self.spool, self.journal, self.metrics)
        self.worker = Worker(config, self.journal, self.spool, self.metrics)
        self.dispatcher = Dispatcher(config, self.journal, self.metrics)
        self.notifier = None
        if config.notifications:
            self.notifier = Notifier(config.notifications, self.journal, self.metrics, sorted(config.destinations),
                                     config.listener.ae_title, config.web.url if config.web else "")
        self.stopping = threading.Event()
        self._destination_checks: dict[str, tuple[float, bool, str]] = {}  # name -> (when, reachable, message)

    def _loop(self, name: str, step) -> None:
        while not self.stopping.is_set():
            try:
                busy = step()
            except Exception:  # a loop must survive anything one step throws; the journal keeps the state
                log.exception("%s step failed", name)
                busy = False
            if not busy:
                self.stopping.wait(IDLE_SECONDS)

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
        self._destination_checks[name] = (time.time(), ok, message)
        self.journal.audit("echo.ok" if ok else "echo.failed", destination=name, detail=f"{message} (by {who})")
        return ok, message

    def _listener_up(self) -> bool:
        if self.listener.server is None:
            return False
        host = "127.0.0.1" if self.config.listener.host in ("", "0.0.0.0") else self.config.listener.host
        try:
            with socket.create_connection((host, self.config.listener.port), timeout=2):
                return True
        except OSError:
            return False

    def health(self) -> dict:
        """Listener accepting, journal writable, destinations reachable (checked at most every
        `health_check_seconds`, so a monitoring probe does not open an association each time)."""
        checks = {"listener": "ok" if self._listener_up() else "not accepting connections"}
        try:
            self.journal.beat()
            checks["journal"] = "ok"
        except Exception as exc:  # whatever the database says, the node cannot record anything
            checks["journal"] = f"not writable: {type(exc).__name__}"
        every = self.config.web.health_check_seconds if self.config.web else 30.0
        for name, destination in self.config.destinations.items():
            when, ok, message = self._destination_checks.get(name, (0.0, False, ""))
            if time.time() - when > every:
                try:
                    ok, message = True, echo(destination, self.config.listener.ae_title)
                except DispatchError as exc:
                    ok, message = False, str(exc)
                self._destination_checks[name] = (time.time(), ok, message)
            checks[f"destination {name}"] = "ok" if ok else f"unreachable: {message}"
        return checks

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
        reclaimed = self.journal.reclaim_running(self.config.max_attempts)
        if reclaimed:
            log.warning("%d job(s) left running by an earlier stop queued again", reclaimed)
        self.listener.start()
        steps = [("completion", self._complete_and_route), ("worker", self.worker.run_one),
                 ("dispatcher", self.dispatcher.dispatch_due)]
        if self.notifier:
            steps.append(("notifier", self.notifier.step))
        threads = [threading.Thread(target=self._loop, args=step, name=step[0], daemon=True) for step in steps]
        for thread in threads:
            thread.start()
        web = self._start_web()
        try:
            while not self.stopping.is_set():
                time.sleep(IDLE_SECONDS)
        finally:
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
