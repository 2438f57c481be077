"""Stateful rate limits: a token bucket per key (user, source address...).

Providers throttle logins and sending per account and address and recover
when the window passes; a token bucket models both with one rule: `count`
actions per `per_seconds`, refilled continuously.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from dataclasses import field

from mailharness.servers.errors import ConfigError
from mailharness.servers.records import record


@record
class RateLimit:
    """At most `count` actions per `per_seconds`, per key."""

    count: int
    per_seconds: float

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ConfigError(f"rate limit count={self.count!r}: expected >= 1")
        if self.per_seconds <= 0:
            raise ConfigError(f"rate limit per_seconds={self.per_seconds!r}: expected > 0")


@record(frozen=False, kw_only=False)
class TokenBuckets:
    """One bucket per key; `take` spends a token if one is left. Thread-safe."""

    _buckets: dict[Hashable, tuple[float, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, key: Hashable, limit: RateLimit, now: float) -> bool:
        rate = limit.count / limit.per_seconds
        with self._lock:
            tokens, stamp = self._buckets.get(key, (float(limit.count), now))
            tokens = min(float(limit.count), tokens + (now - stamp) * rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                return False
            self._buckets[key] = (tokens - 1.0, now)
            return True

    def clear(self) -> None:
        with self._lock:
            self._buckets.clear()

    def __len__(self) -> int:
        """How many keys have a bucket (none after `clear`)."""
        with self._lock:
            return len(self._buckets)
