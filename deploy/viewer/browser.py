"""OHIF in headless Chromium, as a radiologist uses it: open the study, double-click the SEG in the
study browser, answer "Yes" to open it, go to a slice. Drives Debian's chromium with its
chromedriver through Selenium (nothing downloaded); WebGL runs on SwiftShader where there is no GPU.
`make demo` uses it for its screenshot and the viewer tests for theirs.

Positions are patient coordinates (LPS, mm) like everything else in renalnode; cornerstone3D, which
OHIF draws with, maps them to screen pixels (`viewport.worldToCanvas`), so a test can look at the
pixel where the ground truth says a structure is.
"""
from __future__ import annotations

import io
import shutil
import time

from PIL import Image

WINDOW = (1280, 900)
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--enable-unsafe-swiftshader",
                  "--use-angle=swiftshader", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--force-device-scale-factor=1",
                  f"--window-size={WINDOW[0]},{WINDOW[1]}")

# The slice whose plane is nearest the point, by distance along the slice normal.
_NEAREST_SLICE = """
const [point] = arguments;
const viewport = window.cornerstone.getEnabledElements()[0].viewport;
let best = 0, bestDistance = Infinity;
viewport.getImageIds().forEach((imageId, index) => {
  const plane = window.cornerstone.metaData.get('imagePlaneModule', imageId);
  const [r, c] = [plane.rowCosines, plane.columnCosines];
  const normal = [r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0]];
  const distance = Math.abs(normal.reduce((sum, n, i) => sum + n * (point[i] - plane.imagePositionPatient[i]), 0));
  if (distance < bestDistance) { best = index; bestDistance = distance; }
});
return best;
"""
_GO_TO_SLICE = """
const [index] = arguments;
const viewport = window.cornerstone.getEnabledElements()[0].viewport;
return window.cornerstone.utilities.jumpToSlice(viewport.element, {imageIndex: index})
  .then(() => viewport.getCurrentImageIdIndex());
"""
_ON_PAGE = """
const [point] = arguments;
const viewport = window.cornerstone.getEnabledElements()[0].viewport;
const [x, y] = viewport.worldToCanvas(point);
const box = viewport.canvas.getBoundingClientRect();
return [box.left + x, box.top + y, box.left, box.top, box.right, box.bottom];
"""
_SEGMENTS = """
const service = window.services.segmentationService;
const viewportId = window.cornerstone.getEnabledElements()[0].viewport.id;
// A segment has no colour until the segmentation is attached to the viewport: report none yet.
return service.getSegmentations().map(s => ({
  label: s.label,
  segments: Object.values(s.segments).filter(Boolean).map(x => ({
    index: x.segmentIndex, label: x.label,
    color: service.getSegmentColor(viewportId, s.segmentationId, x.segmentIndex)}))
    .filter(x => x.color).map(x => ({...x, color: Array.from(x.color).slice(0, 3)}))}));
"""


class ViewerError(RuntimeError):
    pass


def chromium():
    """A headless Chromium driven by Selenium: the system browser and driver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if browser is None or driver is None:
        raise ViewerError("Chromium is not installed (Debian packages chromium and chromium-driver; make setup)")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    chrome.set_page_load_timeout(120)
    return chrome


class OhifStudy:
    """One study open in OHIF's viewer route."""

    def __init__(self, driver, viewer_url: str, study_uid: str, timeout: float = 180):
        self.driver, self.timeout = driver, timeout
        driver.get(f"{viewer_url.rstrip('/')}/viewer?StudyInstanceUIDs={study_uid}")
        self._wait(lambda: driver.execute_script(
            "const e = window.cornerstone && window.cornerstone.getEnabledElements();"
            "return !!(e && e.length && e[0].viewport.getCurrentImageId && e[0].viewport.getCurrentImageId())"),
            "the first image")
        self._dismiss_overlays()

    def _dismiss_overlays(self) -> None:
        """OHIF's onboarding tour and its investigational-use notice: under load either may show only
        after the first image, and then takes every click meant for the page beneath."""
        self._dismiss("Skip all")
        self._dismiss("Confirm and hide")

    def _wait(self, condition, what: str):
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(0.5)
        raise ViewerError(f"OHIF did not show {what} within {self.timeout:.0f} s")

    def _buttons(self, text: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.XPATH, f"//*[normalize-space(text())='{text}']")

    def _dismiss(self, text: str) -> None:
        for button in self._buttons(text):
            if button.is_displayed():
                button.click()

    def series(self, *modalities: str) -> dict[str, str]:
        """Modality -> description of the series OHIF lists, once it lists all of `modalities` (the
        study's series arrive one by one)."""
        def listed():
            found = {d["modality"]: d["description"] for d in self.driver.execute_script(
                "return window.services.displaySetService.getActiveDisplaySets()"
                ".map(d => ({modality: d.Modality, description: d.SeriesDescription}))")}
            return found if set(modalities) <= set(found) else None
        return self._wait(listed, f"series of {', '.join(modalities)}")

    def load_seg(self) -> list[dict]:
        """Double-click the SEG in the study browser and answer "Yes": the radiologist's way. Returns
        the segmentations OHIF then holds, each with its segments' labels and colours."""
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.by import By

        def seg_thumbnails():
            return [t for t in self.driver.find_elements(By.CSS_SELECTOR, "[data-cy^=study-browser-thumbnail]")
                    if t.text.startswith("SEG")]

        self._wait(seg_thumbnails, "the SEG in the study browser")
        next_click = [0.0]

        def prompt():
            """The prompt's button; until it shows, the SEG double-clicked again every 20 s: a click
            that lands while OHIF still re-renders the study browser, or on an overlay that showed
            late, is lost (seen under load)."""
            shown = [b for b in self._buttons("Yes") if b.is_displayed()]
            if not shown and time.monotonic() >= next_click[0]:
                next_click[0] = time.monotonic() + 20
                self._dismiss_overlays()
                try:
                    ActionChains(self.driver).double_click(seg_thumbnails()[0]).perform()
                except (IndexError, StaleElementReferenceException):
                    next_click[0] = 0.0  # re-rendered between finding and clicking: again at once
            return shown

        try:
            self._wait(prompt, 'the "open this Segmentation?" prompt')
        except ViewerError as error:
            raise ViewerError(f"{error}; on top of the SEG's thumbnail: {self._on_top(seg_thumbnails())}") from None
        self._dismiss("Yes")
        return self._wait(lambda: [s for s in self.driver.execute_script(_SEGMENTS) if s["segments"]],
                          "the segmentation")

    def _on_top(self, elements) -> str:
        """What a click at the first element's centre would land on: the element itself or an overlay."""
        if not elements:
            return "nothing (no thumbnail)"
        return self.driver.execute_script(
            "const box = arguments[0].getBoundingClientRect();"
            "const top = document.elementFromPoint(box.left + box.width / 2, box.top + box.height / 2);"
            "return top ? `${top.tagName} '${(top.innerText || '').slice(0, 80)}'"
            " (${arguments[0].contains(top) ? 'the thumbnail' : 'an overlay'})` : 'nothing';", elements[0])

    def show(self, point_lps: tuple[float, float, float]) -> tuple[float, float]:
        """Go to the slice through the point and let it be drawn; where the point is on the page (CSS
        pixels, inside the image's canvas)."""
        index = self.driver.execute_script(_NEAREST_SLICE, list(point_lps))
        if self.driver.execute_script(_GO_TO_SLICE, index) != index:   # Selenium awaits the returned promise
            raise ViewerError(f"OHIF did not go to slice {index + 1}")
        x, y, left, top, right, bottom = self.driver.execute_script(_ON_PAGE, list(point_lps))
        if not (left + 2 <= x <= right - 3 and top + 2 <= y <= bottom - 3):
            raise ViewerError(f"the point {point_lps} is not in the image on the screen")
        self._settled((left, top, right, bottom))
        return x, y

    def _settled(self, box: tuple[float, float, float, float]) -> None:
        """Wait until the image on the screen is the same in two screenshots half a second apart: the
        image and then the segmentation layer are drawn asynchronously, later still on SwiftShader."""
        last = None
        for _ in range(60):
            time.sleep(0.5)
            left, top, right, bottom = (int(v) for v in box)
            shot = self.screenshot().crop((left, top, right, bottom)).tobytes()
            if shot == last:
                return
            last = shot
        raise ViewerError("the image on the screen kept changing for 30 s")

    def screenshot(self) -> Image.Image:
        return Image.open(io.BytesIO(self.driver.get_screenshot_as_png())).convert("RGB")
