"""The web page at / in a real browser: headless Chromium, the real server, a real index.

The tiny reader is random, so its confidences mean nothing; a calibration.json beside each
copy of it pins the outcome instead: threshold 0.0 always answers, 1.01 always abstains.
The page is served with a strict Content-Security-Policy; every test fails on a violation
(the browser reports each one to its console and as a `securitypolicyviolation` event).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import unavailable

try:
    from selenium import webdriver
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError as exc:  # reported per test by `browser_tools`
    SELENIUM_MISSING: ImportError | None = exc
else:
    SELENIUM_MISSING = None

from spanqa.api.auth import KeyStore
from spanqa.api.calibration import Calibration

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

REPO = Path(__file__).resolve().parents[1]
SCREENSHOTS = REPO / "data" / "screenshots"  # git-ignored, like all of data/
STARTUP_S = 180  # two servers loading an embedder on a busy 2-core machine
WAIT_S = 60

# Short documents: a passage is the whole document, so every answer's context is all of it.
ACME = ("Acme Rockets was founded in 1987 by Jane Doe in Springfield. The company builds "
        "small rockets for weather research.")
SECURITY = ("Visitors sign in at the front desk. <script>window.__xss = 1</script> "
            "Badges go back to security at 5 pm.")
SECURITY_MD = ('# Security <img src=x onerror="window.__xss = 2"> rules\n\n' + SECURITY + "\n")


@pytest.fixture(scope="session", autouse=True)  # session: checked before the tiny model is made
def browser_tools() -> None:
    """scripts/install.sh provides the browser, its driver and selenium (the dev extra):
    without them these tests skip on a developer's machine and fail under CI."""
    lacking = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.is_file()]
    if SELENIUM_MISSING is not None:
        lacking.append(f"the selenium package ({SELENIUM_MISSING})")
    if lacking:
        unavailable("the browser test needs Debian's chromium and chromium-driver and the "
                    f"selenium package (see scripts/install.sh); missing: {', '.join(lacking)}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    from spanqa.indexer.build import update_index

    root = tmp_path_factory.mktemp("web")
    docs = root / "docs"
    docs.mkdir()
    (docs / "acme history.txt").write_text(ACME, encoding="utf-8")
    (docs / "security.md").write_text(SECURITY_MD, encoding="utf-8")
    update_index(root / "index", add=[docs], progress=False)
    # Without a key the page shows, and filters by, paths relative to the collection.
    return {"root": root, "index": root / "index", "security": "security.md"}


def reader_copy(tiny_model: Path, folder: Path, threshold: float) -> Path:
    shutil.copytree(tiny_model, folder)
    Calibration(threshold=threshold).save(folder)
    return folder


class Server:
    """`spanqa serve` in a subprocess, with its own feedback database and uploads folder."""

    def __init__(self, name: str, index: Path, reader: Path, keys: Path, key: str,
                 *extra: str):
        self.name, self.key = name, key
        home = reader.parent
        self.log = home / f"{name}.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.out = open(self.log, "w")  # noqa: SIM115 (closed in stop())
        self.process = subprocess.Popen(
            [sys.executable, "-m", "spanqa.api.cli", "serve", "--index", str(index), "--reader",
             str(reader), "--port", str(self.port), "--host", "127.0.0.1", "--keys", str(keys),
             "--feedback-db", str(home / f"{name}-feedback.db"),
             "--uploads", str(home / f"{name}-uploads"), *extra],
            cwd=REPO, stdout=self.out, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"})

    def wait(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"{self.name} server exited ({self.process.returncode}):\n"
                            + self.log.read_text()[-3000:])
            try:
                if httpx.get(self.url + "/v1/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        pytest.fail(f"{self.name} server not healthy after {STARTUP_S} s:\n"
                    + self.log.read_text()[-3000:])

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.out.close()


@pytest.fixture(scope="module")
def servers(corpus, tiny_model):
    """One server that always answers (keys only on the feedback export) and one that always
    abstains and wants a key on every endpoint (--protect-all); started side by side."""
    root = corpus["root"]
    keys = root / "api_keys.json"
    # What `spanqa keys create --name web-test --keys FILE` does, without its 10 s of imports.
    key, _ = KeyStore(keys).create("web-test")
    answering = Server("answering", corpus["index"],
                       reader_copy(tiny_model, root / "reader-answers", 0.0), keys, key)
    abstaining = Server("abstaining", corpus["index"],
                        reader_copy(tiny_model, root / "reader-abstains", 1.01), keys, key,
                        "--protect-all")
    try:
        deadline = time.monotonic() + STARTUP_S
        answering.wait(deadline)
        abstaining.wait(deadline)
        yield {"answering": answering, "abstaining": abstaining}
    finally:
        answering.stop()
        abstaining.stop()


@pytest.fixture(scope="module")
def browser():
    options = Options()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1100,1000", "--disable-gpu"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # CSP reports land there
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(WAIT_S)
    # Before any script of each page: collect the policy violations it reports.
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": """
        window.__cspViolations = [];
        document.addEventListener("securitypolicyviolation", (e) =>
            window.__cspViolations.push(e.violatedDirective + " " + e.blockedURI));"""})
    yield driver
    driver.quit()


def csp_reports(browser) -> list[str]:
    """The policy violations since the last call: the console's (every page loaded since),
    and the current page's events."""
    logged = [entry["message"] for entry in browser.get_log("browser")
              if "Content Security Policy" in entry["message"]]
    events = browser.execute_script(
        "const seen = window.__cspViolations || []; window.__cspViolations = []; return seen;")
    return logged + [f"event: {e}" for e in events]


@pytest.fixture(autouse=True)
def no_csp_violations(browser):
    """Every test: the page works under its policy, so nothing was refused."""
    csp_reports(browser)  # what an earlier test left
    yield
    assert csp_reports(browser) == []


@pytest.fixture
def shoot(browser, tmp_path, request):
    """save(name): a screenshot in the test's tmp dir and in data/screenshots/."""
    def save(name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = tmp_path / f"{name}.png"
        browser.save_screenshot(str(path))
        shutil.copyfile(path, SCREENSHOTS / path.name)
        return path
    return save


def open_page(browser, server: Server, key: str | None = None):
    """The page, fresh, with `key` (or no key) saved as the API key."""
    browser.get(server.url + "/")
    browser.execute_script("localStorage.clear();"
                           "if (arguments[0]) localStorage.setItem('spanqa.apiKey', arguments[0]);",
                           key)
    browser.refresh()
    WebDriverWait(browser, WAIT_S).until(ec.element_to_be_clickable((By.ID, "question")))


def ask(browser, question: str) -> None:
    box = browser.find_element(By.ID, "question")
    box.clear()
    box.send_keys(question + Keys.ENTER)


def wait_for(browser, css: str):
    try:
        return WebDriverWait(browser, WAIT_S).until(
            ec.visibility_of_element_located((By.CSS_SELECTOR, css)))
    except TimeoutException:
        results = browser.find_element(By.ID, "results").get_attribute("textContent")
        error = browser.find_element(By.ID, "error").get_attribute("textContent")
        pytest.fail(f"{css} never appeared; results: {results!r}; error: {error!r}")


def text_of(element) -> str:
    """Exact text (textContent), not the rendered text selenium normalises."""
    return element.get_attribute("textContent")


def api_ask(server: Server, question: str, top_k: int = 3, keyed: bool = True, **extra
            ) -> dict:
    """The answer the API gives; `keyed=False`: as a page without a key sees it."""
    headers = {"X-API-Key": server.key} if keyed else {}
    response = httpx.post(server.url + "/v1/ask", headers=headers,
                          json={"question": question, "top_k": top_k, **extra}, timeout=WAIT_S)
    assert response.status_code == 200, response.text
    return response.json()


QUESTION = "When was Acme Rockets founded?"


def test_answers_are_highlighted_in_their_context(browser, servers, shoot):
    server = servers["answering"]
    expected = api_ask(server, QUESTION, keyed=False)  # the page has no key
    assert expected["answers"] and not expected["handoff"]
    assert {a["path"] for a in expected["answers"]} <= {"acme history.txt", "security.md"}

    open_page(browser, server)
    ask(browser, QUESTION)
    wait_for(browser, ".answer mark")
    shoot("web-answers")
    cards = browser.find_elements(By.CSS_SELECTOR, ".answer")
    assert len(cards) == len(expected["answers"])
    for card, answer in zip(cards, expected["answers"], strict=True):
        marks = card.find_elements(By.CSS_SELECTOR, "mark")
        assert [text_of(m) for m in marks] == [answer["text"]]
        context = card.find_element(By.CSS_SELECTOR, ".context")
        assert text_of(context) == answer["context"]["text"]
        assert text_of(card.find_element(By.CSS_SELECTOR, ".title")) == answer["title"]
        assert text_of(card.find_element(By.CSS_SELECTOR, ".path")) == answer["path"]
        confidence = card.find_element(By.CSS_SELECTOR, ".confidence")
        assert confidence.get_attribute("aria-valuenow") == str(round(answer["confidence"] * 100))
        assert confidence.text == f"{round(answer['confidence'] * 100)}%"
        assert confidence.is_displayed()
    assert browser.find_elements(By.ID, "no-answer") == []
    timing = browser.find_element(By.CSS_SELECTOR, ".timing").text
    assert timing.startswith("answered in ") and ("ms" in timing or " s" in timing)
    assert browser.find_element(By.ID, "results").get_attribute("aria-live") == "polite"
    assert browser.find_element(By.ID, "ask").is_enabled()


def test_thumbs_up_stores_feedback(browser, servers):
    server = servers["answering"]
    expected = api_ask(server, QUESTION)["answers"][0]
    open_page(browser, server)
    ask(browser, QUESTION)
    card = wait_for(browser, ".answer")
    # Feedback is training data: without a key (and no --anonymous-feedback) it is refused,
    # the page says so and opens the key box; the buttons stay for a second try.
    card.find_element(By.CSS_SELECTOR, ".feedback-up").click()
    status = card.find_element(By.CSS_SELECTOR, ".feedback-status")
    WebDriverWait(browser, WAIT_S).until(lambda b: "API key" in status.text)
    assert status.text.startswith("Feedback not saved: it needs an API key")
    assert browser.find_element(By.ID, "api-key-box").get_attribute("open") is not None
    assert card.find_element(By.CSS_SELECTOR, ".feedback-up").is_enabled()
    everything = httpx.get(server.url + "/v1/feedback/export", headers={"X-API-Key": server.key},
                           params={"include_anonymous": True})
    assert everything.status_code == 200 and everything.json()["data"] == []
    # With the key entered, the same button sends it.
    browser.find_element(By.ID, "api-key").send_keys(server.key)
    card.find_element(By.CSS_SELECTOR, ".feedback-up").click()
    WebDriverWait(browser, WAIT_S).until(
        lambda b: card.find_element(By.CSS_SELECTOR, ".feedback-status").text == "Thanks")
    assert not card.find_element(By.CSS_SELECTOR, ".feedback-up").is_enabled()
    assert not card.find_element(By.CSS_SELECTOR, ".feedback-down").is_enabled()
    # the export (SQuAD JSON of the answers marked right) needs the key
    assert httpx.get(server.url + "/v1/feedback/export").status_code == 401
    export = httpx.get(server.url + "/v1/feedback/export", headers={"X-API-Key": server.key})
    assert export.status_code == 200, export.text
    stored = [(qa["question"], qa["answers"], paragraph["context"])
              for article in export.json()["data"] for paragraph in article["paragraphs"]
              for qa in paragraph["qas"]]
    assert len(stored) == 1
    question, answers, context = stored[0]
    assert question == QUESTION
    assert answers == [{"text": expected["text"], "answer_start": expected["start"]}]
    assert context[expected["start"]:expected["end"]] == expected["text"]


def test_no_answer_lists_the_best_passages(browser, servers, shoot):
    server = servers["abstaining"]
    expected = api_ask(server, QUESTION)
    assert expected["handoff"] and not expected["answers"] and expected["passages"]

    open_page(browser, server, server.key)
    ask(browser, QUESTION)
    box = wait_for(browser, "#no-answer")
    shoot("web-no-answer")
    assert "No answer found" in box.text and "person" in box.text
    # No answer is given; the best span is shown apart, as a guess below the threshold.
    assert browser.find_elements(By.CSS_SELECTOR, "ol.answers:not(.uncertain) .answer") == []
    guesses = browser.find_elements(By.CSS_SELECTOR, "ol.uncertain .answer")
    if expected["best_guess"] is None:
        assert guesses == []
    else:
        assert len(guesses) == 1 and expected["best_guess"]["text"] in guesses[0].text
        assert "below the confidence threshold" in browser.find_element(By.ID, "results").text
    passages = box.find_elements(By.CSS_SELECTOR, ".passage")
    assert [text_of(p.find_element(By.CSS_SELECTOR, ".title")) for p in passages] == \
        [p["title"] for p in expected["passages"]]
    assert "Acme Rockets was founded in 1987" in box.text


def test_html_in_documents_is_shown_as_text(browser, servers, corpus):
    # The abstaining server lists passages (title + snippet), the answering one contexts.
    server = servers["abstaining"]
    open_page(browser, server, server.key)
    ask(browser, "When do badges go back to security?")
    box = wait_for(browser, "#no-answer")
    assert "<script>window.__xss = 1</script>" in box.text
    assert '<img src=x onerror="window.__xss = 2">' in box.text  # the markdown title

    server = servers["answering"]
    open_page(browser, server)
    browser.find_element(By.CSS_SELECTOR, "#options summary").click()
    browser.find_element(By.ID, "path-prefix").send_keys(corpus["security"])  # Options filter
    ask(browser, "When do badges go back to security?")
    wait_for(browser, ".answer")
    contexts = browser.find_elements(By.CSS_SELECTOR, ".answer .context")
    assert contexts and all("<script>window.__xss = 1</script>" in text_of(c) for c in contexts)
    titles = browser.find_elements(By.CSS_SELECTOR, ".answer .title")
    assert titles and all("<img" in text_of(t) for t in titles)
    assert browser.execute_script("return window.__xss") is None
    assert browser.find_elements(By.CSS_SELECTOR, "#results script, #results img") == []


def test_empty_question_shows_a_validation_message(browser, servers):
    server = servers["answering"]
    open_page(browser, server)
    ask(browser, "   ")
    error = wait_for(browser, "#error")
    assert "Please type a question" in error.text
    assert browser.find_element(By.ID, "question").get_attribute("aria-invalid") == "true"
    assert browser.find_elements(By.CSS_SELECTOR, "#results .answer, #no-answer") == []
    # typing clears it, asking works again
    ask(browser, QUESTION)
    wait_for(browser, ".answer")
    assert not browser.find_element(By.ID, "error").is_displayed()


def test_network_failure_is_shown(browser, servers):
    server = servers["answering"]
    open_page(browser, server)
    browser.execute_script(
        "window.fetch = () => Promise.reject(new TypeError('Failed to fetch'));")
    ask(browser, QUESTION)
    error = wait_for(browser, "#error")
    assert "Could not reach the server" in error.text and "Failed to fetch" in error.text
    assert browser.find_element(By.ID, "ask").is_enabled()


def test_api_errors_are_readable(browser, servers):
    server = servers["answering"]
    open_page(browser, server)
    # a top_k the page never offers: the server's 422 names the field and the limit
    browser.execute_script("""
        const option = document.createElement('option');
        option.value = '50'; option.textContent = '50';
        document.getElementById('top-k').append(option);
        document.getElementById('top-k').value = '50';""")
    ask(browser, QUESTION)
    error = wait_for(browser, "#error")
    assert "HTTP 422" in error.text
    assert "top_k" in error.text and "less than or equal to 20" in error.text
    assert browser.find_elements(By.CSS_SELECTOR, ".answer") == []


def test_api_key_is_asked_for_sent_and_remembered(browser, servers, shoot):
    server = servers["abstaining"]  # --protect-all: /v1/ask needs the key
    open_page(browser, server)
    ask(browser, QUESTION)
    error = wait_for(browser, "#error")
    assert "HTTP 401" in error.text and "API key" in error.text
    box = browser.find_element(By.ID, "api-key-box")
    assert box.get_attribute("open") is not None  # opened for the person to fill in
    shoot("web-api-key")
    field = browser.find_element(By.ID, "api-key")
    assert browser.switch_to.active_element == field  # focus moved to where the key goes
    field.send_keys(server.key + Keys.ENTER)  # Enter saves the key and asks again
    wait_for(browser, "#no-answer")
    assert not browser.find_element(By.ID, "error").is_displayed()
    browser.refresh()
    field = WebDriverWait(browser, WAIT_S).until(
        ec.presence_of_element_located((By.ID, "api-key")))
    assert field.get_attribute("value") == server.key


def test_loading_state_while_the_server_thinks(browser, servers):
    server = servers["answering"]
    open_page(browser, server)
    browser.execute_script("""
        const real = window.fetch;
        window.fetch = (...args) =>
            new Promise((ok) => setTimeout(ok, 1500)).then(() => real(...args));""")
    ask(browser, QUESTION)
    loading = wait_for(browser, "#results .loading")
    assert QUESTION in loading.text
    assert browser.find_element(By.ID, "results").get_attribute("aria-busy") == "true"
    assert not browser.find_element(By.ID, "ask").is_enabled()
    wait_for(browser, ".answer")
    assert browser.find_element(By.ID, "results").get_attribute("aria-busy") == "false"
    assert browser.find_element(By.ID, "ask").is_enabled()


def test_the_policy_refuses_inline_script_and_style(browser, servers):
    """The checks above would see a violation: the browser enforces the policy and
    reports what it refused (so a page change that needs inline code fails the tests)."""
    server = servers["answering"]
    open_page(browser, server)
    browser.execute_script("""
        const script = document.createElement("script");
        script.textContent = "window.__inline = 1";
        document.body.append(script);
        document.body.setAttribute("style", "outline: 5px solid red");
        const img = document.createElement("img");
        img.src = "https://example.org/pixel.png";
        document.body.append(img);""")
    WebDriverWait(browser, WAIT_S).until(
        lambda b: len(b.execute_script("return window.__cspViolations")) >= 3)
    assert browser.execute_script("return window.__inline") is None
    reports = csp_reports(browser)  # read here, so the autouse check starts afresh
    events = [r for r in reports if r.startswith("event: ")]
    assert {e.split()[1] for e in events} >= {"script-src-elem", "style-src-attr", "img-src"}
    logged = [r for r in reports if not r.startswith("event: ")]
    assert len(logged) >= 3 and all("blocked" in r or "Refused" in r for r in logged), logged
