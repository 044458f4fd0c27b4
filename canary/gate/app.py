"""The gate's HTTP app (Starlette): routes, authentication, and errors as JSON answers."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from canary.errors import CanaryError, ConfigError, StoreError
from canary.gate.analyses import Analyses, AnalysisRequest
from canary.gate.argo import VerdictBody
from canary.gate.auth import authorized
from canary.gate.flagger import HOOKS, FlaggerPayload, status_for
from canary.gate.verdict import Verdict
from canary.probing.redact import Redactor

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
# Flagger waits 10 s for a hook by default: the pre-rollout hook answers within this.
DEFAULT_HOOK_WAIT_S = 8.0


class _Refused(Exception):
    def __init__(self, status: int, error: str, problems: list[str] | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.problems = problems or []


def _problems(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "body"
        msg = "is required" if err["type"] == "missing" else str(err["msg"])
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        out.append(f"{where}: {msg.removeprefix('Value error, ')}")
    return out


async def _parse(request: Request, model: type[BaseModel]) -> Any:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _Refused(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise _Refused(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
    try:
        data = json.loads(body or b"null")
    except ValueError as exc:
        raise _Refused(400, "invalid request", [f"body: not JSON ({exc})"]) from None
    if not isinstance(data, dict):
        raise _Refused(400, "invalid request", ["body: must be a JSON object"])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _Refused(400, "invalid request", _problems(exc)) from None


def _request_of(parsed: VerdictBody | FlaggerPayload) -> AnalysisRequest:
    try:
        return parsed.request()
    except ConfigError as exc:
        raise _Refused(400, "invalid request", str(exc).splitlines()) from None


async def _ensure(analyses: Analyses, request: AnalysisRequest) -> Verdict:
    try:
        return await run_in_threadpool(analyses.ensure, request)
    except ConfigError as exc:
        raise _Refused(400, "invalid request", str(exc).splitlines()) from None


def build_app(
    analyses: Analyses,
    token: str,
    *,
    hook_wait_s: float = DEFAULT_HOOK_WAIT_S,
    secrets: tuple[str, ...] = (),
) -> Starlette:
    """The gate; every route requires ``Authorization: Bearer <token>``.

    ``secrets`` (the Redis password, say) are masked, with the token, in every error answered.
    """
    redact = Redactor([token, *secrets])

    async def unavailable(request: Request, exc: Exception) -> Response:
        # Redis or the broker away: an error, which Argo counts toward consecutiveErrorLimit
        # and Flagger as a failed check, never a pass.
        away = isinstance(exc, StoreError)
        what = "the fleet's Redis is unreachable" if away else "the gate failed"
        detail = redact(str(exc))
        log.warning("%s: %s", what, detail)
        return JSONResponse({"error": f"{what}: {detail}"}, 503)

    async def verdicts(request: Request) -> Response:
        body = await _parse(request, VerdictBody)
        verdict = await _ensure(analyses, _request_of(body))
        return JSONResponse(verdict.to_json())

    async def flagger(request: Request) -> Response:
        hook = request.path_params["hook"]
        if hook not in HOOKS:
            raise _Refused(404, f"unknown hook {hook!r}; known: {', '.join(HOOKS)}")
        payload = await _parse(request, FlaggerPayload)
        wanted = _request_of(payload)
        if hook == "rollback":
            # Polled all through the analysis: it reads, and never starts one.
            found = await run_in_threadpool(analyses.poll, wanted)
            status = status_for(hook, found)
            if found is None:
                return JSONResponse(
                    {"name": wanted.name, "verdict": None, "reasons": ["no such analysis"]}, status
                )
            return JSONResponse(found.to_json(), status)
        verdict = await _ensure(analyses, wanted)
        if hook == "pre-rollout":
            verdict = await _await_isolated(analyses, wanted, verdict, hook_wait_s)
        return JSONResponse(verdict.to_json(), status_for(hook, verdict))

    routes = [
        Route("/v1/verdicts", verdicts, methods=["POST"]),
        Route("/v1/flagger/{hook}", flagger, methods=["POST"]),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(_Guard, token=token)],
        exception_handlers={
            _Refused: _refused,
            CanaryError: unavailable,
        },
    )


async def _await_isolated(
    analyses: Analyses, request: AnalysisRequest, verdict: Verdict, wait_s: float
) -> Verdict:
    """Wait (on the rollout's events, not a timer) for the weight-0 check, up to ``wait_s``."""
    deadline = time.monotonic() + wait_s
    after = "0-0"
    while verdict.isolated == "pending" and verdict.verdict == "running":
        left = deadline - time.monotonic()
        if left <= 0:
            break
        after = await run_in_threadpool(
            analyses.wait_events, request, after, int(min(left, 5.0) * 1000) or 1
        )
        verdict = await run_in_threadpool(analyses.ensure, request)
    return verdict


class _Guard(BaseHTTPMiddleware):
    """Nothing is answered without the token: 401 before any route runs."""

    def __init__(self, app: Any, token: str) -> None:
        super().__init__(app)
        self.token = token

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        if not authorized(request.headers.get("authorization"), self.token):
            return JSONResponse(
                {"error": "unauthorized: send 'Authorization: Bearer <CANARY_GATE_TOKEN>'"},
                401,
                headers={"WWW-Authenticate": 'Bearer realm="canary-gate"'},
            )
        return await call_next(request)


async def _refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, _Refused)
    return JSONResponse({"error": exc.error, "problems": exc.problems}, exc.status)
