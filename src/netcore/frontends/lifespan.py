"""ASGI lifespan: the application's startup and shutdown, around serving.

``--lifespan auto`` (the default) runs it and tolerates applications that
do not speak it (they raise or return at once: logged, then serving goes
on); ``on`` requires it; ``off`` skips it.  A ``lifespan.startup.failed``
stops the server with the application's message (StartupFailed).  The
lifespan ``state`` dict is copied, shallowly, into every request's scope.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Optional

error_log = logging.getLogger("netcore.error")

MODES = ("auto", "on", "off")


class StartupFailed(Exception):
    """The application's lifespan startup failed; the server must not serve."""


class Lifespan:
    def __init__(self, app: Any, mode: str) -> None:
        self.app = app
        self.mode = mode
        self.state: dict = {}
        self._inbox: Optional[asyncio.Queue] = None
        self._outbox: Optional[asyncio.Queue] = None
        self._task: Optional[asyncio.Task] = None
        self.running = False        # startup completed: shutdown will be sent

    def startup(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.mode == "off":
            return
        self._inbox = asyncio.Queue()
        self._outbox = asyncio.Queue()
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"},
                 "state": self.state}
        self._task = loop.create_task(self._main(scope))
        self._inbox.put_nowait({"type": "lifespan.startup"})
        kind, message = loop.run_until_complete(self._outbox.get())
        if kind == "lifespan.startup.complete":
            self.running = True
            return
        if kind == "lifespan.startup.failed":
            raise StartupFailed(message or "lifespan.startup.failed")
        # the application does not speak lifespan (it raised, or returned)
        if self.mode == "on":
            raise StartupFailed(message)
        log = error_log.info if kind == "returned" else error_log.warning
        log("ASGI lifespan not supported by the application (%s); serving without it", message)

    def shutdown(self, loop: asyncio.AbstractEventLoop, timeout: float = 10.0) -> None:
        if not self.running or self._task is None or self._task.done():
            return
        self.running = False
        self._inbox.put_nowait({"type": "lifespan.shutdown"})
        try:
            kind, message = loop.run_until_complete(asyncio.wait_for(self._outbox.get(), timeout))
        except asyncio.TimeoutError:
            error_log.error("ASGI lifespan shutdown did not complete within %.1f s", timeout)
            return
        if kind != "lifespan.shutdown.complete":
            error_log.error("ASGI lifespan shutdown failed: %s", message)

    async def _main(self, scope: dict) -> None:
        try:
            await self.app(scope, self._receive, self._send)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise
            if self.running:
                error_log.error("ASGI lifespan failed after startup", exc_info=exc)
            elif self.mode == "on":
                error_log.error("ASGI lifespan startup raised", exc_info=exc)
            self._outbox.put_nowait(("raised", f"{type(exc).__name__}: {exc}"))
        else:
            self._outbox.put_nowait(("returned", "the application returned"))

    async def _receive(self) -> dict:
        return await self._inbox.get()

    async def _send(self, message: dict) -> None:
        kind = message["type"]
        if kind not in ("lifespan.startup.complete", "lifespan.startup.failed",
                        "lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            raise RuntimeError(f"unexpected ASGI lifespan message {kind!r}")
        self._outbox.put_nowait((kind, message.get("message", "")))
