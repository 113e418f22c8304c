"""Dashboard sessions kept on the server: the cookie (signed, SameSite=strict) holds only a random
session id, so logging out ends the session for every copy of the cookie, and a restart (which a
password change needs, since the password is read at start) ends them all."""
from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass

SESSION_SECONDS = 12 * 3600


@dataclass(frozen=True)
class Session:
    user: str
    csrf: str        # the token every button of this session carries
    started: float


class SessionStore:
    def __init__(self, lifetime_seconds: float = SESSION_SECONDS):
        self.lifetime_seconds = lifetime_seconds
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def start(self, user: str) -> str:
        """A new session for `user`; returns its id."""
        session_id = secrets.token_urlsafe(32)
        with self._lock:
            self._expire()
            self._sessions[session_id] = Session(user, secrets.token_urlsafe(32), time.time())
        return session_id

    def get(self, session_id: str | None) -> Session | None:
        with self._lock:
            self._expire()
            return self._sessions.get(session_id) if session_id else None

    def end(self, session_id: str | None) -> None:
        with self._lock:
            self._sessions.pop(session_id or "", None)

    def _expire(self) -> None:
        oldest = time.time() - self.lifetime_seconds
        for session_id in [s for s, session in self._sessions.items() if session.started < oldest]:
            del self._sessions[session_id]
