"""A local Orthanc, a local node, a local PostgreSQL and a local RabbitMQ, on loopback ports, started
and stopped by `make demo`, the benchmarks and the tests: Orthanc from the Debian package with
renalnode's auto-routing script, the node as its own `renalnode serve` process, PostgreSQL and
RabbitMQ from the Debian packages for the scaled-out node. Each keeps its files and log in one folder."""
from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from deploy.orthanc.configure import with_series_rule
from renalnode.series_eligibility import DEFAULT_SERIES_RULES

ROOT = Path(__file__).resolve().parents[1]
ORTHANC = "/usr/sbin/Orthanc"
POSTGRES_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
PLUGINS = Path("/usr/share/orthanc/plugins")
AUTOROUTING = ROOT / "deploy" / "orthanc" / "autorouting.py"
NODE_AET, ORTHANC_AET = "RENALNODE", "ORTHANC"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition, timeout: float, interval: float = 0.5, what: str = "condition"):
    """Poll `condition` until it returns something true; raise TimeoutError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def stop_process(process: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = 60) -> None:
    """Signal a process and wait for it; kill it if it does not stop within `timeout` seconds."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def answers(url: str) -> bool:
    """A GET of `url` answers 200."""
    try:
        return urllib.request.urlopen(url, timeout=2).status == 200
    except OSError:
        return False


def start_logged(command: list[str], log_path: Path, ready, what: str, timeout: float = 60,
                 **popen) -> subprocess.Popen:
    """Start a service with its output appended to `log_path` and wait until `ready()`; if it exits
    first, raise with the end of its log."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, **popen)
    wait_until(lambda: ready() or process.poll() is not None, timeout, what=what)
    if process.poll() is not None:
        raise RuntimeError(f"{what}: the process exited at start:\n{log_path.read_text(errors='replace')[-3000:]}")
    return process


class LocalOrthanc:
    """Orthanc with its own storage; `node_port` makes the node a modality and turns auto-routing on,
    by the series rule of `series_rules`."""

    def __init__(self, folder: Path, node_port: int | None = None, extra: dict | None = None,
                 series_rules: Path = DEFAULT_SERIES_RULES):
        self.folder = Path(folder)
        self.http_port, self.dicom_port = free_port(), free_port()
        self.aet = ORTHANC_AET
        self.config: dict[str, Any] = {"Name": "renalnode-local", "StorageDirectory": str(self.folder / "db"),
                       "IndexDirectory": str(self.folder / "db"), "HttpPort": self.http_port,
                       "DicomPort": self.dicom_port, "DicomAet": self.aet, "RemoteAccessAllowed": False,
                       "HttpBindAddress": "127.0.0.1", "AuthenticationEnabled": False, "StableAge": 2,
                       "DicomModalities": {}, "Plugins": [str(PLUGINS / "libOrthancDicomWeb.so")],
                       "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}}
        if node_port is not None:
            self.config["DicomModalities"]["renalnode"] = [NODE_AET, "127.0.0.1", node_port]
            self.config["Plugins"].append(str(PLUGINS / "libOrthancPython.so"))
            self.config["PythonScript"] = str(AUTOROUTING)
            self.config = with_series_rule(self.config, series_rules)
        self.config.update(extra or {})
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> LocalOrthanc:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "orthanc.json").write_text(json.dumps(self.config, indent=1))
        self.process = start_logged([ORTHANC, str(self.folder / "orthanc.json")], self.folder / "orthanc.log",
                                    lambda: answers(f"{self.url}/system"), "Orthanc to start")
        return self

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None

    def store(self, folder: Path, calling_aet: str) -> subprocess.CompletedProcess:
        """dcmtk's storescu, as a modality sends a study to the PACS."""
        return store_folder(self.dicom_port, self.aet, folder, calling_aet)

    def instances_by_study(self) -> dict[str, Counter]:
        """Instances stored per study (StudyInstanceUID), by modality."""
        from pyorthanc import Orthanc

        client = Orthanc(self.url)
        found: dict[str, Counter] = {}
        for series in client.get_series(params={"expand": True}):
            study_uid = client.get_studies_id(series["ParentStudy"])["MainDicomTags"]["StudyInstanceUID"]
            found.setdefault(study_uid, Counter())[series["MainDicomTags"].get("Modality", "")] += \
                len(series["Instances"])
        return found

    def series_by_modality(self) -> dict[str, list[dict]]:
        from pyorthanc import Orthanc

        client = Orthanc(self.url)
        found: dict[str, list[dict]] = {}
        for series_id in client.get_series():
            info = client.get_series_id(series_id)
            found.setdefault(info["MainDicomTags"].get("Modality", ""), []).append(info)
        return found


def listening(port: int) -> bool:
    """A loopback port accepts connections (whether this caller would be let in is the server's business)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def store_files(port: int, called_aet: str, files: list[Path], calling_aet: str) -> subprocess.CompletedProcess:
    """dcmtk's storescu with these files on one association."""
    return subprocess.run(["/usr/bin/storescu", "-aet", calling_aet, "-aec", called_aet, "127.0.0.1", str(port),
                           *map(str, files)], capture_output=True, text=True, timeout=600)


def store_at_once(batches: list[tuple[int, list[Path]]], called_aet: str, calling_aet: str) -> list[int]:
    """storescu's exit status for each (port, files), every batch on its own association at once."""
    with ThreadPoolExecutor(len(batches)) as pool:
        return list(pool.map(lambda batch: store_files(batch[0], called_aet, batch[1], calling_aet).returncode,
                             batches))


def store_folder(port: int, called_aet: str, folder: Path, calling_aet: str) -> subprocess.CompletedProcess:
    return subprocess.run(["/usr/bin/storescu", "-aet", calling_aet, "-aec", called_aet, "+sd", "+r", "127.0.0.1",
                           str(port), str(folder)], capture_output=True, text=True, timeout=600)


def echo(port: int, called_aet: str, calling_aet: str, tls: bool = False) -> subprocess.CompletedProcess:
    """dcmtk's echoscu; with `tls`, anonymous TLS that does not check the node's certificate."""
    secure = ["+tla", "-ic"] if tls else []
    return subprocess.run(["/usr/bin/echoscu", *secure, "-aet", calling_aet, "-aec", called_aet, "127.0.0.1",
                           str(port)], capture_output=True, text=True, timeout=30)


class LocalNode:
    """`renalnode serve` with a configuration (YAML) for a local Orthanc as its one destination."""

    def __init__(self, folder: Path, pacs_port: int, port: int, allowed_calling_aets: tuple[str, ...],
                 quiet_seconds: float = 2.0, mirroring: bool = False, stow_url: str | None = None,
                 listener: dict | None = None, sections: dict | None = None, env: dict | None = None):
        """Results go to the PACS by C-STORE to `pacs_port`, or by STOW-RS to `stow_url` when given;
        `listener` adds or overrides listener settings (allowed_hosts, tls, ...); `sections` adds or
        replaces whole sections (web, notifications, routing); `env` is added to the node's environment
        (the secrets those sections name)."""
        self.folder = Path(folder)
        self.port = port
        self.allowed_calling_aets = allowed_calling_aets
        self.config = self.folder / "node.yaml"
        self.folder.mkdir(parents=True, exist_ok=True)
        destination = ({"kind": "dicomweb", "url": stow_url} if stow_url else
                       {"kind": "dicom", "host": "127.0.0.1", "port": pacs_port, "ae_title": ORTHANC_AET})
        config = {
            "listener": {"ae_title": NODE_AET, "host": "127.0.0.1", "port": port,
                         "allowed_calling_aets": list(allowed_calling_aets), "min_free_disk_mb": 64,
                         **(listener or {})},
            "node": {"spool": "spool", "quiet_seconds": quiet_seconds, "max_wait_seconds": 300, "max_attempts": 2,
                     "mirroring": mirroring},
            "destinations": {"pacs": destination},
            "dispatch": {"retry_base_seconds": 1, "retry_max_seconds": 4},
            **(sections or {}),
        }
        self.env = env or {}
        self.config.write_text("# Written by deploy/local_services.py for a local node.\n"
                               + yaml.safe_dump(config, sort_keys=False))
        self.process: subprocess.Popen | None = None

    def _listening(self) -> bool:
        return listening(self.port)

    @property
    def journal_url(self) -> str:
        return f"sqlite:///{self.folder / 'spool' / 'journal.sqlite'}"

    def start(self) -> LocalNode:
        env = dict(os.environ, nnUNet_n_proc_DA="0", nnUNet_def_n_proc="1", **self.env)
        self.process = start_logged([sys.executable, "-m", "renalnode", "serve", "--config", str(self.config)],
                                    self.folder / "node.log", self._listening, "the node to listen", 120,
                                    cwd=ROOT, env=env)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop_process(self.process, sig)
        self.process = None

    def log_text(self) -> str:
        return (self.folder / "node.log").read_text(errors="replace")[-4000:]


class LocalViewer:
    """The viewer server (`python -m deploy.viewer`): OHIF and the Orthanc's DICOMweb on one origin."""

    def __init__(self, folder: Path, orthanc_url: str):
        self.folder, self.orthanc_url, self.port = Path(folder), orthanc_url, free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def study_url(self, study_uid: str) -> str:
        return f"{self.url}/viewer?StudyInstanceUIDs={study_uid}"

    def start(self) -> LocalViewer:
        self.process = start_logged([sys.executable, "-m", "deploy.viewer", "--orthanc", self.orthanc_url, "--port",
                                     str(self.port)], self.folder / "viewer.log",
                                    lambda: answers(f"{self.url}/app-config.js"), "the viewer server", cwd=ROOT)
        return self

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None


class LocalPostgres:
    """A PostgreSQL server of its own, in a new temporary folder, on a loopback port, trusting local
    connections. PostgreSQL refuses to run as root, so as root it runs as the package's `postgres`
    user, with the folder made over to it (a folder of the caller's might sit where that user cannot
    reach it)."""

    def __init__(self):
        if not POSTGRES_BIN:
            raise RuntimeError("PostgreSQL is not installed: run `make setup` (Debian package postgresql)")
        self.folder, self.port = Path(tempfile.mkdtemp(prefix="renalnode-postgres-")), free_port()
        self.bin = Path(POSTGRES_BIN[-1])
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> LocalPostgres:
        # The server is the process started here (no wrapper), so that stop() signals PostgreSQL itself.
        as_user: dict[str, Any] = {}
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            os.chown(self.folder, account.pw_uid, account.pw_gid)
            as_user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        data = self.folder / "data"
        if not (data / "PG_VERSION").exists():
            subprocess.run([str(self.bin / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync"],
                           check=True, capture_output=True, timeout=120, cwd=self.folder, **as_user)
        self.process = start_logged(
            [str(self.bin / "postgres"), "-D", str(data), "-p", str(self.port), "-c", "listen_addresses=127.0.0.1",
             "-c", f"unix_socket_directories={self.folder}", "-c", "fsync=off", "-c", "max_connections=200"],
            self.folder / "postgres.log", self._accepting, "PostgreSQL to start", 60, cwd=self.folder, **as_user)
        return self

    def _accepting(self) -> bool:
        return subprocess.run([str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                              capture_output=True).returncode == 0

    def create_database(self, name: str) -> str:
        """A new, empty database; its SQLAlchemy URL."""
        subprocess.run([str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                        name], check=True, capture_output=True, timeout=60)
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def stop(self) -> None:
        # SIGINT: PostgreSQL's fast shutdown (SIGTERM waits for every client to leave).
        stop_process(self.process, signal.SIGINT)
        self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


class LocalRabbitMQ:
    """A RabbitMQ broker of its own (Debian's rabbitmq-server), in a new temporary folder, listening
    on a loopback port, with its Erlang distribution and port mapper on ports of their own so that it
    never meets another broker on the machine. Its consumer timeout is raised above any job, as the
    distributed node needs (README)."""

    def __init__(self):
        self.folder, self.port = Path(tempfile.mkdtemp(prefix="renalnode-rabbitmq-")), free_port()
        self.dist_port, self.epmd_port = free_port(), free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def _env(self) -> dict[str, str]:
        return dict(os.environ, HOME=str(self.folder), RABBITMQ_NODENAME=f"renalnode{self.port}@localhost",
                    RABBITMQ_DIST_PORT=str(self.dist_port), ERL_EPMD_PORT=str(self.epmd_port),
                    RABBITMQ_MNESIA_BASE=str(self.folder / "mnesia"), RABBITMQ_LOG_BASE=str(self.folder / "log"),
                    RABBITMQ_CONFIG_FILE=str(self.folder / "rabbitmq.conf"),
                    RABBITMQ_ENABLED_PLUGINS_FILE=str(self.folder / "enabled_plugins"),
                    RABBITMQ_PID_FILE=str(self.folder / "rabbitmq.pid"))

    def start(self) -> LocalRabbitMQ:
        (self.folder / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            "consumer_timeout = 86400000\n")   # 24 h in ms: far above the longest job
        (self.folder / "enabled_plugins").write_text("[].\n")
        self.process = start_logged(["/usr/lib/rabbitmq/bin/rabbitmq-server"], self.folder / "rabbitmq.log",
                                    lambda: listening(self.port), "RabbitMQ to start", 120, env=self._env())
        return self

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None
        # Erlang's port mapper outlives the broker it started.
        for epmd in glob.glob("/usr/lib/erlang/erts-*/bin/epmd"):
            subprocess.run([epmd, "-port", str(self.epmd_port), "-kill"], capture_output=True, timeout=30)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
