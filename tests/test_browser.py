"""The search page in a real browser: Debian's headless chromium driven by selenium over a live server."""

from __future__ import annotations

import os
import shutil
import urllib.request

import pytest

from test_search import draw_gallery  # noqa: E402 (tests/ is on sys.path under pytest)
from traffic_retrieval.core.vocab import packaged_vocabulary
from traffic_retrieval.retrieval.models import ModelSettings, load_model
from traffic_retrieval.core.routing import DEFAULT_VEHICLE_PROMPT
from traffic_retrieval.retrieval.encode import EncodeSettings
from traffic_retrieval.retrieval.gallery import open_folder
from traffic_retrieval.apps.web import create_app, running

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# Headless, and quiet: no first-run, sync, update or background traffic on a closed network.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1100,800")

pytestmark = pytest.mark.slow


@pytest.fixture
def browser(tmp_path, monkeypatch):
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        message = f"{' and '.join(missing)} not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # selenium never looks for drivers online
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


@pytest.fixture
def server(tmp_path):
    loaded = load_model(ModelSettings("TR-ViT-Tiny", None))
    gallery = open_folder(loaded, draw_gallery(tmp_path / "gallery"), EncodeSettings(workers=0, progress=False))
    with running(create_app(gallery, loaded, packaged_vocabulary())) as url:
        yield url


def test_query_filter_and_full_image_in_chromium(browser, server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 20)
    text = lambda element_id: browser.find_element(By.ID, element_id).text  # noqa: E731
    browser.get(server + "/")
    wait.until(lambda d: "12 images" in text("info"))

    browser.find_element(By.ID, "q").send_keys("a red SUV", Keys.ENTER)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#results .hit"))
    hits = browser.find_elements(By.CSS_SELECTOR, "#results .hit")
    assert len(hits) == 10, "the page shows no results"
    assert "treated as vehicle" in text("status")
    assert text("encoded") == "encoded: a red SUV" + DEFAULT_VEHICLE_PROMPT
    wait.until(lambda d: d.execute_script(
        "return [...document.querySelectorAll('#results img')].every(i => i.complete && i.naturalWidth > 0)"))
    browser.save_screenshot(str(tmp_path / "vehicle.png"))

    browser.find_element(By.CSS_SELECTOR, "input[name=kind][value=pedestrian]").click()
    wait.until(lambda d: "pedestrian images only" in text("status"))
    names = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#results .hit .name")]
    assert len(names) == 6 and all(n.startswith("person") for n in names), names
    assert text("encoded") == "encoded: a red SUV"

    browser.find_element(By.CSS_SELECTOR, "input[name=kind][value=vehicle]").click()
    wait.until(lambda d: "vehicle images only" in text("status"))
    browser.find_element(By.ID, "prompt").click()
    wait.until(lambda d: text("encoded") == "encoded: a red SUV")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#results .hit")) == 6

    first = browser.find_element(By.CSS_SELECTOR, "#results .hit")
    assert first.get_attribute("target") == "_blank"
    with urllib.request.urlopen(first.get_attribute("href"), timeout=10) as response:
        assert response.headers["content-type"].startswith("image/")
    first.click()
    wait.until(lambda d: len(d.window_handles) == 2)
    browser.switch_to.window(browser.window_handles[1])
    wait.until(lambda d: "/images/car" in d.current_url)
    assert browser.execute_script("return document.images.length && document.images[0].naturalWidth") > 0

    shot = tmp_path / "search.png"
    browser.switch_to.window(browser.window_handles[0])
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 1000


def test_the_camera_and_time_filters_of_the_page(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    folder = draw_gallery(tmp_path / "gallery")
    rows = [f"{kind}{i}.{ext},{i % 2 + 1},2024-05-01T0{i}:00:00Z" for kind, ext in (("car", "jpg"), ("person", "png"))
            for i in range(6)]
    (tmp_path / "gallery.metadata.csv").write_text("image,camera,timestamp\n" + "\n".join(rows) + "\n")
    loaded = load_model(ModelSettings("TR-ViT-Tiny", None))
    gallery = open_folder(loaded, folder, EncodeSettings(workers=0, progress=False))
    with running(create_app(gallery, loaded, packaged_vocabulary())) as url:
        wait = WebDriverWait(browser, 20)
        text = lambda element_id: browser.find_element(By.ID, element_id).text  # noqa: E731
        browser.get(url + "/")
        wait.until(lambda d: d.find_element(By.ID, "filters").is_displayed())
        browser.find_element(By.ID, "q").send_keys("a red SUV", Keys.ENTER)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .hit")) == 10)
        browser.find_element(By.ID, "camera").send_keys("2", Keys.TAB)  # a change: the page asks again
        wait.until(lambda d: "camera 2" in text("status"))
        names = sorted(e.text for e in browser.find_elements(By.CSS_SELECTOR, "#results .hit .name"))
        assert names == sorted(f"{k}{i}.{e}" for k, e in (("car", "jpg"), ("person", "png")) for i in (1, 3, 5))
