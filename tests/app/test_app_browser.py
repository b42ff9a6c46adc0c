"""`spgd app` in a real headless browser: the system's Chromium driven by Playwright (no browser download).

SPGD_APP_STEPS / SPGD_APP_SIZE / SPGD_APP_METHODS (more methods, comma-separated) change the example run and
SPGD_APP_SCREENSHOT keeps the finished page (docs/app.png was made so).

`make test` installs what this needs (Chromium from the system's packages, Playwright and Gradio from the test
extras). A missing browser fails these tests with the fix; it never skips them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium() -> str:
    """The system's Chromium ($SPGD_CHROMIUM, else the first on PATH); a failure with the fix when none."""
    env = os.environ.get("SPGD_CHROMIUM")
    found = env or next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)
    if not found:
        pytest.fail("no Chromium found: `make test` installs it (apt-get install chromium), or set SPGD_CHROMIUM "
                    "to a Chromium/Chrome binary")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """`spgd app` (the bundled prior) served on a free port of 127.0.0.1 while the module's tests run."""
    out = tmp_path_factory.mktemp("app-runs")
    port = free_port()
    log = open(out / "server.log", "w+")
    # run from `out` with a relative --out: the page (and the screenshot in docs/) names "runs", no machine path
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-m", "spgd", "app", "--port", str(port), "--out", "runs"], cwd=out,
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"spgd app exited with {proc.returncode}:\n{log.read()}")
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                log.seek(0)
                pytest.fail(f"spgd app did not answer on {url} within 180 s:\n{log.read()}")
            time.sleep(1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture
def page(app_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), headless=True,
                                    args=["--no-sandbox", "--disable-dev-shm-usage"])
        pg = browser.new_page(viewport={"width": 1400, "height": 1100})
        pg.set_default_timeout(60_000)
        pg.goto(app_url)
        pg.wait_for_selector("#run")
        yield pg
        browser.close()


def status_text(pg) -> str:
    return pg.locator("#status").inner_text()


def test_degrade_and_restore_a_face_with_spgd(page, demo_dir, tmp_path):
    pg = page
    face = sorted(demo_dir.glob("*.png"))[0]
    pg.locator("#photo input[type=file]").set_input_files(str(face))
    pg.wait_for_function("document.querySelector('#status').innerText.includes('256x256')")
    assert f"{face.name}: 256x256" in status_text(pg)

    # the degradation: pick another task, then Gaussian blur (the methods follow the task)
    for task in ("inpainting_box", "gaussian_blur"):
        pg.locator("#task input").click()
        pg.get_by_role("option", name=task, exact=True).click()
    assert pg.locator("#task input").input_value() == "gaussian_blur"
    assert pg.locator("#methods").get_by_label("spgd", exact=True).is_checked()
    for extra in filter(None, os.environ.get("SPGD_APP_METHODS", "").split(",")):  # side by side (the docs' run)
        pg.locator("#methods").get_by_label(extra, exact=True).check()
    steps, size = os.environ.get("SPGD_APP_STEPS", "6"), os.environ.get("SPGD_APP_SIZE", "64")
    pg.locator("#steps input").fill(steps)
    pg.locator("#size").get_by_label(size, exact=True).check()

    t0 = time.monotonic()
    pg.locator("#run").click()
    # live progress: a level reported and the current x0_hat shown before the end
    pg.wait_for_function("document.querySelector('#status').innerText.includes('level')", timeout=240_000)
    pg.locator("#preview img").wait_for(timeout=240_000)
    # the end: the result images, the gradient-angle plot, the table and the download
    pg.wait_for_function("document.querySelector('#status').innerText.includes('Done in')", timeout=300_000)
    seconds = time.monotonic() - t0
    pg.locator("#angles img").wait_for()
    assert "angles.png" in pg.locator("#angles img").get_attribute("src")
    gallery = pg.locator("#results img")
    assert gallery.count() >= 3  # the clean image, the measurement, SPGD's restoration
    captions = pg.locator("#results").inner_text()
    assert "measurement - PSNR" in captions and "spgd - PSNR" in captions
    table = pg.locator("#table").inner_text()
    assert "spgd" in table and "denoiser calls" in table and "verdict" in table
    assert pg.locator("#table table").count() == 1  # rendered as a table
    assert pg.locator("#download").get_by_text(".zip").count() >= 1
    assert "Error" not in status_text(pg)
    shot = Path(os.environ.get("SPGD_APP_SCREENSHOT") or tmp_path / "app.png")
    pg.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    print(f"app example run ({steps} steps, {size} px, spgd {os.environ.get('SPGD_APP_METHODS', '')}): "
          f"{seconds:.1f} s from Run to the finished page")


def test_a_text_file_is_refused_in_the_page(page, tmp_path):
    pg = page
    notes = tmp_path / "notes.txt"
    notes.write_text("this is not a photo\n")
    pg.locator("#photo input[type=file]").set_input_files(str(notes))
    pg.wait_for_function("document.querySelector('#status').innerText.includes('Error')")
    text = status_text(pg)
    assert "notes.txt is not an image this app can read" in text
    body = pg.locator("body").inner_text()
    assert "Traceback" not in body
    # the run is refused in the page too: no photo was taken
    pg.locator("#run").click()
    pg.wait_for_function("document.querySelector('#status').innerText.includes('upload a clean image first')")


def test_restore_my_photo_with_a_mask_file(page, demo_dir, tmp_path):
    """The second mode: a degraded photo of an odd size, a mask file for box inpainting, two methods."""
    import numpy as np
    from PIL import Image

    pg = page
    Image.open(sorted(demo_dir.glob("*.png"))[2]).resize((70, 50)).save(tmp_path / "old photo.png")
    kept = np.full((50, 70), 255, np.uint8)
    kept[10:20, 10:30] = 0
    Image.fromarray(kept).save(tmp_path / "mask.png")
    pg.get_by_label("Restore my degraded photo").check()
    pg.locator("#task input").click()
    pg.get_by_role("option", name="inpainting_box", exact=True).click()
    pg.locator("#photo input[type=file]").set_input_files(str(tmp_path / "old photo.png"))
    pg.wait_for_function("document.querySelector('#status').innerText.includes('70x50')")
    pg.locator("#mask-file input[type=file]").set_input_files(str(tmp_path / "mask.png"))
    pg.wait_for_function("document.querySelector('#status').innerText.includes('pixels kept')")
    assert "mask.png: 70x50, 94% of the pixels kept" in status_text(pg)
    pg.locator("#methods").get_by_label("classical", exact=True).check()
    pg.locator("#steps input").fill("3")
    pg.locator("#run").click()
    pg.wait_for_function("document.querySelector('#status').innerText.includes('Done in')", timeout=300_000)
    text = status_text(pg)
    assert "spgd: restored padded to 72x56, cropped back" in text
    captions = pg.locator("#results").inner_text()
    assert "measurement (70x50)" in captions and "spgd - " in captions and "classical - " in captions
    assert pg.locator("#table table").count() == 1 and pg.locator("#angles img").count() == 1
