"""Fixtures for the dashboard's browser tests: `producer dashboard` as a real process, and
Debian's chromium, headless, driven by Selenium through Debian's chromedriver.

Selenium is given both paths, so Selenium Manager never runs and nothing is downloaded. Where
they are missing (a developer's laptop) the tests skip, saying how to install them; in CI (`CI`
set, or `COROQ_E2E_REQUIRED=1`, which .ci/run exports) they fail instead, so a broken install
step cannot pass for a green run.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL_HINT = "apt-get install chromium chromium-driver (as root; .ci/run does it in CI)"


def browser_required() -> bool:
    """Whether a missing browser fails the tests rather than skipping them."""
    ci = os.environ.get("CI", "").strip().lower()
    return os.environ.get("COROQ_E2E_REQUIRED") == "1" or ci not in ("", "0", "false", "no")


if not browser_required():  # a virtualenv made before selenium joined the dev extra
    pytest.importorskip(
        "selenium", reason="pip install --require-hashes -r config/requirements/dev.txt"
    )

from selenium import webdriver  # noqa: E402 - after the check above, which may skip
from selenium.common.exceptions import (  # noqa: E402
    NoSuchElementException,
    StaleElementReferenceException,
)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402

from producer import Producer  # noqa: E402
from tests.conftest import REPO_ROOT  # noqa: E402
from worker.local_redis import free_port  # noqa: E402

T = TypeVar("T")
DESKTOP = (1280, 900)
PHONE = (390, 844)
# Heartbeats often enough that a new worker, and what it ran, show within a second.
FAST_BEATS = {"COROQ_HEARTBEAT_INTERVAL": "0.5", "COROQ_HEARTBEAT_TTL": "1.5"}
SCREENSHOTS_DIR = REPO_ROOT / "docs" / "images"


class DashboardProcess:
    """`python -m producer dashboard` on a free port of 127.0.0.1, its output in a file."""

    def __init__(self, redis_url: str, args: tuple[str, ...], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log_file = log_path.open("wb")
        environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        environment.pop("COROQ_DASHBOARD_TOKEN", None)  # only the token a test gives
        self.process = subprocess.Popen(
            [sys.executable, "-m", "producer", "dashboard", "--port", str(self.port),
             "--redis-url", redis_url, *args],
            env=environment,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )  # fmt: skip

    def wait_listening(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the dashboard exited early:\n{self.output()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            except OSError:
                time.sleep(0.05)
            else:
                return
        raise AssertionError(f"the dashboard did not listen within {timeout} s:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM, so it exits by itself and writes its coverage data."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_file.close()


@pytest.fixture
def start_dashboard(redis_url: str, tmp_path: Path) -> Iterator[Callable[..., DashboardProcess]]:
    """Start the dashboard with these CLI options (on the session's Redis unless `redis_url`
    is given); stopped when the test ends. It answers when this returns."""
    started: list[DashboardProcess] = []

    def start(*args: str, redis_url: str = redis_url) -> DashboardProcess:
        log_path = tmp_path / f"dashboard-{len(started)}.log"
        dashboard = DashboardProcess(redis_url, args, log_path)
        started.append(dashboard)
        dashboard.wait_listening()
        return dashboard

    yield start
    for dashboard in started:
        dashboard.stop()


@pytest.fixture
def producer(redis_url: str, queue_name: str) -> Iterator[Producer]:
    with Producer(redis_url, queue=queue_name) as client:
        yield client


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """One headless chromium for the module's tests (each test gets it reset: `browser`)."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        reason = f"{' and '.join(missing)} not found: {INSTALL_HINT}"
        if browser_required():
            pytest.fail(f"the dashboard's browser tests must run in CI: {reason}", pytrace=False)
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where chromium's sandbox refuses to start
        "--disable-dev-shm-usage",  # containers give /dev/shm a few MB only
        "--disable-gpu",
        "--hide-scrollbars",
        "--force-color-profile=srgb",
        "--lang=en-US",
        f"--window-size={DESKTOP[0]},{DESKTOP[1]}",
    ):
        options.add_argument(argument)
    # Dialogs stay open until a test answers them, so a test sees every alert a page opens.
    options.unhandled_prompt_behavior = "ignore"
    # chromedriver's log, for a failure's post-mortem. Opened and closed here: selenium 4.11
    # leaves the log it opens itself unclosed (a ResourceWarning, which fails the suite).
    log_path = tmp_path_factory.mktemp("chromedriver") / "chromedriver.log"
    with log_path.open("wb") as log:
        service = Service(executable_path=str(CHROMEDRIVER), log_output=log)
        driver = webdriver.Chrome(service=service, options=options)
        try:
            yield driver
        finally:
            driver.quit()


class Browser:
    """The shared chromium, with the few steps the tests repeat."""

    def __init__(self, driver: WebDriver) -> None:
        self.driver = driver

    def reset(self) -> None:
        """No cookies (every dashboard listens on 127.0.0.1, and cookies ignore the port), a
        desktop viewport, the light scheme."""
        self.driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
        self.viewport(*DESKTOP)
        self.color_scheme("light")

    def viewport(self, width: int, height: int, *, phone: bool = False) -> None:
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 2 if phone else 1,
             "mobile": phone},
        )  # fmt: skip

    def color_scheme(self, scheme: str) -> None:
        features = [{"name": "prefers-color-scheme", "value": scheme}]
        self.driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": features})

    def open(self, url: str) -> None:
        self.driver.get(url)

    def until(self, condition: Callable[[WebDriver], T], message: str, timeout: float = 15) -> T:
        """Wait for `condition` to return something truthy; elements replaced by a refresh
        meanwhile are looked up again on the next poll."""
        wait: WebDriverWait[WebDriver] = WebDriverWait(
            self.driver,
            timeout,
            poll_frequency=0.05,
            ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
        )
        return wait.until(condition, message)

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, css: str) -> str:
        return self.find(css).text

    def wait_text(self, css: str, expected: str, timeout: float = 15) -> None:
        """Wait until the element's visible text is `expected`."""
        self.until(
            lambda _: self.text(css) == expected,
            f"{css} never read {expected!r} (last: {self._text_or_none(css)!r})",
            timeout,
        )

    def button(self, label: str) -> WebElement:
        return self.driver.find_element(By.XPATH, f"//button[normalize-space()='{label}']")

    def script(self, source: str, *args: Any) -> Any:
        return self.driver.execute_script(source, *args)

    def overflows_horizontally(self) -> bool:
        """Whether the page itself is wider than the viewport (a table scrolling inside its
        wrapper does not count)."""
        return bool(
            self.script(
                "const root = document.documentElement;"
                "return Math.max(root.scrollWidth, document.body.scrollWidth) > root.clientWidth;"
            )
        )

    def screenshot(self, path: Path) -> None:
        """The whole page, below the fold too."""
        size = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
        )
        path.write_bytes(base64.b64decode(shot["data"]))

    def _text_or_none(self, css: str) -> str | None:
        try:
            return self.text(css)
        except (NoSuchElementException, StaleElementReferenceException):
            return None


@pytest.fixture
def browser(chromium: WebDriver) -> Browser:
    browser = Browser(chromium)
    browser.reset()
    return browser


@pytest.fixture
def screenshots_dir(tmp_path: Path) -> Path:
    """docs/images with COROQ_SCREENSHOTS=1 (to refresh the docs' pictures), else the test's
    own folder."""
    if os.environ.get("COROQ_SCREENSHOTS") == "1":
        SCREENSHOTS_DIR.mkdir(parents=True, exist_ok=True)
        return SCREENSHOTS_DIR
    return tmp_path
