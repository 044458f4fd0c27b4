"""Suite-wide setup: the fixture plugins, a private CANARY_HOME and port range per run, xdist groups."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import warnings
from collections.abc import Generator, Iterator

import pytest

pytest_plugins = ["tests.fixtures.services", "tests.fixtures.proxies"]

# Set by pytest_configure, removed by pytest_unconfigure.
_private_home: str | None = None


def pytest_configure(config: pytest.Config) -> None:
    """Every test run (each xdist worker too) gets its own CANARY_HOME and no CANARY_REDIS_URL.

    Commands fall back to the `canary local up` fleet recorded under CANARY_HOME (by default
    ~/.canary/local, shared by everyone on the machine): a test that forgets to set its own home
    must find nothing there, not a developer's fleet or another worker's.
    """
    global _private_home
    _private_home = tempfile.mkdtemp(prefix="canary-test-home-")
    os.environ["CANARY_HOME"] = _private_home
    os.environ.pop("CANARY_REDIS_URL", None)
    os.environ["CANARY_PORT_RANGE"] = worker_port_range(os.environ.get("PYTEST_XDIST_WORKER"))
    _sigint_not_ignored()


def _sigint_not_ignored() -> None:
    """Tests that send SIGINT to a child expect it to stop: undo an ignore the run inherited.

    A suite started as a script's background job (``./scripts/test &`` without job control, a
    CI step run so) has SIGINT ignored, every child inherits that across exec and Python keeps
    it: the child shrugs the test's SIGINT off and the test times out (test_local_fleet's
    test_no_orphans_when_the_parent_dies[2] did, under load, after 120 s).
    """
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


# Below the kernel's ephemeral range (32768 up), so no outgoing connection takes a port between
# free_port() and the server's bind; one slice per xdist worker, so workers never draw the same
# port (canary.local.ports also claims every port machine-wide, for suites run side by side).
PORTS_BASE, PORTS_PER_WORKER, PORT_SLICES = 20000, 1000, 12


def worker_port_range(worker: str | None) -> str:
    """CANARY_PORT_RANGE for xdist worker ``gwN`` (or the only process, without xdist)."""
    index = int(worker[2:]) if worker and worker[2:].isdigit() else 0
    low = PORTS_BASE + (index % PORT_SLICES) * PORTS_PER_WORKER
    return f"{low}-{low + PORTS_PER_WORKER - 1}"


def pytest_unconfigure(config: pytest.Config) -> None:
    if _private_home is not None:
        shutil.rmtree(_private_home, ignore_errors=True)


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@pytest.fixture(autouse=True)
def _signal_dispositions_restored() -> Iterator[None]:
    """A test that leaves a stop signal ignored is named, and the signal restored after it.

    Children inherit an ignored signal across exec, and Python then keeps ignoring SIGINT: every
    `canary run` a later test starts in the same (xdist worker) process would shrug off Ctrl-C.
    """
    before = {sig: signal.getsignal(sig) for sig in _STOP_SIGNALS}
    yield
    for sig, handler in before.items():
        if signal.getsignal(sig) == signal.SIG_IGN and handler != signal.SIG_IGN:
            warnings.warn(f"the test left {sig.name} ignored; restored", stacklevel=1)
            signal.signal(sig, handler)


def _shares_state_across_tests(item: pytest.Item) -> bool:
    """The test uses a module- or class-scoped fixture, or a session-scoped one of its module.

    Such fixtures (a gate stack, a `canary local up` fleet, a browser) are costly to build:
    their tests stay on one xdist worker so that the fixture is built once, not once per worker.
    """
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    module_file = str(item.path)
    for defs in info.name2fixturedefs.values():
        for fixture_def in defs:
            if fixture_def.scope in ("module", "class", "package"):
                return True
            func = getattr(fixture_def, "func", None)
            code = getattr(func, "__code__", None)
            if fixture_def.scope == "session" and code and code.co_filename == module_file:
                return True
    return False


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> Generator[None, None, None]:
    """Under ``--dist loadgroup``, keep the tests of a module with shared fixtures together.

    Marked before xdist's own hook reads the marks; the node ids fixed after it (see below).
    """
    for item in items:
        if item.get_closest_marker("xdist_group") is None and _shares_state_across_tests(item):
            item.add_marker(pytest.mark.xdist_group(name=item.nodeid.split("::", 1)[0]))
    yield
    _group_suffix_for_xdist(config, items)


def _group_suffix_for_xdist(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give grouped tests the ``@group`` node-id suffix by which loadgroup schedules them.

    pytest-xdist 3.8 adds it by setting ``item._nodeid``, which pytest 9 no longer reads (the
    id lives in ``item._id``): no group was kept together, so costly module fixtures were built
    on every worker and a module's one-time npm install ran on two workers at once. A no-op
    where xdist's own suffix took.
    """
    # Set by xdist in its workers only: absent in the controller and in a run without -n.
    if not getattr(config.option, "loadgroup", False):
        return
    try:
        from _pytest.nodeid import coerce_node_id
    except ImportError:  # a pytest before 9, where xdist's own suffix works
        return
    for item in items:
        names = {
            str(m.args[0] if m.args else m.kwargs.get("name", "default"))
            for m in item.iter_markers("xdist_group")
        }
        if names and "@" not in item.nodeid and hasattr(item, "_id"):
            item._id = coerce_node_id(f"{item.nodeid}@{'_'.join(sorted(names))}")
