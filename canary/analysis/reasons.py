"""The sentences of a decision, for operators: what failed where, both versions' figures, the
tolerance, the verdict in plain words and the evidence as a confidence (never a raw e-value)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from canary.analysis.ledger import Ledger
from canary.analysis.sequential import Moments, mean_difference, normal_mixture_lower
from canary.analysis.tests import ALL, TestOutcome, Wander
from canary.analysis.warmup import WarmupOutcome


def evidence(log_e: float, against: str = "no regression") -> str:
    """An e-value in words: "confidence 99.9%", or "evidence 1 in 10^6 against ..." when large.

    1/e is an anytime-valid p-value, so 1 - 1/e is the confidence that the null is false.
    """
    if not math.isfinite(log_e):
        return f"evidence beyond 1 in 10^300 against {against}" if log_e > 0 else "no evidence"
    if log_e <= 0:
        return "no evidence yet"
    p = math.exp(-log_e)
    if p >= 1e-4:
        digits = max(0, min(3, math.ceil(-math.log10(max(p, 1e-12))) - 2))
        conf = 100.0 * (1.0 - p)
        text = f"{conf:.{digits}f}"
        if float(text) >= 100.0:
            text = f"{conf:.{digits + 1}f}"
        return f"confidence {text}%"
    return f"evidence 1 in 10^{math.floor(log_e / math.log(10.0))} against {against}"


def fmt_pct(log_ratio: float) -> str:
    if not math.isfinite(log_ratio):
        return "n/a"
    return f"{100 * math.expm1(log_ratio):+.1f}%"


def fmt_pp(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{100 * x:+.2f} pp"


def failures(ledger: Ledger, txns: Sequence[str], version: str = "canary", k: int = 3) -> str:
    """ "top failures: 'step 2 pay: status 500' x38, ..." over the rollout, or ""."""
    counts: dict[str, int] = {}
    for txn in txns:
        for msg, n in ledger.top_messages(txn, version, k=12):
            label = msg if len(txns) == 1 else f"{txn}: {msg}"
            counts[label] = counts.get(label, 0) + n
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
    if not top:
        return ""
    # Quoted as written: repr() would escape the quotes of a body already quoted in the message.
    return "; top failures: " + ", ".join(f"'{_one_line(m)}' x{n}" for m, n in top)


def _one_line(msg: str) -> str:
    return " ".join(msg.split())


def slowest_step(ledger: Ledger, txns: Sequence[str]) -> str:
    """ "; the slow step is 'pay' (canary 310 ms vs stable 120 ms typical)", or "" when the
    transactions have one step each (or no step is slower)."""
    found = ledger.slowest_step(txns)
    if found is None:
        return ""
    txn, step, cm, sm = found
    where = f"{step!r}" if len(txns) == 1 else f"{step!r} of {txn}"
    return (
        f"; the slow step is {where} (canary {cm:.0f} ms vs stable {sm:.0f} ms typical, "
        f"{fmt_pct(math.log(cm / sm))}, over the rollout)"
    )


def _sum(parts: Iterable[Moments]) -> Moments:
    n = ev = s1 = s2 = 0.0
    for m in parts:
        n, ev, s1, s2 = n + m.n, ev + m.events, s1 + m.s1, s2 + m.s2
    return Moments(n, ev, s1, s2)


def _both(ledger: Ledger, what: str, txns: Sequence[str], j: int) -> tuple[Moments, Moments]:
    """Canary's and stable's ``what`` ("errors" or "latency") since window ``j``, summed."""
    read = ledger.errors if what == "errors" else ledger.latency
    return (
        _sum(read(f"{x}|canary", j) for x in txns),
        _sum(read(f"{x}|stable", j) for x in txns),
    )


def describe(o: TestOutcome, ledger: Ledger, wander: Wander, doubt: str = "") -> str:
    """The operator's sentence for a test, with the numbers of its most telling window; for a
    shared absolute breach, ``doubt`` says why stable cannot be ruled out (else stable is as
    bad)."""
    s, slo = ledger.settings, ledger.slo
    j = round(o.start / s.restart_s)
    since = f" since t={o.start:.0f}s" if j else ""
    txns = ledger.transactions if o.transaction == ALL else [o.transaction]
    who = o.transaction
    worse = o.log_e >= o.threshold
    if o.test == "errors":
        c, st = _both(ledger, "errors", txns, j)
        d = c.rate - st.rate
        tol = f"{slo.max_error_rate_increase_pp:g} pp"
        verdict = (
            f"more errors than the {tol} tolerance allows"
            if worse
            else f"possibly more errors than the {tol} tolerance allows"
        )
        return (
            f"{who}: canary failed {int(c.events)} of {int(c.n)} runs ({100 * c.rate:.2f}%) vs "
            f"stable {int(st.events)} of {int(st.n)} ({100 * st.rate:.2f}%){since}: "
            f"{fmt_pp(d)}, {verdict} ({evidence(o.log_e)}){failures(ledger, txns)}"
        )
    if o.test == "latency":
        c, st = _both(ledger, "latency", txns, j)
        d, v = mean_difference(c, st, s.latency_floor_sd)
        v += wander.get(ledger, who, "latency")
        tol = f"{slo.max_latency_increase_pct:g}%"
        lower = normal_mixture_lower(d, v, math.exp(-o.threshold), s.tau_latency)
        margin = math.log1p(slo.max_latency_increase_pct / 100.0)
        bound = f", at least {fmt_pct(lower)}" if worse and lower > margin else ""
        verdict = (
            f"slower than the {tol} tolerance allows" if worse else f"possibly slower than {tol}"
        )
        return (
            f"{who}: canary typical latency {math.exp(c.mean):.0f} ms vs stable "
            f"{math.exp(st.mean):.0f} ms (successful runs){since}: {fmt_pct(d)}{bound}, "
            f"{verdict} ({evidence(o.log_e)}){slowest_step(ledger, txns)}"
        )
    if o.test == "tail latency":
        tc, ts = ledger.tail(f"{who}|canary", j), ledger.tail(f"{who}|stable", j)
        ref = ledger.reference.get(who, {}).get("p95", math.nan)
        lim = ref * (1.0 + slo.max_latency_increase_pct / 100.0)
        return (
            f"{who}: {100 * tc.rate:.1f}% of canary runs took longer than {lim:.0f} ms "
            f"(stable's usual p95 {ref:.0f} ms + {slo.max_latency_increase_pct:g}%) vs "
            f"{100 * ts.rate:.1f}% of stable runs longer than {ref:.0f} ms{since}: the canary's "
            f"slowest runs are {'' if worse else 'possibly '}more than "
            f"{slo.max_latency_increase_pct:g}% slower than stable's ({evidence(o.log_e)})"
            f"{slowest_step(ledger, txns)}"
        )
    if o.test == "success objective":
        c, st = _both(ledger, "errors", txns, j)
        tail = "; " + (doubt or "stable is as bad: not the canary's doing") if o.shared else ""
        return (
            f"{who}: canary succeeded in {int(c.n - c.events)} of {int(c.n)} runs "
            f"({100 * (1 - c.rate):.2f}%){since}, below the {slo.success_threshold:g}% "
            f"objective (stable {100 * (1 - st.rate):.2f}%; {evidence(o.log_e, 'meeting it')})"
            f"{failures(ledger, txns)}{tail}"
        )
    oc, os_ = ledger.over(f"{who}|canary", j), ledger.over(f"{who}|stable", j)
    tail = "; " + (doubt or "stable is as slow: not the canary's doing") if o.shared else ""
    return (
        f"{who}: {100 * oc.rate:.1f}% of canary runs took longer than "
        f"{slo.latency_p95_ms or 0:.0f} ms{since} (at most 5% may): its p95 is above the "
        f"objective (stable {100 * (os_.rate if os_.n else 0.0):.1f}%; "
        f"{evidence(o.log_e, 'meeting it')}){tail}"
    )


def summaries(ledger: Ledger) -> list[str]:
    out = []
    for txn in ledger.transactions:
        ce, se = ledger.errors(f"{txn}|canary", 0), ledger.errors(f"{txn}|stable", 0)
        cl, sl = ledger.latency(f"{txn}|canary", 0), ledger.latency(f"{txn}|stable", 0)
        if not ce.n or not se.n or not cl.n or not sl.n:
            continue
        out.append(
            f"{txn}: canary errors {100 * ce.rate:.2f}% vs stable {100 * se.rate:.2f}%, "
            f"typical latency {math.exp(cl.mean):.0f} vs {math.exp(sl.mean):.0f} ms "
            f"over {int(ce.n)} and {int(se.n)} runs"
        )
    return out


def warmup_reason(o: WarmupOutcome, ledger: Ledger) -> str:
    """The sentence for a canary slower during its warm-up than a warm-up is allowed to be."""
    s, slo = ledger.settings, ledger.slo
    lo, hi = o.first * s.warmup_bucket_s, (o.last + 1) * s.warmup_bucket_s
    d = math.log(o.canary_ms / o.stable_ms) if o.stable_ms > 0 else math.nan
    envelope = o.allowed - math.log1p(slo.max_latency_increase_pct / 100.0)
    return (
        f"{o.transaction}: canary typical latency {o.canary_ms:.0f} ms vs stable "
        f"{o.stable_ms:.0f} ms (successful runs) {lo:.0f}-{hi:.0f} s into its warm-up: "
        f"{fmt_pct(d)}, slower than a warm-up is allowed to be then (a decaying "
        f"{fmt_pct(envelope)} on average, plus the {slo.max_latency_increase_pct:g}% tolerance: "
        f"at most {fmt_pct(o.allowed)}) ({evidence(o.log_e)})"
        f"{slowest_step(ledger, ledger.transactions if o.transaction == ALL else [o.transaction])}"
    )
