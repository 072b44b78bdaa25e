"""The dashboard in a real browser: a headless chromium on `producer dashboard`, run as a
process, over a private redis-server and real `python -m worker` processes.

With COROQ_SCREENSHOTS=1, `test_screenshots_for_the_docs` writes docs/images/dashboard-*.png.
"""

from __future__ import annotations

import math
import random
import re
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.support import expected_conditions

from producer import Producer
from producer.history import FAILED, HISTORY_TTL_S, OK, history_field, minute_of, read_history
from producer.keys import QueueKeys
from tests.conftest import WorkerProcess, wait_for
from tests.e2e.conftest import FAST_BEATS, PHONE, Browser, DashboardProcess
from tests.integration.helpers import wait_for_outcome, worker_id
from worker.local_redis import RedisServerProcess

SCRIPT_TAG = "<script>alert(1)</script>"
IMG_TAG = "<img src=x onerror=alert(1)>"
RGB = re.compile(r"rgba?\((\d+), (\d+), (\d+)")


def count_cell(queue: str, column: str) -> str:
    """The overview's cell of one count of one queue."""
    return f'tr[data-queue="{queue}"] [data-count="{column}"]'


def count_refreshes(browser: Browser) -> None:
    """From now on, `window.refreshes` counts the page's in-place refreshes (app.js); a reload
    would reset it to undefined."""
    browser.script(
        "window.refreshes = 0;"
        "document.addEventListener('coroq:refreshed', () => { window.refreshes += 1; });"
    )


def refreshes(browser: Browser) -> int | None:
    count = browser.script("return window.refreshes")
    return None if count is None else int(count)


def assert_no_dialog(browser: Browser) -> None:
    try:
        dialog = browser.driver.switch_to.alert
    except NoAlertPresentException:
        return
    raise AssertionError(f"the page opened a dialog: {dialog.text!r}")


def assert_markup_is_text(browser: Browser, page: str) -> None:
    """The job's markup reads as text on the page, and none of it became an element."""
    assert_no_dialog(browser)
    shown = browser.text("main")
    assert SCRIPT_TAG in shown, page
    assert IMG_TAG in shown, page
    assert browser.find_all("main img, main script") == [], page
    sources = [element.get_attribute("src") or "" for element in browser.find_all("script")]
    assert len(sources) == 1, page
    assert urlsplit(sources[0]).path == "/static/app.js", page


def luminance(css_color: str) -> float:
    """Relative luminance (0 black, 1 white) of a computed CSS `rgb(...)` colour."""
    match = RGB.match(css_color)
    assert match, css_color

    def linear(channel: str) -> float:
        value = int(channel) / 255
        return value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4

    red, green, blue = (linear(channel) for channel in match.groups())
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def computed(browser: Browser, css: str, property_name: str) -> str:
    return str(
        browser.script(
            "return getComputedStyle(document.querySelector(arguments[0]))[arguments[1]];",
            css,
            property_name,
        )
    )


# -- live pages -------------------------------------------------------------------------------


def test_the_overview_lists_the_queue_and_worker_and_follows_the_counts_without_reloading(
    start_worker: Callable[..., WorkerProcess],
    start_dashboard: Callable[..., DashboardProcess],
    browser: Browser,
    producer: Producer,
    queue_name: str,
) -> None:
    producer.pause()  # the worker takes nothing until resumed: the counts stay to be seen
    worker = start_worker(env=FAST_BEATS)
    dashboard = start_dashboard("--refresh", "1", "--queue", queue_name)
    browser.open(f"{dashboard.url}/")

    row = f'tr[data-queue="{queue_name}"]'
    assert browser.text(f"{row} th") == queue_name
    for column in ("ready", "delayed", "running", "dead"):
        assert browser.text(count_cell(queue_name, column)) == "0"
    assert browser.text(f"{row} .badge") == "paused"
    browser.until(
        lambda _: worker_id(worker) in browser.text('section[aria-labelledby="workers-h"] tbody'),
        "the worker is not in the workers table",
    )

    count_refreshes(browser)
    for n in range(4):
        producer.push("tests.add", n, 1)
    for n in range(2):
        producer.push("tests.add", n, 1, _delay=3600)
    browser.wait_text(count_cell(queue_name, "ready"), "4")
    browser.wait_text(count_cell(queue_name, "delayed"), "2")

    producer.resume()  # the worker runs the four; the history counts them
    browser.wait_text(count_cell(queue_name, "ready"), "0")
    browser.wait_text(f"{row} .badge", "served")
    browser.wait_text(f"{row} td:nth-child(7)", "4")  # finished in the last hour
    assert (refreshes(browser) or 0) >= 2, "the page was reloaded instead of refreshed in place"


def test_a_dead_job_is_retried_by_ticking_it_and_confirming(
    start_worker: Callable[..., WorkerProcess],
    start_dashboard: Callable[..., DashboardProcess],
    browser: Browser,
    producer: Producer,
    redis_client: redis.Redis,
    keys: QueueKeys,
    tmp_path: Path,
) -> None:
    broken = tmp_path / "broken"
    broken.touch()
    start_worker()
    job_id = producer.push("tests.fails_while_file_exists", str(broken), _max_attempts=1)
    assert wait_for_outcome(redis_client, keys, job_id)["status"] == "dead"
    dashboard = start_dashboard("--queue", keys.queue)

    browser.open(f"{dashboard.url}/")
    browser.find(f"{count_cell(keys.queue, 'dead')} a").click()
    browser.until(
        lambda driver: urlsplit(driver.current_url).path == f"/queues/{keys.queue}/dead",
        "the dead count does not lead to the dead letters",
    )
    assert browser.text("h1") == "Dead letters 1"
    assert job_id in browser.text("tbody")
    browser.find(f'input[name="id"][value="{job_id}"]').click()

    # Answering no to the confirmation sends nothing.
    browser.button("Delete selected").click()
    dialog = browser.until(expected_conditions.alert_is_present(), "no confirmation asked")
    assert dialog.text == "Delete the selected jobs for good?"
    dialog.dismiss()
    assert browser.find(f'input[name="id"][value="{job_id}"]').is_selected()
    assert redis_client.llen(keys.dead) == 1

    broken.unlink()  # the cause is fixed: the job succeeds once retried
    browser.button("Retry selected").click()
    dialog = browser.until(expected_conditions.alert_is_present(), "no confirmation asked")
    assert dialog.text == "Send the selected jobs back to the queue?"
    dialog.accept()
    browser.wait_text(".notice", "1 sent back to the queue")
    assert browser.text("main .empty") == "No dead job."
    assert browser.text("h1") == "Dead letters 0"
    assert wait_for_outcome(redis_client, keys, job_id)["status"] == "succeeded"


def test_markup_in_a_job_shows_as_text_and_never_runs(
    start_worker: Callable[..., WorkerProcess],
    start_dashboard: Callable[..., DashboardProcess],
    browser: Browser,
    producer: Producer,
    redis_client: redis.Redis,
    keys: QueueKeys,
) -> None:
    markup = f"{SCRIPT_TAG} {IMG_TAG}"
    start_worker()
    dead = producer.push("tests.boom", markup, _max_attempts=1)  # in its error and traceback
    waiting = producer.push("tests.logs", markup, _delay=3600)
    assert wait_for_outcome(redis_client, keys, dead)["status"] == "dead"
    dashboard = start_dashboard("--refresh", "1", "--queue", keys.queue)

    queue_page = f"/queues/{keys.queue}?tab=delayed"
    for page in (
        queue_page,
        f"/queues/{keys.queue}/jobs/{waiting}",
        f"/queues/{keys.queue}/jobs/{dead}",
        f"/queues/{keys.queue}/dead",
    ):
        browser.open(dashboard.url + page)
        assert_markup_is_text(browser, page)

    # A refresh puts the server's HTML in with innerHTML, where an <img onerror> would run too.
    browser.open(dashboard.url + queue_page)
    count_refreshes(browser)
    browser.until(lambda _: (refreshes(browser) or 0) >= 1, "the queue page never refreshed")
    assert_markup_is_text(browser, f"{queue_page}, refreshed")


def test_with_a_token_pages_ask_for_it_and_only_the_right_one_lets_in(
    start_dashboard: Callable[..., DashboardProcess], browser: Browser, queue_name: str
) -> None:
    token = secrets.token_urlsafe(24)
    dashboard = start_dashboard("--token", token, "--queue", queue_name)

    browser.open(f"{dashboard.url}/queues/{queue_name}")
    assert urlsplit(browser.driver.current_url).path == "/login"
    assert browser.text("h1") == "Sign in"

    browser.find('input[name="token"]').send_keys(f"{token}-wrong")
    browser.button("Sign in").click()
    browser.wait_text('p[role="alert"]', "That is not the token.")
    assert urlsplit(browser.driver.current_url).path == "/login"

    browser.find('input[name="token"]').send_keys(token)
    browser.button("Sign in").click()
    browser.until(
        lambda driver: urlsplit(driver.current_url).path == f"/queues/{queue_name}",
        "the right token does not lead back to the page asked for",
    )
    assert browser.text("h1") == queue_name
    browser.open(f"{dashboard.url}/")  # remembered: no second sign-in
    assert browser.text("h1") == "Overview"


def test_read_only_pages_show_no_action(
    start_worker: Callable[..., WorkerProcess],
    start_dashboard: Callable[..., DashboardProcess],
    browser: Browser,
    producer: Producer,
    redis_client: redis.Redis,
    keys: QueueKeys,
) -> None:
    worker = start_worker()
    dead = producer.push("tests.boom", "for the dead list", _max_attempts=1)
    delayed = producer.push("tests.add", 1, 2, _delay=3600)  # cancellable, but not from here
    assert wait_for_outcome(redis_client, keys, dead)["status"] == "dead"
    dashboard = start_dashboard("--read-only", "--queue", keys.queue)

    for page, shows in (
        ("/", keys.queue),
        (f"/queues/{keys.queue}?tab=delayed", delayed),
        (f"/queues/{keys.queue}/jobs/{delayed}", delayed),
        (f"/queues/{keys.queue}/jobs/{dead}", dead),
        (f"/queues/{keys.queue}/dead", dead),
        ("/workers", worker_id(worker)),
    ):
        browser.open(dashboard.url + page)
        assert shows in browser.text("main"), page
        assert browser.text("header .badge") == "read-only", page
        assert browser.find_all('form[method="post"]') == [], page
        assert browser.find_all('input[type="checkbox"]') == [], page
        assert {button.text for button in browser.find_all("main button")} <= {"Filter"}, page


# -- layout -----------------------------------------------------------------------------------


def test_at_phone_width_the_page_never_scrolls_sideways_and_dark_mode_is_dark(
    start_worker: Callable[..., WorkerProcess],
    start_dashboard: Callable[..., DashboardProcess],
    browser: Browser,
    producer: Producer,
    redis_client: redis.Redis,
    keys: QueueKeys,
) -> None:
    unbroken = "x" * 300  # no place to wrap: only overflow-wrap keeps it inside the page
    start_worker()
    dead = producer.push("tests.boom", f"failed on {unbroken}", _max_attempts=1)
    producer.push("tests.logs", unbroken, _delay=3600)
    assert wait_for_outcome(redis_client, keys, dead)["status"] == "dead"
    dashboard = start_dashboard("--queue", keys.queue)

    browser.viewport(*PHONE, phone=True)
    for page in (
        "/",
        f"/queues/{keys.queue}?tab=delayed",
        f"/queues/{keys.queue}/jobs/{dead}",
        f"/queues/{keys.queue}/dead",
        "/workers",
        "/schedules",
    ):
        browser.open(dashboard.url + page)
        assert browser.script("return window.innerWidth") == PHONE[0]
        assert not browser.overflows_horizontally(), f"{page} is wider than a phone"
    # The dead letters' table is wider than a phone: it scrolls inside its wrapper instead.
    browser.open(f"{dashboard.url}/queues/{keys.queue}/dead")
    assert browser.script(
        "const wrap = document.querySelector('.table-wrap');"
        "return wrap.scrollWidth > wrap.clientWidth;"
    )

    browser.open(f"{dashboard.url}/")
    assert luminance(computed(browser, "body", "backgroundColor")) > 0.8
    browser.color_scheme("dark")
    browser.until(
        lambda _: luminance(computed(browser, "body", "backgroundColor")) < 0.05,
        "the background is not dark with prefers-color-scheme: dark",
    )
    assert luminance(computed(browser, "body", "color")) > 0.6
    assert luminance(computed(browser, ".table-wrap", "backgroundColor")) < 0.05


# -- screenshots for the docs -----------------------------------------------------------------

SHOWCASE_QUEUES = ("analytics", "checksums", "imports")
PAUSED_QUEUE = "imports"
WORDS = ("the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "redis", "keeps", "jobs")


@pytest.fixture
def showcase_redis() -> Iterator[RedisServerProcess]:
    """A redis-server holding the showcase alone, so the overview lists its queues only
    (requested before the worker, so it stops after it)."""
    with RedisServerProcess() as server:
        yield server


@pytest.fixture
def showcase_client(showcase_redis: RedisServerProcess) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(showcase_redis.url)
    yield client
    client.close()


def seed_earlier_traffic(client: redis.Redis, queue: str, seed: int) -> tuple[int, int]:
    """An hour of earlier throughput, written as workers write it (producer.history), so the
    charts in the docs show a working hour rather than one minute; returns (ok, failed).

    The minutes seeded end one before the current one and leave the oldest of the window
    free, so none falls out of the chart if the minute turns during the test."""
    rng = random.Random(seed)
    now = minute_of(time.time())
    key = QueueKeys(queue).history
    total_ok = total_failed = 0
    pipe = client.pipeline(transaction=False)
    for age in range(1, 59):
        wave = 1 + 0.6 * math.sin((now - age) / 7 + seed)
        ok = max(0, round(rng.gauss(18 * wave, 4)))
        failed = rng.choice((0, 0, 0, 1, 2)) if age % 3 else rng.randint(0, 5)
        pipe.hincrby(key, history_field(now - age, OK), ok)
        if failed:
            pipe.hincrby(key, history_field(now - age, FAILED), failed)
        total_ok += ok
        total_failed += failed
    pipe.expire(key, HISTORY_TTL_S)
    pipe.execute()
    return total_ok, total_failed


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 9)))


# What `push_showcase_jobs` has the worker run, per queue: (succeeded, dead).
SHOWCASE_RUNS = {"analytics": (24, 3), "checksums": (16, 2), PAUSED_QUEUE: (0, 0)}


def push_showcase_jobs(producer: Producer) -> list[str]:
    """Jobs of the example tasks on the three queues; returns the ids of the divisions by
    zero (dead, with a ZeroDivisionError traceback)."""
    rng = random.Random(7)
    for _ in range(24):
        producer.push("examples.word_count", sentence(rng), _queue="analytics")
    divisions_by_zero = [
        producer.push("examples.divide", n, 0, _queue="analytics", _max_attempts=1)
        for n in (12, 47, 86)
    ]
    for n in range(16):
        producer.push("examples.checksum", f"invoice-{n:04}.pdf", _queue="checksums")
    for _ in range(2):
        producer.push(
            "examples.checksum", "report.csv", "sha3_1024", _queue="checksums", _max_attempts=1
        )
    for _ in range(9):
        producer.push("examples.word_count", sentence(rng), _queue=PAUSED_QUEUE)
    for minutes in (10, 25, 40):
        producer.push(
            "examples.checksum", f"batch-{minutes}.tar", _queue=PAUSED_QUEUE, _delay=minutes * 60
        )
    return divisions_by_zero


def test_screenshots_for_the_docs(
    showcase_redis: RedisServerProcess,
    showcase_client: redis.Redis,
    start_worker: Callable[..., WorkerProcess],
    start_dashboard: Callable[..., DashboardProcess],
    browser: Browser,
    screenshots_dir: Path,
) -> None:
    seeded = {
        queue: seed_earlier_traffic(showcase_client, queue, seed)
        for seed, queue in enumerate(SHOWCASE_QUEUES)
    }
    with Producer(showcase_redis.url) as producer:
        producer.pause(PAUSED_QUEUE)  # its jobs stay waiting, for the queue page
        start_worker(
            env={
                "COROQ_REDIS_URL": showcase_redis.url,
                "COROQ_QUEUES": ",".join(SHOWCASE_QUEUES),
                "COROQ_TASKS": "worker.tasks.examples",
                **FAST_BEATS,
            }
        )
        divisions_by_zero = push_showcase_jobs(producer)
    expected = {
        queue: (ok + SHOWCASE_RUNS[queue][0], failed + SHOWCASE_RUNS[queue][1])
        for queue, (ok, failed) in seeded.items()
    }

    def totals() -> dict[str, tuple[int, int]]:
        history = read_history(
            showcase_client, [QueueKeys(q) for q in SHOWCASE_QUEUES], now=time.time()
        )
        return {
            queue: (sum(m.ok for m in minutes), sum(m.failed for m in minutes))
            for queue, minutes in history.items()
        }

    wait_for(lambda: totals() == expected)  # every job ran and the worker's beat counted it
    dashboard = start_dashboard(redis_url=showcase_redis.url)

    browser.open(f"{dashboard.url}/")
    for queue in SHOWCASE_QUEUES:
        assert browser.find_all(f'tr[data-queue="{queue}"]'), queue
    assert len(browser.find_all('section[aria-labelledby="workers-h"] tbody tr')) == 1
    bars = browser.script(
        "return [...document.querySelectorAll('figure.chart rect.ok')]"
        ".filter((bar) => bar.getBBox().height > 0).length;"
    )
    assert bars > 30, "the chart shows too few bars"
    browser.screenshot(screenshots_dir / "dashboard-overview.png")

    browser.open(f"{dashboard.url}/queues/{PAUSED_QUEUE}")
    assert len(browser.find_all("main tbody tr")) == 9
    browser.screenshot(screenshots_dir / "dashboard-queue.png")

    browser.open(f"{dashboard.url}/queues/analytics/jobs/{divisions_by_zero[0]}")
    assert "ZeroDivisionError" in browser.text("details[open] pre")
    browser.screenshot(screenshots_dir / "dashboard-job.png")

    browser.open(f"{dashboard.url}/queues/analytics/dead")
    assert len(browser.find_all("main tbody tr")) == 3
    browser.screenshot(screenshots_dir / "dashboard-dead-letters.png")

    browser.color_scheme("dark")
    browser.open(f"{dashboard.url}/")
    browser.screenshot(screenshots_dir / "dashboard-overview-dark.png")

    browser.color_scheme("light")
    browser.viewport(*PHONE, phone=True)
    browser.open(f"{dashboard.url}/")
    browser.screenshot(screenshots_dir / "dashboard-phone.png")

    for name in ("overview", "queue", "job", "dead-letters", "overview-dark", "phone"):
        assert (screenshots_dir / f"dashboard-{name}.png").stat().st_size > 10_000, name
