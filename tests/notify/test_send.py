"""Delivering notifications over real HTTP: providers, retries with back-off, rate limits."""

from __future__ import annotations

import pytest

from scheduler.notify.decide import Message
from scheduler.notify.send import Outbox, Sender, backoff, wants
from shared.spec.model import Route
from tests.support.notify_receiver import Receiver

SHA = "abc1234567890def0123456789abcdef01234567"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def receiver():
    r = Receiver()
    yield r
    r.close()


def message(i: int = 0, event: str = "rollup", app: str | None = "web", state: str = "success") -> Message:
    return Message(f"{event}:{app}:{i}", event, SHA, f"abc12345 {app}: {i}/3 Ready",
                   state, app, summary=f"{i}/3 Ready")


def test_backoff_doubles_with_jitter_and_is_capped():
    assert [backoff(n, rand=lambda: 0.5) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert backoff(30, rand=lambda: 0.5) == 60
    assert backoff(1, rand=lambda: 0.0) == pytest.approx(0.8)
    assert backoff(1, rand=lambda: 1.0) == pytest.approx(1.2)


def test_slack_and_webhook_payloads_with_a_bearer_token(receiver):
    env = {"CHAT_URL": f"{receiver.url}/chat", "HOOK_TOKEN": "s3cret"}
    sender = Sender(env)
    sender.set_routes((Route("chat", "slack", url_env="CHAT_URL"),
                       Route("hook", "webhook", url=f"{receiver.url}/hook", token_env="HOOK_TOKEN")))
    sender.dispatch(message(3))
    sender.pump()
    (chat,) = receiver.got("/chat")
    assert chat.body == {"text": "abc12345 web: 3/3 Ready"}
    (hook,) = receiver.got("/hook")
    assert hook.headers["Authorization"] == "Bearer s3cret"
    assert hook.body["event"] == "rollup" and hook.body["revision"] == SHA
    assert hook.body["application"] == "web" and hook.body["state"] == "success"


def test_github_commit_status_per_application_and_fleet_wide(receiver):
    sender = Sender({"GH_TOKEN": "t0ken"})
    sender.set_routes((Route("gh", "github", api=receiver.url, repository="org/gitops",
                             token_env="GH_TOKEN", events=("rollup",)),
                       Route("ghfleet", "github", api=receiver.url, repository="org/gitops",
                             token_env="GH_TOKEN", events=("rollup",), context="fleet")))
    sender.dispatch(message(3))
    sender.dispatch(Message(f"fleet:ghfleet:{SHA}", "rollup", SHA, "abc12345: 4/5 Ready",
                            "failure", None, "ghfleet", summary="4/5 Ready (2 applications)"))
    sender.dispatch(message(1, event="failure", state="failure"))      # not for a commit status
    sender.pump()
    got = receiver.got(f"/repos/org/gitops/statuses/{SHA}")
    assert [r.body for r in got] == [
        {"state": "success", "description": "fleet: 3/3 Ready", "context": "fleetsync/web"},
        {"state": "failure", "description": "fleet: 4/5 Ready (2 applications)", "context": "fleetsync"}]
    assert got[0].headers["Authorization"] == "Bearer t0ken"


def test_routes_take_only_their_applications_and_events():
    only_api = Route("r", "slack", url_env="X", applications=("api",))
    failures = Route("f", "webhook", url="http://h/x", events=("failure",))
    assert not wants(only_api, message(1)) and wants(only_api, message(1, app="api"))
    assert not wants(failures, message(1))
    assert wants(failures, message(1, "failure")) and wants(failures, message(1, "recovery"))
    assert not wants(failures, message(1, "pending"))


def test_500_twice_then_200_is_delivered_once_after_back_off(receiver):
    clock = Clock()
    receiver.fail("/hook", 500, 503)
    box = Outbox(Route("hook", "webhook", url=f"{receiver.url}/hook"), {}, _post(), clock=clock)
    box.offer(message(3))
    box.pump()
    assert len(receiver.got("/hook", ok=False)) == 1 and box.waiting() == 1
    clock.now += 0.5
    box.pump()                                  # backing off: no second try yet
    assert len(receiver.got("/hook", ok=False)) == 1
    clock.now += 1.0
    box.pump()
    clock.now += 3.0
    box.pump()
    answered = [r.status for r in receiver.got("/hook", ok=False)]
    assert answered == [500, 503, 200]
    assert box.delivered == 1 and box.waiting() == 0
    assert len({r.body["text"] for r in receiver.got("/hook", ok=False)}) == 1


def test_a_4xx_is_dropped_and_the_next_message_goes_on(receiver):
    receiver.fail("/hook", 404)
    box = Outbox(Route("hook", "webhook", url=f"{receiver.url}/hook"), {}, _post(), clock=Clock())
    box.offer(message(1))
    box.offer(message(2))
    box.pump()
    assert [r.status for r in receiver.got("/hook", ok=False)] == [404, 200]
    assert (box.dropped, box.delivered) == (1, 1)


def test_a_missing_environment_variable_drops_with_a_reason_not_a_crash(receiver):
    box = Outbox(Route("chat", "slack", url_env="NOT_SET"), {}, _post(), clock=Clock())
    box.offer(message(1))
    box.pump()
    assert box.dropped == 1 and receiver.got() == []


def test_a_burst_above_max_per_minute_is_held_and_summarized_not_dropped(receiver):
    clock = Clock()
    box = Outbox(Route("chat", "slack", url_env="U", max_per_minute=5),
                 {"U": f"{receiver.url}/chat"}, _post(), clock=clock)
    for i in range(12):
        box.offer(message(i))
    box.pump()
    got = receiver.got("/chat")
    assert len(got) == 5                                   # the limit
    assert [r.body["text"] for r in got[:4]] == [f"abc12345 web: {i}/3 Ready" for i in range(4)]
    summary = got[4].body["text"].splitlines()
    assert summary[0] == "8 notifications held by the rate limit (5 per minute):"
    assert summary[1:] == [f"abc12345 web: {i}/3 Ready" for i in range(4, 12)]
    box.offer(message(99))
    clock.now += 59
    box.pump()
    assert len(receiver.got("/chat")) == 5 and box.waiting() == 1     # held within the minute
    clock.now += 1
    box.pump()
    assert receiver.got("/chat")[-1].body["text"] == "abc12345 web: 99/3 Ready"
    assert box.delivered == 13 and box.dropped == 0


def test_commit_statuses_wait_for_the_limit_and_a_newer_one_replaces_a_waiting_one(receiver):
    clock = Clock()
    box = Outbox(Route("gh", "github", api=receiver.url, repository="o/r", token_env="T",
                       max_per_minute=1), {"T": "x"}, _post(), clock=clock)
    box.offer(message(1, app="api"))
    box.offer(Message("pending:web", "pending", SHA, "abc web: rolling out", "pending", "web"))
    box.offer(message(3))                                  # web's final status replaces pending
    box.pump()
    clock.now += 60
    box.pump()
    states = [(r.body["context"], r.body["state"]) for r in receiver.got("/repos/")]
    assert states == [("fleetsync/api", "success"), ("fleetsync/web", "success")]


def _post():
    from scheduler.notify.send import http_post

    return lambda request: http_post(request, timeout=5)


@pytest.fixture()
def elsewhere():
    """Another host (127.0.0.2 is loopback too on Linux) that a redirect points at."""
    r = Receiver(host="127.0.0.2")
    yield r
    r.close()


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_a_failed_delivery_and_the_token_goes_nowhere_else(receiver, elsewhere,
                                                                          status):
    from scheduler.notify.send import DeliveryError, Request, http_post

    receiver.redirect("/hook", status, f"{elsewhere.url}/stolen?key=abc")
    box = Outbox(Route("hook", "webhook", url=f"{receiver.url}/hook", token_env="HOOK_TOKEN"),
                 {"HOOK_TOKEN": "s3cret"}, _post(), clock=Clock())
    box.offer(message(1))
    box.pump()
    assert (box.delivered, box.dropped, box.waiting()) == (0, 1, 0)   # not retried either
    assert [r.status for r in receiver.got("/hook", ok=False)] == [status]
    assert elsewhere.got(ok=False) == []                      # neither followed as POST nor GET

    with pytest.raises(DeliveryError) as failed:
        http_post(Request(f"{receiver.url}/hook", b"{}", {"Authorization": "Bearer s3cret"}),
                  timeout=5)
    assert not failed.value.transient
    assert str(failed.value).startswith(f"HTTP {status}: redirected to {elsewhere.url},")
    assert "not followed" in str(failed.value) and "key=abc" not in str(failed.value)
    assert elsewhere.got(ok=False) == []
