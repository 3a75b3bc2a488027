"""The WSGI interface (PEP 3333): ``app(environ, start_response) -> iterable``.

Applications run on a pool (``threads``; by default 4 per core, up to 32),
so a blocking application never blocks the I/O thread, or with
``threads=0`` inline on it, for applications that never block.

- ``wsgi.input`` on the pool streams a Content-Length body while it arrives
  (read(n), read(), readline(), readlines(), iteration; EOF at the end of
  the body; ``wsgi.input_terminated`` set), once a first window of it (or
  all of it) is here, so that trickling clients hold no pool thread.  At most a window of unread
  body is buffered: past it, reading the socket pauses until the
  application catches up.  A chunked body is de-chunked and collected
  first, then given a CONTENT_LENGTH, because Django (and others) read
  exactly CONTENT_LENGTH bytes; inline, every body is collected first.
  Both are bounded by max_body_bytes.
- The status and headers are sent with the first non-empty body bytes (or
  at the end); an iterable that ends within its first window gets a
  Content-Length, a longer one is sent chunked (close-delimited to
  HTTP/1.0 clients) window by window with backpressure (blocking.py).
- ``close()`` of the result is always called, also when the client goes away.
- Hop-by-hop headers from the application (Connection, Transfer-Encoding...)
  are refused by start_response, which the application sees as an error:
  the client gets a 500 and the error is logged.
"""
from __future__ import annotations

import io
import os
import stat
import sys
import threading
from collections import deque
from typing import Any, Callable, Iterable, Optional
from urllib.parse import unquote_to_bytes

from ..http.request import Request
from ..http.response import (
    STREAM_WINDOW, FileRange, Stream, build_head, complete_head, encode_headers, parse_status,
    render_iterable)
from . import clane
from .base import default_threads, error_log, log_access
from .blocking import BlockingDispatcher

WSGIApp = Callable[[dict, Callable], Iterable[bytes]]

# RFC 9110 section 7.6.1: these describe one hop, which is the server's.
HOP_BY_HOP = frozenset(("connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                        "te", "trailer", "trailers", "transfer-encoding", "upgrade"))

INPUT_HIGH = 256 * 1024     # unread body bytes buffered before reading pauses
INPUT_LOW = 64 * 1024       # ... and resumes
STREAM_START = 64 * 1024    # body bytes that must be here before a streaming call starts


class ClientDisconnected(OSError):
    """The client went away before the request body was complete."""


# ---------------------------------------------------------------- wsgi.input

class _EmptyInput:
    """wsgi.input of a request without a body: stateless, so one is shared."""

    def read(self, size: int = -1) -> bytes:
        return b""

    def readline(self, size: int = -1) -> bytes:
        return b""

    def readlines(self, hint: int = -1) -> list:
        return []

    def __iter__(self):
        return iter(())


EMPTY_INPUT = _EmptyInput()


class StreamingInput:
    """wsgi.input for a body still arriving: the I/O thread feeds it, the
    application's thread reads it (blocking until data or EOF arrives)."""

    def __init__(self, dispatcher: "WSGIDispatcher", conn: Any) -> None:
        self._dispatcher = dispatcher
        self._conn = conn
        self._cond = threading.Condition(threading.Lock())
        self._chunks: deque = deque()
        self._buffered = 0
        self._eof = False
        self._aborted = False
        self._paused = False        # we asked the transport to stop reading
        self._discard = False       # the application is done: drop what still arrives
        self.received = 0           # body bytes fed so far (I/O thread)
        self.waiting: Optional[Request] = None   # its call, until it may start (I/O thread)

    # -- I/O thread
    def feed(self, data: bytes) -> None:
        self.received += len(data)
        with self._cond:
            if self._discard:
                return
            self._chunks.append(data)
            self._buffered += len(data)
            if self._buffered >= INPUT_HIGH and not self._paused:
                self._paused = True
                self._conn.pause_reading()
            self._cond.notify()

    def end(self) -> None:
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def abort(self) -> None:
        with self._cond:
            self._aborted = True
            self._cond.notify_all()

    def finished(self) -> None:
        """The application returned: nobody reads any more (I/O thread)."""
        with self._cond:
            self._discard = True
            self._chunks.clear()
            self._buffered = 0
            paused = self._paused
            self._paused = False
        if paused:
            self._conn.resume_reading()

    # -- the application's thread
    def _fill(self) -> bool:
        """Wait until data, EOF or an abort; False at EOF (lock held)."""
        while not self._chunks:
            if self._eof:
                return False
            if self._aborted:
                raise ClientDisconnected("the client went away before the request body was complete")
            self._cond.wait()
        return True

    def _took(self, n: int) -> None:
        self._buffered -= n
        if self._paused and self._buffered <= INPUT_LOW:
            self._paused = False
            self._dispatcher.transport.post_to(self._conn, _resume, self._conn)

    def read(self, size: Optional[int] = -1) -> bytes:
        if size is None or size < 0:
            out = []
            with self._cond:
                while self._fill():
                    chunk = self._chunks.popleft()
                    self._took(len(chunk))
                    out.append(chunk)
            return b"".join(out)
        if size == 0:
            return b""
        with self._cond:
            if not self._fill():
                return b""
            chunk = self._chunks.popleft()
            if len(chunk) > size:
                self._chunks.appendleft(chunk[size:])
                chunk = chunk[:size]
            self._took(len(chunk))
            return chunk

    def readline(self, size: Optional[int] = -1) -> bytes:
        limit = -1 if size is None else size
        out = bytearray()
        with self._cond:
            while limit < 0 or len(out) < limit:
                if not self._fill():
                    break
                chunk = self._chunks.popleft()
                want = len(chunk) if limit < 0 else min(len(chunk), limit - len(out))
                nl = chunk.find(b"\n", 0, want)
                take = nl + 1 if nl >= 0 else want
                if take < len(chunk):
                    self._chunks.appendleft(chunk[take:])
                out += chunk[:take]
                self._took(take)
                if nl >= 0:
                    break
        return bytes(out)

    def readlines(self, hint: int = -1) -> list:
        lines = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                return lines

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line


def _is_chunked(req: Request) -> bool:
    for name, _value in req.raw_headers:
        if name == b"transfer-encoding":
            return True
    return False


def _resume(conn: Any) -> None:
    conn.resume_reading()


# ---------------------------------------------------------------- file_wrapper

class FileWrapper:
    """wsgi.file_wrapper.  A regular file is sent by the kernel (sendfile)
    where the backend can; anything else is read and sent in windows."""

    def __init__(self, filelike: Any, blksize: int = 8192) -> None:
        self.filelike = filelike
        self.blksize = max(blksize, STREAM_WINDOW)
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self):
        read = self.filelike.read
        size = self.blksize
        while True:
            data = read(size)
            if not data:
                return
            yield data


# ---------------------------------------------------------------- one call

class _Call:
    """start_response and write for one application call.

    start_response only records its arguments: they are checked when the
    head is built, once per distinct (status, headers) (see _check), which
    keeps the per-request cost of an application that answers the same way
    every time to a few stores.
    """

    __slots__ = ("dispatcher", "conn", "req", "status_text", "headers", "status", "line",
                 "framer", "written", "pending")

    def __init__(self, dispatcher: "WSGIDispatcher", conn: Any, req: Any) -> None:
        self.dispatcher = dispatcher
        self.conn = conn
        self.req = req                         # a Request, or None on the fast path
        self.status_text: Optional[str] = None
        self.headers: Any = None
        self.status = 0                        # the code, once checked
        self.line: Optional[bytes] = None      # the status line, once checked
        self.framer: Optional[Stream] = None   # once write() has sent the head: its framing
        self.written: list = []                # write() data not yet sent
        self.pending = 0

    def start_response(self, status: str, headers: list, exc_info: Any = None) -> Callable:
        if exc_info:
            try:
                if self.framer is not None:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # no reference cycle through the traceback
        elif self.status_text is not None:
            raise AssertionError("start_response() called a second time without exc_info")
        self.status_text = status
        self.headers = headers
        return self.write

    def write(self, data: bytes) -> None:
        """The legacy write callable: data goes out before the result's.
        On a pool it is sent once a window has gathered, and write() returns
        when the client has taken it; inline it waits for the result."""
        if self.status_text is None:
            raise AssertionError("write() called before start_response()")
        if type(data) is not bytes:
            raise TypeError(f"write() takes bytes, not {type(data).__name__}")
        if not data:
            return
        self.written.append(data)
        self.pending += len(data)
        if self.pending >= STREAM_WINDOW and self.dispatcher.pool is not None:
            self.pending = 0
            self.dispatcher.send_written(self)


def _validate(status: str, headers: Any) -> tuple[int, bytes]:
    """Check start_response's arguments; (code, status line) or an error
    whose message says what is wrong (the client gets a 500)."""
    code, line = parse_status(status)
    if type(headers) is not list:
        raise TypeError(f"response headers must be a list, not {type(headers).__name__}")
    for item in headers:
        if type(item) is not tuple or len(item) != 2 or type(item[0]) is not str \
                or type(item[1]) is not str:
            raise TypeError(f"response header {item!r} is not a (str, str) tuple")
        if item[0].lower() in HOP_BY_HOP:
            raise ValueError(f"hop-by-hop header {item[0]!r} is the server's to send (PEP 3333)")
    return code, line


# ---------------------------------------------------------------- dispatcher

class WSGIDispatcher(BlockingDispatcher):
    pool_name = "netcore-wsgi"

    def __init__(self, app: WSGIApp, config: Any) -> None:
        threads = default_threads() if config.threads is None else config.threads
        super().__init__(config, threads)
        self.app = app
        self.timing = config.access_log
        self.root = config.root_path.encode("latin-1")
        self._keys: dict[bytes, Optional[str]] = {}
        self._paths: dict[bytes, str] = {}
        self._checked: dict[Any, tuple[int, bytes]] = {}

    def describe(self) -> str:
        return f"WSGI interface, {self.threads} threads" if self.threads else "WSGI interface, inline"

    def start(self, transport: Any) -> None:
        super().start(transport)
        host, port = transport.sockname
        self.base = {
            "SCRIPT_NAME": self.config.root_path,
            "SERVER_NAME": host,
            "SERVER_PORT": str(port),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": self.threads > 0,
            "wsgi.multiprocess": self.config.workers > 1,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
            "wsgi.file_wrapper": FileWrapper,
        }
        if self.timing:
            return
        pooled = self.pool is not None
        if clane.available(self.config, pooled):
            # on a pool the lane parses on the I/O thread and answers on the
            # pool thread (lane.c, answer_all)
            clane.install(self, transport, clane.WSGI, base_environ=self.base, root=self.root,
                          empty_input=EMPTY_INPUT, wsgi_render=self._render, pooled=pooled,
                          lane_submit=self.lane_submit, pool_outcome=self._outcome)
        elif not pooled:
            self.fast_rx = self.fast_path

    # ------------------------------------------------------------ environ
    def environ(self, conn: Any, req: Request, wsgi_input: Any) -> dict:
        """The environ of a request on the general path."""
        env = self.base.copy()
        self._fill(env, req.method, req.raw_path, req.query_string, req.http_version,
                   req.raw_headers)
        client = conn.client
        if client is not None:
            env["REMOTE_ADDR"] = client[0]
            env["REMOTE_PORT"] = str(client[1])
        env["wsgi.input"] = wsgi_input
        if "HTTP_TRANSFER_ENCODING" in env and not req.body_pending:
            # a chunked body, collected: it reads as a plain one of this length
            del env["HTTP_TRANSFER_ENCODING"]
            env["CONTENT_LENGTH"] = str(len(req.body))
        return env

    def _fill(self, env: dict, method: str, raw_path: bytes, query: str, version: str,
              raw_headers: Any) -> None:
        """The keys that depend only on the request head."""
        path_info = self._paths.get(raw_path)
        if path_info is None:
            path_info = self._path_info(raw_path)
        env["REQUEST_METHOD"] = method
        env["PATH_INFO"] = path_info
        env["QUERY_STRING"] = query
        env["SERVER_PROTOCOL"] = "HTTP/" + version
        keys = self._keys
        for name, value in raw_headers:
            key = keys.get(name, "")
            if key == "":
                key = self._key(name)
            if key is None:
                continue
            text = value.decode("latin-1")
            if key in env:   # a repeated field: one value, joined as RFC 9110 allows
                text = env[key] + ("; " if key == "HTTP_COOKIE" else ",") + text
            env[key] = text

    def _template(self, e: tuple) -> dict:
        """The environ of a memoised body-less head, less the peer's address
        (copied per request)."""
        raw_path, raw_query, _decoded = e[5][1]
        env = self.base.copy()
        self._fill(env, e[1], raw_path, raw_query.decode("latin-1"), e[3], e[4])
        env["wsgi.input"] = EMPTY_INPUT
        derived = e[8]
        if len(derived) < 8:
            derived[self] = env
        return env

    def _key(self, name: bytes) -> Optional[str]:
        # Names with "_" are dropped: they would be indistinguishable from
        # "-" once turned into CGI keys, which lets a client spoof a header
        # that a proxy in front set.
        if b"_" in name:
            key = None
        elif name == b"content-type":
            key = "CONTENT_TYPE"
        elif name == b"content-length":
            key = "CONTENT_LENGTH"
        else:
            key = "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
        if len(self._keys) < 1024:
            self._keys[name] = key
        return key

    def _path_info(self, raw_path: bytes) -> str:
        # PEP 3333: percent-decoded bytes as latin-1 text; the root path
        # (SCRIPT_NAME) taken off when the client's path has it.
        path = unquote_to_bytes(raw_path)
        root = self.root
        if root and (path == root or path.startswith(root + b"/")):
            path = path[len(root):]
        text = path.decode("latin-1")
        if len(self._paths) >= 2048:
            self._paths.clear()
        self._paths[raw_path] = text
        return text

    # ------------------------------------------------------------ bodies
    def body_started(self, conn: Any, req: Request) -> bool:
        # Inline, bodies are collected before the call.  So are chunked ones
        # on the pool: Django and others read exactly CONTENT_LENGTH bytes and
        # ignore wsgi.input_terminated, so the body gets its length first
        # (bounded by max_body_bytes, which the decoder enforces).
        # A Content-Length body on the pool streams, but the application is
        # called only once a first window of it (or all of it) is here: a
        # client trickling bodies then ties up no pool thread (slowloris).
        if self.pool is None or _is_chunked(req):
            return False
        sink = StreamingInput(self, conn)
        sink.waiting = req
        conn.state.body = sink
        return True

    def _begin(self, sink: StreamingInput) -> None:
        req = sink.waiting
        sink.waiting = None
        self.pool.submit(self._run_streaming, sink._conn, req, sink)

    def body_data(self, sink: StreamingInput, data: bytes) -> None:
        sink.feed(data)
        if sink.waiting is not None and sink.received >= STREAM_START:
            self._begin(sink)

    def body_end(self, sink: StreamingInput) -> None:
        sink.end()
        if sink.waiting is not None:
            self._begin(sink)

    def body_aborted(self, sink: StreamingInput) -> None:
        sink.waiting = None        # never called: the protocol answers it, if anyone
        sink.abort()

    def _run_streaming(self, conn: Any, req: Request, sink: StreamingInput) -> None:
        """On a pool thread: a call whose body streams in while it runs."""
        parts: list = []
        keep = self._call(conn, req, parts, sink)
        self.transport.post_to(conn, self._streaming_done, (conn, req, parts, keep, sink))

    def _streaming_done(self, value: tuple) -> None:
        conn, req, parts, keep, sink = value
        sink.finished()
        self.deliver(conn, req.seq, parts, keep)

    # ------------------------------------------------------------ calls
    def answer_head(self, conn: Any, e: tuple, seq: int, out: list) -> Any:
        """The fast path's step: a memoised body-less head, inline."""
        env = e[8].get(self)
        if env is None:
            env = self._template(e)
        env = env.copy()
        client = conn.client
        if client is not None:
            env["REMOTE_ADDR"] = client[0]
            env["REMOTE_PORT"] = str(client[1])
        call = _Call(self, conn, None)
        result = None
        mark = len(out)
        try:
            result = self.app(env, call.start_response)
            keep = self._render(e[6], e[7], True, call, result, out)
            if type(out[-1]) is FileRange:
                conn.files += 1
            return keep
        except Exception:
            _close(result)
            del out[mark:]
            error_log.exception("application failed for %s %s", e[1], e[2].decode("latin-1"))
            out.append(self.heads.error(500, "Internal Server Error"))
            return False

    def lane_failed(self, req: Any, exc: BaseException, result: Any) -> bytes:
        """The C lane's application call failed (as answer_head handles it)."""
        _close(result)
        error_log.error("application failed for %s %s", req.method, req.target.decode("latin-1"),
                        exc_info=exc)
        return self.heads.error(500, "Internal Server Error")

    def call(self, conn: Any, req: Request, parts: list) -> Any:
        body = req.body
        return self._call(conn, req, parts, io.BytesIO(body) if body else EMPTY_INPUT)

    def _call(self, conn: Any, req: Request, parts: list, wsgi_input: Any) -> Any:
        """Run the application; its answer (what write() has not already
        sent) goes onto ``parts``.  Returns keep-alive or a Stream."""
        call = _Call(self, conn, req)
        try:
            env = self.environ(conn, req, wsgi_input)
            result = self.app(env, call.start_response)
        except Exception as exc:
            return self._outcome(req, call, None, parts, exc)
        return self._outcome(req, call, result, parts)

    def _outcome(self, req: Request, call: Any, result: Any, parts: list,
                 exc: Optional[BaseException] = None) -> Any:
        """The answer to an application call: its ``result`` rendered onto
        ``parts``, or, when it raised ``exc`` (or rendering does), a 500.
        (The pooled C lane calls this for all it does not render itself.)"""
        if exc is None:
            try:
                keep = self._render(req.method == "HEAD", req.http_version == "1.1",
                                    req.keep_alive and not self.transport.stopping, call, result,
                                    parts)
            except Exception as e:
                exc = e
            else:
                return self._finish(req, call, keep, parts)
        _close(result)
        del parts[:]
        if call.framer is not None:
            # part of the answer is out: it ends here, cut short, and
            # the connection closes (deliver() with keep-alive False)
            if not isinstance(exc, ClientDisconnected):
                error_log.error("application failed midway for %s %s; closing the connection",
                                req.method, req.target.decode("latin-1"), exc_info=exc)
            return False
        keep = self.failed(req, parts, exc)
        call.status = 500
        return self._finish(req, call, keep, parts)

    def _finish(self, req: Request, call: Any, keep: Any, parts: list) -> Any:
        if self.timing:
            self._log(req, call, parts)
        return keep

    def _check(self, call: _Call) -> None:
        """Validate what start_response recorded, once per distinct answer."""
        if call.line is not None:
            return
        if call.status_text is None:
            raise RuntimeError("the application returned without calling start_response()")
        headers = call.headers
        try:
            key: Any = (call.status_text, tuple(headers))
            ok = self._checked.get(key)
        except TypeError:   # unhashable: check every time
            key = ok = None
        if ok is None:
            ok = _validate(call.status_text, headers)
            if key is not None:
                if len(self._checked) >= 1024:
                    self._checked.clear()
                self._checked[key] = ok
        call.status, call.line = ok

    def _render(self, head_only: bool, http11: bool, keep_alive: bool, call: "_Call", result: Any,
                parts: list) -> Any:
        if type(result) is FileWrapper and call.framer is None and not call.written:
            region = self._file_region(result)
            if region is not None:
                return self._file_answer(head_only, http11, keep_alive, call, result, region, parts)
        if type(result) is list or type(result) is tuple:
            # the common case: the whole body at once
            self._check(call)
            if call.framer is not None:   # write() sent the head: finish in its framing
                stream = call.framer
                parts.extend(stream.frame(call.written + list(result)))
                parts.extend(stream.finish())
                return stream.keep_alive
            body = b"".join(call.written + list(result)) if call.written else b"".join(result)
            head, keep = complete_head(self.heads, call.status, call.line, call.headers, len(body),
                                       http11, keep_alive, head_only)
            parts.append(head)
            if body and not head_only and call.status not in (204, 304):
                parts.append(body)
            return keep
        # Any other iterable: the head goes with its first non-empty chunk
        # (start_response may be called lazily, from inside the iteration).
        it = iter(result)
        first: list = call.written
        call.written = []
        for chunk in it:
            if chunk:
                first.append(chunk)
                break
        self._check(call)
        if call.framer is not None:       # write() sent the head: go on in its framing
            stream = call.framer
            if head_only or call.status in (204, 304):
                _close(result)        # no body goes out: its head said all
                return stream.keep_alive
            stream.body = result
            stream.it = _chain(first, it)
            parts.extend(stream.pull())
            return stream.keep_alive if stream.done else stream
        if not first:   # nothing at all: an empty body, with its length
            _close(result)
            head, keep = complete_head(self.heads, call.status, call.line, call.headers, 0,
                                       http11, keep_alive, head_only)
            parts.append(head)
            return keep
        return render_iterable(_Rest(first, it, result), call.status, call.line,
                               encode_headers(call.headers), head_only, http11, keep_alive, parts,
                               self.heads, bytes_only=True)

    # ------------------------------------------------------------ files
    def _file_region(self, wrapper: "FileWrapper") -> Optional[tuple[int, int]]:
        """(offset, size) of what a file_wrapper would send, if the kernel
        can send it (a regular file, a backend with sendfile), else None."""
        if not self.transport.q.can_sendfile:
            return None
        f = wrapper.filelike
        try:
            fd = f.fileno()
            st = os.fstat(fd)
            offset = f.tell() if hasattr(f, "tell") else 0
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        return offset, max(0, st.st_size - offset)

    def _file_answer(self, head_only: bool, http11: bool, keep_alive: bool, call: "_Call",
                     wrapper: "FileWrapper", region: tuple, parts: list) -> Any:
        """A file_wrapper answer: the head, then the file region itself, sent
        by the kernel (no read into Python); close() once it is out."""
        self._check(call)
        offset, size = region
        declared = encode_headers(call.headers).length
        if declared > size:
            raise ValueError(f"content-length {declared} is more than the file has ({size} bytes)")
        count = size if declared < 0 else declared
        head, keep = complete_head(self.heads, call.status, call.line, call.headers, count,
                                   http11, keep_alive, head_only)
        parts.append(head)
        if head_only or call.status in (204, 304) or not count:
            _close(wrapper)
            return keep
        # the last part: deliver() (or answer_head) tells the connection
        parts.append(FileRange(wrapper.filelike, offset, count, getattr(wrapper, "close", None)))
        return keep

    def deliver(self, conn: Any, seq: int, parts: list, keep: Any) -> None:
        if parts and type(parts[-1]) is FileRange:
            conn.files += 1
        super().deliver(conn, seq, parts, keep)

    # ------------------------------------------------------------ write()
    def send_written(self, call: "_Call") -> None:
        """On a pool thread: write() data past a window goes out now, the
        head first; the call then waits until the client has taken it."""
        req = call.req
        parts: list = []
        if call.framer is None:
            self._check(call)
            enc = encode_headers(call.headers)
            http11 = req.http_version == "1.1"
            keep_alive = req.keep_alive and not self.transport.stopping and not enc.close
            length = enc.length
            chunked = length < 0 and http11 and call.status not in (204, 304)
            if length < 0 and not http11:
                keep_alive = False    # close-delimited
            call.framer = Stream(None, chunked, length, keep_alive)
            call.framer.bytes_only = True
            parts.append(build_head(self.heads, call.status, enc, b"", length, http11, keep_alive,
                                    chunked, call.line))
        if req.method != "HEAD" and call.status not in (204, 304):
            parts.extend(call.framer.frame(call.written))
        call.written = []
        done = threading.Event()
        self.flush_batch(call.conn)
        self.transport.post_to(call.conn, self._written, (call, parts, done))
        done.wait()
        if call.conn.closed:
            raise ClientDisconnected("the client went away")

    def _written(self, value: tuple) -> None:
        call, parts, done = value
        conn = call.conn
        if conn.closed:
            done.set()
            return
        conn.write(call.req.seq, parts, False)
        self.wait_drained(conn, call.req.seq, done.set)

    def _log(self, req: Request, call: "_Call", parts: list) -> None:
        log_access(req.client, req.method, req.target.decode("latin-1"), req.http_version,
                   call.status or 500, sum(len(p) for p in parts[1:]), getattr(req, "start", 0.0))


def _chain(first: list, it: Any) -> Any:
    yield from first
    yield from it


class _Rest:
    """The iterable after the first window: the chunks already taken, then
    the rest of the application's iterator; close() closes the result."""

    __slots__ = ("first", "it", "result")

    def __init__(self, first: list, it: Any, result: Any) -> None:
        self.first = first
        self.it = it
        self.result = result

    def __iter__(self):
        yield from self.first
        self.first = []
        yield from self.it

    def close(self) -> None:
        _close(self.result)


def _close(result: Any) -> None:
    close = getattr(result, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            error_log.exception("closing the response iterable failed")

