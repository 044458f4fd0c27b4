"""Alert links: dashboard and report pages, and promote/abort links with signed, expiring tokens."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from canary.notifiers import Alert
from canary.notifiers.links import action_token, check_action_token, links_for

SECRET = "action-secret-for-tests"
ENV = {"CANARY_DASHBOARD_URL": "https://canary.example.com/", "CANARY_ACTION_SECRET": SECRET}


def _alert(**changes: object) -> Alert:
    base: dict[str, object] = {
        "kind": "stuck",
        "rollout_id": "shop-20261201-1",
        "service": "shop",
        "stable_version": "1.0",
        "canary_version": "1.1",
        "weight": 20,
        "summary": "no progress for 5 minutes",
        **changes,
    }
    return Alert(**base)  # type: ignore[arg-type]


def test_no_dashboard_no_links() -> None:
    assert links_for(_alert(), {}).all() == []
    assert links_for(_alert(), {"CANARY_DASHBOARD_URL": "not a url"}).all() == []


def test_a_running_rollout_gets_pages_and_signed_actions() -> None:
    links = links_for(_alert(), ENV, now=1_000_000)
    assert links.dashboard and links.dashboard.url == (
        "https://canary.example.com/rollouts/shop-20261201-1"
    )
    assert links.report and links.report.url.endswith("/rollouts/shop-20261201-1/report")
    promote, abort = links.actions
    assert (promote.text, promote.style, abort.text, abort.style) == (
        "Promote",
        "primary",
        "Abort",
        "danger",
    )
    query = parse_qs(urlsplit(abort.url).query)
    assert query["action"] == ["abort"]
    (token,) = query["token"]
    assert check_action_token(SECRET, token, "shop-20261201-1", "abort", now=1_000_000)
    # One action, one rollout, one secret, until it expires an hour later.
    assert not check_action_token(SECRET, token, "shop-20261201-1", "promote", now=1_000_000)
    assert not check_action_token(SECRET, token, "cart-1", "abort", now=1_000_000)
    assert not check_action_token("another-secret", token, "shop-20261201-1", "abort", 1_000_000)
    assert not check_action_token(SECRET, token, "shop-20261201-1", "abort", now=1_003_601)


def test_forged_or_garbled_tokens_fail() -> None:
    token = action_token(SECRET, "r1", "promote", 2_000_000)
    when, _, sig = token.partition(".")
    for bad in (f"{int(when) + 9999}.{sig}", f"{when}.{sig[:-2]}xx", "", "x.y", when, "."):
        assert not check_action_token(SECRET, bad, "r1", "promote", now=1_000_000)
    assert not check_action_token("", token, "r1", "promote", now=1_000_000)


def test_ended_rollouts_and_missing_secrets_get_no_action_links() -> None:
    for alert in (_alert(kind="rollback"), _alert(kind="promotion"), _alert(resolved=True)):
        assert links_for(alert, ENV).actions == ()
    only_pages = links_for(_alert(), {"CANARY_DASHBOARD_URL": "https://c.example"})
    assert only_pages.actions == () and only_pages.dashboard is not None
