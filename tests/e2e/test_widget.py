"""The widget in a real browser (Debian's chromium + chromium-driver, headless) against the embedded default:
load the demo page, ask, see numbered citations stream in, vote 👍, and find the vote in DynamoDB.
A screenshot goes to build/test-artifacts/ (the README shows a copy). Skipped, saying why, without chromium."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from tests import browser as chromium
from tests.http_client import call


def test_assets_are_served_with_their_types(stack: SimpleNamespace) -> None:
    page = call(stack.url + "/")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    assert 'src="widget.js"' in page.text
    script = call(stack.url + "/widget.js")
    assert script.status == 200 and script.headers["content-type"].startswith("application/javascript")
    assert "textContent" in script.text and "innerHTML" not in script.text  # API text is never parsed as HTML
    assert call(stack.url + "/widget.css").headers["content-type"].startswith("text/css")


@pytest.fixture
def browser(tmp_path: Path):  # type: ignore[no-untyped-def]
    if not (chromium.CHROMIUM and chromium.DRIVER):
        pytest.skip(chromium.MISSING)
    driver = chromium.start(tmp_path / "profile")
    yield driver
    driver.quit()


def test_ask_cite_vote_in_a_browser(stack: SimpleNamespace, browser) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 30)
    browser.get(stack.url + "/")
    box = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, ".rag-form input")))
    box.send_keys("create a pipe", Keys.ENTER)  # the keyboard path: type, then Enter

    rows = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "li.rag-citation") or False)
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, ".rag-answer").text.strip())
    assert rows[0].find_element(By.CSS_SELECTOR, ".rag-num").text == "[1]"
    assert rows[0].find_element(By.CSS_SELECTOR, ".rag-snippet").text
    doc_id = rows[0].get_attribute("data-doc-id")
    assert "[1]" in browser.find_element(By.CSS_SELECTOR, ".rag-answer").text

    up = rows[0].find_element(By.CSS_SELECTOR, 'button[data-vote="up"]')
    assert "Useful" in (up.get_attribute("aria-label") or "")
    up.click()
    wait.until(lambda d: rows[0].find_element(By.CSS_SELECTOR, ".rag-thanks").text == "Thanks!")
    assert not up.is_enabled() and up.get_attribute("aria-pressed") == "true"

    # "Thanks!" shows only once /feedback answered 2xx, after the conditional write: the vote is stored.
    votes = [v for v in stack.rt.feedback.votes() if v.doc_id == doc_id and v.query == "create a pipe"]
    assert votes and votes[-1].vote == "up" and votes[-1].rank == 1

    chromium.ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(chromium.ARTIFACTS / "widget.png"))
    # mobile width: nothing wider than the viewport
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
