"""The dashboard during a real rollout on a real fleet, in headless Chromium driven by Selenium.

Real Redis, real Celery workers, two demo shops behind a real HAProxy, `canary dashboard` as its
own process. The page must update without a reload, its Abort button must put the traffic back
on stable, and nothing answers without the log-in. Screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from canary.local import LocalFleet, free_port
from canary.local.haproxy import start_haproxy
from canary.store import Store
from tests.e2e.test_report_browser import ensure_chromium
from tests.fixtures.services import DemoFactory
from tests.fixtures.waits import CEILING_S

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
CANARY = [sys.executable, "-m", "canary.cli.main"]
PASSWORD = "dashboard-e2e-password"
AUTH = ("canary", PASSWORD)


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` at the ceiling."""
    from selenium.common.exceptions import StaleElementReferenceException

    deadline = time.monotonic() + timeout
    while True:
        try:
            got = check()
        except StaleElementReferenceException:
            # The live stream swapped the fragment between finding an element and reading it.
            got = None
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}", pytrace=False)
        time.sleep(0.2)


def _rollout(tmp: Path, stable: str, canary: str, router: dict[str, Any]) -> Path:
    doc: dict[str, Any] = {
        "name": "dashshop",
        "stable": {"url": stable, "version": "1.0.0"},
        "canary": {"url": canary, "version": "1.1.0"},
        "transactions": [str(ROOT / "configs" / "transactions" / "demo-browse.yaml")],
        # Long enough to press a button while it runs; each step is short.
        "schedule": {"steps": [20, 40, 60, 80, 90, 100], "step_interval": "8s"},
        "probes": {"per_step": 10, "batch_size": 5},
        "slo": {"success_threshold": 90, "max_latency_increase_pct": 300},
        "analysis": {"max_holds": 1},
        "router": router,
    }
    path = tmp / "dashshop.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture()
def fleet(tmp_path: Path, redis_url: str) -> Iterator[LocalFleet]:
    with LocalFleet(tmp_path / "fleet", redis_url=redis_url) as f:
        yield f


@contextlib.contextmanager
def dashboard(redis_url: str, tmp: Path) -> Iterator[str]:
    """`canary dashboard` as a process; yields its base URL once it answers."""
    port = free_port()
    env = {
        **os.environ,
        "CANARY_REDIS_URL": redis_url,
        "CANARY_DASHBOARD_PASSWORD": PASSWORD,
        "CANARY_HOME": str(tmp / "home"),
    }
    log = (tmp / "dashboard.log").open("w")
    proc = subprocess.Popen(
        [*CANARY, "dashboard", "--port", str(port)], env=env, stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            with contextlib.suppress(requests.RequestException):
                return requests.get(f"{base}/healthz", timeout=2).status_code == 200
            assert proc.poll() is None, (tmp / "dashboard.log").read_text()
            return False

        wait_for("the dashboard to answer", up)
        yield base
    finally:
        proc.terminate()
        code = proc.wait(timeout=CEILING_S)
        log.close()
        assert code == 0, f"dashboard exited {code}: {(tmp / 'dashboard.log').read_text()}"


@pytest.fixture()
def browser(tmp_path: Path) -> Iterator[Any]:
    """Headless Chromium through chromedriver, every request carrying the dashboard's log-in."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary = ensure_chromium(driver=True)
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chrome-profile'}")
    service = Service(executable_path="/usr/bin/chromedriver", log_output=str(tmp_path / "cd.log"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        import base64

        token = base64.b64encode(f"{AUTH[0]}:{AUTH[1]}".encode()).decode()
        # Basic auth for the page, its script, its event stream and its fetches alike.
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd(
            "Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}}
        )
        yield driver
    finally:
        driver.quit()


def shot(driver: Any, name: str, width: int, height: int) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.set_window_rect(width=width, height=height)
    # The window includes the browser's frame; size the viewport itself.
    inner = driver.execute_script("return [window.innerWidth, window.innerHeight]")
    driver.set_window_rect(width=2 * width - inner[0], height=2 * height - inner[1])
    path = ARTIFACTS / f"dashboard-{name}.png"
    driver.save_screenshot(str(path))
    return path


def served_by(url: str, n: int = 40) -> set[str]:
    """Which backends answered ``n`` requests through the proxy (the demo's X-Canary-Version)."""
    return {
        requests.get(f"{url}/healthz", timeout=5).headers.get("X-Canary-Version", "?")
        for _ in range(n)
    }


def test_without_credentials_everything_is_401(redis_url: str, tmp_path: Path) -> None:
    with dashboard(redis_url, tmp_path) as base:
        for path in ("/", "/stream", "/rollouts/x", "/rollouts/x/stream", "/static/dashboard.js"):
            r = requests.get(base + path, timeout=5)
            assert r.status_code == 401, path
            assert r.headers["WWW-Authenticate"].startswith("Basic")
        assert requests.get(base + "/", auth=("canary", "wrong"), timeout=5).status_code == 401
        assert requests.post(base + "/rollouts/x/actions/abort", timeout=5).status_code == 401
        # Logged in, an action still needs the page's CSRF token, and our own origin.
        r = requests.post(base + "/rollouts/x/actions/abort", auth=AUTH, timeout=5)
        assert r.status_code == 403 and "CSRF" in r.json()["message"]
        page = requests.get(base + "/", auth=AUTH, timeout=5)
        assert (
            page.status_code == 200
            and "script-src 'self'" in page.headers["Content-Security-Policy"]
        )
        token = page.text.split('name="csrf-token" content="')[1].split('"')[0]
        r = requests.post(
            base + "/rollouts/x/actions/abort",
            auth=AUTH,
            headers={"X-CSRF-Token": token, "Origin": "http://evil.example"},
            timeout=5,
        )
        assert r.status_code == 403 and "cross-origin" in r.json()["message"]
        r = requests.post(
            base + "/rollouts/x/actions/abort",
            auth=AUTH,
            headers={"X-CSRF-Token": token},
            timeout=5,
        )
        assert r.status_code == 404 and "unknown rollout" in r.json()["message"]


def test_live_page_and_abort_button_during_a_real_rollout(
    tmp_path: Path,
    fleet: LocalFleet,
    demo_service_factory: DemoFactory,
    haproxy_installed: None,
    browser: Any,
) -> None:
    from selenium.webdriver.common.by import By

    stable = demo_service_factory("stable", latency_ms=2).url.rstrip("/")
    canary = demo_service_factory("canary", latency_ms=2).url.rstrip("/")
    proxy = start_haproxy(tmp_path, stable, canary)
    try:
        rollout = _rollout(tmp_path, stable, canary, {"type": "haproxy", **proxy.router_options})
        env = {**os.environ, "CANARY_REDIS_URL": fleet.redis_url}
        started = subprocess.run(
            [*CANARY, "rollout", "start", str(rollout), "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert started.returncode == 0, started.stderr
        rid = yaml.safe_load(started.stdout.strip().splitlines()[-1])["id"]
        store = Store.from_url(fleet.redis_url)

        with dashboard(fleet.redis_url, tmp_path) as base:
            browser.get(base + "/")
            wait_for(
                "the rollout's card",
                lambda: browser.find_elements(By.CSS_SELECTOR, f'a[data-id="{rid}"]'),
            )
            shot(browser, "fleet-desktop", 1280, 800)
            shot(browser, "fleet-phone", 390, 844)
            browser.set_window_rect(width=1300, height=900)

            browser.get(f"{base}/rollouts/{rid}")
            browser.execute_script("window.__notReloaded = true")
            live = browser.find_element(By.ID, "live")
            # The stream replaces the fragment as the rollout moves: the weight rises on the page.
            wait_for(
                "the page to show traffic on the canary",
                lambda: (
                    "weight 0%" not in browser.find_element(By.ID, "progress").text
                    and int(live.get_attribute("data-updates") or 0) >= 2
                ),
            )
            assert browser.execute_script("return window.__notReloaded") is True
            wait_for("some traffic on the canary", lambda: "canary" in served_by(proxy.url))
            shot(browser, "rollout-desktop", 1280, 800)
            assert browser.execute_script(
                "return document.documentElement.scrollWidth <= window.innerWidth + 1"
            )
            shot(browser, "rollout-phone", 390, 844)
            assert browser.execute_script(
                "return document.documentElement.scrollWidth <= window.innerWidth + 1"
            ), "the page scrolls sideways on a phone"
            browser.set_window_rect(width=1300, height=900)

            browser.find_element(By.CSS_SELECTOR, 'button[data-action="abort"]').click()
            browser.switch_to.alert.accept()
            wait_for(
                "the page to show the rollout aborted",
                lambda: browser.find_elements(
                    By.CSS_SELECTOR, 'section.head[data-state="aborted"]'
                ),
            )
            assert browser.execute_script("return window.__notReloaded") is True
            assert "abort applied" in browser.find_element(By.ID, "flash").text
            record = store.load_rollout(rid)
            assert record is not None and record["state"] == "aborted"
            assert "aborted by an operator" in " ".join(record.get("reasons") or [])
            assert served_by(proxy.url) == {"stable"}, "traffic did not go back to stable"
            assert browser.find_elements(By.CSS_SELECTOR, "button[data-action]") == []
            assert "How it ended" in live.text
            shot(browser, "rollout-aborted", 1280, 800)
            shot(browser, "rollout-aborted-full", 1280, 2600)  # the whole page, for a look
            browser.get(f"{base}/rollouts/{rid}/report")
            assert "1.1.0" in browser.page_source
    finally:
        proxy.stop()
