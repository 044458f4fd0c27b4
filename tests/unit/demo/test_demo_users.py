"""The demo's users: paced requests, tallied by which instance answered; overload where it counts."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import requests

from canary.demo.faults import Faults
from canary.demo.server import ShopServer
from canary.demo.shop import Shop
from canary.demo.users import Users


@contextmanager
def serve(name: str, faults: Faults) -> Iterator[tuple[str, Faults]]:
    server = ShopServer(("127.0.0.1", 0), name, "1.0", faults, Shop())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", faults
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def wait_for(check: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_users_are_tallied_by_instance_and_only_they_saturate_it() -> None:
    with (
        serve("shop-stable", Faults()) as (stable, _),
        serve("shop-canary", Faults(user_capacity_rps=1.0)) as (canary, cfaults),
    ):
        turn = iter(range(10**9))
        # Every other request to the canary, like a router at 50%.
        with Users(lambda: canary if next(turn) % 2 else stable, rate=10.0) as users:
            wait_for(lambda: users.canary_share()[1] >= 10)
            share, n = users.canary_share()
            assert 0.3 <= share <= 0.7, (share, n)
            wait_for(lambda: cfaults.overload() > 0)
        # A probe (no user header) is slowed down by the overload but does not add to it.
        before = len(cfaults._users)
        assert requests.get(canary + "/api/products", timeout=10).status_code in (200, 500)
        assert len(cfaults._users) <= before
