"""Every page of the node's dashboard through Starlette's TestClient, against a node built in this
process from the configuration the other node tests use (deploy/local_services.py's LocalNode) and
its real journal on a temporary SQLite file: what each page shows, that pages and buttons need the
login, that buttons need the page's token, and that redirects and key images stay on this node.
No listener, worker or Orthanc runs; the one destination is a port where nothing listens."""
from __future__ import annotations

import asyncio
import dataclasses
import re
import time

import httpx
import pytest
from starlette.testclient import TestClient
from test_journal import complete_and_enqueue, receive
from test_operations import PASSWORD, USER

from deploy.local_services import LocalNode, free_port
from deploy.node.config import load_config
from deploy.node.journal import JobState, SeriesState
from deploy.node.service import Node
from deploy.node.web import create_app
from deploy.node.web.login_guard import LoginGuard
from renalnode.model_package import load_model_package
from renalnode.run_record import COMPLETED, KEY_IMAGE_FOLDER, RunRecord

PNG = b"\x89PNG\r\n\x1a\n key image"
MODEL_USED = {"name": "renalnode-demo-phantom", "version": "0.2.0", "device": "cpu", "path": "/models/demo"}


@pytest.fixture
def node(tmp_path, monkeypatch) -> Node:
    monkeypatch.setenv("TEST_RENALNODE_WEB_PASSWORD", PASSWORD)
    config = LocalNode(tmp_path / "node", free_port(), free_port(), ("CT1",), sections={
        "web": {"username": USER, "password_env": "TEST_RENALNODE_WEB_PASSWORD"}}).config
    return Node(load_config(config))


@pytest.fixture
def client(node) -> TestClient:
    return TestClient(create_app(node))


def log_in(client: TestClient) -> None:
    assert client.post("/login", data={"username": USER, "password": PASSWORD}).status_code == 200


def token(client: TestClient) -> str:
    """The session's token, as the page's buttons carry it."""
    return re.search(r'name="csrf" value="([^"]+)"', client.get("/destinations").text).group(1)


def finished_job(node: Node, series_uid: str = "1.2.1") -> int:
    """A job that ran: results ready for the PACS, with its run record and one key image."""
    receive(node.journal, series_uid, f"{series_uid}.1")
    job = complete_and_enqueue(node.journal, series_uid)
    node.journal.claim()
    output = node.config.results / str(job)
    record = RunRecord(status=COMPLETED, model=MODEL_USED, stage_seconds={"inference": 2.5}, findings=[
        {"name": "Right kidney", "side": "right", "volume_ml": 151.2, "mean_hu": 148.0, "max_diameter_mm": 112.4}])
    record.save_key_image("Right kidney", PNG, output)
    record.write(output)
    node.journal.finish(job, JobState.RESULTS_READY, output=str(output))
    return job


def quarantined_job(node: Node, series_uid: str = "1.2.2") -> int:
    receive(node.journal, series_uid, f"{series_uid}.1")
    job = complete_and_enqueue(node.journal, series_uid)
    node.journal.finish(node.journal.claim().id, JobState.QUARANTINED, "no CT series with at least 20 slices")
    return job


def flash(client: TestClient, response) -> str:
    """The message a button's redirect left on the page it leads to."""
    assert response.status_code == 303
    match = re.search(r'<div class="flash (ok|error)" role="status">([^<]*)</div>',
                      client.get(response.headers["location"]).text)
    return f"{match.group(1)}: {match.group(2)}"


@pytest.mark.parametrize("path", ["/", "/jobs/1", "/jobs/1/key-images/01.png", "/quarantine", "/destinations",
                                  "/model", "/audit"])
def test_pages_send_who_is_not_logged_in_to_the_login(client, path):
    response = client.get(path, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == f"/login?next={path}"


@pytest.mark.parametrize("path", ["/jobs/1/retry", "/destinations/pacs/echo"])
def test_buttons_do_nothing_without_the_login(client, node, path):
    quarantined_job(node)
    response = client.post(path, data={"back": "/"}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/login")
    assert [e.event for e in node.journal.audit_events()][0] == "job.quarantined"   # no retry, no echo


def test_login_is_slow_to_fail_audited_without_what_was_typed_and_goes_back_where_it_was_going(client, node):
    form = client.get("/login?next=/quarantine").text
    assert 'action="/login?next=/quarantine"' in form and 'id="password"' in form
    for name, password in ((USER, "wrong secret"), ("wrong secret", PASSWORD)):
        start = time.monotonic()
        failed = client.post("/login?next=/quarantine", data={"username": name, "password": password})
        assert time.monotonic() - start >= client.app.state.login_guard.delay_seconds
        assert failed.status_code == 200 and "Wrong user name or password" in failed.text
    assert client.get("/", follow_redirects=False).status_code == 303                # still not logged in
    login = client.post("/login?next=/quarantine", data={"username": USER, "password": PASSWORD},
                        follow_redirects=False)
    assert login.status_code == 303 and login.headers["location"] == "/quarantine"
    cookie = login.headers["set-cookie"]
    assert cookie.startswith("renalnode_session=") and "httponly" in cookie and "samesite=strict" in cookie
    details = [e.detail for e in node.journal.audit_events(event_prefix="login")]
    assert details == [f"user {USER} from testclient", "unknown user name from testclient",
                       "wrong password from testclient"]
    assert not any("wrong secret" in detail or PASSWORD in detail for detail in details)


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "evil"])
def test_login_redirects_only_to_this_site(client, target):
    login = client.post("/login", params={"next": target}, data={"username": USER, "password": PASSWORD},
                        follow_redirects=False)
    assert login.status_code == 303 and login.headers["location"] == "/"


def test_logout_ends_the_session_and_a_new_login_gets_a_new_token(client):
    log_in(client)
    first = token(client)
    stolen = dict(client.cookies)          # a copy of the cookie, as someone who saw it would keep it
    logout = client.post("/logout", follow_redirects=False)
    assert logout.status_code == 303 and logout.headers["location"] == "/login"
    assert client.get("/", follow_redirects=False).status_code == 303
    replay = TestClient(client.app, cookies=stolen)
    assert replay.get("/", follow_redirects=False).status_code == 303     # the copy ended with the logout
    log_in(client)
    assert token(client) != first


def _guesses(app, attempts: list[dict]) -> list[httpx.Response]:
    """Login attempts sent all at once, as a script would send them."""
    async def send():
        transport = httpx.ASGITransport(app=app, client=("10.0.0.66", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as http:
            return await asyncio.gather(*(http.post("/login", data=form) for form in attempts))
    return asyncio.run(send())


def test_parallel_guessing_is_as_slow_as_sequential_and_ends_in_a_lockout(client, node):
    guard = client.app.state.login_guard = LoginGuard(delay_seconds=0.2, max_failures=5, lockout_seconds=60)
    start = time.monotonic()
    answers = _guesses(client.app, [{"username": USER, "password": f"guess {n}"} for n in range(8)])
    assert time.monotonic() - start >= 5 * guard.delay_seconds                 # answered one at a time
    assert [a.status_code for a in answers].count(429) == 3                    # the 6th and later: locked
    assert all("Wrong user name or password" in a.text for a in answers if a.status_code == 200)
    # Locked: even the right password is refused, from that address and for that user name ...
    (right,) = _guesses(client.app, [{"username": USER, "password": PASSWORD}])
    assert right.status_code == 429 and 'id="locked"' in right.text
    assert client.post("/login", data={"username": USER, "password": PASSWORD}).status_code == 429
    # ... audited, and shown to IT on the overview once a session exists.
    events = [e.event for e in node.journal.audit_events(event_prefix="login")]
    assert events.count("login.locked") == 2 and events.count("login.failed") == 5
    client.app.state.login_guard = LoginGuard()
    log_in(client)
    client.app.state.login_guard = guard
    assert 'id="lockouts"' in client.get("/").text


def test_other_users_and_addresses_are_not_slowed_by_a_guessing_address(client):
    client.app.state.login_guard = LoginGuard(delay_seconds=0.5, max_failures=100)
    _guesses(client.app, [{"username": "root", "password": "x"}] * 2)
    start = time.monotonic()
    log_in(client)                                     # another address, another name
    assert time.monotonic() - start < 0.5


def test_ids_that_name_no_job_are_not_found(client):
    log_in(client)
    for job_id in (999, 2 ** 64):
        response = client.get(f"/jobs/{job_id}")
        assert response.status_code == 404 and f"job {job_id}" in response.text
    retry = client.post(f"/jobs/{2 ** 64}/retry", data={"csrf": token(client), "back": "/quarantine"})
    assert retry.status_code == 200 and f"no job {2 ** 64}" in retry.text


def test_overview_shows_counts_queue_recent_jobs_and_routing_rules(client, node):
    done, held = finished_job(node), quarantined_job(node)
    receive(node.journal, "1.2.3.9", "1.2.3.9.1")
    waiting = complete_and_enqueue(node.journal, "1.2.3.9")
    log_in(client)
    page = client.get("/").text
    queue = page.split('id="queue"')[1].split("</table>")[0]
    assert f'href="/jobs/{waiting}"' in queue and f'href="/jobs/{done}"' not in queue
    jobs = page.split('id="jobs"')[1].split("</table>")[0]
    for job in (done, held, waiting):
        assert f'<a href="/jobs/{job}">{job}</a>' in jobs
    assert "inference 2.5 s" in jobs and "no CT series with at least 20 slices" in jobs
    assert "handed to a job</span> 2" in page and "quarantined</span> 1" in page     # series by state
    assert "<td>abdominal-ct</td>" in page and "<td>pacs</td>" in page               # deploy/node/routing.yaml
    eligibility = page.split('id="eligibility"')[1].split("</table>")[0]             # renalnode/series_rules.yaml
    assert "CHEST_ABDOMEN_PELVIS" in eligibility and "(?i)scout" in eligibility


def test_job_page_shows_the_run_and_serves_only_its_own_key_images(client, node):
    job = finished_job(node)
    log_in(client)
    page = client.get(f"/jobs/{job}").text
    assert f'id="job-state">{JobState.RESULTS_READY}<' in page and 'class="retry"' not in page
    assert "<td>Right kidney</td><td>right</td><td>151.2</td><td>148</td><td>112.4</td>" in page
    assert f'src="/jobs/{job}/key-images/01.png"' in page
    assert "<tr><th>Destinations</th><td>pacs</td></tr>" in page
    assert "<td>pacs</td><td><span class=\"state state-pending\">pending</span></td>" in page
    assert "job.results_ready" in page.split("Audit trail")[1]
    image = client.get(f"/jobs/{job}/key-images/01.png")
    assert image.status_code == 200 and image.content == PNG and image.headers["content-type"] == "image/png"
    (node.config.results / str(job) / KEY_IMAGE_FOLDER / "notes.png").write_bytes(PNG)   # not a name the app writes
    for name in ("02.png", "notes.png", "..%2F..%2Fnode.yaml", "..%2Frenalnode-run.json"):
        assert client.get(f"/jobs/{job}/key-images/{name}").status_code == 404, name
    missing = client.get("/jobs/999")
    assert missing.status_code == 404 and "There is no job 999." in missing.text


def test_retry_needs_the_page_token_and_goes_back_only_to_this_site(client, node):
    job = quarantined_job(node)
    log_in(client)
    page = client.get(f"/jobs/{job}").text
    assert 'class="retry"' in page and f'name="back" value="/jobs/{job}"' in page
    for forged in ({}, {"csrf": "not the token"}):
        refused = client.post(f"/jobs/{job}/retry", data={"back": "/", **forged})
        assert refused.status_code == 403 and refused.text == "form expired: reload the page"
    assert node.journal.job_row(job).state == JobState.QUARANTINED
    retried = client.post(f"/jobs/{job}/retry", data={"csrf": token(client), "back": "//evil.example/"},
                          follow_redirects=False)
    assert retried.headers["location"] == "/"
    assert flash(client, retried) == f"ok: job {job}: its series will be routed and processed again"
    assert node.journal.job_row(job).state == JobState.RETRIED
    assert node.journal.series_row("1.2.2").state == SeriesState.COMPLETE
    assert node.journal.audit_events(job_id=job)[0].detail == f"by dashboard user {USER}"
    again = client.post(f"/jobs/{job}/retry", data={"csrf": token(client), "back": "/quarantine"},
                        follow_redirects=False)
    assert again.headers["location"] == "/quarantine"
    assert flash(client, again) == f"error: job {job} is retried: only failed or quarantined jobs are retried"


def test_quarantine_lists_series_with_their_reason_and_a_retry_button(client, node):
    log_in(client)
    assert "Nothing quarantined." in client.get("/quarantine").text
    job = quarantined_job(node)
    table = client.get("/quarantine").text.split('id="quarantine"')[1]
    assert f'<a href="/jobs/{job}">{job}</a>' in table and '<td class="uid">1.2.2</td><td>CT1</td>' in table
    assert "no CT series with at least 20 slices" in table and f'data-job="{job}"' in table


def test_destinations_show_failures_and_echo_is_audited(client, node):
    finished_job(node)
    (row,) = node.journal.due_dispatches()
    node.journal.dispatch_failed(row.id, "association with ORTHANC failed", 0)
    log_in(client)
    pacs = node.config.destinations["pacs"]
    page = client.get("/destinations").text
    assert f"<td>ORTHANC@127.0.0.1:{pacs.port}</td>" in page
    assert ": association with ORTHANC failed</td>" in page and "No webhook configured" in page
    echoed = client.post("/destinations/pacs/echo", data={"csrf": token(client)}, follow_redirects=False)
    assert echoed.headers["location"] == "/destinations"
    assert flash(client, echoed) == f"error: association with ORTHANC@127.0.0.1:{pacs.port} failed"
    (echo,) = node.journal.audit_events(event_prefix="echo")
    assert echo.event == "echo.failed" and echo.destination == "pacs" and f"(by dashboard user {USER})" in echo.detail
    unknown = client.post("/destinations/nowhere/echo", data={"csrf": token(client)}, follow_redirects=False)
    assert flash(client, unknown) == "error: no destination nowhere"
    assert client.post("/destinations/pacs/echo", data={}).status_code == 403
    assert len(node.journal.audit_events(event_prefix="echo")) == 1     # neither made an echo


def test_model_page_shows_the_model_used_and_the_configured_package(client, node):
    log_in(client)
    page = client.get("/model").text
    configured = load_model_package(node.config.model)
    assert f"<td>{configured.name} {configured.version}</td>" in page
    assert "No job has run yet." in page and 'id="cv"' in page
    job = finished_job(node)
    used = client.get("/model").text.split('id="model-used"')[1].split("</table>")[0]
    assert f'renalnode-demo-phantom 0.2.0 on cpu, by <a href="/jobs/{job}">job {job}</a>' in used
    assert "<code>/models/demo</code>" in used and "<th>Loads by this process</th><td>0</td>" in used


def test_model_page_says_why_the_configured_package_cannot_be_read(node, tmp_path):
    node.config = dataclasses.replace(node.config, model=tmp_path / "no-model")
    client = TestClient(create_app(node))
    log_in(client)
    page = client.get("/model").text
    assert f"no model package (model.json) at {tmp_path / 'no-model'}" in page and 'id="model"' not in page


def test_audit_log_filters_by_series_job_and_event(client, node):
    done, held = finished_job(node), quarantined_job(node)
    log_in(client)

    def events(query: str) -> list[str]:
        return re.findall(r"<tr><td>[^<]*</td><td>([a-z._]+)</td>", client.get(f"/audit?{query}").text)

    assert events("series=1.2.2") == ["job.quarantined", "job.running", "job.queued", "series.complete"]
    assert events(f"job={done}") == ["job.results_ready", "job.running", "job.queued"]
    assert events("event=login") == ["login.ok"]
    assert events("series=+1.2.2+") == events("series=1.2.2")             # as pasted, with spaces
    assert set(events("job=x")) >= {"login.ok", "series.complete"}       # not a job number: no job filter
    assert f'<a href="/jobs/{held}">{held}</a>' in client.get("/audit?event=job.quarantined").text


def test_overview_and_metrics_show_each_worker(client, node):
    node.journal.worker_started("gpu-server/0", "gpu-server", "cuda:0", 4101)
    node.journal.worker_started("gpu-server/1", "gpu-server", "cuda:1", 4102)
    receive(node.journal, "1.2.5", "1.2.5.1")
    job = complete_and_enqueue(node.journal, "1.2.5")
    assert node.journal.claim("gpu-server/1").worker == "gpu-server/1"
    node.journal.worker_seen("gpu-server/1", job)
    node.journal.worker_seen("gpu-server/0", None, done=True)
    log_in(client)
    rows = client.get("/").text.split('id="workers"')[1].split("</table>")[0].split("<tr>")[2:]
    assert "<td>gpu-server/0</td><td>cuda:0</td>" in rows[0] and "<td>idle</td>" in rows[0]
    assert f'<a href="/jobs/{job}">job {job}</a>' in rows[1] and "<td>cuda:1</td>" in rows[1]
    assert node.journal.job_row(job).worker == "gpu-server/1"
    metrics = client.get("/metrics").text
    assert 'renalnode_worker_busy{worker="gpu-server/1"} 1.0' in metrics
    assert 'renalnode_worker_busy{worker="gpu-server/0"} 0.0' in metrics
    assert 'renalnode_worker_jobs_done{worker="gpu-server/0"} 1.0' in metrics


def test_metrics_and_healthz_answer_without_login(client, node):
    finished_job(node)
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    assert 'renalnode_jobs{state="results_ready"} 1.0' in metrics.text
    assert 'renalnode_outbox{state="pending"} 1.0' in metrics.text
    health = client.get("/healthz")
    assert health.status_code == 503
    assert health.json() == {"status": "failing", "checks": {"listener": "not listening",
                                                             "journal": "not checked yet"}}
