"""The monitor file model (errors at FILE:LINE:COL) and the rule that decides when a tick is due."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from canary.errors import ConfigError
from canary.monitor import load_monitor, next_tick, tick

ROOT = Path(__file__).resolve().parents[2]
BROWSE = ROOT / "configs" / "transactions" / "demo-browse.yaml"
CHECKOUT = ROOT / "configs" / "transactions" / "demo-checkout.yaml"


def _write(tmp_path: Path, text: str, name: str = "monitor.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_valid_file_becomes_a_record_with_its_transactions(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        f"service: shop\nurl: http://127.0.0.1:8080\nheaders: {{X-Env: prod}}\n"
        f"transactions: [{BROWSE}, {CHECKOUT}]\ninterval: 30\nruns: 3\n",
    )
    record = load_monitor(path)
    assert record["service"] == "shop" and record["interval"] == 30.0 and record["runs"] == 3
    assert record["headers"] == {"X-Env": "prod"} and record["environment"] == "default"
    assert [t["transaction_name"] for t in record["transactions"]] == [
        "demo-browse",
        "demo-checkout",
    ]


def test_defaults_and_relative_transaction_paths(tmp_path: Path) -> None:
    (tmp_path / "tx.yaml").write_text(BROWSE.read_text())
    path = _write(
        tmp_path,
        '{"service": "shop", "url": "https://shop", "transactions": ["tx.yaml"]}',
        "m.json",
    )
    record = load_monitor(path)
    assert record["interval"] == 60.0 and record["runs"] == 1 and record["headers"] == {}


def test_unknown_keys_and_bad_values_are_reported_with_their_place(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        f"service: shop\nurl: ftp://x\ntransactions: [{BROWSE}]\ninterval: 0.1\nrun: 2\n",
    )
    with pytest.raises(ConfigError) as got:
        load_monitor(path)
    text = str(got.value)
    assert f"{path}:2:6: url: 'ftp://x' is not an http(s) URL" in text
    assert f"{path}:4:11: interval: input should be greater than or equal to 1" in text
    assert f"{path}:5:1: run: unknown field 'run'; did you mean 'runs'?" in text


def test_missing_fields_and_transaction_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as got:
        load_monitor(_write(tmp_path, "service: shop\ntransactions: []\n"))
    text = str(got.value)
    assert "url: is required" in text and "transactions: list should have at least 1" in text
    with pytest.raises(ConfigError) as got:
        load_monitor(
            _write(tmp_path, "service: shop\nurl: http://x\ntransactions: [nope.yaml, nope.yaml]\n")
        )
    assert "nope.yaml:1:1: no such file" in str(got.value)
    with pytest.raises(ConfigError) as got:
        load_monitor(
            _write(tmp_path, f"service: shop\nurl: http://x\ntransactions: [{BROWSE}, {BROWSE}]\n")
        )
    assert "transactions[1]: transaction 'demo-browse' is already listed" in str(got.value)


def test_service_names_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="service: 'a b' must be 1-63"):
        load_monitor(_write(tmp_path, f"service: a b\nurl: http://x\ntransactions: [{BROWSE}]\n"))


def test_the_first_tick_is_due_at_once() -> None:
    assert next_tick(None, 10, 100.0) == 100.0


def test_a_tick_is_due_only_after_its_interval_and_keeps_the_cadence() -> None:
    assert next_tick(100.0, 10, 105.0) is None
    assert next_tick(100.0, 10, 109.99) is None
    # Seen late (the beat ticks every few seconds): the series stays on 100, 110, 120...
    assert next_tick(100.0, 10, 113.0) == 110.0
    assert next_tick(110.0, 10, 120.5) == 120.0


def test_a_skipped_interval_or_a_clock_going_back_restarts_the_series() -> None:
    assert next_tick(100.0, 10, 125.0) == 125.0  # no burst of catch-up ticks
    assert next_tick(100.0, 10, 80.0) == 80.0
    assert next_tick(100.0, 10, 95.0) is None  # a small step back just waits


def test_ticks_over_time_match_the_interval() -> None:
    last: float | None = None
    taken = []
    for i in range(0, 600):  # a beat every 0.5 s for 300 s, interval 7 s
        now = i * 0.5
        nxt = next_tick(last, 7.0, now)
        if nxt is not None:
            taken.append(nxt)
            last = nxt
    assert len(taken) == 300 // 7 + 1
    assert all(b - a == 7.0 for a, b in itertools.pairwise(taken))


class _FakeStore:
    def __init__(self, monitors: list[dict[str, object]], due: set[str]) -> None:
        self.monitors, self.due = monitors, due

    def list_monitors(self) -> list[dict[str, object]]:
        return self.monitors

    def claim_monitor_tick(self, service: str, interval_s: float) -> float | None:
        return 42.0 if service in self.due else None


def test_tick_sends_a_probe_only_for_due_monitors_on_their_queue() -> None:
    monitors: list[dict[str, object]] = [
        {"service": "a", "interval": 5, "environment": "eu"},
        {"service": "b", "interval": 60, "environment": "default"},
    ]
    sent: list[tuple[str, str, float, float]] = []
    got = tick(_FakeStore(monitors, {"a"}), lambda *a: sent.append(a))  # type: ignore[arg-type]
    assert got == ["a"] and sent == [("a", "canary.probe.eu", 42.0, 5.0)]
