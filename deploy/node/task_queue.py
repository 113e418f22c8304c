"""Distributed mode (`[queue] broker`): jobs travel as Celery tasks over RabbitMQ to worker processes
on any machine (`renalnode worker`, one per GPU); the journal stays the source of truth for state.

The node hands each queued job to the broker once (`Publisher`, an outbox: a job is marked
published after the broker confirmed it, so a crash in between publishes it twice, never zero
times; the second delivery finds the job no longer queued and does nothing). A task carries the job
id only. Tasks are acknowledged after they ran (late acknowledgement), one at a time per worker
(prefetch 1), from a durable quorum queue; a worker lost mid-job (its connection closes) has its
task delivered again, and the redelivered task takes the job over. RabbitMQ closes the channel of a
consumer that holds a task longer than its `consumer_timeout` (30 minutes by default), which would
deliver a running job again: set it above the longest job (README).
"""
from __future__ import annotations

import logging

from celery import Celery
from kombu import Queue

from deploy.node.config import NodeConfig
from deploy.node.journal import Journal
from deploy.node.worker import Worker

log = logging.getLogger("renalnode.node")
TASK = "renalnode.run_job"


def celery_app(config: NodeConfig) -> Celery:
    app = Celery("renalnode", broker=config.queue.broker_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True, task_reject_on_worker_lost=True, worker_prefetch_multiplier=1,
        task_queues=[Queue(config.queue.name, durable=True, queue_arguments={"x-queue-type": "quorum"})],
        task_default_queue=config.queue.name, task_serializer="json", accept_content=["json"],
        broker_connection_retry_on_startup=True, worker_hijack_root_logger=False, task_ignore_result=True,
        broker_transport_options={"confirm_publish": True})
    return app


class Publisher:
    """The node's side: queued jobs handed to the broker, each once (see the module's docstring)."""

    def __init__(self, config: NodeConfig, journal: Journal):
        self.journal, self.app = journal, celery_app(config)

    def publish_queued(self) -> bool:
        jobs = self.journal.unpublished_jobs()
        for job in jobs:
            self.app.send_task(TASK, args=[job.id])
            self.journal.published(job.id)
            log.info("job %d handed to the broker", job.id)
        return bool(jobs)


def run_celery_worker(config: NodeConfig, worker: Worker) -> int:
    """`renalnode worker` in distributed mode: a Celery worker that runs one job at a time in this
    process, where the model stays loaded."""
    app = celery_app(config)

    @app.task(name=TASK, bind=True)
    def run_job(task, job_id: int) -> None:
        redelivered = bool((task.request.delivery_info or {}).get("redelivered"))
        job = worker.journal.claim_job(job_id, worker.name, take_over=redelivered)
        if job is None:
            log.info("job %d: no longer to run here (done, superseded or running elsewhere)", job_id)
            return
        worker.run(job)

    worker.register()
    app.worker_main(["worker", "--pool", "solo", "--concurrency", "1", "--loglevel", "INFO",
                     "--hostname", f"{worker.name.replace('/', '-')}@%h", "--without-gossip", "--without-mingle",
                     "--queues", config.queue.name])
    return 0
