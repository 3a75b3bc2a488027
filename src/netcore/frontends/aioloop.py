"""An asyncio event loop whose wait is the completion queue's.

ASGI applications need asyncio: sleeps, outbound connections, database
drivers, run_in_executor.  Rather than run a second loop beside the queue
(a hand-over per request between two threads, as servers with a native
loop usually do), asyncio runs *on* the queue: QueueLoop is an ordinary
SelectorEventLoop whose selector's select() is one round of the transport
(q.wait plus dispatch).  Requests reach the application on the thread
that read them, and an answer written without suspending leaves in the
same round.

- Wake-ups from other threads (call_soon_threadsafe, run_in_executor) are
  a queue post instead of a byte on a socket pair.
- Descriptors asyncio itself watches (outbound connections, the signal
  wake-up pipe) are waited on by a helper thread with a plain selector,
  which posts their readiness to the queue; it waits until the loop has
  run their callbacks before looking again, which keeps asyncio's
  level-triggered semantics.  (The core has no readiness operation for
  foreign descriptors yet; this works on every backend.)
"""
from __future__ import annotations

import asyncio
import selectors
import socket
import threading
from typing import Any, Mapping, Optional


class _Watcher:
    """A thread waiting on asyncio's own descriptors."""

    def __init__(self, post: Any) -> None:
        self._post = post
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ)
        self._lock = threading.Lock()
        self._changes: list = []         # (fd, events): 0 unregisters
        self._resume = threading.Event()
        self._resume.set()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="netcore-asyncio-fds", daemon=True)
        self._thread.start()

    def change(self, fd: int, events: int) -> None:
        with self._lock:
            self._changes.append((fd, events))
        self._kick()

    def resume(self) -> None:
        """The loop has handled the last readiness it was given."""
        if not self._resume.is_set():
            self._resume.set()

    def _kick(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # already kicked, or closed

    def close(self) -> None:
        self._closed = True
        self._resume.set()
        self._kick()
        self._thread.join(5)
        self._sel.close()
        self._wake_r.close()
        self._wake_w.close()

    def _apply(self) -> None:
        with self._lock:
            changes = self._changes
            self._changes = []
        sel = self._sel
        for fd, events in changes:
            try:
                if events:
                    try:
                        sel.modify(fd, events)
                    except KeyError:
                        sel.register(fd, events)
                else:
                    sel.unregister(fd)
            except (KeyError, ValueError, OSError):
                pass  # closed meanwhile: asyncio unregisters it too

    def _run(self) -> None:
        while not self._closed:
            self._resume.wait()
            if self._closed:
                return
            self._apply()
            try:
                ready = self._sel.select()
            except OSError:   # a descriptor closed under us: look again
                continue
            found = []
            for key, events in ready:
                if key.fileobj is self._wake_r:
                    try:
                        while self._wake_r.recv(4096):
                            pass
                    except (BlockingIOError, OSError):
                        pass
                else:
                    found.append((key.fd, events))
            if found:
                self._resume.clear()
                self._post(found)


class QueueSelector(selectors.BaseSelector):
    """The selector of QueueLoop: select() is one round of the transport."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self._keys: dict[int, selectors.SelectorKey] = {}
        self._ready: list = []
        self._watcher: Optional[_Watcher] = None
        self.on_finished: Optional[Any] = None  # called once the transport has finished

    # -- registrations (asyncio's own descriptors)
    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        fd = _fileno(fileobj)
        if fd in self._keys:
            raise KeyError(f"{fileobj!r} is already registered")
        key = selectors.SelectorKey(fileobj, fd, events, data)
        self._keys[fd] = key
        self._watch(fd, events)
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        key = self._keys.pop(_fileno(fileobj))
        self._watch(key.fd, 0)
        return key

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        fd = _fileno(fileobj)
        old = self._keys[fd]
        key = selectors.SelectorKey(old.fileobj, fd, events, data)
        self._keys[fd] = key
        if events != old.events:
            self._watch(fd, events)
        return key

    def _watch(self, fd: int, events: int) -> None:
        if self._watcher is None:
            self._watcher = _Watcher(self._post_ready)
        self._watcher.change(fd, events)

    def _post_ready(self, found: list) -> None:   # the watcher's thread
        self._transport.post(self._ready.extend, found)

    # -- waiting
    def select(self, timeout: Optional[float] = None) -> list:
        if self._watcher is not None:
            self._watcher.resume()
        transport = self._transport
        transport.run_once(timeout)
        if transport.finished and self.on_finished is not None:
            callback = self.on_finished
            self.on_finished = None
            callback()
        if not self._ready:
            return []
        found = self._ready
        self._ready = []
        out = []
        keys = self._keys
        for fd, events in found:
            key = keys.get(fd)
            if key is not None and events & key.events:
                out.append((key, events & key.events))
        return out

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return _KeyMap(self._keys)

    def close(self) -> None:
        self._keys.clear()
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None


class _KeyMap(Mapping):
    def __init__(self, keys: dict) -> None:
        self._keys = keys

    def __len__(self) -> int:
        return len(self._keys)

    def __getitem__(self, fileobj: Any) -> selectors.SelectorKey:
        return self._keys[_fileno(fileobj)]

    def __iter__(self):
        return iter(self._keys)


def _fileno(fileobj: Any) -> int:
    if isinstance(fileobj, int):
        fd = fileobj
    else:
        fd = int(fileobj.fileno())
    if fd < 0:
        raise ValueError(f"invalid file descriptor: {fd}")
    return fd


def _wake(_value: Any) -> None:
    pass


class QueueLoop(asyncio.SelectorEventLoop):  # type: ignore[misc, valid-type]
    """asyncio on the transport's completion queue (see the module docstring)."""

    def __init__(self, transport: Any) -> None:
        self._nc_transport = transport
        self.selector = QueueSelector(transport)
        super().__init__(self.selector)

    def run_until_finished(self) -> None:
        """Serve until the transport has stopped and drained."""
        done = self.create_future()
        self.selector.on_finished = lambda: done.done() or done.set_result(None)
        if self._nc_transport.finished:
            return
        self.run_until_complete(done)

    # Eager task starts before Python 3.12 (asgi.py): while a Task is being
    # created, its first call_soon is caught instead of scheduled, then run.
    _caught: Any = None

    def catch_call_soon(self, callback: Any, *args: Any, context: Any = None) -> None:
        self.__dict__.pop("call_soon", None)   # only the first call is caught
        self._caught = (callback, args, context)

    def run_caught(self) -> None:
        caught = self._caught
        if caught is None:
            return
        self._caught = None
        callback, args, context = caught
        if context is None:
            callback(*args)
        else:
            context.run(callback, *args)

    def _write_to_self(self) -> None:
        # call_soon_threadsafe and friends: a post wakes q.wait()
        self._nc_transport.post(_wake)
