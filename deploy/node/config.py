"""The node's configuration file (TOML or YAML), validated at start so a mistake stops the node
with a message instead of surfacing at 3 a.m.; secrets (DICOMweb passwords) come from environment
variables the file names, never from the file itself.

    [listener]            ae_title, host, port, allowed_calling_aets, allowed_hosts (optional),
                          max_associations, min_free_disk_mb, tls = {certificate, private_key, ca},
                          negotiation_timeout_seconds, max_negotiating, max_negotiating_per_host,
                          max_pdu_bytes
    [node]                spool, journal (SQLAlchemy URL; sqlite:///... by default), model,
                          quiet_seconds, max_wait_seconds, max_attempts, mirroring, tile_step_size,
                          runner ("in-process", or "map" with map_image and map_timeout_seconds)
    [routing]             rules (a YAML file, see deploy/node/routing.py), series_rules (which series
                          are abdominal CTs, for routing and the app; renalnode/series_rules.yaml)
    [destinations.NAME]   kind = "dicom": host, port, ae_title
                          kind = "dicomweb": url, username, password_env
    [dispatch]            retry_base_seconds, retry_max_seconds
    [web]                 host, port, username, password_env, url (optional): the dashboard, /metrics
                          and /healthz (deploy/node/web/); no [web], no web server
    [notifications]       webhook_url or webhook_url_env, destination_failing_seconds, max_attempts,
                          retry_base_seconds, retry_max_seconds, timeout_seconds
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from renalnode.series_eligibility import DEFAULT_SERIES_RULES

ROOT = Path(__file__).resolve().parents[2]
TUNABLE = ("quiet_seconds", "max_wait_seconds", "max_attempts", "mirroring", "tile_step_size", "runner", "map_image",
           "map_timeout_seconds")
RUNNERS = ("in-process", "map")


@dataclass(frozen=True)
class TLS:
    certificate: Path
    private_key: Path
    ca: Path | None = None


@dataclass(frozen=True)
class ListenerConfig:
    ae_title: str = "RENALNODE"
    host: str = "127.0.0.1"
    port: int = 11112
    allowed_calling_aets: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()          # empty: any host (the AE title check still applies)
    max_associations: int = 8                    # established associations at once
    min_free_disk_mb: int = 2048                 # refuse new associations below this much free spool disk
    tls: TLS | None = None
    # Connections still negotiating an association (deploy/node/connection_guard.py).
    negotiation_timeout_seconds: float = 10.0
    max_negotiating: int = 8
    max_negotiating_per_host: int = 2
    max_pdu_bytes: int = 1024 * 1024             # a longer PDU closes the connection before it is read


@dataclass(frozen=True)
class Destination:
    name: str
    kind: str                     # "dicom" (C-STORE) or "dicomweb" (STOW-RS)
    host: str = ""
    port: int = 0
    ae_title: str = ""
    url: str = ""
    username: str = ""
    password: str = field(default="", repr=False)


@dataclass(frozen=True)
class WebConfig:
    username: str
    password: str = field(repr=False)
    host: str = "127.0.0.1"
    port: int = 8080
    url: str = ""                      # the dashboard's address as people reach it, for links in notifications
    health_check_seconds: float = 30   # destinations are checked at most this often for /healthz


@dataclass(frozen=True)
class NotificationConfig:
    webhook_url: str = field(repr=False)   # a chat webhook's URL is itself a secret
    destination_failing_seconds: float = 900
    max_attempts: int = 10
    retry_base_seconds: float = 5
    retry_max_seconds: float = 600
    timeout_seconds: float = 10


@dataclass(frozen=True)
class NodeConfig:
    listener: ListenerConfig
    spool: Path
    journal_url: str
    model: Path
    routing_rules: Path
    destinations: dict[str, Destination]
    series_rules: Path = DEFAULT_SERIES_RULES
    quiet_seconds: float = 10.0
    max_wait_seconds: float = 600.0
    max_attempts: int = 3
    mirroring: bool = True
    tile_step_size: float = 0.5
    retry_base_seconds: float = 5.0
    retry_max_seconds: float = 600.0
    runner: str = "in-process"     # or "map": `docker run` of the MAP image for every job
    map_image: str = ""
    map_timeout_seconds: float = 3600.0
    web: WebConfig | None = None
    notifications: NotificationConfig | None = None

    @property
    def results(self) -> Path:
        return self.spool / "results"


def _read(path: Path) -> dict:
    text = path.read_text()
    data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a configuration table")
    return data


def _destination(name: str, data: dict) -> Destination:
    kind = data.get("kind")
    if kind == "dicom":
        missing = [k for k in ("host", "port", "ae_title") if not data.get(k)]
    elif kind == "dicomweb":
        missing = [k for k in ("url",) if not data.get(k)]
    else:
        raise ValueError(f"destination {name}: kind must be 'dicom' or 'dicomweb', not {kind!r}")
    if missing:
        raise ValueError(f"destination {name}: {', '.join(missing)} missing")
    password = _secret(data, "password_env", f"destination {name}") if data.get("password_env") else ""
    return Destination(name=name, kind=kind, host=str(data.get("host", "")), port=int(data.get("port", 0)),
                       ae_title=str(data.get("ae_title", "")), url=str(data.get("url", "")),
                       username=str(data.get("username", "")), password=password)


def _secret(data: dict, key: str, where: str) -> str:
    """The value of the environment variable that `data[key]` names: secrets never live in the file."""
    variable = data.get(key)
    if not variable:
        raise ValueError(f"{where}: {key} missing (the environment variable holding the secret)")
    value = os.environ.get(variable, "")
    if not value:
        raise ValueError(f"{where}: environment variable {variable} is not set")
    return value


def _web(data: dict) -> WebConfig:
    data = dict(data)
    password = _secret(data, "password_env", "web")
    data.pop("password_env")
    return WebConfig(password=password, **{"username": "admin", **data})


def _notifications(data: dict) -> NotificationConfig:
    data = dict(data)
    if "webhook_url_env" in data:
        data["webhook_url"] = _secret(data, "webhook_url_env", "notifications")
        data.pop("webhook_url_env")
    if not str(data.get("webhook_url", "")).startswith(("http://", "https://")):
        raise ValueError("notifications: webhook_url (or webhook_url_env) must give an http(s) URL")
    return NotificationConfig(**data)


def load_config(path: Path) -> NodeConfig:
    path = Path(path)
    try:
        data = _read(path)
    except FileNotFoundError:
        raise ValueError(f"configuration file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    base = path.parent
    listener_data = dict(data.get("listener", {}))
    tls = listener_data.pop("tls", None)
    for key in ("allowed_calling_aets", "allowed_hosts"):
        if not isinstance(listener_data.get(key, []), list):
            raise ValueError(f"{path}: listener.{key} must be a list, e.g. [\"ORTHANC\"]")
    try:
        listener_fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in listener_data.items()}
        listener = ListenerConfig(
            **listener_fields,
            tls=TLS(**{k: base / v for k, v in tls.items()}) if tls else None)
        node = data.get("node", {})
        routing = data.get("routing", {})
        unknown_routing = set(routing) - {"rules", "series_rules"}
        if unknown_routing:
            raise ValueError(f"{path}: unknown [routing] setting(s) {sorted(unknown_routing)}")
        unknown = set(node) - {"spool", "journal", "model", *TUNABLE}
        if unknown:
            raise ValueError(f"{path}: unknown [node] setting(s) {sorted(unknown)}")
        spool = base / node.get("spool", "spool")
        config = NodeConfig(
            listener=listener, spool=spool,
            journal_url=node.get("journal", f"sqlite:///{spool / 'journal.sqlite'}"),
            model=(base / node["model"]) if "model" in node else ROOT / "models" / "renalnode-demo",
            routing_rules=base / routing.get("rules", ROOT / "deploy" / "node" / "routing.yaml"),
            series_rules=base / routing.get("series_rules", DEFAULT_SERIES_RULES),
            destinations={name: _destination(name, d) for name, d in data.get("destinations", {}).items()},
            web=_web(data["web"]) if "web" in data else None,
            notifications=_notifications(data["notifications"]) if "notifications" in data else None,
            **{k: v for k, v in node.items() if k in TUNABLE},
            **{k: v for k, v in data.get("dispatch", {}).items()})
    except TypeError as exc:  # an unknown or misspelt key
        raise ValueError(f"{path}: {exc}") from None
    if config.runner not in RUNNERS:
        raise ValueError(f"{path}: node.runner must be one of {RUNNERS}, not {config.runner!r}")
    if config.runner == "map" and not config.map_image:
        raise ValueError(f"{path}: node.runner = 'map' needs node.map_image")
    if not listener.allowed_calling_aets:
        raise ValueError(f"{path}: listener.allowed_calling_aets is empty: no modality could store")
    return config
