"""The dashboard's Starlette app: pages, server-sent event streams, the report, operator actions."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from canary import report
from canary.dashboard import render
from canary.dashboard.auth import Credentials
from canary.dashboard.view import ACTIONS, list_rollouts, rollout_view
from canary.errors import CanaryError
from canary.report.svg import CHART_CSS
from canary.store import Store

log = logging.getLogger(__name__)
STATIC = Path(__file__).with_name("static")
# Pages allow only our own script and stylesheet: a value that slipped past escaping still
# could not run.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
OPEN_PATHS = frozenset({"/healthz"})


class BasicAuth:
    """ASGI middleware: every path but the health check needs the log-in, streams included."""

    def __init__(self, app: ASGIApp, credentials: Credentials) -> None:
        self.app = app
        self.credentials = credentials

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        header = headers.get(b"authorization", b"").decode("latin-1")
        if self.credentials.check_basic(header):
            await self.app(scope, receive, send)
            return
        response = PlainTextResponse(
            "401: log in with the dashboard's user and password (CANARY_DASHBOARD_PASSWORD)",
            status_code=401,
            headers={"WWW-Authenticate": 'Basic realm="canary dashboard", charset="UTF-8"'},
        )
        await response(scope, receive, send)


class SecurityHeaders:
    """ASGI middleware: no framing, no sniffing, no referrer, no caching of rollout data."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                names = {k.lower() for k, _ in headers}
                for k, v in (
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"cache-control", b"no-store"),
                    (b"content-security-policy", PAGE_CSP.encode()),
                ):
                    if k not in names:
                        headers.append((k, v))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def _sse(event: str, payload: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(payload)}\n\n"


def create_app(
    redis_url: str,
    store: Store,
    credentials: Credentials,
    *,
    poll_s: float = 1.0,
    limit: int = 30,
) -> ASGIApp:
    """The dashboard on ``store`` (the fleet at ``redis_url``, where its buttons send commands);
    ``poll_s`` is how often streams look for changes."""

    def csrf() -> str:
        return credentials.csrf_token()

    async def index(request: Request) -> Response:
        summaries = await run_in_threadpool(list_rollouts, store, limit)
        return HTMLResponse(render.page("rollouts", "/stream", render.fleet(summaries), csrf()))

    async def detail(request: Request) -> Response:
        rid = request.path_params["rollout_id"]
        view = await run_in_threadpool(rollout_view, store, rid)
        if view is None:
            return HTMLResponse(
                render.page("unknown rollout", "", render.unknown(rid), csrf(), back=True),
                status_code=404,
            )
        body = render.rollout(view)
        return HTMLResponse(
            render.page(view.summary.name, f"/rollouts/{rid}/stream", body, csrf(), back=True)
        )

    async def stream(
        request: Request, fragment: Callable[[], tuple[str, bool]]
    ) -> AsyncIterator[str]:
        """Send the fragment now, then again whenever it changes, until it says it is final."""
        last, idle = "", 0.0
        yield "retry: 2000\n\n"
        while not await request.is_disconnected():
            try:
                body, final = await run_in_threadpool(fragment)
                if body != last:
                    yield _sse("update", {"html": body})
                    last, idle = body, 0.0
                if final:
                    yield _sse("final", {})
                    return
            except CanaryError as exc:
                # Redis away: say so on the page and try again; the page keeps what it shows.
                yield _sse("trouble", {"message": str(exc)})
            if idle >= 15.0:
                yield ": ping\n\n"
                idle = 0.0
            await asyncio.sleep(poll_s)
            idle += poll_s

    async def fleet_stream(request: Request) -> Response:
        def fragment() -> tuple[str, bool]:
            return render.fleet(list_rollouts(store, limit)), False

        return _event_stream(stream(request, fragment))

    async def rollout_stream(request: Request) -> Response:
        rid = request.path_params["rollout_id"]

        def fragment() -> tuple[str, bool]:
            # Re-rendered at every poll: results arrive in batches that append no event.
            view = rollout_view(store, rid)
            if view is None:
                return render.unknown(rid), True
            return render.rollout(view), view.summary.final

        return _event_stream(stream(request, fragment))

    async def full_report(request: Request) -> Response:
        rid = request.path_params["rollout_id"]
        try:
            data = await run_in_threadpool(report.from_store, store, rid)
        except CanaryError as exc:
            return PlainTextResponse(str(exc), status_code=404)
        return HTMLResponse(report.render(data), headers={"Content-Security-Policy": REPORT_CSP})

    async def action(request: Request) -> Response:
        rid, command = request.path_params["rollout_id"], request.path_params["action"]
        if not credentials.check_csrf(request.headers.get("x-csrf-token")):
            return JSONResponse({"ok": False, "message": "missing or wrong CSRF token"}, 403)
        origin = request.headers.get("origin")
        host = request.headers.get("host", "")
        if origin is not None and origin.split("://", 1)[-1] != host:
            return JSONResponse({"ok": False, "message": "cross-origin request refused"}, 403)
        if command not in ACTIONS:
            known = ", ".join(ACTIONS)
            return JSONResponse({"ok": False, "message": f"unknown action; known: {known}"}, 404)
        ok, message, status = await run_in_threadpool(send_command, redis_url, store, rid, command)
        log.info("dashboard: %s %s: %s", command, rid, message)
        return JSONResponse({"ok": ok, "message": message}, status)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def chart_css(request: Request) -> Response:
        return Response(CHART_CSS, media_type="text/css")

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/stream", fleet_stream),
            Route("/healthz", healthz),
            Route("/charts.css", chart_css),
            Route("/rollouts/{rollout_id}", detail),
            Route("/rollouts/{rollout_id}/stream", rollout_stream),
            Route("/rollouts/{rollout_id}/report", full_report),
            Route("/rollouts/{rollout_id}/actions/{action}", action, methods=["POST"]),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ]
    )
    return SecurityHeaders(BasicAuth(app, credentials))


def _event_stream(body: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(
        body,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


# A button waits this long for the control worker's answer before saying the command was sent.
ACTION_WAIT_S = 5.0


def send_command(url: str, store: Store, rollout_id: str, command: str) -> tuple[bool, str, int]:
    """The CLI's path (`canary rollout abort` ...): refuse a finished rollout, else send the task."""
    from canary.cli.commands import send_command as send

    sent = send(url, store, rollout_id, command, wait_s=ACTION_WAIT_S)
    return sent.ok, sent.message, sent.status
