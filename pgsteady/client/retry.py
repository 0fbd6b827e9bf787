"""Exponential backoff with jitter, and a retry loop with injectable clock, sleep and random.

Schedule (``n`` = number of failures so far, starting at 0)::

    nominal(n) = min(cap, base * factor ** n)            # 1, 2, 4, 8, ... cap
    delay(n)   = min(cap, nominal(n) * (1 + jitter * (2 * r - 1)))   # r = rand() in [0, 1)

so each delay lies in ``[nominal * (1 - jitter), min(cap, nominal * (1 + jitter))]``.

Budget: at most ``max_attempts`` attempts (``None`` = unlimited) and no attempt starts after
``deadline`` seconds from the first one (``None`` = no deadline).  A sleep that would cross the
deadline is shortened so that one last attempt happens right at the deadline.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

Clock = Callable[[], float]
Sleep = Callable[[float], None]
Rand = Callable[[], float]


@dataclass(frozen=True)
class Backoff:
    """Retry budget and delay schedule (see the module docstring for the formulas)."""

    base: float = 1.0
    factor: float = 2.0
    cap: float = 30.0
    jitter: float = 0.2
    max_attempts: int | None = 10
    deadline: float | None = 60.0

    def __post_init__(self) -> None:
        if self.base < 0 or self.cap < 0 or self.factor < 1:
            raise ValueError("need base >= 0, cap >= 0, factor >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be within [0, 1]")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1 (or None)")

    def nominal(self, n: int) -> float:
        """Delay before retry ``n + 1`` without jitter: ``min(cap, base * factor**n)``."""
        # Multiply step by step so a large n cannot overflow a float power.
        if self.base == 0:
            return 0.0
        value = self.base
        for _ in range(n):
            value *= self.factor
            if value >= self.cap:
                return self.cap
        return min(self.cap, value)

    def delay(self, n: int, rand: Rand = random.random) -> float:
        """Jittered delay after the ``n``-th failure (0-based), never above ``cap``."""
        nominal = self.nominal(n)
        return min(self.cap, max(0.0, nominal * (1 + self.jitter * (2 * rand() - 1))))

    def delays(self, rand: Rand = random.random) -> Iterator[float]:
        """The (infinite) jittered schedule; the budget is enforced by :func:`retry_call`."""
        n = 0
        while True:
            yield self.delay(n, rand)
            n += 1


def retry_call(
    fn: Callable[[], T],
    policy: Backoff,
    *,
    retry_on: Callable[[BaseException], bool],
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
    rand: Rand = random.random,
    on_failure: Callable[[int, BaseException, float | None], None] | None = None,
) -> T:
    """Call ``fn`` until it succeeds, retrying exceptions for which ``retry_on`` is true.

    Non-retryable exceptions propagate at once.  When the budget (``policy.max_attempts`` /
    ``policy.deadline``) is used up, the last exception propagates.  ``on_failure(attempt,
    exc, next_delay)`` is called after each failed attempt (``next_delay`` is ``None`` when
    giving up); use it for stats and logging.
    """
    start = clock()
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except Exception as exc:
            retryable = retry_on(exc)
            wait = _next_wait(policy, attempt, clock() - start, rand) if retryable else None
            if on_failure is not None:
                on_failure(attempt, exc, wait)
            if wait is None:
                raise
        sleep(wait)


def _next_wait(policy: Backoff, attempt: int, elapsed: float, rand: Rand) -> float | None:
    """Seconds to sleep before attempt ``attempt + 1``, or ``None`` if the budget is spent."""
    if policy.max_attempts is not None and attempt >= policy.max_attempts:
        return None
    delay = policy.delay(attempt - 1, rand)
    if policy.deadline is None:
        return delay
    remaining = policy.deadline - elapsed
    if remaining <= 0:
        return None
    return min(delay, remaining)
