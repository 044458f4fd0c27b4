"""Reasons' wording: what an operator reads in a decision."""

from __future__ import annotations

from canary.analysis.ledger import Ledger
from canary.analysis.reasons import failures
from canary.analysis.settings import EngineSettings
from canary.analysis.slo import SLO
from canary.probing.assertions import shown


def test_top_failures_show_a_body_as_the_run_reported_it() -> None:
    # The runner shows a body as a JSON string, so its quotes arrive escaped once already.
    body = shown('{"error":"db"}')
    msg = f"step 2 pay: status 500 (body: {body})"
    ledger = Ledger(SLO(), EngineSettings(), ["checkout"], {}, t0=0.0)
    ledger.messages["checkout|canary"] = {msg: 3}
    assert failures(ledger, ["checkout"]) == f"; top failures: '{msg}' x3"
    assert "\\\\" not in failures(ledger, ["checkout"])
