"""The node's configuration, routing rules and spool paths: mistakes stop the node with a message."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import yaml
from conftest import run_renalnode

from deploy.container.engine import find_engine
from deploy.node.config import load_config, reference
from deploy.node.journal import Journal
from deploy.node.metrics import NodeMetrics
from deploy.node.routing import SeriesFacts, load_rules, route
from deploy.node.spool import Spool
from deploy.node.worker import MAP_MODEL, Worker
from operators.series_selection import SelectionRules
from renalnode.series_eligibility import DEFAULT_SERIES_RULES

TOML = """
[listener]
ae_title = "RENALNODE"
port = 11112
allowed_calling_aets = ["ORTHANC"]

[node]
spool = "spool"
quiet_seconds = 5

[destinations.pacs]
kind = "dicom"
host = "pacs.example"
port = 104
ae_title = "PACS"

[destinations.web]
kind = "dicomweb"
url = "https://pacs.example/dicom-web"
username = "renalnode"
password_env = "TEST_RENALNODE_PASSWORD"
"""


def test_toml_and_yaml_configurations(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_RENALNODE_PASSWORD", "s3cret")
    (tmp_path / "node.toml").write_text(TOML)
    config = load_config(tmp_path / "node.toml")
    assert config.listener.allowed_calling_aets == ("ORTHANC",) and config.quiet_seconds == 5
    assert config.spool == tmp_path / "spool" and config.journal_url.startswith("sqlite:///")
    assert config.destinations["web"].password == "s3cret" and "s3cret" not in repr(config)
    (tmp_path / "node.yaml").write_text("listener: {allowed_calling_aets: [A]}\nnode: {max_attempts: 5}\n")
    assert load_config(tmp_path / "node.yaml").max_attempts == 5
    assert config.web is None and config.notifications is None


def test_web_and_notification_secrets_come_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_RENALNODE_PASSWORD", "s3cret")
    monkeypatch.setenv("TEST_RENALNODE_WEB_PASSWORD", "web-s3cret")
    monkeypatch.setenv("TEST_RENALNODE_HOOK", "https://hooks.example/T000/B000/token")
    (tmp_path / "node.toml").write_text(TOML + """
[web]
port = 9090
password_env = "TEST_RENALNODE_WEB_PASSWORD"

[notifications]
webhook_url_env = "TEST_RENALNODE_HOOK"
destination_failing_seconds = 60
""")
    config = load_config(tmp_path / "node.toml")
    assert (config.web.port, config.web.username, config.web.password) == (9090, "admin", "web-s3cret")
    assert config.notifications.webhook_url.endswith("/token")
    assert config.notifications.destination_failing_seconds == 60
    assert "web-s3cret" not in repr(config) and "token" not in repr(config)


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace('allowed_calling_aets = ["ORTHANC"]', "allowed_calling_aets = []"),
     "listener.allowed_calling_aets: Tuple should have at least 1 item"),
    (lambda t: t.replace("port = 11112", 'port = "not-a-port"'), "listener.port: Input should be a valid integer"),
    (lambda t: t.replace("port = 11112", "port = 70000"), "listener.port: Input should be less than or equal"),
    (lambda t: t.replace("quiet_seconds = 5", 'quiet_seconds = "ten"'), "node.quiet_seconds: Input should be a valid"),
    (lambda t: t.replace("quiet_seconds = 5", 'quiet_seconds = 5\nmirroring = "no"'),
     "node.mirroring: Input should be a valid boolean"),
    (lambda t: t.replace("quiet_seconds = 5", "quiet_secs = 5"), "node.quiet_secs: Extra inputs are not permitted"),
    (lambda t: t + "[dispatch]\nmax_attempts = 9\n", "dispatch.max_attempts: Extra inputs are not permitted"),
    (lambda t: t.replace('kind = "dicom"', 'kind = "ftp"'),
     "destinations.pacs: Input tag 'ftp' found using 'kind' does not match any of the expected tags"),
    (lambda t: t.replace('ae_title = "PACS"\n', ""), "destinations.pacs.ae_title: Field required"),
    (lambda t: t, "destinations.web: environment variable TEST_RENALNODE_PASSWORD is not set"),
    (lambda t: t + "[broken", "node.toml"),
    (lambda t: t + '[web]\nport = 8080\n', "web.password_env: Field required"),
    (lambda t: t + '[web]\npassword_env = "TEST_RENALNODE_WEB_PASSWORD"\n',
     "web: environment variable TEST_RENALNODE_WEB_PASSWORD is not set"),
    (lambda t: t + '[notifications]\nwebhook_url = "hooks.example/x"\n',
     "notifications.webhook_url: String should match pattern"),
    (lambda t: t + '[notifications]\nwebhook_url = "https://hooks.example/x"\nretry_secs = 1\n',
     "notifications.retry_secs: Extra inputs are not permitted"),
    (lambda t: t + '[routing]\nseries_rule = "mine.yaml"\n', "routing.series_rule: Extra inputs are not permitted"),
    (lambda t: t.replace("quiet_seconds = 5", 'quiet_seconds = 5\nrunner = "map"'),
     "node: runner = 'map' needs map_image"),
])
def test_configuration_mistakes_are_named(tmp_path, monkeypatch, edit, message):
    monkeypatch.delenv("TEST_RENALNODE_PASSWORD", raising=False)
    text = edit(TOML)
    if "environment variable" not in message:
        text = text.replace('password_env = "TEST_RENALNODE_PASSWORD"\n', "")
    (tmp_path / "node.toml").write_text(text)
    with pytest.raises(ValueError) as raised:
        load_config(tmp_path / "node.toml")
    assert message in str(raised.value)


def test_a_site_series_rules_file_is_what_routing_and_the_app_read(tmp_path):
    torso = DEFAULT_SERIES_RULES.read_text().replace("KIDNEY, RENAL]", "KIDNEY, RENAL, TORSO]")
    (tmp_path / "mine.yaml").write_text(torso)
    text = TOML.replace('password_env = "TEST_RENALNODE_PASSWORD"\n', "") + '[routing]\nseries_rules = "mine.yaml"\n'
    (tmp_path / "node.toml").write_text(text)
    config = load_config(tmp_path / "node.toml")
    assert config.series_rules == tmp_path / "mine.yaml"
    rules = load_rules(config.routing_rules, set(config.destinations), config.series_rules)
    assert route(rules, SeriesFacts("CT", "TORSO", "", "", "ORTHANC"))[0] is not None
    journal = Journal(f"sqlite:///{tmp_path / 'j.sqlite'}")
    worker = Worker(config, journal, Spool(config.spool), NodeMetrics(journal, config.spool))
    assert "TORSO" in SelectionRules.load(worker.settings.series_rules).eligibility.body_parts


def test_routing_first_match_and_reasons(tmp_path):
    rules_file = tmp_path / "routing.yaml"
    rules_file.write_text("""rules:
  - {name: from-ct-room, modalities: [CT], calling_aets: [CT1], destinations: [pacs, web]}
  - {name: ward, calling_aets: [WARD], destinations: [pacs]}
""")
    rules = load_rules(rules_file, {"pacs", "web"})
    ct_room = SeriesFacts("CT", "ABDOMEN", "", "", "CT1")
    assert route(rules, ct_room)[0].name == "from-ct-room"
    by_description = SeriesFacts("CT", "", "Abd/Pelvis 2mm", "", "WARD")
    assert route(rules, by_description)[0].destinations == ("pacs",)
    rule, reason = route(rules, SeriesFacts("CT", "ABDOMEN", "Abd", "", "ORTHANC"))
    assert rule is None and "ward: sent by ORTHANC" in reason and "from-ct-room: sent by ORTHANC" in reason
    # The series rules decide before any routing rule, whoever sent the series.
    rule, reason = route(rules, SeriesFacts("CT", "HEAD", "Head", "", "CT1"))
    assert rule is None and reason == "not a series renalnode segments: body part HEAD is not abdomen"
    with pytest.raises(ValueError, match="unknown destinations \\['web'\\]"):
        load_rules(rules_file, {"pacs"})
    rules_file.write_text("rules:\n  - {name: old, body_parts: [ABDOMEN], destinations: [pacs]}\n")
    with pytest.raises(ValueError, match="body_parts moved to the series rules file"):
        load_rules(rules_file, {"pacs"})


@pytest.mark.parametrize("uid", ["..", "1.2/../3", "1.2.3" + ".4" * 40, "abc", ""])
def test_spool_refuses_uids_that_are_not_uids(tmp_path, uid):
    spool = Spool(tmp_path)
    with pytest.raises(ValueError):
        spool.store("1.2.3", "1.2.3.4", uid, b"DICM")
    with pytest.raises(ValueError):
        spool.series_folder(uid, "1.2.3")
    assert list((tmp_path / "incoming").iterdir()) == []


def test_map_runner_settings(tmp_path):
    """runner = "map" needs an image and a container engine; its command runs the MAP without network, as
    the node's user, with the series read-only, and mounts the node's model only when map_model says so."""
    base = TOML.replace('password_env = "TEST_RENALNODE_PASSWORD"\n', "")
    (tmp_path / "node.toml").write_text(base.replace("quiet_seconds = 5", 'quiet_seconds = 5\nrunner = "map"'))
    with pytest.raises(ValueError, match="needs map_image"):
        load_config(tmp_path / "node.toml")
    for map_model in ("image", "node"):
        (tmp_path / "node.toml").write_text(base.replace("quiet_seconds = 5", 'quiet_seconds = 5\nrunner = "map"\n'
                                                         f'map_image = "renalnode:0.1.0"\nmap_model = "{map_model}"'))
        config = load_config(tmp_path / "node.toml")
        journal, spool = Journal(f"sqlite:///{tmp_path / 'j.sqlite'}"), Spool(config.spool)
        metrics = NodeMetrics(journal, spool.root)
        if find_engine() is None:
            with pytest.raises(ValueError, match="no container engine"):
                Worker(config, journal, spool, metrics)
            return
        command = Worker(config, journal, spool, metrics).map_command(tmp_path / "in", tmp_path / "out", "job-1")
        assert command[1:3] == ["run", "--rm"] and command[-1] == "renalnode:0.1.0"
        assert f"{tmp_path / 'in'}:/var/holoscan/input:ro" in command
        assert " --network none " in f" {' '.join(command)} "
        assert f" --user {os.getuid()}:{os.getgid()} " in f" {' '.join(command)} "
        assert (f"{config.model}:{MAP_MODEL}:ro" in command) == (map_model == "node")


def test_serve_stops_with_status_2_and_the_key_path(tmp_path):
    (tmp_path / "node.toml").write_text(TOML.replace("port = 11112", 'port = "not-a-port"'))
    result = run_renalnode("serve", "--config", str(tmp_path / "node.toml"), check=False)
    assert result.returncode == 2 and "listener.port: Input should be a valid integer" in result.stderr


def test_readme_documents_every_key_of_the_schema():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    missing = [row for row in reference().splitlines()[2:] if row not in readme]
    assert not missing, f"README's configuration reference lacks (python -m deploy.node.config): {missing}"


def test_the_distributed_example_configuration_loads(monkeypatch):
    """deploy/distributed/node.toml, as README's distributed deployment gives it to IT."""
    monkeypatch.setenv("RENALNODE_BROKER_PASSWORD", "s3cret/:@")
    config = load_config(Path(__file__).resolve().parents[1] / "deploy" / "distributed" / "node.toml")
    assert config.queue.broker_url == "amqp://renalnode:s3cret%2F%3A%40@mq.hospital.example:5672//"
    assert config.journal_url.startswith("postgresql+psycopg://") and config.node_name == "node1"
    assert "s3cret" not in repr(config.queue)


def test_the_compose_configuration_loads(monkeypatch):
    """deploy/distributed/compose-node.toml: the servers by their compose service names, passwords only
    from the environment compose.yaml passes."""
    monkeypatch.setenv("RENALNODE_BROKER_PASSWORD", "broker-secret")
    monkeypatch.setenv("RENALNODE_WEB_PASSWORD", "web-secret")
    folder = Path(__file__).resolve().parents[1] / "deploy" / "distributed"
    config = load_config(folder / "compose-node.toml")
    assert config.queue.broker_url == "amqp://renalnode:broker-secret@rabbitmq:5672//"
    assert config.journal_url == "postgresql+psycopg://renalnode@postgres/renalnode"
    assert config.spool == Path("/srv/renalnode/spool") and config.web is not None
    assert config.node_name == socket.gethostname()  # in a container: the service's or replica's own
    compose = yaml.safe_load((folder / "compose.yaml").read_text())
    passed = compose["x-renalnode"]["environment"]
    assert {"PGPASSWORD", "RENALNODE_BROKER_PASSWORD", "RENALNODE_WEB_PASSWORD"} <= set(passed)
    assert all(value.startswith("${") for key, value in passed.items() if "PASSWORD" in key)
