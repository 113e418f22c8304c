"""Operations as hospital IT meets them, with the real parts: a `renalnode serve` process with its
dashboard, metrics and webhook; a real Orthanc as the PACS; dcmtk's storescu as the modality; Debian's
Chromium driven by Selenium (the system browser and chromedriver, nothing downloaded).

The module's fixture plays one morning: metrics scraped before anything arrives; a phantom study
from the CT room goes through and is sent back; a second series from a room no routing rule knows
is quarantined. The tests then look at what IT sees: the metrics, the webhook, the dashboard (log
in, finished job with its key image, retry of the quarantined series after the rule is fixed), the
health check, and that no patient name or ID appears in any log line, metric or message.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import pydicom
import pytest
import requests
import yaml
from conftest import WebhookReceiver
from prometheus_client.parser import text_string_to_metric_families

from deploy.local_services import NODE_AET, ORTHANC_AET, LocalNode, LocalOrthanc, free_port, store_folder, wait_until
from deploy.node.journal import JobState, Journal, SeriesState

CT_ROOM, OTHER_ROOM = "CTROOM1", "CTROOM2"
USER, PASSWORD = "it-admin", "correct horse battery staple"


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """/metrics parsed by prometheus_client's own parser: (sample name, labels) -> value."""
    text = urllib.request.urlopen(f"{url}/metrics", timeout=30).read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def rules(*calling_aets: str) -> str:
    return yaml.safe_dump({"rules": [{"name": "abdominal-ct", "modalities": ["CT"], "calling_aets": list(calling_aets),
                                      "destinations": ["pacs"]}]})


@pytest.fixture(scope="module")
def morning(tmp_path_factory, phantom_cases):
    folder = tmp_path_factory.mktemp("operations")
    node_port, web_port = free_port(), free_port()
    pacs = LocalOrthanc(folder / "orthanc", node_port).start()
    hook = WebhookReceiver()
    (folder / "routing.yaml").write_text(rules(CT_ROOM))
    node = LocalNode(folder / "node", pacs.dicom_port, node_port, (CT_ROOM, OTHER_ROOM, ORTHANC_AET), sections={
        "routing": {"rules": str(folder / "routing.yaml")},
        "web": {"port": web_port, "username": USER, "password_env": "TEST_RENALNODE_WEB_PASSWORD",
                "url": f"http://127.0.0.1:{web_port}", "health_check_seconds": 1},
        "notifications": {"webhook_url_env": "TEST_RENALNODE_WEBHOOK", "retry_base_seconds": 1},
    }, env={"TEST_RENALNODE_WEB_PASSWORD": PASSWORD, "TEST_RENALNODE_WEBHOOK": hook.url})
    try:
        node.start()
        url = f"http://127.0.0.1:{web_port}"
        wait_until(lambda: _answers(url), 60, what="the dashboard")
        journal = Journal(node.journal_url)
        before = scrape(url)
        good, odd = phantom_cases("HFS") / "dicom", phantom_cases("FFS") / "dicom"
        assert store_folder(node_port, NODE_AET, good, CT_ROOM).returncode == 0
        done = wait_until(lambda: next((j for j in journal.recent_jobs() if j.state == JobState.DISPATCHED), None),
                          600, 2, what="the CT room's study processed and sent")
        after = scrape(url)
        assert store_folder(node_port, NODE_AET, odd, OTHER_ROOM).returncode == 0
        held = wait_until(lambda: journal.quarantined() or None, 120, 1, what="the other room's series quarantined")
        yield {"url": url, "node": node, "pacs": pacs, "hook": hook, "journal": journal, "before": before,
               "after": after, "done": done, "held": held[0], "folder": folder, "sent": (good, odd)}
    finally:
        node.stop()
        pacs.stop()
        hook.close()


def _answers(url: str) -> bool:
    try:
        return urllib.request.urlopen(f"{url}/healthz", timeout=30).status in (200, 503)
    except OSError:
        return False


def test_metrics_parse_and_counters_move_as_a_study_passes(morning):
    before, after = morning["before"], morning["after"]
    slices = len(list(morning["sent"][0].glob("*.dcm")))
    assert before[("renalnode_instances_received_total", ())] == 0
    assert after[("renalnode_instances_received_total", ())] == slices
    assert (before[("renalnode_series_received_total", ())], after[("renalnode_series_received_total", ())]) == (0, 1)
    assert after[("renalnode_associations_total", (("outcome", "accepted"),))] >= 1
    assert ("renalnode_jobs", (("state", "dispatched"),)) not in before
    assert after[("renalnode_jobs", (("state", "dispatched"),))] == 1
    for stage in ("queue", "read", "inference", "seg", "sr", "pdf", "app"):
        assert after[("renalnode_stage_duration_seconds_count", (("stage", stage),))] == 1, stage
    assert after[("renalnode_stage_duration_seconds_sum", (("stage", "inference"),))] > 0
    assert after[("renalnode_dispatches_total", (("destination", "pacs"),))] == 1
    assert after[("renalnode_model_loads_total", ())] == 1 and before[("renalnode_model_loads_total", ())] == 0
    assert after[("renalnode_spool_free_bytes", ())] > 0
    assert after.get(("renalnode_dispatch_failures_total", (("destination", "pacs"),)), 0) == 0


def test_webhook_receives_the_quarantined_series(morning):
    held = morning["held"]
    body = wait_until(lambda: next((b for b in morning["hook"].bodies if b["event"] == "job.quarantined"), None),
                      60, what="the quarantine notification")
    assert body["series_uid"] == held.series_uid and body["job"] == held.job_id
    assert "no routing rule matches" in body["reason"] and body["node"] == NODE_AET
    assert body["dashboard"] == f"{morning['url']}/jobs/{held.job_id}"


def flash(browser) -> str:
    """The success message of the page a button led to (the click returns before that page is there)."""
    from selenium.webdriver.common.by import By

    (message,) = wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, ".flash.ok"), 60, 0.2,
                            what="the success message")
    return message.text


def test_dashboard_login_finished_job_and_retry_of_a_quarantined_series(morning, browser):
    from selenium.webdriver.common.by import By

    url, journal, done, held = morning["url"], morning["journal"], morning["done"], morning["held"]
    browser.get(f"{url}/jobs/{done.id}")
    assert "/login" in browser.current_url                      # nothing without logging in
    browser.find_element(By.ID, "username").send_keys(USER)
    browser.find_element(By.ID, "password").send_keys("wrong")
    browser.find_element(By.ID, "login").click()
    wait_until(lambda: "Wrong user name or password" in browser.page_source, 30, 0.2,
               what="the failed login's message")   # answered after a deliberate delay
    browser.find_element(By.ID, "username").send_keys(USER)
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.ID, "login").click()
    wait_until(lambda: browser.current_url == f"{url}/jobs/{done.id}", 30, 0.2,
               what="the job page after login")                  # back where it was going

    assert browser.find_element(By.ID, "job-state").text == JobState.DISPATCHED
    findings = browser.find_elements(By.CSS_SELECTOR, "#findings tr")[1:]
    names = [row.find_elements(By.TAG_NAME, "td")[0].text for row in findings]
    assert "Right kidney" in names and "Left kidney" in names
    images = browser.find_elements(By.CSS_SELECTOR, "img.key-image")
    assert len(images) == len(findings)
    sizes = [browser.execute_script("return [arguments[0].complete, arguments[0].naturalWidth]", img) for img in images]
    assert all(complete and width == 320 for complete, width in sizes), sizes
    outbox = browser.find_element(By.ID, "outbox").text
    assert "pacs" in outbox and "sent" in outbox
    stages = browser.find_element(By.ID, "stages").text
    assert "inference" in stages

    browser.get(url)                                             # the overview: queue, jobs with stages
    assert f"/jobs/{done.id}" in browser.page_source and "inference" in browser.find_element(By.ID, "jobs").text

    browser.get(f"{url}/destinations")
    browser.find_element(By.CSS_SELECTOR, "button.echo[data-destination='pacs']").click()
    assert "C-ECHO ORTHANC" in flash(browser)
    pacs_row = browser.find_element(By.XPATH, "//table[@id='destinations']//tr[td[1]='pacs']")
    last_success, last_failure = [cell.text for cell in pacs_row.find_elements(By.TAG_NAME, "td")[3:5]]
    assert last_success.startswith("20") and last_failure == "-"

    browser.get(f"{url}/model")
    assert "renalnode-demo-phantom" in browser.find_element(By.ID, "model").text
    assert "kidney" in browser.find_element(By.ID, "cv").text

    browser.get(f"{url}/quarantine")
    quarantine = browser.find_element(By.ID, "quarantine").text
    assert held.series_uid in quarantine and "no routing rule matches" in quarantine
    (morning["folder"] / "routing.yaml").write_text(rules(CT_ROOM, OTHER_ROOM))   # IT fixes the rule ...
    browser.find_element(By.CSS_SELECTOR, f"button.retry[data-job='{held.job_id}']").click()   # ... and retries
    assert "will be routed and processed again" in flash(browser)
    assert "Nothing quarantined" in browser.find_element(By.ID, "quarantine").text

    redone = wait_until(lambda: next((j for j in journal.recent_jobs() if j.series_uid == held.series_uid
                                      and j.state == JobState.DISPATCHED), None), 600, 2,
                        what="the retried series sent")
    browser.get(f"{url}/jobs/{redone.id}")
    assert browser.find_element(By.ID, "job-state").text == JobState.DISPATCHED
    assert browser.find_elements(By.CSS_SELECTOR, "img.key-image")
    browser.get(f"{url}/audit?series={held.series_uid}")
    trail = browser.find_element(By.CSS_SELECTOR, "table.events").text
    for event in ("job.quarantined", "job.retried", "job.running", "dispatch.sent", "job.dispatched"):
        assert event in trail, event
    assert f"by dashboard user {USER}" in trail
    assert journal.series_row(held.series_uid).state != SeriesState.QUARANTINED


def test_no_patient_name_or_id_in_logs_metrics_audit_or_messages(morning):
    identities = set()
    for folder in morning["sent"]:
        header = pydicom.dcmread(next(folder.glob("*.dcm")), stop_before_pixels=True)
        identities |= {str(header.PatientName), str(header.PatientID)}
    assert all(len(value) >= 4 for value in identities)          # something a leak would show
    journal = morning["journal"]
    texts = {
        "node log": (morning["node"].folder / "node.log").read_text(errors="replace"),
        "metrics": urllib.request.urlopen(f"{morning['url']}/metrics", timeout=30).read().decode(),
        "audit": "\n".join(str(row) for row in journal.audit_events(limit=100000)),
        "webhook": "\n".join(str(body) for body in morning["hook"].bodies),
        "notifications": "\n".join(str(row) for row in journal.notification_rows()),
    }
    assert "job.dispatched" in texts["audit"] and "renalnode_instances_received_total" in texts["metrics"]
    for where, text in texts.items():
        for value in identities:
            assert value not in text, f"{value!r} in the {where}"


def test_buttons_need_the_login_and_the_page_token(morning):
    url, held = morning["url"], morning["held"]
    session = requests.Session()
    anonymous = session.post(f"{url}/jobs/{held.job_id}/retry", data={"back": "/"}, allow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login")
    login = session.post(f"{url}/login?next=//evil.example/", data={"username": USER, "password": PASSWORD},
                         allow_redirects=False)
    assert login.status_code == 303 and login.headers["location"] == "/"       # never another site
    forged = session.post(f"{url}/jobs/{held.job_id}/retry", data={"back": "/"}, allow_redirects=False)
    assert forged.status_code == 403                                            # no token from our page
    assert session.get(f"{url}/jobs/{held.job_id}/key-images/..%2F..%2Fnode.yaml").status_code == 404
    audit = morning["journal"].audit_events(event_prefix="login")
    assert audit and all(PASSWORD not in row.detail for row in audit)


def test_healthz_names_what_fails(morning):
    """Last in this module: it stops the PACS."""
    answer = urllib.request.urlopen(f"{morning['url']}/healthz", timeout=60)
    assert answer.status == 200
    assert json.load(answer) == {"status": "ok", "checks": {"listener": "ok", "journal": "ok",
                                                            "destination pacs": "ok"}}
    morning["pacs"].stop()

    def failing():
        try:
            urllib.request.urlopen(f"{morning['url']}/healthz", timeout=60)
        except urllib.error.HTTPError as error:
            return error
        return None

    error = wait_until(failing, 60, what="/healthz to notice the PACS is down")
    body = json.load(error)
    assert error.code == 503 and body["status"] == "failing"
    assert body["checks"] == {"listener": "ok", "journal": "ok", "destination pacs": "unreachable"}
