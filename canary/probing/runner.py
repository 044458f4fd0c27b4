"""Running one transaction against one target: entrypoint, steps, retries, captures, teardown."""

from __future__ import annotations

import json
import logging
import os
import random
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

import requests
from requests.cookies import RequestsCookieJar

from canary.probing import assertions
from canary.probing.http import Failure, ProbeSession, Response, send
from canary.probing.redact import Redactor
from canary.probing.result import StepResult, TransactionResult
from canary.probing.target import Target, origin, resolve
from canary.transactions.headers import check_header_value
from canary.transactions.models import Retry, Step, Transaction
from canary.transactions.templating import Context, RenderError, render_str, render_value, to_text

log = logging.getLogger(__name__)

USER_AGENT = "canary-probe/1"
MAX_ERROR = 1000
_CONTENT_TYPES = {
    "json": "application/json",
    "form": "application/x-www-form-urlencoded",
    "xml": "application/xml",
}
# Overridable in tests so that retries do not slow the suite down.
sleep: Callable[[float], None] = time.sleep


def run_transaction(
    tx: Transaction,
    target: Target,
    *,
    session: requests.Session | None = None,
    env: Mapping[str, str] | None = None,
    now: Callable[[], float] = time.time,
) -> TransactionResult:
    """Run ``tx`` once against ``target``; whatever the target does, a result comes back.

    Cookies live for this run only, even with a caller's session (its jar is swapped out and
    restored), so a session must not be shared by two runs at the same time.
    """
    started = now()
    t0 = time.perf_counter()
    sess = session if session is not None else ProbeSession()
    saved = sess.cookies
    sess.cookies = RequestsCookieJar()
    run = _Run(tx, target, sess, os.environ if env is None else env, now)
    try:
        run.execute()
    except Exception as exc:  # a bug here must cost one failed result, never a worker
        # Not log.exception: the traceback's messages may quote a secret.
        log.error("transaction %s crashed\n%s", tx.name, run.clean(traceback.format_exc()))
        run.fail(f"internal error: {type(exc).__name__}: {exc}")
    finally:
        sess.cookies = saved
        if session is None:
            sess.close()
    return TransactionResult(
        t=started,
        version=target.version,
        transaction=tx.name,
        ok=run.error is None,
        latency_ms=round((time.perf_counter() - t0) * 1000, 3),
        status=run.status,
        error=run.error,
        steps=run.steps,
    )


class _Run:
    def __init__(
        self,
        tx: Transaction,
        target: Target,
        session: requests.Session,
        env: Mapping[str, str],
        now: Callable[[], float],
    ) -> None:
        self.tx = tx
        self.target = target
        self.session = session
        self.ctx = Context(variables={}, env=env, now=now)
        self.redact = Redactor()
        self.entry_origin = origin(tx.entrypoint_url)
        self.steps: list[StepResult] = []
        self.status: int | None = None
        self.error: str | None = None

    def fail(self, message: str) -> None:
        if self.error is None:
            text = self.clean(message)
            self.error = text if len(text) <= MAX_ERROR else text[:MAX_ERROR] + "…"

    def clean(self, text: str) -> str:
        for s in self.ctx.secrets:
            self.redact.add(s)
        return self.redact.text(text)

    def _holds_secret(self, body: bytes | None) -> bool:
        if not body:
            return False
        for s in self.ctx.secrets:
            self.redact.add(s)
        return self.redact.found(body.decode(errors="replace"))

    def execute(self) -> None:
        for name, value in self.tx.variables.items():
            try:
                self.ctx.variables[name] = render_value(value, self.ctx)
            except RenderError as exc:
                self.fail(f"variables.{name}: {exc}")
                return
        entry = Step(method="GET", url=self.tx.entrypoint_url)
        if self._step("entrypoint", "entrypoint", entry, entrypoint=True):
            for i, step in enumerate(self.tx.steps):
                title = f"step {i + 1}" + (f" {step.name!r}" if step.name else "")
                if not self._step(step.name or f"step {i + 1}", title, step):
                    break
        # Teardown runs whatever happened above, each step on its own.
        for i, step in enumerate(self.tx.finally_):
            title = f"finally step {i + 1}" + (f" {step.name!r}" if step.name else "")
            self._step(step.name or f"finally {i + 1}", title, step, teardown=True)

    def _step(
        self,
        label: str,
        title: str,
        step: Step,
        *,
        entrypoint: bool = False,
        teardown: bool = False,
    ) -> bool:
        if step.delay:
            sleep(step.delay)
        method = step.method
        try:
            url, headers, auth, body = self._prepare(step)
        except RenderError as exc:
            if teardown and exc.variable is not None:
                # Nothing to tear down: the step that would have created it never ran.
                log.debug("%s skipped: %s", title, exc)
                return True
            self._record(label, method, step.url, None, 0.0, str(exc), 1, None)
            self.fail(f"{title} ({method} {step.url}): {exc}")
            return False
        policy = step.retry or self.tx.retry
        attempts = policy.attempts if policy else 1
        timeout = step.timeout or self.tx.timeout
        number = 0  # attempts recorded, including resends on a new connection
        for attempt in range(1, attempts + 1):
            outcome = send(
                self.session,
                method,
                url,
                headers=headers,
                body=body,
                params=[],
                auth=auth,
                timeout=timeout,
                redirects="stay" if entrypoint else step.follow_redirects,
                secret_body=self._holds_secret(body),
                rewrite=self._repoint,
                verify=self.tx.verify_tls,
            )
            condition: str | None
            if isinstance(outcome, Failure):
                reason: str | None = outcome.message
                condition = outcome.kind
                status = outcome.status
                if status is not None:
                    self.status = status
            else:
                status = self.status = outcome.status
                reason = self._evaluate(step, outcome, entrypoint)
                condition = "5xx" if 500 <= status <= 599 else "429" if status == 429 else None
            if outcome.resent is not None:
                number += 1
                first = outcome.resent
                self._record(
                    label, method, url, None, first.elapsed_ms, first.message, number, first
                )
            number += 1
            self._record(label, method, url, status, outcome.elapsed_ms, reason, number, outcome)
            if reason is None:
                return True
            if policy and attempt < attempts and condition in policy.when:
                sleep(_backoff(policy, attempt, outcome))
                continue
            tries = f" (attempt {attempt} of {attempts})" if attempt > 1 else ""
            self.fail(f"{title} ({method} {url}){tries}: {reason}")
            return False
        return False  # pragma: no cover - the loop always returns

    def _repoint(self, url: str) -> str:
        return resolve(url, self.target.base_url, self.entry_origin)

    def _prepare(
        self, step: Step
    ) -> tuple[str, dict[str, str], tuple[str, str] | None, bytes | None]:
        ctx = self.ctx
        url = resolve(render_str(step.url, ctx), self.target.base_url, self.entry_origin)
        params: list[tuple[str, str]] = []
        for key, value in step.query.items():
            for item in value if isinstance(value, list) else [value]:
                params.append((key, to_text(render_value(item, ctx))))
        if params:
            # Built here rather than by requests so that results show the URL actually requested.
            url += ("&" if "?" in url else "?") + urlencode(params)
        headers = {"User-Agent": USER_AGENT}
        for source in (self.tx.headers, step.headers):
            for name, template in source.items():
                headers[name] = _header_value(name, render_str(template, ctx))
        auth: tuple[str, str] | None = None
        spec = step.auth or self.tx.auth
        # Credentials are secrets whether or not they came from secret.NAME.
        if spec is not None and spec.basic is not None:
            auth = (render_str(spec.basic.username, ctx), render_str(spec.basic.password, ctx))
            self.redact.add_basic(*auth)
        elif spec is not None and spec.bearer is not None:
            token = render_str(spec.bearer, ctx)
            self.redact.add(token)
            headers["Authorization"] = _header_value("Authorization", "Bearer " + token)
        body: bytes | None = None
        kind = step.body_kind()
        if kind is not None:
            payload = render_value(step.payload, ctx)
            if kind == "json":
                body = json.dumps(payload, ensure_ascii=False).encode()
            elif kind == "form":
                fields = payload.items() if isinstance(payload, dict) else []
                body = urlencode([(k, to_text(v)) for k, v in fields]).encode()
            else:
                body = to_text(payload).encode()
            if kind in _CONTENT_TYPES and not any(k.lower() == "content-type" for k in headers):
                headers["Content-Type"] = _CONTENT_TYPES[kind]
        # The target's headers win: they are what routes a request to the right version.
        headers.update(self.target.headers)
        return url, headers, auth, body

    def _evaluate(self, step: Step, resp: Response, entrypoint: bool) -> str | None:
        if entrypoint:
            if resp.status >= 400:
                return f"status {resp.status}, expected below 400{_snippet(resp)}"
            return None
        if not step.accepted(resp.status):
            want = step.expected_response_code
            expected = "200-299" if want is None else assertions.shown(want)
            return f"status {resp.status}, expected {expected}{_snippet(resp)}"
        for i, check in enumerate(step.response_validation):
            why = assertions.check(check, resp, self.ctx)
            if why:
                return f"response_validation[{i}] {assertions.describe(check)}: {why}"
        if not step.capture:
            return None
        jar = {c.name: c.value for c in self.session.cookies if c.value is not None}
        captured: dict[str, Any] = {}
        for name, cap in step.capture.items():
            ok, value = assertions.capture(name, cap, resp, jar)
            if not ok:
                return str(value)
            captured[name] = value
            if cap.secret and value is not None:
                self.redact.add(to_text(value))
        self.ctx.variables.update(captured)
        return None

    def _record(
        self,
        label: str,
        method: str,
        url: str,
        status: int | None,
        elapsed_ms: float,
        error: str | None,
        attempt: int,
        outcome: Response | Failure | None,
    ) -> None:
        clean_url = self.clean(url)
        clean_error = self.clean(error) if error else None
        resp = outcome if isinstance(outcome, Response) else None
        self.steps.append(
            StepResult(
                name=label,
                method=method,
                url=clean_url,
                ok=error is None,
                latency_ms=round(elapsed_ms, 3),
                status=status,
                error=clean_error,
                attempt=attempt,
                size_bytes=len(resp.body) if resp else None,
                truncated=resp.truncated if resp else False,
            )
        )
        log.debug("%s %s %s attempt %d: %s", label, method, clean_url, attempt, clean_error or "ok")


def _header_value(name: str, value: str) -> str:
    """A rendered header value, refused (without quoting it) when it cannot be sent as is."""
    try:
        check_header_value(value)
    except ValueError as exc:
        raise RenderError(f"header {name}: {exc} after rendering its templates") from None
    return value


def _backoff(policy: Retry, attempt: int, outcome: Response | Failure) -> float:
    wait = min(policy.max_backoff, policy.backoff * 2 ** (attempt - 1))
    # Jitter spreads the retries of many workers so they do not hit a struggling target in step.
    wait *= random.uniform(0.5, 1.0)
    if isinstance(outcome, Response):
        after = outcome.headers.get("Retry-After", "")
        if after.strip().isdigit():
            wait = max(wait, min(float(after), policy.max_backoff))
    return wait


def _snippet(resp: Response) -> str:
    text = " ".join(resp.text[:400].split())
    if not text:
        return ""
    return f" (body: {assertions.shown(text)})"
