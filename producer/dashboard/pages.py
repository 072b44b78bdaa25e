"""The dashboard's routes: pages (GET) and actions (POST, then back to the page).

Redis is read with the blocking client in worker threads (`asyncio.to_thread`), so the
readers and actions are the same code the CLI verbs use. The overview is read at most once
per interval whatever the number of open pages (`OverviewCache`).
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import jinja2
import redis
import structlog
from aiohttp import web

from producer.connection import redact_url, sync_client
from producer.dashboard import browsing, filters
from producer.dashboard.access import AUTH_COOKIE, CSRF_FIELD, Access, safe_next
from producer.dashboard.actions import Actions
from producer.dashboard.cache import OverviewCache
from producer.dashboard.chart import draw
from producer.dashboard.overview import OverviewReader
from producer.dashboard.settings import DashboardSettings
from producer.errors import CoroqError
from producer.keys import QueueKeys
from producer.schedules_view import read_schedules

HERE = Path(__file__).parent
log = structlog.get_logger()
T = TypeVar("T")
SETTINGS: web.AppKey[DashboardSettings] = web.AppKey("settings", DashboardSettings)
STATE: web.AppKey[Dashboard] = web.AppKey("state", object)  # type: ignore[arg-type]
MAX_FORM_BYTES = 1024 * 1024
MAX_IDS = 1000  # job ids in one form
LOGGED_CHARS = 4000  # of an error or traceback, in the log


class Dashboard:
    def __init__(self, settings: DashboardSettings, client: redis.Redis) -> None:
        self.settings = settings
        self.client = client
        self.access = Access(settings.token, settings.read_only)
        self.actions = Actions(client, settings.prefix)
        self.found = browsing.FoundEnvelopes()  # jobs' bytes, for their pages
        self.overview = OverviewCache(
            OverviewReader(client, settings.prefix, settings.queues),
            settings.refresh,
            settings.redis_budget,
        )
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,  # every value from Redis is text, never markup
            undefined=jinja2.StrictUndefined,
        )
        self.templates.globals["static"] = filters.static_urls()
        self.templates.globals["envelope"] = browsing.Envelope
        self.templates.filters["when"] = filters.when
        self.templates.filters["ago"] = filters.ago
        self.templates.filters["pretty_json"] = filters.pretty_json
        self.templates.filters["clip"] = filters.clip
        self.templates.filters["urlencode"] = filters.url_part  # jinja's keeps "/" as it is

    def keys(self, queue: str) -> QueueKeys:
        try:
            keys = QueueKeys(queue, self.settings.prefix)
        except CoroqError as exc:
            raise web.HTTPNotFound(text=str(exc)) from None
        if self.settings.queues and queue not in self.settings.queues:
            raise web.HTTPNotFound(text=f"queue {queue} is not shown by this dashboard")
        return keys

    def render(
        self, request: web.Request, template: str, status: int = 200, **values: Any
    ) -> web.Response:
        page = self.templates.get_template(template).render(
            csrf_field=CSRF_FIELD,
            csrf=self.access.csrf_token(request),
            read_only=self.settings.read_only,
            with_token=self.settings.token is not None,
            path=request.path_qs,
            now=time.time(),
            refresh=self.settings.refresh,
            read_every=self.overview.interval,
            fragment=request.headers.get("X-Coroq-Fragment") == "1",
            notice=request.query.get("notice", "")[:200],
            **values,
        )
        return web.Response(text=page, content_type="text/html", status=status)


async def _redis(call: Callable[..., T], *args: Any) -> T:
    return await asyncio.to_thread(call, *args)


def _state(request: web.Request) -> Dashboard:
    return request.app[STATE]


def _offset(request: web.Request, name: str = "offset") -> int:
    raw = request.query.get(name, "0")
    if not raw.isdigit() or len(raw) > 12:
        raise web.HTTPBadRequest(text=f"{name}={raw[:40]!r}: give a whole number >= 0")
    return int(raw)


# -- pages ------------------------------------------------------------------------------------


async def overview_page(request: web.Request) -> web.Response:
    state = _state(request)
    overview = await state.overview.get()
    return state.render(request, "overview.html", overview=overview, chart=draw(overview.history))


async def queue_page(request: web.Request) -> web.Response:
    state = _state(request)
    keys = state.keys(request.match_info["queue"])
    tab = request.query.get("tab", "ready")
    offset = _offset(request)
    overview = await state.overview.get()
    row = overview.queue(keys.queue)
    if row is None:  # a queue that appeared since the last read
        state.overview.include(keys.queue)
        overview = await state.overview.get()
        row = overview.queue(keys.queue)
    page: browsing.Page | None = None
    running: list[tuple[str, browsing.Envelope]] = []
    if tab == "ready":
        page = await _redis(browsing.ready_page, state.client, keys, offset)
    elif tab == "delayed":
        page = await _redis(browsing.delayed_page, state.client, keys, offset)
    elif tab == "running":
        workers = [worker.worker_id for worker in overview.workers if keys.queue in worker.queues]
        running = await _redis(_running_jobs, state.client, keys, workers)
    else:
        raise web.HTTPBadRequest(text=f"tab={tab[:40]!r}: give ready, delayed or running")
    history = row.history if row is not None else ()
    return state.render(
        request,
        "queue.html",
        queue=keys.queue,
        row=row,
        tab=tab,
        page=page,
        running=running,
        page_size=browsing.PAGE_SIZE,
        chart=draw(history),
    )


def _running_jobs(
    client: redis.Redis, keys: QueueKeys, workers: list[str]
) -> list[tuple[str, browsing.Envelope]]:
    pipe = client.pipeline(transaction=False)
    for worker in workers:
        pipe.lrange(keys.processing(worker), 0, -1)
    return [
        (worker, browsing.Envelope(raw))
        for worker, raws in zip(workers, pipe.execute(), strict=True)
        for raw in raws
    ]


async def job_page(request: web.Request) -> web.Response:
    state = _state(request)
    keys = state.keys(request.match_info["queue"])
    job_id = request.match_info["job_id"]
    view = await _redis(browsing.read_job, state.client, keys, job_id, state.found)
    if view is None:
        return state.render(request, "missing.html", queue=keys.queue, job_id=job_id, status=404)
    return state.render(request, "job.html", view=view, queue=keys.queue)


async def find_job(request: web.Request) -> web.StreamResponse:
    """The search box: a job id, in the queue given or in any queue that has its record."""
    state = _state(request)
    job_id = request.query.get("id", "").strip()
    if not job_id or len(job_id) > 256:
        raise web.HTTPBadRequest(text="give a job id (1 to 256 characters)")
    queue = request.query.get("queue", "")
    if queue:
        queues = [state.keys(queue).queue]
    else:
        queues = await _redis(state.overview.known_queues)
    found = await _redis(_queue_with_record, state.client, state.settings.prefix, queues, job_id)
    if found is None and len(queues) == 1:
        found = queues[0]  # the job page says what is known of it
    if found is None:
        return state.render(request, "missing.html", queue=None, job_id=job_id, status=404)
    raise web.HTTPSeeOther(f"/queues/{found}/jobs/{_path(job_id)}")


def _queue_with_record(
    client: redis.Redis, prefix: str, queues: list[str], job_id: str
) -> str | None:
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        pipe.exists(QueueKeys(queue, prefix).job(job_id))
    return next((q for q, there in zip(queues, pipe.execute(), strict=True) if there), None)


def _dead_filter(values: Mapping[str, Any]) -> browsing.DeadFilter:
    return browsing.DeadFilter(
        task=str(values.get("task", ""))[:200],
        reason=str(values.get("reason", ""))[:100],
        text=str(values.get("q", ""))[:500],
    )


async def dead_page(request: web.Request) -> web.Response:
    state = _state(request)
    keys = state.keys(request.match_info["queue"])
    where = _dead_filter(request.query)
    start = _offset(request, "start")
    page = await _redis(browsing.dead_page, state.client, keys, where, start)
    tasks, reasons = await _redis(browsing.dead_facets, state.client, keys)
    query = where.query()
    return state.render(
        request,
        "dead.html",
        queue=keys.queue,
        page=page,
        where=where,
        tasks=tasks,
        reasons=reasons,
        next_url=None
        if page.next_start is None
        else f"?{urlencode({**query, 'start': page.next_start})}",
        filter_query=urlencode(query),
    )


async def schedules_page(request: web.Request) -> web.Response:
    state = _state(request)
    # The queues known to the overview: no SCAN of the keyspace for this page.
    queues = list(state.settings.queues) or await _redis(state.overview.known_queues)
    schedules = await _redis(read_schedules, state.client, state.settings.prefix, queues)
    return state.render(request, "schedules.html", schedules=schedules)


async def workers_page(request: web.Request) -> web.Response:
    state = _state(request)
    overview = await state.overview.get()
    return state.render(request, "workers.html", overview=overview)


async def login_page(request: web.Request) -> web.Response:
    state = _state(request)
    if state.settings.token is None:
        raise web.HTTPSeeOther("/")
    return state.render(request, "login.html", next=safe_next(request.query.get("next", "/")))


async def login(request: web.Request) -> web.Response:
    state = _state(request)
    form = await request.post()
    target = safe_next(str(form.get("next", "/")))
    if not state.access.token_matches(str(form.get("token", ""))):
        await asyncio.sleep(0.5)  # slows guessing
        return state.render(request, "login.html", next=target, wrong=True, status=401)
    response = web.HTTPSeeOther(target)
    response.set_cookie(
        AUTH_COOKIE,
        state.access.auth_cookie_value(),
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        path="/",
    )
    raise response


# -- actions ----------------------------------------------------------------------------------


async def queue_action(request: web.Request) -> web.Response:
    state = _state(request)
    keys = state.keys(request.match_info["queue"])
    action = request.match_info["action"]
    if action == "pause":
        await _redis(state.actions.pause, keys)
    elif action == "resume":
        await _redis(state.actions.resume, keys)
    else:
        raise web.HTTPNotFound(text=f"no action {action[:40]!r} on a queue")
    state.overview.forget()
    raise web.HTTPSeeOther(f"/queues/{keys.queue}")


async def job_action(request: web.Request) -> web.Response:
    state = _state(request)
    keys = state.keys(request.match_info["queue"])
    job_id = request.match_info["job_id"]
    action = request.match_info["action"]
    if action == "cancel":
        outcome = await _redis(state.actions.cancel, keys, job_id)
        message = str(outcome)
    elif action == "retry":
        done = await _redis(state.actions.retry, keys, [job_id])
        message = "sent back to the queue" if done else "not in the dead list any more"
    elif action == "delete":
        done = await _redis(state.actions.delete, keys, [job_id])
        message = "deleted" if done else "not in the dead list any more"
    else:
        raise web.HTTPNotFound(text=f"no action {action[:40]!r} on a job")
    state.overview.forget()
    form = await request.post()
    back = safe_next(str(form.get("back", ""))) if form.get("back") else None
    target = back or f"/queues/{keys.queue}/jobs/{_path(job_id)}"
    raise web.HTTPSeeOther(_with_notice(target, message))


async def dead_action(request: web.Request) -> web.Response:
    state = _state(request)
    keys = state.keys(request.match_info["queue"])
    action = request.match_info["action"]
    form = await request.post()
    where = _dead_filter(form)
    every = form.get("every") == "1"
    ids = [str(value) for value in form.getall("id", [])][:MAX_IDS]
    if not every and not ids:
        raise web.HTTPBadRequest(text="select jobs first (or act on every job matching the filter)")
    actions = state.actions
    if action not in ("retry", "delete"):
        raise web.HTTPNotFound(text=f"no action {action[:40]!r} on dead jobs")
    if every:
        matching = actions.retry_matching if action == "retry" else actions.delete_matching
        done = await _redis(matching, keys, where)
    else:
        chosen = actions.retry if action == "retry" else actions.delete
        done = len(await _redis(chosen, keys, ids))
    state.overview.forget()
    verb = "sent back to the queue" if action == "retry" else "deleted"
    query = urlencode(where.query())
    raise web.HTTPSeeOther(_with_notice(f"/queues/{keys.queue}/dead?{query}", f"{done} {verb}"))


# -- the app ----------------------------------------------------------------------------------


@web.middleware
async def page_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """A page that cannot reach Redis, or fails, says so, and the dashboard stays up."""
    try:
        response: web.StreamResponse = await handler(request)
    except redis.RedisError as exc:
        state = _state(request)
        url = redact_url(state.settings.redis_url)
        message = f"Redis at {url}: {exc}"
        return state.render(
            request, "error.html", heading="Cannot read Redis", message=message, status=503
        )
    except web.HTTPException:
        raise
    except Exception as exc:  # noqa: BLE001 - a page must not take the dashboard down
        # The traceback as text, cut: a rendered one with its locals could hold a whole job.
        log.error(
            "dashboard.page_failed",
            path=request.path,
            error=f"{type(exc).__name__}: {exc}"[:LOGGED_CHARS],
            traceback=traceback.format_exc()[-LOGGED_CHARS:],
        )
        message = f"this page failed ({type(exc).__name__}); the dashboard's log has the details"
        return _state(request).render(
            request, "error.html", heading="This page failed", message=message, status=500
        )
    return response


def create_app(settings: DashboardSettings, client: redis.Redis | None = None) -> web.Application:
    app = web.Application(client_max_size=MAX_FORM_BYTES)
    state = Dashboard(settings, client if client is not None else sync_client(settings.redis_url))
    app[SETTINGS] = settings
    app[STATE] = state
    app.middlewares.extend([state.access.middleware, page_errors])
    app.router.add_get("/", overview_page)
    app.router.add_get("/workers", workers_page)
    app.router.add_get("/schedules", schedules_page)
    app.router.add_get("/job", find_job)
    app.router.add_get("/queues/{queue}", queue_page)
    app.router.add_post("/queues/{queue}/{action:pause|resume}", queue_action)
    app.router.add_get("/queues/{queue}/dead", dead_page)
    app.router.add_post("/queues/{queue}/dead/{action}", dead_action)
    # Ids may hold any character, "/" too: the id runs to the end (or to the action).
    app.router.add_get("/queues/{queue}/jobs/{job_id:.+}", job_page)
    app.router.add_post("/queues/{queue}/jobs/{job_id:.+}/{action:cancel|retry|delete}", job_action)
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login)
    app.router.add_static("/static/", HERE / "static")
    return app


def _path(job_id: str) -> str:
    return quote(job_id, safe="")


def _with_notice(target: str, message: str) -> str:
    joiner = "&" if "?" in target else "?"
    return f"{target}{joiner}{urlencode({'notice': message[:200]})}"
