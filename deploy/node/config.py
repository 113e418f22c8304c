"""The node's configuration file (TOML or YAML): one typed schema, checked at start so that a
mistake stops the node with the key's path and what is wrong (`renalnode serve` exits 2) instead of
surfacing at 3 a.m. Unknown keys are refused, values are not coerced ("no" is not a boolean, "ten"
is not a number), and secrets (passwords, webhook URLs) come from environment variables the file
names, never from the file itself. Relative paths are relative to the file's folder.

Every key with its type, default and meaning: `python -m deploy.node.config` prints the table
README's configuration reference holds.

Sections: [listener], [node], [workers], [queue] (RabbitMQ, for the distributed mode), [routing],
[destinations.NAME] (kind "dicom", "dicom-tls" or "dicomweb"), [dispatch], [web] (the dashboard,
/metrics and /healthz; none without it) and [notifications] (webhook; none without it).
"""
from __future__ import annotations

import os
import socket
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, model_validator

from renalnode.series_eligibility import DEFAULT_SERIES_RULES

ROOT = Path(__file__).resolve().parents[2]


def _relative_to_file(path: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base")
    return base / path if base is not None else path


FilePath = Annotated[Path, Field(strict=False), AfterValidator(_relative_to_file)]
Port = Annotated[int, Field(ge=1, le=65535)]
Positive = Annotated[float, Field(gt=0)]


def _secret(variable: str) -> str:
    """The value of the environment variable a key names: secrets never live in the file."""
    value = os.environ.get(variable, "")
    if not value:
        raise ValueError(f"environment variable {variable} is not set")
    return value


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class TLS(Section):
    certificate: FilePath = Field(description="PEM certificate of this side")
    private_key: FilePath = Field(description="PEM private key of the certificate")
    ca: FilePath | None = Field(None, description="PEM CA file: the peer must present a certificate it signed")


class ListenerConfig(Section):
    ae_title: str = Field("RENALNODE", max_length=16, description="the node's AE title (called AE title)")
    host: str = Field("127.0.0.1", description="address to listen on")
    port: Port = Field(11112, description="DICOM port")
    allowed_calling_aets: tuple[str, ...] = Field(min_length=1, strict=False,
                                                  description="AE titles that may store (at least one)")
    allowed_hosts: tuple[str, ...] = Field((), strict=False, description="addresses that may connect; empty: any")
    max_associations: int = Field(8, ge=1, description="established associations at once")
    min_free_disk_mb: int = Field(2048, ge=0, description="new associations are refused below this free spool disk")
    tls: TLS | None = Field(None, description="DICOM TLS for incoming associations: {certificate, private_key, ca}")
    negotiation_timeout_seconds: Positive = Field(10.0, description="a connection not associated by then is closed")
    max_negotiating: int = Field(32, ge=1, description="connections negotiating an association at once")
    max_negotiating_per_host: int = Field(8, ge=1, description="of those, from one address (a PACS or a NAT "
                                                               "router may open several at once)")
    max_pdu_bytes: int = Field(1024 * 1024, ge=16384, description="a longer PDU closes its connection unread")


class PasswordFromEnvironment(Section):
    password_env: str = Field("", description="environment variable holding its password")
    password: str = Field("", repr=False, exclude=True, description="(from password_env, never in the file)")

    @model_validator(mode="before")
    @classmethod
    def _password(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("password_env"):
            data = {**data, "password": _secret(data["password_env"])}
        return data


class DicomPeer(Section):
    name: str = Field(description="the key of [destinations.NAME]")
    host: str = Field(min_length=1, description="the destination's address")
    port: Port = Field(description="its DICOM port")
    ae_title: str = Field(min_length=1, max_length=16, description="its AE title (called AE title)")


class DicomDestination(DicomPeer):
    kind: Literal["dicom"] = Field(description='"dicom": C-STORE')


class DicomTlsDestination(DicomPeer):
    kind: Literal["dicom-tls"] = Field(description='"dicom-tls": C-STORE over DICOM TLS; the host is checked '
                                                   "against the destination's certificate")
    ca: FilePath = Field(description="PEM CA file that signed the destination's certificate")
    certificate: FilePath | None = Field(None, description="PEM certificate of the node, when the destination "
                                                           "asks for one")
    private_key: FilePath | None = Field(None, description="its PEM private key")


class DicomwebDestination(PasswordFromEnvironment):
    name: str = Field(description="the key of [destinations.NAME]")
    kind: Literal["dicomweb"] = Field(description='"dicomweb": STOW-RS')
    url: str = Field(pattern=r"^https?://", description="DICOMweb root, e.g. https://pacs/dicom-web")
    username: str = Field("", description="HTTP basic authentication user (optional)")


Destination = DicomDestination | DicomTlsDestination | DicomwebDestination


class WebConfig(PasswordFromEnvironment):
    password_env: str = Field(description="environment variable holding its password (required)")
    username: str = Field("admin", description="the dashboard's user name")
    host: str = Field("127.0.0.1", description="address of the dashboard, /metrics and /healthz")
    port: Port = Field(8080, description="their port")
    url: str = Field("", description="the dashboard's address as people reach it, for links in notifications")
    health_check_seconds: Positive = Field(30, description="destinations are checked at most this often for /healthz")


class NotificationConfig(Section):
    webhook_url: str = Field(repr=False, pattern=r"^https?://",
                             description="webhook URL (JSON POST); a chat webhook's URL is itself a secret")
    webhook_url_env: str = Field("", description="or: environment variable holding the webhook URL")
    destination_failing_seconds: Positive = Field(900, description="a destination failing this long is notified")
    max_attempts: int = Field(10, ge=1, description="delivery attempts per notification")
    retry_base_seconds: Positive = Field(5, description="first retry delay, doubled each attempt")
    retry_max_seconds: Positive = Field(600, description="longest retry delay")
    timeout_seconds: Positive = Field(10, description="HTTP timeout per delivery")

    @model_validator(mode="before")
    @classmethod
    def _url(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("webhook_url_env"):
            data = {**data, "webhook_url": _secret(data["webhook_url_env"])}
        return data


class NodeSection(Section):
    name: str = Field("", description="this node in the journal (its workers are NAME/SLOT); nodes sharing one "
                                      "journal need different names; none: the host name")
    spool: FilePath = Field(Path("spool"), description="received instances, results and the journal")
    journal: str = Field("", description="SQLAlchemy URL of the journal; default sqlite:///SPOOL/journal.sqlite")
    model: FilePath = Field(ROOT / "models" / "renalnode-demo", description="the model package")
    quiet_seconds: Positive = Field(10.0, description="a series is complete when nothing arrived for this long")
    max_wait_seconds: Positive = Field(600.0, description="... or at the latest this long after its first instance")
    max_attempts: int = Field(3, ge=1, description="runs of a job before it has failed")
    mirroring: bool = Field(True, description="test-time mirroring (8 passes per tile; slow on a CPU)")
    tile_step_size: float = Field(0.5, gt=0, le=1, description="sliding-window step as a fraction of the patch")
    precision: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="a CPU's arithmetic for the network; auto: bfloat16 where the CPU has its instructions")
    region_focus: bool = Field(False, description="full-resolution tiles only around the kidneys a coarse pass finds")
    runner: Literal["in-process", "map"] = Field(
        "in-process", description='"map": the MAP container per job (Docker, or Podman where no Docker daemon runs)')
    map_image: str = Field("", description="the MAP image (runner = \"map\")")
    map_model: Literal["image", "node"] = Field("image", description='the model the MAP runs: the one built into it, '
                                                                    'or "node": `model` above, mounted read-only')
    map_timeout_seconds: Positive = Field(3600.0, description="a MAP run longer than this fails")

    @model_validator(mode="after")
    def _map_image(self) -> NodeSection:
        if self.runner == "map" and not self.map_image:
            raise ValueError("runner = 'map' needs map_image")
        return self


class WorkersSection(Section):
    count: Literal["auto"] | Annotated[int, Field(ge=1)] = Field(
        1, description='jobs run at once; "auto": one per visible CUDA device (one on a CPU machine). More than '
                       'one run in worker processes, each pinned to a device in turn; one runs in the node\'s process')


class QueueSection(PasswordFromEnvironment):
    broker: str = Field("", description='distributed mode: the AMQP URL of RabbitMQ, e.g. "amqp://renalnode@mq:5672//" '
                                        "(its password from password_env); none: the node runs its own jobs")
    name: str = Field("renalnode", description="the durable quorum queue of the jobs")

    @property
    def broker_url(self) -> str:
        """The broker's URL with the password from the environment."""
        if not self.password:
            return self.broker
        scheme, rest = self.broker.split("://", 1)
        user, host = rest.split("@", 1) if "@" in rest else ("guest", rest)
        return f"{scheme}://{user.split(':')[0]}:{quote(self.password, safe='')}@{host}"


class RoutingSection(Section):
    rules: FilePath = Field(ROOT / "deploy" / "node" / "routing.yaml", description="where results go (routing.py)")
    series_rules: FilePath = Field(DEFAULT_SERIES_RULES, description="which series are abdominal CTs (routing, app)")


class DispatchSection(Section):
    retry_base_seconds: Positive = Field(5.0, description="first retry delay of a failed send, doubled each time")
    retry_max_seconds: Positive = Field(600.0, description="longest retry delay")


class ConfigFile(Section):
    listener: ListenerConfig
    node: NodeSection = NodeSection()
    workers: WorkersSection = WorkersSection()
    queue: QueueSection = QueueSection()
    routing: RoutingSection = RoutingSection()
    destinations: dict[str, Annotated[Destination, Field(discriminator="kind")]] = {}
    dispatch: DispatchSection = DispatchSection()
    web: WebConfig | None = None
    notifications: NotificationConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _destination_names(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("destinations"), dict):
            data = {**data, "destinations": {name: {**d, "name": name} if isinstance(d, dict) else d
                                             for name, d in data["destinations"].items()}}
        return data


@dataclass(frozen=True)
class NodeConfig:
    """What the running node uses: the file's sections, [node], [routing] and [dispatch] flattened."""
    listener: ListenerConfig
    spool: Path
    journal_url: str
    model: Path
    routing_rules: Path
    series_rules: Path
    destinations: dict[str, Destination]
    quiet_seconds: float
    max_wait_seconds: float
    max_attempts: int
    mirroring: bool
    tile_step_size: float
    precision: str
    region_focus: bool
    retry_base_seconds: float
    retry_max_seconds: float
    runner: str
    map_image: str
    map_model: str
    map_timeout_seconds: float
    web: WebConfig | None
    notifications: NotificationConfig | None
    node_name: str
    worker_count: int | Literal["auto"]
    queue: QueueSection
    source: Path                      # the file, which worker processes read too

    @property
    def results(self) -> Path:
        return self.spool / "results"


def _read(path: Path) -> dict:
    text = path.read_text()
    data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a configuration table")
    return data


def _errors(path: Path, exc: ValidationError) -> str:
    """Each problem with the key's path: "listener.port: Input should be a valid integer"."""
    lines = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"] if part not in ("dicom", "dicom-tls", "dicomweb"))
        lines.append(f"{where or 'file'}: {error['msg'].removeprefix('Value error, ')}")
    return f"{path}: " + "; ".join(lines)


def load_config(path: Path) -> NodeConfig:
    path = Path(path)
    try:
        data = _read(path)
    except FileNotFoundError:
        raise ValueError(f"configuration file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    try:
        file = ConfigFile.model_validate(data, context={"base": path.parent})
    except ValidationError as exc:
        raise ValueError(_errors(path, exc)) from None
    node = file.node
    return NodeConfig(
        listener=file.listener, spool=node.spool,
        journal_url=node.journal or f"sqlite:///{node.spool / 'journal.sqlite'}",
        model=node.model, routing_rules=file.routing.rules, series_rules=file.routing.series_rules,
        destinations=file.destinations, quiet_seconds=node.quiet_seconds, max_wait_seconds=node.max_wait_seconds,
        max_attempts=node.max_attempts, mirroring=node.mirroring, tile_step_size=node.tile_step_size,
        precision=node.precision, region_focus=node.region_focus,
        retry_base_seconds=file.dispatch.retry_base_seconds, retry_max_seconds=file.dispatch.retry_max_seconds,
        runner=node.runner, map_image=node.map_image, map_model=node.map_model,
        map_timeout_seconds=node.map_timeout_seconds,
        web=file.web, notifications=file.notifications,
        node_name=node.name or socket.gethostname(), worker_count=file.workers.count, queue=file.queue,
        source=path)


def _shown(value: Any) -> str:
    if isinstance(value, Path):
        return f"`{value.relative_to(ROOT) if value.is_relative_to(ROOT) else value}`"
    if isinstance(value, str):
        return f'`"{value}"`' if value else "none"
    return "none" if value in (None, ()) else f"`{str(value).lower() if isinstance(value, bool) else value}`"


def reference() -> str:
    """Every key of the file as a Markdown table (README's configuration reference)."""
    sections: list[tuple[str, type[Section]]] = [
                ("listener", ListenerConfig), ("listener.tls", TLS), ("node", NodeSection),
                ("workers", WorkersSection), ("queue", QueueSection),
                ("routing", RoutingSection),
                ("destinations.NAME (dicom)", DicomDestination), ("destinations.NAME (dicom-tls)", DicomTlsDestination),
                ("destinations.NAME (dicomweb)", DicomwebDestination), ("dispatch", DispatchSection),
                ("web", WebConfig), ("notifications", NotificationConfig)]
    lines = ["| section | key | default | meaning |", "| --- | --- | --- | --- |"]
    for section, model in sections:
        for key, field in model.model_fields.items():
            if field.exclude or (key == "name" and section.startswith("destinations")):  # the table's key
                continue
            default = "required" if field.is_required() else _shown(field.default)
            lines.append(f"| `[{section}]` | `{key}` | {default} | {field.description} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(reference() + "\n")
