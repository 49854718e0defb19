"""Every way out of a stage, on the in-process Redis (the ``--local`` stand-in): a
transient error waits as the apiserver asks (Retry-After), attempts are bounded, and
giving up still ends the run with its outcome."""

from __future__ import annotations

import time

import pytest

from shared.errors import TransientError
from shared.protocol import Verdict
from shared.settings import Settings
from workers.run import endings, runner
from workers.run.steps import Call
from workers.context import Context


@pytest.fixture()
def ctx(tmp_path):
    return Context.connect(Settings(cache_dir=tmp_path), use_redis=False)


def _with_spec(tmp_path) -> Context:
    """A context whose fleet spec has ``web`` on ``c1``, from a source never fetched."""
    spec = tmp_path / "fleet.yaml"
    spec.write_text("sources:\n  - name: git\n    url: file:///srv/gitops.git\n    branch: main\n"
                    "clusters:\n  - name: c1\n    labels: {env: prod}\n"
                    "applications:\n  - name: web\n    source: git\n    path: web\n"
                    "    clusters: {names: [c1]}\n")
    return Context.connect(Settings(cache_dir=tmp_path, fleet_path=str(spec)), use_redis=False)


def _queued_call(ctx: Context, attempt: int = 0) -> Call:
    step = ctx.runs.request("web", "c1", trigger="beat", revision="abc")
    assert step.verdict == Verdict.QUEUED
    return Call("web", "c1", step.other, "beat", time.time(), "abc", attempt=attempt)


def test_retry_after_from_the_apiserver_sets_the_countdown(ctx):
    call = _queued_call(ctx)
    nxt = endings.transient(ctx, call, "", TransientError("429 Too Many Requests", delay=7.0),
                            time.time())
    assert nxt.retry_in == 7.0 and nxt.retry_kwargs["attempt"] == 1
    assert ctx.runs.run(call.unit, call.run_id)["state"] == "retrying"
    assert ctx.status.get_status("web", "c1").phase == "Progressing"


def test_without_retry_after_the_countdown_backs_off(ctx):
    call = _queued_call(ctx, attempt=4)
    nxt = endings.transient(ctx, call, "", TransientError("503"), time.time())
    assert 16 <= nxt.retry_in <= 32


def test_the_last_attempt_ends_the_run_failed_and_clears_its_marker(ctx):
    call = _queued_call(ctx, attempt=endings.MAX_ATTEMPTS - 1)
    nxt = endings.transient(ctx, call, "", TransientError("503 from the apiserver"), time.time())
    assert nxt.retry_in is None
    record = ctx.runs.run(call.unit, call.run_id)
    assert record["state"] == "done" and record["phase"] == "Failed"
    assert "gave up after 10 attempts: 503 from the apiserver" in record["summary"]
    assert ctx.runs.unit("c1/web").queued == ""
    status = ctx.status.get_status("web", "c1")
    assert status.phase == "Failed" and status.failed_key == ""     # beat tries again


def test_a_crash_still_ends_the_run(ctx):
    call = _queued_call(ctx)
    endings.crashed(ctx, call, KeyError("boom"))
    record = ctx.runs.run(call.unit, call.run_id)
    assert record["state"] == "done" and "internal error: KeyError" in record["summary"]
    assert ctx.runs.request("web", "c1", trigger="beat").verdict == Verdict.QUEUED


def test_a_task_for_a_unit_the_spec_no_longer_has_is_dropped_quietly(tmp_path):
    ctx = _with_spec(tmp_path)
    run = ctx.runs.request("ghost", "c1", trigger="beat", revision="abc").other
    for stage in (runner.render, runner.apply):
        nxt = stage(ctx, Call("ghost", "c1", run, "beat", time.time(), "abc", "k"))
        assert nxt.result["dropped"] == "not in the fleet spec" and nxt.error is None
        assert not nxt.send and nxt.retry_in is None
    assert ctx.runs.run("c1/ghost", run)["state"] == "done" and ctx.runs.unit("c1/ghost").queued == ""
    assert ctx.status.get_status("ghost", "c1").phase == "Unknown"     # no status written


def test_in_push_mode_a_late_copy_of_a_render_whose_render_fails_ends_nothing(tmp_path):
    """The render stage of push mode reads no protocol step before rendering (the apply's
    begin in the same task decides); a render that fails writes the run's ending only
    once the touch lets it: a copy of a run that another attempt is applying is dropped,
    and that attempt keeps its run."""
    ctx = _with_spec(tmp_path)
    assert ctx.settings.apply_after_render
    call = _queued_call(ctx)
    assert ctx.runs.begin(call.unit, call.run_id, "o1", "c1").step.verdict == Verdict.STARTED
    nxt = runner.render(ctx, call)                  # the source was never fetched: it fails
    assert nxt.result["verdict"] == "duplicate" and nxt.error is None and not nxt.send
    record = ctx.runs.run(call.unit, call.run_id)
    assert record["state"] == "running" and ctx.runs.unit(call.unit).lock == "o1"
