"""The Redis store against a real redis-server: idempotent batches and look-ahead, fencing, caps."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from canary.errors import ConfigError, StoreError
from canary.probing.result import TransactionResult
from canary.store import Keys, Store, connect
from canary.store.base import SCRIPTS, lua_source
from canary.store.redis_store import HISTORY_KEPT, INTERIM_TTL_S


def _res(i: int, version: str = "canary", ok: bool = True) -> TransactionResult:
    return TransactionResult(
        t=1000.0 + i, version=version, transaction="browse", ok=ok, latency_ms=10.0 + i, status=200
    )


def test_a_batch_is_recorded_once_even_when_delivered_twice(redis_url: str) -> None:
    store = Store.from_url(redis_url)
    batch = [_res(i) for i in range(5)]
    assert store.record_batch("r1", "s0a0", "b1", batch) is True
    assert store.record_batch("r1", "s0a0", "b1", batch) is False
    assert len(store.window_results("r1", "s0a0")) == 5
    assert store.recorded_batches("r1", "s0a0") == {"b1"}


def test_concurrent_redelivery_still_counts_once(redis_url: str) -> None:
    store = Store.from_url(redis_url)
    batch = [_res(i) for i in range(20)]
    outcomes: list[bool] = []
    threads = [
        threading.Thread(target=lambda: outcomes.append(store.record_batch("r1", "w", "b", batch)))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count(True) == 1
    assert len(store.window_results("r1", "w")) == 20


def test_results_keep_every_field(redis_url: str) -> None:
    store = Store.from_url(redis_url)
    r = TransactionResult(
        t=5.5,
        version="stable",
        transaction="checkout",
        ok=False,
        latency_ms=1203.0,
        status=500,
        error="step 2: expected status 201, got 500",
    )
    store.record_batch("r1", "w", "b", [r])
    assert store.window_results("r1", "w") == [r]


def test_lock_is_exclusive_and_fencing_tokens_grow(redis_url: str) -> None:
    store = Store.from_url(redis_url)
    with store.lock("r1") as first:
        assert first is not None
        with store.lock("r1") as second:
            assert second is None
    with store.lock("r1") as third:
        assert third is not None and third > first


def test_a_stale_holder_cannot_overwrite_a_newer_write(redis_url: str) -> None:
    store = Store.from_url(redis_url)
    store.create_rollout({"id": "r1", "state": "running", "fence": 0})
    assert store.save_rollout({"id": "r1", "state": "running", "step": 2, "fence": 7})
    assert not store.save_rollout({"id": "r1", "state": "running", "step": 1, "fence": 5})
    assert store.load_rollout("r1") == {"id": "r1", "state": "running", "step": 2, "fence": 7}


def test_events_are_read_in_order_and_after_an_id(redis_url: str) -> None:
    store = Store.from_url(redis_url)
    first = store.append_event("r1", "step", {"weight": 5})
    store.append_event("r1", "decision", {"action": "increase"})
    events = store.read_events("r1")
    assert [e["type"] for _, e in events] == ["step", "decision"]
    later = store.read_events("r1", first, block_ms=10)
    assert [e["data"] for _, e in later] == [{"action": "increase"}]


def test_history_is_capped(redis_url: str) -> None:
    store = Store.from_url(redis_url)
    store.add_history("shop", [_res(i, "stable") for i in range(HISTORY_KEPT + 50)])
    got = store.history("shop", "browse")
    assert len(got) == HISTORY_KEPT
    assert got[-1].t == 1000.0 + HISTORY_KEPT + 49
    assert (
        store.history("shop", "browse", since=1000.0 + HISTORY_KEPT + 40)[0].t
        == 1000.0 + HISTORY_KEPT + 40
    )


def test_operator_commands_are_taken_once(redis_url: str) -> None:
    store = Store.from_url(redis_url)
    store.push_control("r1", "pause")
    store.push_control("r1", "abort")
    assert [c.command for c in store.pop_controls("r1")] == ["pause", "abort"]
    assert store.pop_controls("r1") == []


def test_interim_results_count_each_probe_slot_once(redis_url: str) -> None:
    store = Store.from_url(redis_url)
    first = [("b1:0:canary", _res(2)), ("b1:0:stable", _res(1, "stable")), ("b1:1:canary", _res(0))]
    assert store.record_interim("r1", "w", first) == 3
    # A re-delivered batch pushes the same slots again, with other runs: the first ones stay.
    again = [("b1:0:canary", _res(7, ok=False)), ("b1:2:canary", _res(3))]
    assert store.record_interim("r1", "w", again) == 1
    assert store.record_interim("r1", "w", []) == 0
    got = store.interim_results("r1", "w")
    assert [r.t for r in got] == [1000.0, 1001.0, 1002.0, 1003.0] and all(r.ok for r in got)
    assert 0 < store.r.ttl(store.keys.interim("r1", "w")) <= INTERIM_TTL_S
    assert 0 < store.r.ttl(store.keys.interim_log("r1", "w")) <= INTERIM_TTL_S
    # A check reads on from where it stopped: only the slots that were new, as first pushed.
    assert [r.t for r in store.interim_since("r1", "w", 3)] == [1003.0]
    assert store.interim_since("r1", "w", 4) == []


def test_interim_results_are_refused_once_the_window_is_sealed(redis_url: str) -> None:
    store = Store.from_url(redis_url)
    assert store.record_interim("r1", "w", [("b1:0:canary", _res(0))]) == 1
    store.seal_window("r1", "w", ["b1"])
    assert store.record_interim("r1", "w", [("b1:1:canary", _res(1))]) == -1
    assert store.record_interim("r1", "w", []) == -1
    # Nothing adds to a sealed window's look-ahead or reads it: it goes at once, so a rollout
    # keeps one window's look-ahead however many steps it runs.
    assert store.interim_results("r1", "w") == []
    assert not store.r.exists(store.keys.interim("r1", "w"), store.keys.interim_log("r1", "w"))
    # A plain seal (a step end) leaves the window's results to the batch records alone.
    assert store.window_results("r1", "w") == []
    assert store.window_accounting("r1", "w")["lookahead"] == 0


def test_an_interim_seal_keeps_the_lookahead_of_the_batches_it_cuts_short(redis_url: str) -> None:
    store = Store.from_url(redis_url)
    recorded = [_res(i) for i in range(3)]
    # b1 recorded in full; its look-ahead must not count twice. b2 was still running.
    store.record_interim("r1", "w", [(f"w.t.1:{i}:canary", r) for i, r in enumerate(recorded)])
    store.record_batch("r1", "w", "w.t.1", recorded)
    store.record_interim("r1", "w", [("w.t.2:0:canary", _res(10)), ("w.t.2:0:stable", _res(11))])
    done = store.seal_window("r1", "w", ["w.t.1", "w.t.2", "w.t.3"], keep_lookahead=True)
    assert done == {"w.t.1"}
    assert sorted(r.t for r in store.window_results("r1", "w")) == [1000, 1001, 1002, 1010, 1011]
    acc = store.window_accounting("r1", "w")
    assert acc["missing"] == {"w.t.2", "w.t.3"} and acc["lookahead"] == 2 and acc["results"] == 5
    assert store.record_batch("r1", "w", "w.t.2", [_res(20)]) is False


def test_results_and_a_finished_rollout_are_kept_as_long_as_canary_results_ttl_says(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.unit.rollout.test_record import _record

    monkeypatch.setenv("CANARY_RESULTS_TTL", "90d")
    store = Store.from_url(redis_url)
    store.set_expected("r1", "w", {"w.t.1": 2})
    assert store.record_batch("r1", "w", "w.t.1", [_res(0), _res(1, "stable")])
    store.seal_window("r1", "w", ["w.t.1", "w.t.2"])
    month, quarter = 30 * 86400, 90 * 86400
    for key in (
        store.keys.results("r1", "w"),
        store.keys.batches("r1", "w"),
        store.keys.expected("r1", "w"),
        store.keys.sealed("r1", "w"),
        store.keys.missing("r1", "w"),
    ):
        assert month < store.r.ttl(key) <= quarter, key
    # Its rollout is kept as long, so a kept result is never one without its rollout.
    rec = _record()
    store.create_record(rec)
    rec.state = "aborted"
    assert store.save_record(rec)
    assert month < store.r.ttl(store.keys.rollout(rec.id)) <= quarter
    monkeypatch.setenv("CANARY_RESULTS_TTL", "an hour")
    with pytest.raises(ConfigError, match="CANARY_RESULTS_TTL"):
        Store.from_url(redis_url)


def test_interim_pushes_fail_as_store_errors(redis_url: str) -> None:
    store = Store.from_url("redis://127.0.0.1:1/0")
    with pytest.raises(StoreError):
        store.record_interim("r1", "w", [("b1:0:canary", _res(0))])
    with pytest.raises(StoreError):
        store.interim_results("r1", "w")


def test_a_typed_record_saves_with_its_judge_state_and_frees_its_service(redis_url: str) -> None:
    from tests.unit.rollout.test_record import _record

    store = Store.from_url(redis_url)
    rec = _record()
    store.create_record(rec)
    assert store.take_service("shop", rec.id) is None
    assert store.take_service("shop", "shop-2") == rec.id  # one rollout per service
    rec.fence = 3
    assert store.save_record(rec, engine={"evidence": [1, 2]})
    assert store.load_engine(rec.id) == {"evidence": [1, 2]}
    assert "engine" not in (store.load_rollout(rec.id) or {})
    stale = store.load_record(rec.id)
    assert stale is not None
    stale.fence, stale.step = 2, 9
    assert not store.save_record(stale)  # an older token is refused
    rec.state = "aborted"
    assert store.save_record(rec)
    assert store.service_holder("shop") is None
    # A holder whose record is gone is stale: the service is taken over.
    assert store.take_service("cart", "gone-1") is None
    assert store.take_service("cart", "cart-2") is None
    assert store.r.ttl(store.keys.engine(rec.id)) > 0


def test_the_judge_state_of_an_older_record_moves_to_its_own_key(redis_url: str) -> None:
    from tests.unit.rollout.test_record import _record

    store = Store.from_url(redis_url)
    doc = {**_record().to_dict(), "id": "old-1", "engine": {"evidence": [3]}}
    store.create_rollout(doc)
    record = store.load_record("old-1")
    assert record is not None and store.save_record(record)
    assert "engine" not in (store.load_rollout("old-1") or {})
    assert store.load_engine("old-1") == {"evidence": [3]}


def test_batches_and_seals_larger_than_one_lua_chunk(redis_url: str) -> None:
    # Past a thousand values the scripts add them in chunks (unpack() is bounded).
    store = Store.from_url(redis_url)
    assert store.record_batch("r1", "w", "b0", [_res(i) for i in range(2_500)]) is True
    assert len(store.window_results("r1", "w")) == 2_500
    expected = [f"b{i}" for i in range(2_500)]
    assert store.seal_window("r1", "w", expected) == {"b0"}
    assert store.window_accounting("r1", "w")["missing"] == set(expected[1:])


# Every public call, with arguments, that talks to Redis: each must fail as a StoreError.
_CALLS: list[tuple[str, Callable[[Store], object]]] = [
    ("create_rollout", lambda s: s.create_rollout({"id": "r1"})),
    ("load_rollout", lambda s: s.load_rollout("r1")),
    ("load_engine", lambda s: s.load_engine("r1")),
    ("save_rollout", lambda s: s.save_rollout({"id": "r1"})),
    ("list_rollouts", lambda s: s.list_rollouts()),
    ("take_service", lambda s: s.take_service("svc", "r1")),
    ("service_holder", lambda s: s.service_holder("svc")),
    ("release_service", lambda s: s.release_service("svc", "r1")),
    ("lock", lambda s: s.lock("r1").__enter__()),
    ("append_event", lambda s: s.append_event("r1", "x", {})),
    ("read_events", lambda s: s.read_events("r1")),
    ("push_control", lambda s: s.push_control("r1", "pause")),
    ("pop_controls", lambda s: s.pop_controls("r1")),
    ("answer_command", lambda s: s.answer_command("r1", "c", "ok")),
    ("command_answer", lambda s: s.command_answer("r1", "c")),
    ("record_batch", lambda s: s.record_batch("r1", "w", "b", [_res(0)])),
    ("set_expected", lambda s: s.set_expected("r1", "w", {"b": 1})),
    ("seal_window", lambda s: s.seal_window("r1", "w", ["b"])),
    ("is_sealed", lambda s: s.is_sealed("r1", "w")),
    ("window_accounting", lambda s: s.window_accounting("r1", "w")),
    ("claim_batch", lambda s: s.claim_batch("r1", "w", "b", "me", 1.0)),
    ("refresh_claim", lambda s: s.refresh_claim("r1", "w", "b", "me", 1.0)),
    ("refresh_claims", lambda s: s.refresh_claims([("r1", "w", "b", "me")], 1.0)),
    ("release_claim", lambda s: s.release_claim("r1", "w", "b", "me")),
    ("recorded_batches", lambda s: s.recorded_batches("r1", "w")),
    ("add_window", lambda s: s.add_window("r1", "w")),
    ("windows", lambda s: s.windows("r1")),
    ("window_results", lambda s: s.window_results("r1", "w")),
    ("all_results", lambda s: s.all_results("r1")),
    ("add_history", lambda s: s.add_history("svc", [_res(0)])),
    ("history_size", lambda s: s.history_size("svc", "browse")),
    ("history", lambda s: s.history("svc", "browse")),
    ("save_monitor", lambda s: s.save_monitor({"service": "svc"})),
    ("load_monitor", lambda s: s.load_monitor("svc")),
    ("list_monitors", lambda s: s.list_monitors()),
    ("remove_monitor", lambda s: s.remove_monitor("svc")),
    ("claim_monitor_tick", lambda s: s.claim_monitor_tick("svc", 1.0)),
]


@pytest.mark.parametrize("call", [c for _, c in _CALLS], ids=[n for n, _ in _CALLS])
def test_every_call_fails_as_a_store_error_when_redis_is_away(
    call: Callable[[Store], object],
) -> None:
    # Nothing listens on port 1: the client's connection error must not leave the store raw.
    store = Store(connect("redis://127.0.0.1:1/0"), Keys("canary"))
    with pytest.raises(StoreError):
        call(store)


def test_the_scripts_are_loaded_by_name_from_the_package() -> None:
    for name in SCRIPTS:
        assert "redis.call" in lua_source(name)
    with pytest.raises(StoreError, match="unknown Lua script 'nope'; known: claim_tick"):
        lua_source("nope")


def test_a_check_reads_all_it_needs_in_one_look(redis_url: str) -> None:
    from tests.unit.rollout.test_record import _record

    store = Store.from_url(redis_url)
    rec = _record()
    store.create_record(rec)
    store.record_interim(rec.id, "w", [("b1:0:canary", _res(0)), ("b1:0:stable", _res(1))])
    look = store.look(rec.id, "w", 0)
    assert not look.sealed and look.record is not None and look.record.id == rec.id
    assert look.engine is None and [r.t for r in look.pushed] == [1000.0, 1001.0]
    rec.fence = 1
    store.save_record(rec, engine={"evidence": [1]})
    store.record_interim(rec.id, "w", [("b1:1:canary", _res(2))])
    # Read on from what the check already has.
    look = store.look(rec.id, "w", 2)
    assert look.engine == {"evidence": [1]} and [r.t for r in look.pushed] == [1002.0]
    # The state's etag is the fence of the save that wrote it; a caller whose copy has that
    # etag is not sent the state again, and is sent the newer one once another save wrote it.
    assert look.etag == "1" and not look.unchanged
    again = store.look(rec.id, "w", 3, "1")
    assert again.unchanged and again.engine is None and again.record is not None
    assert store.engine_if_changed(rec.id, "1").unchanged
    rec.fence = 2
    store.save_record(rec)  # a save without the state keeps its etag
    assert store.look(rec.id, "w", 3, "1").unchanged
    rec.fence = 3
    store.save_record(rec, engine={"evidence": [2]})
    newer = store.look(rec.id, "w", 3, "1")
    assert not newer.unchanged and newer.etag == "3" and newer.engine == {"evidence": [2]}
    read = store.engine_if_changed(rec.id, "1")
    assert not read.unchanged and read.etag == "3" and read.state == {"evidence": [2]}
    assert store.engine_if_changed(rec.id, None).state == {"evidence": [2]}
    # Records written before the judge state had its own key carry it inside.
    old = {**_record().to_dict(), "id": "old-2", "engine": {"evidence": [3]}}
    store.create_rollout(old)
    assert store.look("old-2", "w", 0).engine == {"evidence": [3]}
    store.seal_window(rec.id, "w", ["b1"])
    assert store.look(rec.id, "w", 0) == type(look)(True, None, None, [])
    assert store.look("missing", "w", 0).record is None


def test_a_lock_left_while_redis_was_away_is_released_by_its_process_once_back(
    redis_url: str,
) -> None:
    import redis

    store = Store.from_url(redis_url)
    release = store.scripts["release_lock"]

    def away(*args: object, **kwargs: object) -> None:
        raise redis.ConnectionError("Redis is restarting")

    # Redis goes away while a task holds the lock (a restart with appendonly keeps the key).
    store.scripts["release_lock"] = away
    with pytest.raises(StoreError, match="cannot unlock"), store.lock("r1") as fence:
        assert fence is not None
    assert store.r.exists(store.keys.lock("r1"))
    # Back: the task's retry takes the lock at once instead of waiting out its ttl.
    store.scripts["release_lock"] = release
    with store.lock("r1", wait_s=0.0) as again:
        assert again is not None
    assert not store.r.exists(store.keys.lock("r1"))


def test_a_window_is_told_once_with_its_event_and_history(redis_url: str) -> None:
    store = Store.from_url(redis_url)
    stable = [_res(i, "stable") for i in range(3)] + [
        TransactionResult(t=2000.0, version="stable", transaction="checkout", ok=True, latency_ms=9)
    ]
    first = {"window": "s1a0", "action": "increase", "reasons": ["fine"]}
    assert store.judge_window("r1", "s1a0", first, "shop", stable) is None
    # Judged again (its coordinator died before the save): the first decision comes back, and
    # neither the event nor the history is written twice.
    again = {"window": "s1a0", "action": "hold", "reasons": ["other"]}
    assert store.judge_window("r1", "s1a0", again, "shop", stable) == first
    assert store.history_size("shop", "browse") == 3
    assert store.history_size("shop", "checkout") == 1
    told = [e for _, e in store.read_events("r1") if e["type"] == "decision"]
    assert [e["data"] for e in told] == [first]
    # Another window is told on its own.
    assert store.judge_window("r1", "s1a1", again, "shop", []) is None
