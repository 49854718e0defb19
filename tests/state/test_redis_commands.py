"""What the protocol's transitions cost Redis, counted on a real Redis by ``MONITOR``
(the commands a script runs included, as Redis' own stats count them): a budget per
transition of a cold run, so that a change that adds round trips is seen."""

from __future__ import annotations

import queue
import threading
import uuid
from typing import Callable, Iterator

import pytest
import redis

from shared.protocol import Phase, Verdict
from shared.state import keys
from shared.state.runs import Outcome, Runs, Timing
from shared.state.status import HistoryEntry, StatusStore, UnitStatus
from tests.conftest import new_redis_db

UNIT = "c1/web"


class Monitor:
    """The commands one database of a real Redis runs, in order."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url, decode_responses=True)
        self.db = int(url.rsplit("/", 1)[1])
        self.lines: "queue.Queue[dict]" = queue.Queue()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._listen, daemon=True)
        self.thread.start()
        assert self.ready.wait(10), "MONITOR did not start"

    def _listen(self) -> None:
        try:
            with self.client.monitor() as monitor:
                self.ready.set()
                for line in monitor.listen():
                    self.lines.put(line)
        except redis.ConnectionError:       # the test is over: its client closed
            return

    def commands(self, action: Callable[[], object]) -> list[str]:
        """The commands ``action`` made this database run (up to a marker of ours)."""
        marker = f"marker-{uuid.uuid4().hex}"
        action()
        self.client.echo(marker)
        seen: list[str] = []
        while True:
            line = self.lines.get(timeout=10)
            if line["db"] != self.db:
                continue
            if marker in line["command"]:
                return seen
            seen.append(line["command"].split(" ")[0].upper())


@pytest.fixture()
def monitored(redis_url: str) -> Iterator[tuple[redis.Redis, Monitor]]:
    url = new_redis_db(redis_url)
    client = redis.Redis.from_url(url, decode_responses=True)
    watch = Monitor(url)
    # the script loaded into Redis (a first call of a fresh Redis loads it)
    watch.commands(lambda: Runs(client).request("warm-up", "c1", trigger="api"))
    yield client, watch
    client.close()
    watch.client.close()


def test_a_cold_run_costs_its_budget_of_commands(monitored):
    client, watch = monitored
    runs = Runs(client)
    steps: dict[str, object] = {}
    request = watch.commands(lambda: steps.setdefault("run", runs.request(
        "web", "c1", trigger="beat", revision="abc")))
    run = steps["run"].other                                              # type: ignore[attr-defined]
    touch = watch.commands(lambda: runs.touch(UNIT, run))
    begin = watch.commands(lambda: steps.setdefault("begun", runs.begin(UNIT, run, "o1", "c1")))
    begun = steps["begun"]
    assert begun.step.verdict == Verdict.STARTED                           # type: ignore[attr-defined]
    status = UnitStatus("web", "c1", phase="Ready", revision="abc", message="2 created")
    entry = HistoryEntry(revision="abc", trigger="beat", result="Ready", message="2 created",
                         started_at="t0", finished_at="t1", run_id=run)
    end = watch.commands(lambda: runs.end(UNIT, run, "o1", Outcome(Phase.READY, "2 created", "abc"),
                                          status=status, entry=entry))
    # request: EVALSHA, MGET (protocol keys), SET queued, HSET + PEXPIRE the run record
    assert len(request) <= 5, request
    # touch: EVALSHA, MGET, HMGET (state and revision), SET queued (its deadline)
    assert len(touch) <= 4, touch
    # begin: EVALSHA, MGET, HMGET run, HMGET cluster, DEL queued, SET running, SET lock,
    # INCR fence, HSET the run record (it keeps the expiry its request gave it)
    assert len(begin) <= 9 and "PEXPIRE" not in begin, begin
    assert 0 < client.pttl(keys.run(UNIT, run)) <= Timing().run_ms
    # end: EVALSHA, MGET, HMGET run, DEL running, DEL lock, SADD x2, LPUSH (no trim
    # needed), HSET run, HSET status, PEXPIRE run
    assert len(end) <= 11, end
    assert "LTRIM" not in end and "HGET" not in begin + touch + end


def test_history_stays_at_its_length_when_only_trimmed_past_it(monitored):
    client, watch = monitored
    runs = Runs(client, Timing(history_size=3))
    for i in range(5):
        run = runs.request("web", "c1", trigger="api", revision=f"r{i}").other
        runs.begin(UNIT, run, "o1", "c1")
        entry = HistoryEntry(revision=f"r{i}", trigger="api", result="Ready", message="",
                             started_at="t0", finished_at="t1", run_id=run)
        ended = watch.commands(lambda: runs.end(
            UNIT, run, "o1", Outcome(Phase.READY, "", f"r{i}"),
            status=UnitStatus("web", "c1", phase="Ready", revision=f"r{i}"), entry=entry))
        assert ("LTRIM" in ended) == (i >= 3), (i, ended)
    history = StatusStore(client).history("web", "c1", limit=10)
    assert [h["revision"] for h in history] == ["r4", "r3", "r2"]
    assert client.llen(keys.history(UNIT)) == 3


def test_a_fence_advanced_past_a_floor_still_counts_from_there(monitored):
    client, _ = monitored
    runs = Runs(client)
    run = runs.request("web", "c1", trigger="api").other
    token = runs.begin(UNIT, run, "o1", "c1").token
    assert runs.advance_fence(UNIT, "o1", token + 10) == token + 10
    assert runs.holding(UNIT, "o1", token + 10)
