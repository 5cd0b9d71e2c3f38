"""Per-browser-session stream state and the request checks every handler shares."""
from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field

import gradio as gr

from driftin import demo

log = logging.getLogger("driftin.app")


def rejected(where: str, msg: str) -> gr.Error:
    """A bad request: one log line (no traceback) and a clear message for the user."""
    log.warning("rejected %s: %s", where, msg)
    return gr.Error(msg, print_exception=False)


@contextmanager
def rejecting(where: str):
    """A ValueError in the block (the checks' way of saying the input is bad) becomes `rejected(where, ...)`."""
    try:
        yield
    except ValueError as e:
        raise rejected(where, str(e)) from None


@dataclass
class Session:
    settings: demo.Settings
    stop: threading.Event = field(default_factory=threading.Event)  # end now (tab closed, new stream)
    finish: threading.Event = field(default_factory=threading.Event)  # Stop button: let the DDPM sample finish
    recorder: demo.Recorder | None = None


def session_key(request) -> str:
    return getattr(request, "session_hash", None) or "anonymous"


class SessionHandlers:
    """What the handlers share: request checks and the stream of each kind per browser session. Expects `engine`
    (a demo.Engine), `sessions` ({(browser session, kind): Session}) and `_lock` (guarding `sessions`)."""

    engine: demo.Engine
    sessions: dict[tuple[str, str], Session]
    _lock: threading.Lock

    @staticmethod
    def settings(seed, random_seed, grid, steps, class_name, guidance=1.0, view="x0", ddim_guidance=demo.DDIM_GUIDANCE,
                 ddim_interval=True, where="request") -> demo.Settings:
        with rejecting(where):
            return demo.validate(seed, random_seed, grid, steps, class_name, guidance, view, ddim_guidance, ddim_interval)

    def _session(self, request: gr.Request | None, kind: str, s: demo.Settings) -> Session:
        key = (session_key(request), kind)
        with self._lock:
            old = self.sessions.get(key)
            if old is not None:
                old.stop.set()  # one stream of a kind per browser session
            sess = self.sessions[key] = Session(s)
        return sess

    def _end(self, request, kind: str, sess: Session) -> None:
        sess.stop.set()
        key = (session_key(request), kind)
        with self._lock:
            if self.sessions.get(key) is sess:
                del self.sessions[key]

    def _check(self, kind: str, s: demo.Settings, where: str = "request") -> None:
        with rejecting(where):
            self.engine.check(kind, s)
