"""The atlas in a real browser: headless Chromium (Debian's chromium and chromium-driver, driven by Selenium)
opens the small atlas from disk. Pages load with no console error, every image loads, every link resolves
to a file of the site, and the index's search box reaches the unit it names. Screenshots of each page are
saved in the test's temporary folder. Skipped where Chromium is not installed, except under CI
(`.ci/run` installs it), where its absence fails."""
import json
import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

CHROMIUM, DRIVER = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,900")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    missing = [p for p in (CHROMIUM, DRIVER) if not Path(p).is_file()]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{', '.join(missing)} missing under CI: .ci/run installs chromium and chromium-driver")
        pytest.skip(f"no headless Chromium here ({', '.join(missing)} missing): "
                    "apt-get install -y chromium chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the dev extra)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def visit(browser, page: Path, shot: Path) -> None:
    """Open a page, check it as a reader would see it, and save its screenshot."""
    browser.get(page.as_uri())
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert not errors, errors
    images = browser.execute_script(
        "return [...document.images].map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])")
    assert images, f"{page.name} shows no image"
    assert all(complete and width > 0 for _, complete, width in images), images
    browser.save_screenshot(str(shot))


def links_resolve(browser, site: Path) -> int:
    """Every link of the open page names a file inside the site; returns how many links there are."""
    hrefs = browser.execute_script("return [...document.querySelectorAll('a[href]')].map(a => a.href)")
    for href in hrefs:
        url = urlparse(href)
        assert url.scheme == "file", href
        target = Path(unquote(url.path))
        assert target.is_file() and target.resolve().is_relative_to(site.resolve()), href
    return len(hrefs)


def test_pages_load_images_links_and_search_in_chromium(browser, small_atlas, tmp_path):
    site, _ = small_atlas
    layer = json.loads((site / "layers" / "conv2_1.json").read_text())
    unit = layer["units"][2]
    for name, page in [("index", site / "index.html"), ("layer", site / "layers" / "conv2_1.html"),
                       ("unit", site / unit["page"])]:
        visit(browser, page, tmp_path / f"{name}.png")
        assert links_resolve(browser, site) >= 2
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
    # the unit page: both visualisations and the three examples, with their values
    texts = browser.find_element("tag name", "body").text
    assert f"conv2_1 : channel {unit['channel']}" in texts
    assert all(ex["file"] in texts for ex in unit["examples"]) and len(unit["examples"]) == 3

    # the index's search box: a layer:channel goes to its unit page, a unit not in the atlas says so
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait
    browser.get((site / "index.html").as_uri())
    box = browser.find_element("id", "search-input")
    box.send_keys("conv2_1:7", Keys.ENTER)
    message = browser.find_element("id", "search-message").text
    assert "conv2_1 has no unit \"7\" here" in message and browser.current_url.endswith("index.html")
    box.clear()
    box.send_keys("conv2_1:2", Keys.ENTER)
    WebDriverWait(browser, 10).until(lambda b: b.current_url.endswith("units/conv2_1/2.html"))
    assert browser.find_element("tag name", "h1").text == "conv2_1 : channel 2"
    browser.save_screenshot(str(tmp_path / "search.png"))
    print(f"screenshots in {tmp_path}")
