"""The app in a real browser: headless Chromium from the distribution (``apt-get install
chromium``) driven by Playwright for Python. Opens the page, restores a Set5 image with the
bundled model, downloads the result and compares it with ``mambairv2 restore`` byte for byte;
refused uploads (too big, not an image) give a message and the page keeps working.

Set ``MAMBAIRV2_APP_SCREENSHOT=PATH`` to copy the screenshot there (the README's one is made so);
it is always kept in pytest's temporary folder (printed with ``-s``).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, shared_path

gr = pytest.importorskip("gradio", reason="the [app] extra (gradio) is not installed")
playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright (Python) is not installed")

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
RUN_TIMEOUT_MS = 240_000  # restoring on a busy CI CPU


def chromium_binary() -> str:
    for candidate in (os.environ.get("MAMBAIRV2_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium",
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.skip("no Chromium binary (apt-get install chromium, or set MAMBAIRV2_CHROMIUM)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def bird() -> Path:
    return shared_path("data", "sr", "Set5", "LR_bicubic", "X4", "birdx4.png")


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    from mambairv2.app.server import launch
    from mambairv2.app.settings import Settings
    from mambairv2.models.catalog import bundled_models

    if "default" not in bundled_models():
        pytest.skip("no bundled default model in this install")
    work = tmp_path_factory.mktemp("app-work")
    demo = launch(Settings(port=free_port(), work_dir=work), block=False, quiet=True)  # default limits
    try:
        yield f"http://127.0.0.1:{demo.server_port}"
    finally:
        demo.close()


@pytest.fixture(scope="module")
def browser():
    binary = chromium_binary()
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=binary, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser, app_url):
    """A fresh page on the app; fails the test if the page asks for anything but the app."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    context.set_default_timeout(120_000)  # a busy CI machine serves slowly
    pg = context.new_page()
    requests = []
    pg.on("request", lambda r: requests.append(r.url))
    pg.goto(app_url + "/")
    pg.wait_for_selector("#model-card :text('task')", timeout=120_000)
    yield pg
    context.close()
    outside = [u for u in requests if not u.startswith(app_url + "/") and not u.startswith(("data:", "blob:"))]
    assert not outside, f"the page fetched from outside the app (must work offline): {outside[:5]}"


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore:.*(no_silent_downcasting|copy keyword)")


def upload_and_run(page, *paths: Path) -> str:
    page.locator("#images input[type=file]").set_input_files([str(p) for p in paths])
    for path in paths:
        page.wait_for_selector(f"#images :text('{path.stem}')", timeout=60_000)
    page.click("#run")
    status = page.locator("#status")
    status.locator("p").first.wait_for(timeout=RUN_TIMEOUT_MS)
    return status.inner_text()


def cli_restore(src: Path, out: Path) -> Path:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    result = subprocess.run([sys.executable, "-m", "mambairv2", "restore", str(src), "-o", str(out)],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return out / src.name


def test_restore_in_the_browser_equals_the_cli(page, bird, tmp_path, tmp_path_factory):
    card = page.inner_text("#model-card")
    assert "light" in card and "task sr" in card and "×4" in card
    assert page.locator("#model input").input_value() == "bundled: default"
    status = upload_and_run(page, bird)
    assert "✓" in status and "72×72 → 288×288" in status, status
    # the slider holds two images (before, after); wait until one has loaded, whichever the
    # slider shows first (which one is laid out visible first depends on timing)
    page.wait_for_function("() => [...document.querySelectorAll('#slider img')]"
                           ".some(i => i.complete && i.naturalWidth > 0)", timeout=60_000)
    with page.expect_download(timeout=60_000) as info:
        page.locator("#downloads a[download]").first.click()
    downloaded = tmp_path / "page.png"
    info.value.save_as(downloaded)
    assert info.value.suggested_filename == "birdx4.png"
    expected = cli_restore(bird, tmp_path / "cli")
    assert downloaded.read_bytes() == expected.read_bytes()

    page.mouse.move(0, 0)
    # nothing pending when the screenshot is taken: no request open for 0.5 s
    page.wait_for_load_state("networkidle", timeout=30_000)
    shots = tmp_path_factory.mktemp("app-screenshot")
    shot = shots / "app_screenshot.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    if os.environ.get("MAMBAIRV2_APP_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["MAMBAIRV2_APP_SCREENSHOT"])


def test_refused_uploads_give_a_message_and_the_app_keeps_serving(page, bird, tmp_path, app_url):
    from mambairv2.app.jobs import DEFAULT_MAX_UPLOAD_MB

    big = tmp_path / "big.png"  # the size is checked before anything is decoded
    with open(big, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.truncate(int(DEFAULT_MAX_UPLOAD_MB * 1e6) + 1)
    status = upload_and_run(page, big)
    limit = f"over this page's upload limit of {DEFAULT_MAX_UPLOAD_MB:.1f} MB"
    assert "big.png: the file is" in status and limit in status, status

    page.goto(app_url + "/")
    page.wait_for_selector("#model-card :text('task')", timeout=120_000)
    text = tmp_path / "notes.txt"
    text.write_text("this is not an image\n")
    status = upload_and_run(page, text)
    assert "notes.txt: cannot be used: not an image" in status, status

    page.goto(app_url + "/")
    page.wait_for_selector("#model-card :text('task')", timeout=120_000)
    butterfly = bird.with_name("butterflyx4.png")
    status = upload_and_run(page, bird, butterfly)
    assert status.count("✓") == 2 and "birdx4.png" in status and "butterflyx4.png" in status, status
    assert page.locator("#downloads a[download]").count() == 2


@pytest.mark.parametrize("path", ["/etc/passwd", str(REPO / "pyproject.toml")])
def test_no_server_paths_from_the_page(app_url, path):
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{app_url}/gradio_api/file={path}", timeout=30)
    assert err.value.code in (403, 404)


def test_simulated_degradation_shows_psnr_ssim(page):
    hr = shared_path("data", "sr", "Set5", "HR", "bird.png")
    page.get_by_text("Compare against a clean image").click()
    page.locator("#simulate input[type=checkbox]").check()
    status = upload_and_run(page, hr)
    assert "✓" in status and "(sr x4): PSNR" in status and "SSIM" in status and "(bicubic)" in status, status
    assert page.locator("#downloads a[download]").count() == 1


def test_uploaded_checkpoint_is_validated_and_offered(page, tmp_path):
    import mambairv2

    bad = tmp_path / "evil.pth"
    bad.write_bytes(b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03.")  # os.system("true")
    page.locator("#checkpoint input[type=file]").set_input_files(str(bad))
    page.wait_for_selector("#model-card :text('checkpoint refused')", timeout=120_000)
    assert "refused to unpickle" in page.inner_text("#model-card")
    assert page.locator("#model input").input_value() == "bundled: default"

    good = tmp_path / "tiny_x3.safetensors"
    mambairv2.save_safetensors(mambairv2.create_model("light", scale=3, embed_dim=12, depths=(1,), num_heads=(2,),
                                                      d_state=4, inner_rank=4, num_tokens=6), good)
    page.locator("#checkpoint input[type=file]").set_input_files(str(good))
    page.wait_for_selector("#model-card :text('custom')", timeout=120_000)
    card = page.inner_text("#model-card")
    assert "task sr" in card and "×3" in card
    assert page.locator("#model input").input_value().startswith("upload: tiny_x3.safetensors (")
    assert str(tmp_path) not in page.content()

LABEL_OVER_ICON_JS = """() => ['#checkpoint', '#images'].map(id => {
  const root = document.querySelector(id);
  const label = root.querySelector('label');
  const r = label.getBoundingClientRect();
  return [...root.querySelectorAll('svg')].filter(s => !label.contains(s)).map(s => s.getBoundingClientRect())
    .filter(b => b.width > 0 && !(b.right <= r.left || b.left >= r.right || b.bottom <= r.top || b.top >= r.bottom)).length;
})"""


def test_upload_labels_leave_their_icons_visible(page):
    assert page.evaluate(LABEL_OVER_ICON_JS) == [0, 0]


def test_a_run_clears_the_last_warning_and_shows_one_progress_display(page, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    assert "notes.txt: cannot be used" in upload_and_run(page, text)
    page.locator("#images button[aria-label='Clear']").first.click()
    big = tmp_path / "large.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8)).save(big)
    page.locator("#images input[type=file]").set_input_files([str(big)])
    page.wait_for_selector("#images :text('large')", timeout=60_000)
    page.click("#run")
    # while it runs: the progress, in the status line alone, and no longer the last run's warning
    page.wait_for_selector("#status .progress-text", timeout=RUN_TIMEOUT_MS)
    status = page.locator("#status").inner_text()
    shown = page.evaluate("() => [...document.querySelectorAll('.progress-text')]"
                          ".filter(e => e.offsetParent !== null).length")
    assert "notes.txt" not in status and shown == 1, (status, shown)
    page.wait_for_selector("#status :text('✓')", timeout=RUN_TIMEOUT_MS)
    assert "notes.txt" not in page.locator("#status").inner_text()


def wait_network_idle(pg, pending: dict, timeout_ms: int = 30_000) -> None:
    """Waits for Playwright's network idle (no request for 0.5 s); on a timeout, fails naming
    the requests still open (``pending``: request → (start, url), kept by the caller)."""
    try:
        pg.wait_for_load_state("networkidle", timeout=timeout_ms)
    except playwright_api.TimeoutError:
        now = time.monotonic()
        pytest.fail(f"not network idle after {timeout_ms} ms; open: "
                    f"{[(round(now - t, 1), u) for t, u in pending.values()][:5]}")


def test_the_page_goes_network_idle_after_loading_and_after_a_run(browser, app_url, bird):
    """No request stays open once the page has loaded or a run has ended (Gradio holds its
    heartbeat stream open for as long as the page is when the page has a gr.State)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        pg = context.new_page()
        urls, pending = [], {}
        pg.on("request", lambda r: (urls.append(r.url), pending.__setitem__(r, (time.monotonic(), r.url))))
        pg.on("requestfinished", lambda r: pending.pop(r, None))
        pg.on("requestfailed", lambda r: pending.pop(r, None))
        pg.goto(app_url + "/")
        pg.wait_for_selector("#model-card :text('task')", timeout=120_000)
        wait_network_idle(pg, pending)
        assert "✓" in upload_and_run(pg, bird)
        wait_network_idle(pg, pending)
        assert not [u for u in urls if "/heartbeat/" in u], [u for u in urls if "/heartbeat/" in u][:3]
    finally:
        context.close()


def test_the_result_picker_shows_the_chosen_result(page, tmp_path):
    """Two uploads: the picker lists both results and choosing the second shows its images."""
    paths = []
    for side, name in ((40, "small"), (56, "wide")):
        path = tmp_path / f"{name}.png"
        Image.fromarray(np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    status = upload_and_run(page, *paths)
    page.wait_for_selector("#status :text('wide')", timeout=RUN_TIMEOUT_MS)
    assert "✓" in page.locator("#status").inner_text(), status
    after = "() => { const i = document.querySelector('#after img'); return i && i.complete ? i.naturalWidth : 0 }"
    page.wait_for_function(f"({after})() === 160", timeout=60_000)
    page.locator("#pick input").click()
    page.locator("[role=option]:has-text('wide.png')").click()
    page.wait_for_function(f"({after})() === 224", timeout=60_000)


def test_a_tab_opened_while_starting_becomes_the_app_by_itself(browser, tmp_path, monkeypatch):
    """The URL is printed before Gradio loads; a browser that opens it then sees the starting page,
    which turns into the app once it is served, without a reload by hand or an error page."""
    import threading

    from mambairv2.app import page as page_module
    from mambairv2.app.server import launch
    from mambairv2.app.settings import Settings

    real_mount, release = page_module.mount, threading.Event()

    def held_mount(settings, store=None):
        assert release.wait(120), "the test never released the page"
        return real_mount(settings, store)

    monkeypatch.setattr(page_module, "mount", held_mount)
    port, started = free_port(), {}
    starter = threading.Thread(target=lambda: started.setdefault(
        "server", launch(Settings(port=port, work_dir=tmp_path / "work"), block=False, quiet=True)))
    starter.start()
    context = browser.new_context(viewport={"width": 900, "height": 500})
    try:
        tab = context.new_page()
        tab.goto(f"http://127.0.0.1:{port}/")
        tab.wait_for_selector("text=MambaIRv2 is starting")
        shot = tmp_path / "app_starting.png"
        tab.screenshot(path=str(shot))
        print(f"starting page: {shot}")
        release.set()
        tab.wait_for_selector("#model-card :text('task')", timeout=120_000)
        assert tab.url == f"http://127.0.0.1:{port}/"
    finally:
        release.set()
        context.close()
        starter.join(120)
        if "server" in started:
            started["server"].close()

