"""Steps are counted once, from 1, the isolated check included: CLI, dashboard and exporter agree."""

from __future__ import annotations

from canary.rollout.progress import Progress


def test_step_in_words_with_the_next_weight() -> None:
    p = Progress.of({"step": 2, "weight": 10, "weights": [0, 5, 10, 30, 60, 80, 100]})
    assert (p.number, p.total, p.next_weight) == (3, 7, 30)
    assert p.text() == "step 3 of 7 (weight 10%, next 30%)"
    assert p.text(final=True) == "step 3 of 7 (weight 10%)"


def test_last_step_and_an_empty_record() -> None:
    assert Progress.of({"step": 1, "weight": 100, "weights": [0, 100]}).text() == (
        "step 2 of 2 (weight 100%)"
    )
    assert Progress.of({}).text() == "step 1 of 0 (weight 0%)"
