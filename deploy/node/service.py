"""`renalnode serve`: the listener plus three loops (completion and routing, the worker, the
dispatcher), each in its own thread so a long job never delays receiving or sending. At start,
associations left open and jobs left running by a crash are reset: the journal then resumes
exactly where the node stopped."""
from __future__ import annotations

import logging
import signal
import threading
import time

from deploy.node.completion import complete_quiet_series, route_complete_series
from deploy.node.config import NodeConfig
from deploy.node.dispatcher import Dispatcher
from deploy.node.journal import Journal
from deploy.node.listener import Listener
from deploy.node.routing import load_rules
from deploy.node.spool import Spool
from deploy.node.worker import Worker

log = logging.getLogger("renalnode.node")
IDLE_SECONDS = 0.5


class Node:
    def __init__(self, config: NodeConfig):
        self.config = config
        self.rules = load_rules(config.routing_rules, set(config.destinations))
        self.spool = Spool(config.spool)
        self.journal = Journal(config.journal_url)
        self.listener = Listener(config.listener, self.spool, self.journal)
        self.worker = Worker(config, self.journal, self.spool)
        self.dispatcher = Dispatcher(config, self.journal)
        self.stopping = threading.Event()

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
        return bool(route_complete_series(self.journal, self.rules)) or bool(done)

    def run(self) -> None:
        self.journal.reset_open_associations()
        reclaimed = self.journal.reclaim_running(self.config.max_attempts)
        if reclaimed:
            log.warning("%d job(s) left running by an earlier stop queued again", reclaimed)
        self.listener.start()
        threads = [threading.Thread(target=self._loop, args=(name, step), name=name, daemon=True)
                   for name, step in (("completion", self._complete_and_route), ("worker", self.worker.run_one),
                                      ("dispatcher", self.dispatcher.dispatch_due))]
        for thread in threads:
            thread.start()
        try:
            while not self.stopping.is_set():
                time.sleep(IDLE_SECONDS)
        finally:
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
