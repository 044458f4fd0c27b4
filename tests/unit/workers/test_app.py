"""The Celery app's safety settings: JSON only, late acks, routing by queue."""

from __future__ import annotations

from workers import tasks
from workers.app import app


def test_only_json_is_accepted() -> None:
    assert app.conf.task_serializer == "json"
    assert app.conf.result_serializer == "json"
    assert list(app.conf.accept_content) == ["json"]
    assert list(app.conf.result_accept_content) == ["json"]


def test_tasks_are_acknowledged_late_one_at_a_time() -> None:
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.worker_prefetch_multiplier == 1


def test_tasks_have_stable_names_other_services_can_send() -> None:
    names = {t for t in app.tasks if t.startswith("canary.")}
    assert {
        "canary.start_rollout",
        "canary.advance",
        "canary.analyze",
        "canary.check",
        "canary.probe_batch",
        "canary.probe_fanout",
    } <= names
    assert {"canary.pause", "canary.resume", "canary.promote", "canary.abort"} <= names
    assert tasks.probe_batch.name == "canary.probe_batch"


def test_probes_and_control_go_to_separate_queues() -> None:
    route = app.amqp.router.route
    assert route({}, "canary.probe_batch")["queue"].name == "canary.probe.default"
    assert route({}, "canary.advance")["queue"].name == "canary.control"
    assert route({}, "canary.check")["queue"].name == "canary.control"
