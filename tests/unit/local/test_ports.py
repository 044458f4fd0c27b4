"""canary.local.ports: CANARY_PORT_RANGE, and claims that keep a port to one caller."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from canary.errors import CanaryError
from canary.local import ports
from tests.conftest import worker_port_range


@pytest.fixture()
def own_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(ports.tempfile, "tempdir", None)  # re-read TMPDIR
    return tmp_path


@pytest.mark.parametrize("raw", ["20000", "a-b", "30000-20000", "80-90", "60000-70000"])
def test_a_bad_range_is_an_error_naming_the_variable(
    raw: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CANARY_PORT_RANGE", raw)
    with pytest.raises(CanaryError, match="CANARY_PORT_RANGE"):
        ports.port_range()


def test_ports_come_from_the_range_and_are_never_handed_out_twice(
    own_registry: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CANARY_PORT_RANGE", "19500-19579")
    got = [ports.free_port() for _ in range(40)]
    assert len(set(got)) == 40 and all(19500 <= p <= 19579 for p in got)
    assert (own_registry / f"canary-ports-{ports.os.getuid()}" / "claims.json").exists()


def test_a_used_up_range_falls_back_to_the_kernel_s_choice(
    own_registry: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CANARY_PORT_RANGE", "19600-19604")
    got = [ports.free_port() for _ in range(6)]
    assert sorted(got[:5]) == list(range(19600, 19605))
    assert got[5] >= 32768 and got[5] not in got[:5]


def test_xdist_workers_get_disjoint_ranges_below_the_ephemeral_ones() -> None:
    spans = [tuple(map(int, worker_port_range(f"gw{i}").split("-"))) for i in range(12)]
    assert worker_port_range(None) == worker_port_range("gw0")
    assert all(a[1] < b[0] for a, b in itertools.pairwise(spans))
    assert spans[-1][1] < 32768
