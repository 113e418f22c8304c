"""What the radiologist sees: phantom studies processed by the node open in OHIF 3.13.2 (the pinned
build, served with Orthanc's DICOMweb under one origin by deploy/viewer), in Debian's Chromium with
SwiftShader. The SEG is loaded as a radiologist loads it, the viewer goes to the slice through a
known kidney and a known lesion, and the screenshot must hold the kidney colour and the lesion's
class colour at the pixels where the ground truth puts them, and not the lesion's colour where its
left-right mirror image would be: a SEG flipped left-right or head-to-feet fails. Feet-first and
prone acquisitions are checked the same way.
"""
from __future__ import annotations

import http.client
import json

import numpy as np
import pytest
from conftest import phantom_volume_and_label, seg_class_map
from dicomweb_client.api import DICOMwebClient
from highdicom.seg import Segmentation
from scipy import ndimage

from deploy.local_services import ORTHANC_AET, LocalNode, LocalOrthanc, LocalViewer, free_port, wait_until
from deploy.viewer.browser import OhifStudy
from deploy.viewer.fetch import OHIF_DIST
from renalnode import labels
from renalnode.labels import CLASS_OF_KEY
from renalnode.measurements import voxel_centres_mm

POSITIONS = ("HFS", "FFS", "HFP")
KIND = {labels.KIDNEY: "kidney", labels.SOLID_MASS: "solid_mass", labels.CYST: "cyst"}
SCANNER_AET = "SCANNER"
RESULTS = ("SEG", "SR", "DOC")


@pytest.fixture(scope="module")
def viewer(tmp_path_factory, phantom_cases):
    """Orthanc with auto-routing, the node and the viewer server; the three phantom studies sent to
    Orthanc as a scanner would, processed by the node, their results back in Orthanc."""
    if not (OHIF_DIST / "index.html").is_file():
        pytest.fail("the OHIF build is missing: make setup fetches it (python -m deploy.viewer.fetch)")
    folder = tmp_path_factory.mktemp("viewer")
    node_port = free_port()
    pacs = LocalOrthanc(folder / "orthanc", node_port).start()
    node = LocalNode(folder / "node", pacs.dicom_port, node_port, (ORTHANC_AET,))
    site = LocalViewer(folder / "viewer", pacs.url)
    try:
        node.start()
        site.start()
        for position in POSITIONS:
            assert pacs.store(phantom_cases(position) / "dicom", SCANNER_AET).returncode == 0
        wait_until(lambda: all(len(pacs.series_by_modality().get(m, [])) >= len(POSITIONS) for m in RESULTS), 900, 2,
                   what="SEG, SR and PDF of every study in Orthanc")
        yield site
    finally:
        site.stop()
        node.stop()
        pacs.stop()


def deepest_voxel(mask: np.ndarray) -> tuple[tuple[int, int, int], float]:
    """The voxel of `mask` farthest (in-plane, in pixels) from its edge, and that distance."""
    depth = np.stack([ndimage.distance_transform_edt(plane) for plane in mask])
    index = np.unravel_index(int(np.argmax(depth)), mask.shape)
    return tuple(int(i) for i in index), float(depth[index])


def overlay_colour(picture, xy: tuple[float, float]) -> np.ndarray:
    """The mean colour of the 5 x 5 pixels around a point (OhifStudy.show checks it is in the image)."""
    x, y = int(round(xy[0])), int(round(xy[1]))
    patch = np.asarray(picture, dtype=float)[y - 2:y + 3, x - 2:x + 3].reshape(-1, 3)
    assert len(patch) == 25, f"{xy} is not inside the screenshot"
    return patch.mean(axis=0)


def tinted(rgb: np.ndarray, kind: str) -> bool:
    """The pixel leans clearly towards the class colour (drawn half transparent over grey CT)."""
    colour = np.asarray(CLASS_OF_KEY[kind].colour, dtype=float)
    grey = np.full(3, rgb.mean())
    return float(np.dot(rgb - grey, colour - colour.mean())) > 40 * np.linalg.norm(colour - colour.mean())


def segmented_by_the_node(site: LocalViewer, study_uid: str) -> Segmentation:
    """The SEG in Orthanc, fetched through the viewer's own DICOMweb proxy, as OHIF fetches it."""
    client = DICOMwebClient(url=f"{site.url}/dicom-web")
    (series,) = client.search_for_series(study_uid, search_filters={"Modality": "SEG"})
    (instance,) = client.search_for_instances(study_uid, series["0020000E"]["Value"][0])
    return Segmentation.from_dataset(client.retrieve_instance(
        study_uid, series["0020000E"]["Value"][0], instance["00080018"]["Value"][0]))


@pytest.mark.parametrize("position", POSITIONS)
def test_seg_overlay_lies_where_the_truth_is(viewer, browser, phantom_cases, position, tmp_path):
    case = phantom_cases(position)
    volume, truth = phantom_volume_and_label(case)
    study_uid = str(volume.slices[0].StudyInstanceUID)
    numbers, classes = seg_class_map(segmented_by_the_node(viewer, study_uid), volume.slices)
    predicted = np.vectorize(lambda n: classes.get(n, 0), otypes=[np.uint8])(numbers)

    # Where truth and the node agree, deep inside: a kidney, and the lesion with the most room.
    kidney, depth = deepest_voxel((truth == labels.KIDNEY) & (predicted == labels.KIDNEY))
    assert depth >= 2, "the node found no kidney where the truth has one"
    (lesion, depth), lesion_class = max(
        ((deepest_voxel((truth == c) & (predicted == c)), c) for c in (labels.SOLID_MASS, labels.CYST)),
        key=lambda found: found[0][1])
    assert depth >= 1.5, "the node found no lesion where the truth has one"
    # The lesion's left-right mirror image: a SEG drawn flipped would put the lesion's colour there.
    mirrored = (lesion[0], lesion[1], truth.shape[2] - 1 - lesion[2])
    around = tuple(slice(max(0, i - 3), i + 4) for i in mirrored)
    assert not (predicted[around] == lesion_class).any(), "the node found the same lesion class at the mirror image"

    def lps(index):
        return tuple(voxel_centres_mm(np.array([index]), volume.image)[0])

    study = OhifStudy(browser, viewer.url, study_uid)
    series = study.series(*RESULTS)
    assert "report (PDF)" in series["DOC"] and "measurements" in series["SR"] and "segmentation" in series["SEG"]
    (segmentation,) = study.load_seg()                                  # one segmentation ...
    segments = {s["label"]: s["color"] for s in segmentation["segments"]}
    kidney_colour = list(CLASS_OF_KEY["kidney"].colour)
    assert segments["Right kidney"] == segments["Left kidney"] == kidney_colour   # ... labelled, coloured
    for label, colour in segments.items():
        kind = "kidney" if "kidney" in label else "solid_mass" if label.startswith("Solid mass") else "cyst"
        assert colour == list(CLASS_OF_KEY[kind].colour), label
    assert len(segments) == len(classes)

    for name, index, kind in (("kidney", kidney, "kidney"), ("lesion", lesion, KIND[lesion_class])):
        where = study.show(lps(index))
        picture = study.screenshot()
        picture.save(tmp_path / f"{position}-{name}.png")
        colour = overlay_colour(picture, where)
        assert tinted(colour, kind), f"{position} {name}: {colour} at {where} is not {kind} ({tmp_path})"
        if name == "lesion":
            where = study.show(lps(mirrored))
            elsewhere = overlay_colour(study.screenshot(), where)
            assert not tinted(elsewhere, kind), f"{position}: {kind} colour {elsewhere} at the lesion's mirror image"


def test_viewer_server_serves_ohif_and_only_dicomweb(viewer):
    """One origin: OHIF's routes fall back to its page, .wasm has its type, pages are cross-origin
    isolated, and the proxy reaches Orthanc's DICOMweb and nothing else of its REST API."""
    def get(path: str) -> http.client.HTTPResponse:
        connection = http.client.HTTPConnection("127.0.0.1", viewer.port, timeout=60)
        connection.request("GET", path)   # sent as written: no client-side ".." clean-up
        return connection.getresponse()

    page = get("/viewer?StudyInstanceUIDs=1.2.3")
    assert page.status == 200 and b"<title>" in page.read()
    assert page.getheader("Cross-Origin-Opener-Policy") == "same-origin"
    assert page.getheader("Cross-Origin-Embedder-Policy") == "require-corp"
    wasm = next(OHIF_DIST.glob("*.wasm")).name
    assert get(f"/{wasm}").getheader("Content-Type") == "application/wasm"
    assert get("/missing.bundle.js").status == 404
    studies = get("/dicom-web/studies")
    assert studies.status == 200 and len(json.loads(studies.read())) == len(POSITIONS)
    for outside in ("/dicom-web/../patients", "/dicom-web/%2e%2e/system", "/dicom-web/servers",
                    "/dicom-web/studies/../../instances"):
        assert get(outside).status == 404, outside
    assert get("/dicom-web/studies?PatientID=1#2").status == 400   # a query no URL can carry
