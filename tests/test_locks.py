"""Sync-unit locks on a real Redis: exclusive, renewable, coalescing, fenced."""

from __future__ import annotations

import time

import pytest

from shared.errors import LockBusy
from shared.locks import Locks


def test_second_acquire_is_coalesced_and_asks_for_one_rerun(redis_client):
    locks = Locks(redis_client, ttl=5)
    held = locks.acquire_or_coalesce("c/app")
    for _ in range(5):
        with pytest.raises(LockBusy, match="coalesced"):
            locks.acquire_or_coalesce("c/app")
    assert locks.release(held) is True           # one rerun, however many asked
    again = locks.acquire_or_coalesce("c/app")
    assert locks.release(again) is False


def test_fencing_tokens_increase_even_after_redis_is_flushed(redis_client):
    locks = Locks(redis_client, ttl=5)
    first = locks.try_acquire("c/app")
    locks.release(first)
    second = locks.try_acquire("c/app")
    assert second.token > first.token
    redis_client.flushdb()
    third = locks.try_acquire("c/app")
    assert third.token > second.token


def test_expired_owner_cannot_renew_or_release_the_new_holder(redis_client):
    locks = Locks(redis_client, ttl=0.2)
    old = locks.try_acquire("c/app")
    time.sleep(0.35)
    new = locks.try_acquire("c/app")
    assert new is not None
    assert locks.renew(old) is False
    locks.release(old)
    assert locks.try_acquire("c/app") is None      # the new holder still holds it


def test_renewing_keeps_a_lock_alive_past_its_ttl(redis_client):
    locks = Locks(redis_client, ttl=0.3)
    lock = locks.try_acquire("c/app")
    with locks.renewing(lock):
        time.sleep(0.8)
        assert locks.try_acquire("c/app") is None
    locks.release(lock)
    assert locks.try_acquire("c/app") is not None
