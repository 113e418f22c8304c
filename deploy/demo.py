"""`make demo`: the whole job end to end on this machine, with the embedded defaults.

A local Orthanc (with renalnode's auto-routing script) and the node with the bundled demo model
start on free loopback ports; a 512 x 512 phantom study is made and sent to Orthanc with dcmtk's
storescu as a scanner would; Orthanc routes the stable CT series to the node; the node's SEG, SR
and PDF arrive back in Orthanc in the same study. The demo prints the Orthanc study link, the node's
dashboard (with a password made for this run) and the findings, opens the study in OHIF (the viewer
server of deploy/viewer) with the SEG loaded at the phantom's largest lesion, prints the OHIF link
and saves that screenshot, and stops everything (on Ctrl-C too). Everything lives under build/demo.
"""
from __future__ import annotations

import argparse
import json
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

from deploy.local_services import ORTHANC_AET, ROOT, LocalNode, LocalOrthanc, LocalViewer, free_port, wait_until
from deploy.node.journal import JobState, Journal
from renalnode.run_record import RECORD_NAME

SCANNER_AET = "SCANNER"


def results_arrived(orthanc: LocalOrthanc) -> dict[str, list[dict]] | None:
    found = orthanc.series_by_modality()
    return found if all(found.get(m) for m in ("SEG", "SR", "DOC")) else None


def screenshot_in_ohif(viewer: LocalViewer, case: Path, out: Path) -> str:
    """The study in OHIF with its SEG, at the slice through the phantom's largest lesion."""
    from selenium.common.exceptions import WebDriverException

    from deploy.viewer.browser import OhifStudy, ViewerError, chromium

    truth = json.loads((case / "truth.json").read_text())
    target = max(truth["lesions"] or truth["kidneys"], key=lambda found: found["volume_ml"])
    try:
        driver = chromium()
    except (ViewerError, WebDriverException) as exc:
        return f"no screenshot: {exc}"
    try:
        study = OhifStudy(driver, viewer.url, truth["study_instance_uid"])
        study.load_seg()
        study.show(tuple(target["centroid_mm"]))
        study.screenshot().save(out)
    except (ViewerError, WebDriverException) as exc:   # the results are in Orthanc all the same
        return f"no screenshot: {exc}"
    finally:
        driver.quit()
    return f"screenshot of the study with its SEG in OHIF: {out}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "demo")
    parser.add_argument("--keep-running", action="store_true", help="leave Orthanc and the node up until Ctrl-C")
    args = parser.parse_args(argv)
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)

    print("1/5 making a phantom study (512 x 512, synthetic patient)", flush=True)
    subprocess.run([sys.executable, "-m", "renalnode", "phantom", "--out", str(args.out / "phantom"), "--cases", "1",
                    "--seed", "9"], check=True, capture_output=True)
    (case,) = [p for p in (args.out / "phantom").iterdir() if not p.name.startswith(".")]

    node_port, web_port = free_port(), free_port()
    dashboard, password = f"http://127.0.0.1:{web_port}", secrets.token_urlsafe(12)
    orthanc = LocalOrthanc(args.out / "orthanc", node_port=node_port)
    viewer = LocalViewer(args.out / "viewer", orthanc.url)
    # Test-time mirroring, as a site's node runs by default: the model's post-processing was chosen on
    # mirrored predictions.
    node = LocalNode(args.out / "node", orthanc.dicom_port, node_port, (ORTHANC_AET,), mirroring=True,
                     sections={"web": {"port": web_port, "username": "admin", "password_env": "RENALNODE_WEB_PASSWORD",
                                       "url": dashboard}},
                     env={"RENALNODE_WEB_PASSWORD": password})
    try:
        print("2/5 starting Orthanc and the node", flush=True)
        orthanc.start()
        node.start()
        print(f"    Orthanc {orthanc.url} (DICOM {orthanc.dicom_port}); node {node_port}", flush=True)

        print("3/5 sending the study to Orthanc with storescu", flush=True)
        sent = orthanc.store(case / "dicom", SCANNER_AET)
        if sent.returncode:
            raise RuntimeError(f"storescu failed: {sent.stderr[-2000:]}")

        print("4/5 waiting for auto-routing, segmentation and the results in Orthanc", flush=True)
        start = time.monotonic()
        found = wait_until(lambda: results_arrived(orthanc), 1800, 2, what="SEG, SR and PDF in Orthanc")
        study_id = found["SEG"][0]["ParentStudy"]
        print(f"    results in Orthanc after {time.monotonic() - start:.0f} s", flush=True)

        print("5/5 results", flush=True)
        journal = Journal(node.journal_url)
        job = wait_until(lambda: next((j for j in journal.recent_jobs() if j.state == JobState.DISPATCHED), None),
                         60, what="the node to finish dispatching")
        record = json.loads((Path(job.output) / RECORD_NAME).read_text())
        print(f"    Orthanc study: {orthanc.url}/app/explorer.html#study?uuid={study_id}")
        print(f"    node dashboard: {dashboard}/jobs/{job.id} (user admin, password {password}, made for this run)")
        print(f"    node metrics: {dashboard}/metrics, health: {dashboard}/healthz")
        print(f"    model {record['model']['name']} {record['model']['version']} on {record['model']['device']}")
        print(f"    {'finding':<16} {'side':<6} {'volume ml':>10} {'mean HU':>8} {'max diam. mm':>13}")
        for finding in record["findings"]:
            print(f"    {finding['name']:<16} {finding['side']:<6} {finding['volume_ml']:>10.1f} "
                  f"{finding['mean_hu']:>8.0f} {finding['max_diameter_mm']:>13.1f}")
        print("    demo model: trained on synthetic phantoms only, not for clinical use")
        viewer.start()
        study_uid = json.loads((case / "truth.json").read_text())["study_instance_uid"]
        print(f"    OHIF: {viewer.study_url(study_uid)}  (double-click the SEG, answer Yes"
              f"{'' if args.keep_running else '; up only with DEMO_ARGS=--keep-running'})", flush=True)
        print(f"    {screenshot_in_ohif(viewer, case, args.out / 'ohif-seg.png')}", flush=True)
        if args.keep_running:
            print("Orthanc, the node and the viewer keep running; Ctrl-C stops them.", flush=True)
            while True:
                time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        viewer.stop()
        node.stop()
        orthanc.stop()
        print("stopped the viewer, Orthanc and the node", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
