"""A task sent by name runs on a real worker process over the real Redis broker."""

from __future__ import annotations


def test_task_by_name_returns_json_result(celery_app, celery_worker):
    result = celery_app.send_task("fleetsync.ping", args=[{"n": 1, "tags": ["a"]}])
    value = result.get(timeout=30)
    assert value["pong"] is True
    assert value["echo"] == {"n": 1, "tags": ["a"]}
    assert value["worker"].split(":")[-1].isdigit()


def test_app_refuses_pickle(celery_app):
    conf = celery_app.conf
    assert conf.task_serializer == "json" and conf.accept_content == ["json"]
    assert conf.task_acks_late and conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit
