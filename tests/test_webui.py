"""The web pages (issue 23): the chat page at / and the dashboard at /dashboard/, served by real
servers and pools on the tiny generated model, driven in headless Chromium (Debian's chromium
and chromium-driver, through selenium; nothing is downloaded at test time). The HTTP-level
checks (GET /llamaproc/status, --no-webui, --path, the API key) run without a browser.

Screenshots of both pages go to $LLAMAPROC_SCREENSHOTS when it is set (docs/ holds the ones
taken by `LLAMAPROC_SCREENSHOTS=docs python -m pytest tests/test_webui.py`), else to a temporary
folder."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import tiny_config, wait_until
from http_client import get, post
from llamaproc import LlamaServer, ModelPool, ModelSpec, ModelStatus, PoolConfig, RestartPolicy, ServerConfig, ServerStatus
from llamaproc.testing import Fault

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
WAIT_S = 30.0  # generous: the browser and the model share two cores
UPDATE_S = 2.0  # the dashboard shows a change within this (the bound)


# -- HTTP level: no browser ------------------------------------------------------------------

def status(url: str, **kw) -> dict:
    code, body = get(url + "/llamaproc/status", **kw)
    assert code == 200, body
    assert isinstance(body, dict)
    return body


def test_a_server_serves_the_pages_and_its_status(tiny_model: Path):
    with LlamaServer.start(tiny_config(tiny_model)) as server:
        code, page = get(server.url + "/")
        assert code == 200 and "<title>llamaproc chat</title>" in page
        code, page = get(server.url + "/dashboard/")
        assert code == 200 and "llamaproc dashboard" in page
        doc = status(server.url)
        assert doc["object"] == "llamaproc.status" and doc["kind"] == "server"
        (model,) = doc["models"]
        assert model["state"] == "loaded" and model["loads"] == 1 and model["failure"] is None
        assert model["slots"] == {"total": 2, "busy": 0, "waiting": 0}
        assert model["memory"]["held"] == doc["memory_reserved"] > 0
        post(server.url + "/v1/completions", {"prompt": "hi", "max_tokens": 4, "temperature": 0})
        after = status(server.url)
        assert after["models"][0]["tokens"]["generated"] == 4
        # the dashboard's polls are not requests: only the completion was counted
        assert after["requests"]["ok"] == 1


def test_a_pool_reports_every_model(tiny_model: Path):
    spec = ModelSpec(model_path=tiny_model, context_size=256, threads=1)
    config = PoolConfig(models={"a": ModelSpec(model_path=tiny_model, context_size=256, threads=1, load_on_startup=True),
                                "b": spec}, memory_budget=1 << 30)
    with ModelPool.start(config) as pool:
        doc = status(pool.url)
        assert doc["kind"] == "pool" and doc["memory_budget"] == 1 << 30
        states = {m["id"]: m["state"] for m in doc["models"]}
        assert states == {"a": "loaded", "b": "unloaded"}
        b = next(m for m in doc["models"] if m["id"] == "b")
        assert b["slots"] is None and b["memory"] is None and b["memory_estimate"] > 0
        pool.inject_fault("b", Fault.load_fails())
        assert post(pool.url + "/models/load", {"model": "b"})[0] == 200
        wait_until(lambda: next(m for m in status(pool.url)["models"] if m["id"] == "b")["state"] == "failed")
        failed = next(m for m in status(pool.url)["models"] if m["id"] == "b")
        assert failed["failure"]["kind"] == "model_load" and failed["failure"]["message"]


def test_no_webui_turns_the_pages_off_and_keeps_the_api(tiny_model: Path):
    with LlamaServer.start(tiny_config(tiny_model, extra_args=("--no-webui",))) as server:
        assert get(server.url + "/")[0] == 404
        assert get(server.url + "/dashboard/")[0] == 404
        assert get(server.url + "/v1/models")[0] == 200
        assert status(server.url)["models"][0]["state"] == "loaded"


def test_a_path_of_ones_own_replaces_the_pages(tiny_model: Path, tmp_path: Path):
    (tmp_path / "index.html").write_text("<p>mine</p>")
    with LlamaServer.start(tiny_config(tiny_model, extra_args=("--path", str(tmp_path)))) as server:
        assert get(server.url + "/") == (200, "<p>mine</p>")
        assert get(server.url + "/dashboard/")[0] == 404


def test_with_an_api_key_only_the_page_files_are_open(tiny_model: Path):
    with LlamaServer.start(tiny_config(tiny_model, api_key="secret-key")) as server:
        for path in ("/", "/dashboard/", "/assets/chat.js", "/assets/style.css"):
            assert get(server.url + path)[0] == 200, path
        for path in ("/llamaproc/status", "/v1/models", "/props", "/slots"):
            assert get(server.url + path)[0] == 401, path
        assert status(server.url, headers={"Authorization": "Bearer secret-key"})["kind"] == "server"


def test_an_isolated_server_serves_the_pages(tiny_model: Path):
    with LlamaServer.start(tiny_config(tiny_model, isolation="process")) as server:
        assert get(server.url + "/")[0] == 200
        assert status(server.url)["models"][0]["state"] == "loaded"


# -- in the browser --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("no browser: install Debian's chromium and chromium-driver (apt-get install chromium "
                    "chromium-driver) to run the web page tests")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # selenium must not look for drivers online
    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,860", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("LLAMAPROC_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def console_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def wait(driver, check, timeout: float = WAIT_S):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: check(d))


def by_css(driver, css: str):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, css)


def text_of(driver, css: str) -> str:
    """The rendered text of the first match (read in one script: streaming replaces nodes)."""
    return driver.execute_script("const e = document.querySelector(arguments[0]); return e ? e.innerText : ''", css)


def open_chat(driver, url: str) -> None:
    driver.get(url + "/")
    wait(driver, lambda d: by_css(d, "#model option"))


def assistant_text(driver) -> str:
    return text_of(driver, "article.message.assistant:last-of-type .body")


def footer(driver) -> str:
    return text_of(driver, "article.message.assistant:last-of-type footer")


def finished(driver) -> bool:
    """The last answer is complete (its timings shown, no longer generating)."""
    note = footer(driver)
    return "tok/s" in note and "generating" not in note


def send(driver, text: str) -> None:
    from selenium.webdriver.common.keys import Keys

    box = by_css(driver, "#prompt")[0]
    box.send_keys(text)
    box.send_keys(Keys.ENTER)


def set_max_tokens(driver, n: int) -> None:
    by_css(driver, "#settings-button")[0].click()
    field = by_css(driver, "#max-tokens")[0]
    field.clear()
    field.send_keys(str(n))
    by_css(driver, "#settings-button")[0].click()


def sse_content(raw: bytes) -> str:
    text = ""
    for line in raw.decode().splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            delta = json.loads(line[6:])["choices"][0]["delta"]
            text += delta.get("content") or ""
    return text


@pytest.fixture
def chat_server(tiny_model: Path):
    with LlamaServer.start(tiny_config(tiny_model, threads=1)) as server:
        yield server


def test_the_chat_page_loads_clean_and_streams_an_answer(browser, smollm2_model: Path, shots):
    browser.get_log("browser")  # drop what earlier pages logged
    config = ServerConfig(model_path=smollm2_model, threads=2, context_size=2048, parallel=1)
    with LlamaServer.start(config) as server:
        open_chat(browser, server.url)
        assert "loaded" in text_of(browser, "#model-state")
        set_max_tokens(browser, 120)
        server.inject_fault(Fault.slow_tokens(0.02))  # slow enough to see the answer grow
        send(browser, "Write a Python function that adds two numbers, in a code block.")
        assert text_of(browser, "article.message.user .body").startswith("Write a Python function")
        wait(browser, lambda d: assistant_text(d) and "generating" in footer(d))
        partial = assistant_text(browser)
        wait(browser, lambda d: len(assistant_text(d)) > len(partial))  # it grows while streaming
        wait(browser, finished, timeout=120)
        server.clear_faults()
        browser.save_screenshot(str(shots / "webui-chat.png"))
    assert console_errors(browser) == []


def test_shift_enter_starts_a_new_line_and_enter_sends(browser, chat_server):
    from selenium.webdriver.common.keys import Keys

    open_chat(browser, chat_server.url)
    box = by_css(browser, "#prompt")[0]
    box.send_keys("line one", Keys.SHIFT, Keys.ENTER, Keys.SHIFT, "line two")
    assert box.get_attribute("value") == "line one\nline two"
    assert by_css(browser, "article.message") == []
    set_max_tokens(browser, 4)
    box.send_keys(Keys.ENTER)
    wait(browser, finished)
    assert text_of(browser, "article.message.user .body") == "line one\nline two"
    assert box.get_attribute("value") == ""


def test_stop_ends_the_generation_on_the_server(browser, chat_server):
    open_chat(browser, chat_server.url)
    set_max_tokens(browser, 400)
    chat_server.inject_fault(Fault.slow_tokens(0.2))
    send(browser, "Tell me a long story")
    wait(browser, lambda d: assistant_text(d))
    by_css(browser, "#stop")[0].click()
    wait(browser, lambda d: "stopped" in footer(d))
    # the server let go of the slot: the generation did not go on without a reader
    wait_until(lambda: status(chat_server.url)["models"][0]["slots"]["busy"] == 0, timeout=10)
    assert by_css(browser, "#send")[0].is_displayed()
    chat_server.clear_faults()


def test_a_reload_keeps_the_conversation(browser, chat_server):
    open_chat(browser, chat_server.url)
    set_max_tokens(browser, 8)
    send(browser, "first question")
    wait(browser, finished)
    answer = assistant_text(browser)
    browser.refresh()
    wait(browser, lambda d: by_css(d, "article.message.assistant"))
    assert text_of(browser, "article.message.user .body") == "first question"
    assert assistant_text(browser) == answer
    assert by_css(browser, "#max-tokens")[0].get_attribute("value") == "8"  # settings kept too


def test_a_reload_mid_stream_resumes_the_stream(browser, chat_server):
    open_chat(browser, chat_server.url)
    set_max_tokens(browser, 30)
    chat_server.inject_fault(Fault.slow_tokens(0.15))
    send(browser, "count slowly")
    wait(browser, lambda d: len(assistant_text(d)) > 0)
    browser.refresh()
    wait(browser, finished)
    assert "interrupted" not in footer(browser) and "error" not in footer(browser)
    chat_server.clear_faults()
    conversation = browser.execute_script("return JSON.parse(localStorage.getItem('llamaproc.chat')).id")
    code, raw = request_raw(chat_server.url + f"/v1/stream?conv_id={conversation}&from=0")
    assert code == 200
    # the page holds the whole answer, not only what streamed after the reload
    assert assistant_text(browser) == sse_content(raw).strip() or assistant_text(browser) == sse_content(raw)


def request_raw(url: str) -> tuple[int, bytes]:
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.request("GET", parts.path + "?" + parts.query)
        res = conn.getresponse()
        return res.status, res.read()
    finally:
        conn.close()


def test_model_output_is_shown_as_text_never_run(browser, tiny_model: Path):
    # a grammar forces the model's answer: markup and a script, which the page must show as text
    forced = "<script>document.title='pwned'</script><b>bold</b><img src=x onerror=\"document.title='img'\">"
    grammar = 'root ::= "' + forced.replace('"', '\\"') + '"'
    with LlamaServer.start(tiny_config(tiny_model, extra_args=("--grammar", grammar))) as server:
        open_chat(browser, server.url)
        set_max_tokens(browser, 200)
        send(browser, "anything")
        wait(browser, finished)
        assert assistant_text(browser) == forced
        assert browser.title == "llamaproc chat"
        assert by_css(browser, ".messages script, .messages b, .messages img") == []


def key_dialog_shown(driver) -> bool:
    return any(e.is_displayed() for e in by_css(driver, "#key-dialog"))


def test_the_api_key_is_asked_once_and_kept(browser, tiny_model: Path):
    with LlamaServer.start(tiny_config(tiny_model, api_key="k-123")) as server:
        browser.get(server.url + "/")
        wait(browser, key_dialog_shown)
        assert by_css(browser, "#model option") == []  # nothing but the shell without the key
        field = by_css(browser, "#key-dialog input")[0]
        field.send_keys("wrong")
        by_css(browser, "#key-dialog button")[0].click()
        wait(browser, lambda d: "refused" in text_of(d, "#key-dialog .key-reason"))
        field.send_keys("k-123")
        by_css(browser, "#key-dialog button")[0].click()
        wait(browser, lambda d: by_css(d, "#model option"))
        set_max_tokens(browser, 4)
        send(browser, "hi")
        wait(browser, finished)
        browser.get(server.url + "/dashboard/")  # the same origin: the key is kept
        wait(browser, lambda d: by_css(d, "article.model-card[data-state=loaded]"))
        assert not key_dialog_shown(browser)


@pytest.fixture
def two_model_pool(tiny_model: Path):
    a = ModelSpec(model_path=tiny_model, context_size=256, threads=1, load_on_startup=True)
    b = ModelSpec(model_path=tiny_model, context_size=256, threads=1)
    with ModelPool.start(PoolConfig(models={"a": a, "b": b}, memory_budget=2 << 30)) as pool:
        yield pool


def test_the_model_picker_loads_a_second_pool_model(browser, two_model_pool):
    from selenium.webdriver.support.ui import Select

    pool = two_model_pool
    open_chat(browser, pool.url)
    pick = lambda name: Select(by_css(browser, "#model")[0]).select_by_value(name)  # noqa: E731
    pool.inject_fault("b", Fault.load_fails())
    pick("b")
    wait(browser, lambda d: text_of(d, "#model-state").startswith("failed: "))
    pick("a")
    pool.inject_fault("b", Fault.slow_load(0.05))  # a load that takes a few seconds: progress shows
    pick("b")
    wait(browser, lambda d: text_of(d, "#model-state").startswith("loading"))
    wait(browser, lambda d: text_of(d, "#model-state") == "loaded")
    assert pool.model("b").status is ModelStatus.LOADED
    set_max_tokens(browser, 4)
    send(browser, "hello b")
    wait(browser, finished)
    assert text_of(browser, "article.message.assistant .who") == "b"


def test_the_chat_page_fits_a_phone_screen(browser, chat_server):
    browser.set_window_size(390, 844)
    try:
        open_chat(browser, chat_server.url)
        set_max_tokens(browser, 8)
        send(browser, "a question typed on a phone")
        wait(browser, finished)
        fits = browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        assert fits, "the page scrolls sideways on a phone screen"
        for css in ("#prompt", "#send", "#model", "article.message.assistant"):
            box = browser.execute_script(
                "const r = document.querySelector(arguments[0]).getBoundingClientRect();"
                "return [r.left, r.right, r.bottom, window.innerWidth, window.innerHeight]", css)
            assert 0 <= box[0] and box[1] <= box[3] + 0.5 and box[2] <= box[4] + 0.5, css
    finally:
        browser.set_window_size(1280, 860)


def card_state(driver, model: str) -> str:
    return driver.execute_script(
        "const e = document.querySelector(`article.model-card[data-model=\"${arguments[0]}\"]`);"
        "return e ? e.dataset.state : ''", model)


def events(driver) -> str:
    return text_of(driver, "#events")


def test_the_dashboard_follows_a_pool(browser, two_model_pool, tiny_model: Path, shots):
    pool = two_model_pool
    browser.get_log("browser")  # drop what earlier pages logged
    browser.get(pool.url + "/dashboard/")
    wait(browser, lambda d: card_state(d, "a") == "loaded" and card_state(d, "b") == "unloaded")
    pool.load("b")
    wait(browser, lambda d: card_state(d, "b") == "loaded", timeout=UPDATE_S)
    assert "b: loaded" in events(browser)
    loads = pool.model("b").loads
    pool.swap("b", ModelSpec(model_path=tiny_model, context_size=512, threads=1))
    wait(browser, lambda d: f"loads\n{loads + 1}" in text_of(d, 'article.model-card[data-model="b"] .stats'),
         timeout=UPDATE_S)
    assert "b: loaded again (swapped)" in events(browser)
    pool.inject_fault("a", Fault.loop_dies())
    wait(browser, lambda d: card_state(d, "a") == "failed", timeout=UPDATE_S)
    assert "a: " in events(browser) and "failed" in events(browser)
    assert text_of(browser, 'article.model-card[data-model="a"] .failure')
    # the buttons: unload b, load a again
    by_css(browser, 'article.model-card[data-model="b"] .actions button:nth-child(2)')[0].click()
    wait(browser, lambda d: card_state(d, "b") == "unloaded")
    assert pool.model("b").status is ModelStatus.UNLOADED
    by_css(browser, 'article.model-card[data-model="a"] .actions button:nth-child(1)')[0].click()
    wait(browser, lambda d: card_state(d, "a") == "loaded")
    assert pool.model("a").status is ModelStatus.LOADED
    post(pool.url + "/v1/completions", {"model": "a", "prompt": "hi", "max_tokens": 8})
    wait(browser, lambda d: "8 tokens generated" in text_of(d, "#tok-totals"))
    browser.save_screenshot(str(shots / "webui-dashboard.png"))
    assert console_errors(browser) == []


def test_the_dashboard_of_a_single_server_shows_failure_and_recovery(browser, tiny_model: Path):
    # recovery waits 2.5 s before it restarts the model: long enough to see the failure first
    config = tiny_config(tiny_model, restart=RestartPolicy(backoff_s=(2.5, 2.5)))
    with LlamaServer.start(config) as server:
        browser.get(server.url + "/dashboard/")
        wait(browser, lambda d: by_css(d, "article.model-card[data-state=loaded]"))
        assert not by_css(browser, "article.model-card .actions button")[0].is_displayed()  # no load/unload
        server.inject_fault(Fault.loop_dies())
        wait(browser, lambda d: by_css(d, "article.model-card[data-state=failed]"), timeout=UPDATE_S)
        assert "failed (the inference loop stopped unexpectedly)" in events(browser)
        assert "the inference loop stopped" in text_of(browser, "article.model-card .failure")
        wait_until(lambda: server.status is ServerStatus.READY and server.metrics().restarts == 1)
        wait(browser, lambda d: by_css(d, "article.model-card[data-state=loaded]"), timeout=UPDATE_S)
        assert "restarting (load 2)" in events(browser)
