"""Throttling and lock-out of dashboard logins, per user name and per client address.

Attempts that share a user name or an address are answered one at a time, and a failure holds
them for `delay_seconds`: fifty guesses sent in parallel take as long as fifty sent one after the
other. After `max_failures` failures within `window_seconds` the name or address is locked for
`lockout_seconds`: every login for it is refused, even with the right password, until the lock
expires. User names are kept only as hashes (people type passwords into the name field).
"""
from __future__ import annotations

import asyncio
import hashlib
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager


def keys_for(user_name: str, address: str) -> tuple[str, str]:
    return f"user:{hashlib.sha256(user_name.casefold().encode()).hexdigest()}", f"address:{address}"


class LoginGuard:
    def __init__(self, delay_seconds: float = 1.0, max_failures: int = 10, window_seconds: float = 900.0,
                 lockout_seconds: float = 900.0):
        self.delay_seconds, self.max_failures = delay_seconds, max_failures
        self.window_seconds, self.lockout_seconds = window_seconds, lockout_seconds
        self._locks: dict[str, asyncio.Lock] = {}
        self._failures: dict[str, deque[float]] = {}
        self._locked_until: dict[str, float] = {}

    @asynccontextmanager
    async def turn(self, keys: Iterable[str]) -> AsyncIterator[None]:
        """Wait until no other attempt for any of `keys` is being answered (locks taken in one order,
        so two attempts never wait for each other)."""
        async with AsyncExitStack() as stack:
            for key in sorted(set(keys)):
                await stack.enter_async_context(self._locks.setdefault(key, asyncio.Lock()))
            yield
        self._forget_idle()

    def lockouts(self) -> int:
        """How many user names and addresses are locked now."""
        now = time.monotonic()
        return sum(until > now for until in self._locked_until.values())

    def locked(self, keys: Iterable[str]) -> bool:
        now = time.monotonic()
        return any(self._locked_until.get(key, 0.0) > now for key in keys)

    async def failed(self, keys: Iterable[str]) -> list[str]:
        """Note a failure and wait the delay; returns the keys this failure locked."""
        now, newly_locked = time.monotonic(), []
        for key in keys:
            failures = self._failures.setdefault(key, deque())
            failures.append(now)
            while failures and failures[0] < now - self.window_seconds:
                failures.popleft()
            if len(failures) >= self.max_failures and self._locked_until.get(key, 0.0) <= now:
                self._locked_until[key] = now + self.lockout_seconds
                failures.clear()
                newly_locked.append(key)
        await asyncio.sleep(self.delay_seconds)
        return newly_locked

    def succeeded(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._failures.pop(key, None)

    def _forget_idle(self) -> None:
        """Drop what no longer matters, so guesses with ever new user names cannot fill memory."""
        now = time.monotonic()
        for key in [k for k, until in self._locked_until.items() if until <= now]:
            del self._locked_until[key]
        for key in [k for k, f in self._failures.items() if not f or f[-1] < now - self.window_seconds]:
            del self._failures[key]
        for key in [k for k, lock in self._locks.items() if not lock.locked() and k not in self._failures
                    and k not in self._locked_until]:
            del self._locks[key]
