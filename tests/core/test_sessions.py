"""Session stores: the in-memory default and Redis, with the same behaviour."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from stockade import ConfigurationError, Guard, MemorySessionStore, RateLimited, RedisSessionStore
from stockade.session import SessionStore, current_session


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_memory_store_windows() -> None:
    clock = Clock()
    store = MemorySessionStore(clock=clock)
    assert [store.hit("k", 10, 2) for _ in range(3)] == [True, True, False]
    clock.now += 10
    assert store.hit("k", 10, 2) is True
    assert store.add("c", 5) == 5 and store.add("c", 2) == 7 and store.get("c") == 7
    assert store.get("unknown") == 0


@pytest.fixture
def redis_store(redis_url: str) -> Iterator[RedisSessionStore]:
    prefix = f"stockade-test-{uuid.uuid4().hex}:"
    store = RedisSessionStore(redis_url, prefix=prefix)
    yield store
    import redis

    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)


def test_redis_store_behaves_like_memory(redis_store: RedisSessionStore) -> None:
    assert isinstance(redis_store, SessionStore)
    assert [redis_store.hit("k", 60, 2) for _ in range(3)] == [True, True, False]
    assert redis_store.add("c", 5) == 5 and redis_store.add("c", 2) == 7
    assert redis_store.get("c") == 7 and redis_store.get("nope") == 0


def test_two_guards_share_limits_through_redis(redis_url: str) -> None:
    prefix = f"stockade-test-{uuid.uuid4().hex}:"
    policy = (
        "version: 1\n"
        f"sessions: {{store: '{redis_url}', prefix: '{prefix}'}}\n"
        "limits: [{id: l, tool: t, calls: 3, window: 1h}]\n"
        "rules: [{id: t, tool: t, effect: allow}]\n"
    )
    guards = [Guard.from_text(policy), Guard.from_text(policy)]
    for g in guards:
        g.tool("t")(lambda: 1)
    guards[0].call("t", "call", session="shared")
    guards[1].call("t", "call", session="shared")
    guards[0].call("t", "call", session="shared")
    with pytest.raises(RateLimited):
        guards[1].call("t", "call", session="shared")
    for g in guards:
        g.close()


def test_redis_down_is_a_configuration_error() -> None:
    store = RedisSessionStore("redis://127.0.0.1:1/0")
    with pytest.raises(ConfigurationError, match="redis session store failed"):
        store.add("x", 1)


def test_session_context_is_per_context() -> None:
    guard = Guard.from_text("version: 1")
    assert current_session() is None
    with guard.session("a") as a:
        assert current_session() is a
        with guard.session("b") as b:
            assert current_session() is b
        assert current_session() is a
    assert current_session() is None
