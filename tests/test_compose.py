"""deploy/distributed/compose.yaml, run by podman-compose (pinned) as IT would run it with Docker Compose: the
node and a Celery worker as containers of the node image, on a real PostgreSQL and RabbitMQ (started
here on loopback, as a site's own servers: the file's bundled postgres and rabbitmq images come from
Docker Hub, which this machine cannot reach). A study sent by dcmtk's storescu comes back to Orthanc
as one SEG, SR and PDF, and the journal shows one job, run by the container's worker."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from deploy.container.engine import find_engine
from deploy.container.node_image import build_node_image
from deploy.local_services import NODE_AET, free_port, listening, store_folder, wait_until
from deploy.node.journal import JobState, Journal

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "deploy" / "distributed" / "compose.yaml"
TAG = "localhost/renalnode-node:compose-test"
SENDER = "MODALITY"


def node_toml(port: int, web_port: int, journal: str, broker_port: int, pacs_port: int) -> str:
    return f"""[listener]
ae_title = "{NODE_AET}"
host = "127.0.0.1"
port = {port}
allowed_calling_aets = ["{SENDER}"]
min_free_disk_mb = 64

[node]
name = "compose-node"
spool = "/srv/renalnode/spool"
journal = "{journal}"
quiet_seconds = 2
mirroring = false

[queue]
broker = "amqp://guest@127.0.0.1:{broker_port}//"
password_env = "RENALNODE_BROKER_PASSWORD"

[web]
host = "127.0.0.1"
port = {web_port}
username = "it-admin"
password_env = "RENALNODE_WEB_PASSWORD"

[destinations.pacs]
kind = "dicom"
host = "127.0.0.1"
port = {pacs_port}
ae_title = "ORTHANC"
"""


def test_compose_node_and_worker_deliver_a_study(tmp_path, local_orthanc, postgres, rabbitmq, phantom_cases):
    engine = find_engine()
    assert engine is not None, "make setup installs podman"
    build_node_image(engine, TAG)
    pacs = local_orthanc()
    port, web_port = free_port(), free_port()
    journal_url = postgres.create_database("compose")
    config = tmp_path / "node.toml"
    config.write_text(node_toml(port, web_port, journal_url, rabbitmq.port, pacs.dicom_port))
    config.chmod(0o644)
    spool = tmp_path / "spool"
    spool.mkdir()
    spool.chmod(0o777)  # the containers run as the image's user `renalnode`
    # The site's servers are on this machine's loopback: the containers share the host's network.
    override = tmp_path / "compose.test.yaml"
    override.write_text(yaml.safe_dump({"services": {name: {"network_mode": "host"} for name in ("node", "worker")}}))
    project = f"renalnode-test-{os.getpid()}"
    env = dict(os.environ, RENALNODE_IMAGE=TAG, RENALNODE_CONFIG=str(config), RENALNODE_SPOOL=str(spool),
               RENALNODE_DB_PASSWORD="unused: trusted on loopback", RENALNODE_BROKER_PASSWORD="guest",
               RENALNODE_WEB_PASSWORD="compose-test")
    compose = [sys.executable, "-m", "podman_compose", "-p", project, "-f", str(COMPOSE), "-f", str(override)]
    try:
        up = subprocess.run([*compose, "up", "-d", "node", "worker"], env=env, capture_output=True, text=True,
                            timeout=300)
        assert up.returncode == 0, (up.stdout + up.stderr)[-3000:]
        wait_until(lambda: listening(port), 120, what="the node container to listen")
        journal = Journal(journal_url)
        wait_until(lambda: journal.workers(), 180, what="the worker container to register")
        assert store_folder(port, NODE_AET, phantom_cases("HFS") / "dicom", SENDER).returncode == 0
        wait_until(lambda: [j.state for j in journal.recent_jobs()] == [JobState.DISPATCHED], 600, 2,
                   what="the study's results sent by the node container")
        found = pacs.series_by_modality()
        assert {modality: len(found.get(modality, [])) for modality in ("SEG", "SR", "DOC")} == \
            {"SEG": 1, "SR": 1, "DOC": 1}
        (job,) = journal.recent_jobs()
        assert job.worker in {worker.name for worker in journal.workers()}
    finally:
        for service in ("node", "worker"):  # shown by pytest when the test fails
            logs = subprocess.run([*compose, "logs", service], env=env, capture_output=True, text=True, timeout=120)
            print(f"--- {service}\n{(logs.stdout + logs.stderr)[-4000:]}")
        subprocess.run([*compose, "down"], env=env, capture_output=True, timeout=300)
        subprocess.run(engine.command("rmi", "-f", TAG), capture_output=True)
