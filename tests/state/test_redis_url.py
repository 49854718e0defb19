"""FLEETSYNC_REDIS_URL read in one place: one Redis or Sentinel, bad URLs named, passwords masked."""

from __future__ import annotations

import pytest

from shared.state.redis_url import RedisURLError, celery_config, parse, redact
from shared.settings import Settings
from shared.celery_app import make_app


def test_a_sentinel_url_names_every_sentinel_the_database_and_the_primary() -> None:
    target = parse("sentinel://app:s%40cret@s1:26380,s2,[::1]:26381/3?master=fleet")
    assert target.sentinels == (("s1", 26380), ("s2", 26379), ("::1", 26381))
    assert (target.master, target.db, target.username, target.password) == ("fleet", 3, "app", "s@cret")


def test_celery_gets_one_sentinel_address_per_sentinel_and_the_master_name() -> None:
    conf = celery_config("sentinel://:pw@s1:26380,s2:26379/2?master=fleet")
    assert conf["broker_url"] == "sentinel://:pw@s1:26380/2;sentinel://:pw@s2:26379/2"
    assert conf["result_backend"] == conf["broker_url"]
    assert conf["broker_transport_options"]["master_name"] == "fleet"
    app = make_app(Settings(redis_url="sentinel://:pw@s1:26380,s2:26379/2?master=fleet"))
    assert app.conf.broker_transport_options["master_name"] == "fleet"
    assert app.conf.result_backend_transport_options["master_name"] == "fleet"
    assert app.conf.broker_transport_options["visibility_timeout"] > 0
    assert "pw" not in app.connection().as_uri()


def test_a_plain_url_is_passed_through() -> None:
    assert celery_config("rediss://:pw@h:6380/1") == {"broker_url": "rediss://:pw@h:6380/1",
                                                      "result_backend": "rediss://:pw@h:6380/1"}
    assert parse("unix:///run/redis.sock?db=4").db == 4


@pytest.mark.parametrize("url, says", [
    ("sentinel://s1:26379/0", "?master=NAME"),
    ("sentinel://s1:x/0?master=m", "the port must be a number"),
    ("sentinel://:hunter2@s1,,s2/0?master=m", "has no host"),
    ("sentinel://s1/0?master=m&service=x", "unknown parameter(s) service"),
    ("redis://:hunter2@h:6379/zero", "the database must be a number"),
    ("http://h:6379/0", "the scheme must be one of"),
])
def test_a_bad_url_is_refused_naming_the_variable_and_the_problem(url: str, says: str) -> None:
    with pytest.raises(RedisURLError) as caught:
        parse(url)
    assert str(caught.value).startswith("FLEETSYNC_REDIS_URL=")
    assert says in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_redact_masks_the_password_of_either_form() -> None:
    assert redact("redis://u:p4ss@h:6379/0") == "redis://u:***@h:6379/0"
    assert redact("sentinel://:p4ss@s1:26379,s2/0?master=m") == "sentinel://:***@s1:26379,s2/0?master=m"
    assert redact("redis://h:6379/0") == "redis://h:6379/0"
