"""The typed rollout record: JSON in and out, the config parsed once, unknown keys kept."""

from __future__ import annotations

from canary.rollout.config import RolloutConfig, effective_slo
from canary.rollout.record import RolloutRecord

CONFIG = RolloutConfig.model_validate(
    {
        "name": "shop",
        "stable": {"url": "http://127.0.0.1:1", "version": "1.0"},
        "canary": {"url": "http://127.0.0.1:2", "version": "1.1"},
        "transactions": ["browse.yaml"],
    }
)
TXS = [{"transaction_name": "browse", "sla_success_threshold": 95}]


def _record() -> RolloutRecord:
    return RolloutRecord(
        id="shop-1",
        name="shop",
        service="shop",
        config=CONFIG,
        transactions=TXS,
        slo=effective_slo(CONFIG, TXS),
        weights=[0, 5, 100],
    )


def test_a_record_survives_json_and_keeps_what_it_does_not_know() -> None:
    rec = _record()
    doc = rec.to_dict()
    assert doc["config"]["canary"]["version"] == "1.1" and doc["slo"]["success_threshold"] == 95
    # Fields that mean nothing yet are left out, as readers test for the key.
    assert "finished_at" not in doc and "events_after_save" not in doc
    doc["added_by_a_newer_canary"] = {"x": 1}
    doc["engine"] = {"version": 1}  # the judge state of older records: not the record's
    again = RolloutRecord.from_dict(doc)
    assert again.config == CONFIG and again.transaction_names == ["browse"]
    assert again.to_dict() == {k: v for k, v in doc.items() if k != "engine"}


def test_ending_fills_the_fields_the_edges_read() -> None:
    rec = _record()
    rec.state, rec.outcome, rec.reasons, rec.finished_at = "aborted", "rolled_back", ["x"], 5.0
    doc = rec.to_dict()
    assert rec.final and doc["reasons"] == ["x"] and doc["finished_at"] == 5.0
