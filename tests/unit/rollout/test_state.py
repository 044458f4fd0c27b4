"""The rollout state machine."""

from __future__ import annotations

import pytest

from canary.rollout import state as st


def test_running_can_end_every_way() -> None:
    for final in ("promoted", "rolled_back", "aborted", "failed"):
        assert st.transition("running", final) == final
        assert st.is_final(final)


def test_finished_rollouts_never_move_again() -> None:
    for final in st.FINAL:
        with pytest.raises(st.IllegalTransition):
            st.transition(final, "running")


def test_everything_but_promotion_ends_on_stable() -> None:
    assert st.OUTCOME["promoted"] == "promoted"
    assert {st.OUTCOME[s] for s in ("rolled_back", "aborted", "failed")} == {"rolled_back"}
