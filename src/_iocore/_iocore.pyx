# cython: language_level=3, boundscheck=False, wraparound=False
"""netcore._iocore: Python face of the C completion queue (see iocore.h).

Every started operation holds a reference to its tag (and, for sends, to
the data) inside the C core until its completion is handed out by wait();
that is what keeps in-flight memory alive on every backend.
"""
import os
import socket

from cpython.ref cimport PyObject, Py_INCREF, Py_DECREF
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_CheckExact
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.exc cimport PyErr_CheckSignals
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from libc.stdint cimport uint64_t
from libc.stdlib cimport malloc, free
from libc.math cimport ceil

from iocore cimport *

ACCEPT = NC_OP_ACCEPT
CONNECT = NC_OP_CONNECT
RECV = NC_OP_RECV
SEND = NC_OP_SEND
POST = NC_OP_POST
TIMER = NC_OP_TIMER
SHUTDOWN = NC_OP_SHUTDOWN
SENDFILE = NC_OP_SENDFILE
# a multishot recv's bytes: it stays armed (the last completion is a RECV);
# a Python event code past every NC_OP_* one (C reports nc_event.more)
RECV_MORE = NC_OP_SENDFILE + 1
CANCELLED = NC_CANCELLED

KNOWN_BACKENDS = ("epoll", "uring", "poll", "iocp")
_ALIASES = {"io_uring": "uring"}

DEF STACK_EVENTS = 1024
DEF SEND_STACK_BUFS = 16


def backends():
    """Names of the backends built in and usable on this machine, best first."""
    out = []
    cdef int i = 0
    cdef const char *name
    while True:
        name = nc_backend_name(i)
        if name == NULL:
            return out
        out.append(name.decode())
        i += 1


def status_name(int status):
    """'ECONNRESET', 'CANCELLED', ... for a completion status."""
    return nc_status_name(status).decode()


cdef object _error(int rc, str what):
    if rc == NC_E_BADHANDLE:
        return ValueError(f"{what}: the handle is closed")
    if rc == NC_E_WRONGKIND:
        return ValueError(f"{what}: wrong kind of handle (listener vs connection)")
    if rc == NC_E_BUSY:
        return RuntimeError(f"{what}: a recv is already pending on this connection")
    if rc == NC_E_INVAL:
        return ValueError(f"{what}: invalid argument")
    if rc == NC_E_NOMEM:
        return MemoryError(what)
    if rc == NC_E_CLOSED:
        return ValueError(f"{what}: the queue is closed")
    if rc == NC_E_NOTSUP:
        return NotImplementedError(f"{what}: not supported by this backend")
    return OSError(-rc, f"{what}: {os.strerror(-rc)}")


cdef class _Pinned:
    """Keeps a non-bytes buffer exported (and so unmovable) while a send uses it."""
    cdef Py_buffer view
    cdef bint held

    def __dealloc__(self):
        if self.held:
            PyBuffer_Release(&self.view)


cdef class Handle:
    """A listener or a connection owned by a Queue (made only by its Queue)."""
    cdef readonly Queue queue
    cdef nc_id _id

    def __init__(self, *args, **kwargs):
        raise TypeError("Handle objects come from a Queue (listen, accept, connect)")

    def __repr__(self):
        state = "closed" if self.closed else ("listener" if self.is_listener else "connection")
        return f"<netcore.iocore.Handle {state} id={self._id:#x}>"

    cdef nc_queue *_core(self) except NULL:
        # queue is None only for a Handle made by Handle.__new__ by hand.
        if self.queue is None or self.queue._q == NULL:
            raise ValueError("the queue is closed")
        return self.queue._q

    @property
    def closed(self):
        return self.queue is None or self.queue._q == NULL or nc_is_listener(self.queue._q, self._id) < 0

    @property
    def is_listener(self):
        rc = nc_is_listener(self._core(), self._id)
        if rc < 0:
            raise _error(rc, "is_listener")
        return bool(rc)

    def fileno(self):
        cdef int rc
        fd = nc_fileno_ll(self._core(), self._id, &rc)
        if rc < 0:
            raise _error(rc, "fileno")
        return fd

    cdef object _name(self, bint peer):
        cdef sockaddr_storage storage
        cdef char host[64]
        cdef int length = sizeof(storage)
        cdef int port = 0
        cdef int rc
        self._core()
        cdef nc_queue *q = self.queue._enter()
        with nogil:
            rc = nc_peername(q, self._id, &storage, &length) if peer else \
                nc_sockname(q, self._id, &storage, &length)
        self.queue._exit()
        if rc < 0:
            raise _error(rc, "peername" if peer else "sockname")
        if nc_addr_to_text(&storage, length, host, sizeof(host), &port) < 0:
            raise OSError("unsupported address family")
        return (host.decode(), port)

    @property
    def sockname(self):
        return self._name(False)

    @property
    def peername(self):
        return self._name(True)

    def setsockopt(self, int level, int option, int value):
        cdef int rc
        self._core()
        cdef nc_queue *q = self.queue._enter()
        with nogil:
            rc = nc_setsockopt(q, self._id, level, option, value)
        self.queue._exit()
        if rc < 0:
            raise _error(rc, "setsockopt")

    def getsockopt(self, int level, int option):
        cdef int value = 0
        cdef int rc
        self._core()
        cdef nc_queue *q = self.queue._enter()
        with nogil:
            rc = nc_getsockopt(q, self._id, level, option, &value)
        self.queue._exit()
        if rc < 0:
            raise _error(rc, "getsockopt")
        return value


cdef class Timer:
    """Returned by Queue.call_later; pass it to Queue.cancel_timer."""
    cdef readonly Queue queue
    cdef uint64_t _id

    def __init__(self, *args, **kwargs):
        raise TypeError("Timer objects come from Queue.call_later")


cdef void _release(void *ctx, void *arg) noexcept nogil:
    with gil:
        Py_DECREF(<object>ctx)


cdef int _resolve(object host, object port, bint passive, char *out, int *outlen) except -1:
    cdef int gai = 0
    cdef int rc
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an int in 0..65535, not {port!r}")
    if host is not None and not isinstance(host, str):
        raise TypeError(f"host must be a str or None, not {type(host).__name__}")
    cdef bytes bhost = host.encode("idna") if host else None
    bport = str(port).encode()
    cdef const char *chost = NULL
    if bhost is not None:
        chost = bhost
    cdef const char *cport = bport
    with nogil:
        rc = nc_resolve(chost, cport, passive, out, outlen, &gai)
    if rc == -1:
        raise socket.gaierror(gai, f"cannot resolve {host!r}: {nc_gai_strerror(gai).decode()}")
    if rc < 0:
        raise OSError(f"address of {host!r} is too long")
    return 0


cdef class Queue:
    """One completion queue: start operations, then collect their completions
    in batches with wait().

    Every call that may wait for the core's lock or make a system call runs
    without the GIL, so threads using one queue overlap their I/O; _calls
    counts those in progress, and close_queue() waits for them."""
    cdef nc_queue *_q
    cdef readonly str backend
    cdef int _waiting
    cdef int _calls

    def __cinit__(self, backend="auto"):
        self._q = NULL
        if not isinstance(backend, str):
            raise TypeError(f"backend must be a str, not {type(backend).__name__}")
        backend = _ALIASES.get(backend, backend)
        if backend != "auto" and backend not in KNOWN_BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; known: auto, {', '.join(KNOWN_BACKENDS)}")
        bname = backend.encode()
        cdef char why[256]
        if backend != "auto":
            rc = nc_backend_check(bname, why, sizeof(why))
            if rc < 0:
                here = ", ".join(backends()) or "none"
                reason = why.decode(errors="replace")
                msg = f"backend {backend!r} is not available on this machine: {reason} (available: {here})"
                raise OSError(-rc, msg) if 0 < -rc < 100000 else OSError(msg)
        rc = nc_queue_new(bname, &self._q)
        if rc < 0:
            self._q = NULL
            raise _error(rc, f"cannot create a {backend} queue")
        self.backend = nc_queue_backend(self._q).decode()

    def __dealloc__(self):
        if self._q != NULL:
            nc_queue_free(self._q, _release, NULL)
            self._q = NULL

    def __repr__(self):
        return f"<netcore.iocore.Queue backend={self.backend} {'closed' if self._q == NULL else 'open'}>"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close_queue()

    cdef inline int _check(self) except -1:
        if self._q == NULL:
            raise ValueError("the queue is closed")
        return 0

    cdef inline nc_queue *_enter(self) except NULL:
        # With the GIL: nothing can close the queue between the check and
        # the count, and close_queue() frees it only once _calls is back to 0.
        if self._q == NULL:
            raise ValueError("the queue is closed")
        self._calls += 1
        return self._q

    cdef inline void _exit(self):
        self._calls -= 1

    cdef inline nc_id _handle_id(self, Handle h) except? 0:
        if h is None:
            raise TypeError("expected a Handle, got None")
        if h.queue is not self:
            raise ValueError("the handle belongs to another queue")
        return h._id

    cdef Handle _new_handle(self, nc_id id):
        cdef Handle h = Handle.__new__(Handle)
        h.queue = self
        h._id = id
        return h

    @property
    def closed(self):
        return self._q == NULL

    def close_queue(self):
        """Close every handle and free the queue; undelivered tags are dropped."""
        if self._q == NULL:
            return
        if self._waiting:
            raise RuntimeError("cannot close the queue while threads are in wait(); post() them a stop first")
        cdef nc_queue *q = self._q
        self._q = NULL
        while self._calls:  # calls of other threads still inside the core
            with nogil:
                nc_yield()
        with nogil:  # closes sockets, drains the kernel; _release takes the GIL back
            nc_queue_free(q, _release, NULL)

    def listen(self, host, int port, int backlog=1024, bint reuse_port=False):
        cdef sockaddr_storage addr
        cdef int addrlen = sizeof(addr)
        cdef nc_id out = 0
        self._check()
        if backlog < 0:
            raise ValueError("backlog must be >= 0")
        cdef int rc
        cdef bint reuse = reuse_port
        _resolve(host, port, True, <char *>&addr, &addrlen)
        cdef nc_queue *q = self._enter()  # resolving ran without the GIL: closed meanwhile?
        with nogil:
            rc = nc_listen(q, <sockaddr *>&addr, addrlen, backlog, reuse, &out)
        self._exit()
        if rc < 0:
            raise _error(rc, f"cannot listen on {host}:{port}")
        return self._new_handle(out)

    def adopt_listener(self, sock):
        """Serve a listening socket.socket made elsewhere (e.g. one shared by
        worker processes); the queue works on its own duplicate, so the
        caller's socket stays the caller's."""
        cdef nc_id out = 0
        self._check()
        if not isinstance(sock, socket.socket):
            raise TypeError(f"expected a socket.socket, not {type(sock).__name__}")
        fd = sock.dup().detach()
        if self._q == NULL:  # closed by another thread meanwhile
            socket.close(fd)
            self._check()
        cdef long long cfd = fd
        cdef int rc
        cdef nc_queue *q = self._enter()
        with nogil:
            rc = nc_adopt_ll(q, cfd, &out)  # closes fd on failure
        self._exit()
        if rc == NC_E_INVAL:
            raise ValueError("adopt_listener needs a listening socket")
        if rc < 0:
            raise _error(rc, "adopt_listener")
        return self._new_handle(out)

    def accept(self, Handle listener, tag):
        cdef nc_id id = self._handle_id(listener)
        cdef int rc
        cdef void *ctx = <void *>tag
        cdef nc_queue *q = self._enter()
        Py_INCREF(tag)
        with nogil:
            rc = nc_accept(q, id, ctx)
        self._exit()
        if rc < 0:
            Py_DECREF(tag)
            raise _error(rc, "accept")

    def connect(self, host, int port, tag):
        cdef sockaddr_storage addr
        cdef int addrlen = sizeof(addr)
        self._check()
        cdef int rc
        cdef void *ctx = <void *>tag
        _resolve(host, port, False, <char *>&addr, &addrlen)
        cdef nc_queue *q = self._enter()  # resolving ran without the GIL: closed meanwhile?
        Py_INCREF(tag)
        with nogil:
            rc = nc_connect(q, <sockaddr *>&addr, addrlen, ctx)
        self._exit()
        if rc < 0:
            Py_DECREF(tag)
            raise _error(rc, f"cannot connect to {host}:{port}")

    def recv(self, Handle conn, tag, Py_ssize_t max_bytes=65536, bint multishot=False):
        """Receive up to max_bytes.  multishot: stay armed, completing as
        RECV_MORE per read, until a last RECV (EOF, an error, CANCELLED)."""
        cdef nc_id id = self._handle_id(conn)
        cdef int rc
        cdef void *ctx = <void *>tag
        cdef unsigned flags = NC_RECV_MULTISHOT if multishot else 0
        self._check()
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, not {max_bytes}")
        cdef nc_queue *q = self._enter()
        Py_INCREF(tag)
        with nogil:
            rc = nc_recv_ex(q, id, <size_t>max_bytes, ctx, flags)
        self._exit()
        if rc < 0:
            Py_DECREF(tag)
            raise _error(rc, "recv")

    def recv_stop(self, Handle conn):
        """End the multishot recv pending on conn: its last completion (a
        RECV: CANCELLED, or the bytes being read right now) follows."""
        cdef nc_id id = self._handle_id(conn)
        cdef int rc
        self._check()
        cdef nc_queue *q = self._enter()
        with nogil:
            rc = nc_recv_stop(q, id)
        self._exit()
        if rc == NC_E_INVAL:
            raise RuntimeError("no multishot recv is pending on this connection")
        if rc < 0:
            raise _error(rc, "recv_stop")

    def send(self, Handle conn, tag, data, bint quiet=False):
        """Send a bytes-like object or a list/tuple of them, gathered.
        quiet: a send whose every byte goes out within the call reports no
        completion; returns True then (else False: a SEND follows)."""
        cdef nc_id id = self._handle_id(conn)
        cdef nc_buf stackbufs[SEND_STACK_BUFS]
        cdef nc_buf *bufs = stackbufs
        cdef Py_ssize_t i, n
        cdef object keep
        self._check()
        if PyBytes_CheckExact(data):
            n = 1
            stackbufs[0].base = PyBytes_AS_STRING(data)
            stackbufs[0].len = PyBytes_GET_SIZE(data)
            keep = data
        else:
            items = data if isinstance(data, (list, tuple)) else (data,)
            n = len(items)
            if n > SEND_STACK_BUFS:
                bufs = <nc_buf *>malloc(n * sizeof(nc_buf))
                if bufs == NULL:
                    raise MemoryError()
            keep = []
            try:
                for i in range(n):
                    keep.append(_buffer_of(items[i], &bufs[i]))
                self._check()  # items' own code may have closed the queue
            except BaseException:
                if bufs != stackbufs:
                    free(bufs)
                raise
        ctx = (tag, keep)
        cdef void *cctx = <void *>ctx
        cdef int rc, cn = <int>n
        cdef unsigned flags = NC_SEND_QUIET if quiet else 0
        cdef nc_queue *q = self._enter()
        Py_INCREF(ctx)
        with nogil:
            rc = nc_send_ex(q, id, bufs, cn, cctx, flags)
        self._exit()
        if bufs != stackbufs:
            free(bufs)
        if rc < 0:
            Py_DECREF(ctx)
            raise _error(rc, "send")
        if rc == 1:
            Py_DECREF(ctx)  # out at once: no completion will hand it back
            return True
        return False

    def shutdown(self, Handle conn, tag):
        """Half-close: once every send started before this one is out, shut
        down the sending side (the peer reads EOF); receiving goes on.
        Completes as a SHUTDOWN event with value None."""
        cdef nc_id id = self._handle_id(conn)
        cdef int rc
        cdef void *ctx = <void *>tag
        cdef nc_queue *q = self._enter()
        Py_INCREF(tag)
        with nogil:
            rc = nc_shutdown(q, id, ctx)
        self._exit()
        if rc < 0:
            Py_DECREF(tag)
            raise _error(rc, "shutdown")

    @property
    def can_sendfile(self):
        """Whether sendfile() is done by the kernel on this backend (else it
        raises NotImplementedError: send the bytes instead)."""
        self._check()
        return bool(nc_can_sendfile(self._q))

    def sendfile(self, Handle conn, tag, file, offset=0, count=None):
        """Send ``count`` bytes (default: to the end) of ``file`` (a file
        object or descriptor of a regular file) from ``offset``, in order
        with the sends around it, without a copy through user space.
        Completes as a SENDFILE event with the bytes sent; status 0 once all
        are out, -EIO if the file ended first.  The file must stay open
        until then; the queue keeps ``file`` (the object) alive."""
        cdef nc_id id = self._handle_id(conn)
        cdef int rc
        cdef int fd = file if isinstance(file, int) else file.fileno()
        cdef uint64_t off, n
        if offset < 0:
            raise ValueError(f"offset must be >= 0, not {offset}")
        if count is None:
            count = os.fstat(fd).st_size - offset
        if count < 0:
            raise ValueError(f"count must be >= 0, not {count}")
        off = offset
        n = count
        ctx = (tag, file)
        cdef void *cctx = <void *>ctx
        cdef nc_queue *q = self._enter()
        Py_INCREF(ctx)
        with nogil:
            rc = nc_sendfile(q, id, fd, off, n, cctx)
        self._exit()
        if rc < 0:
            Py_DECREF(ctx)
            raise _error(rc, "sendfile")

    def close(self, Handle handle):
        """Close a handle; each operation pending on it completes with CANCELLED."""
        cdef nc_id id = self._handle_id(handle)
        cdef int rc
        cdef nc_queue *q = self._enter()
        with nogil:
            rc = nc_close(q, id)
        self._exit()
        if rc < 0:
            raise _error(rc, "close")

    def post(self, tag, value=None, Handle handle=None):
        """Thread-safe: queue a POST completion carrying value, waking a waiter.
        With ``handle`` (a connection) it is delivered like that connection's
        own completions: never while another waiter's batch holds it."""
        cdef int rc
        cdef nc_id id = 0
        if handle is not None:
            id = self._handle_id(handle)
        ctx = (tag, value)
        cdef void *cctx = <void *>ctx
        cdef nc_queue *q = self._enter()
        Py_INCREF(ctx)
        with nogil:
            rc = nc_post(q, cctx) if id == 0 else nc_post_to(q, id, cctx)
        self._exit()
        if rc < 0:
            Py_DECREF(ctx)
            raise _error(rc, "post")

    def call_later(self, seconds, tag):
        cdef uint64_t tid = 0
        cdef double s = float(seconds)
        cdef int rc
        cdef void *ctx = <void *>tag
        self._check()
        if not s >= 0:
            raise ValueError(f"seconds must be >= 0, not {seconds!r}")
        cdef nc_queue *q = self._enter()
        Py_INCREF(tag)
        with nogil:
            rc = nc_timer_start(q, s, ctx, &tid)
        self._exit()
        if rc < 0:
            Py_DECREF(tag)
            raise _error(rc, "call_later")
        cdef Timer t = Timer.__new__(Timer)
        t.queue = self
        t._id = tid
        return t

    def cancel_timer(self, Timer timer):
        """Disarm a timer. True if it was armed (it will not complete)."""
        cdef void *ctx = NULL
        if timer.queue is not self:
            raise ValueError("the timer belongs to another queue")
        self._check()
        if nc_timer_cancel(self._q, timer._id, &ctx):
            Py_DECREF(<object>ctx)
            return True
        return False

    def leave(self):
        """This thread stops calling wait(): the connections its last batch
        holds become free for the other waiting threads."""
        cdef nc_queue *q = self._enter()
        with nogil:
            nc_leave(q)
        self._exit()

    def stats(self):
        """Debug counters: live handles, pending operations, armed timers,
        waiter threads, and (uring) completions the rings overflowed with and
        how many rings serve the waiter threads."""
        cdef nc_stats st
        self._check()
        nc_get_stats(self._q, &st)
        return {"live_handles": st.live_handles, "pending_ops": st.pending_ops,
                "timers": st.timers, "waiters": st.waiters, "cq_overflow": st.cq_overflow,
                "rings": st.rings}

    def wait(self, timeout=None, int max_events=1024):
        """Block up to timeout seconds (None: forever) for completions and
        return them as a list of (op, tag, status, value)."""
        cdef nc_event stackev[STACK_EVENTS]
        cdef nc_event *evs = stackev
        cdef int n, i, tmo
        cdef double t, deadline = 0
        if max_events <= 0:
            raise ValueError(f"max_events must be positive, not {max_events}")
        if timeout is None:
            tmo = -1
        else:
            t = float(timeout)
            if not t >= 0:
                raise ValueError(f"timeout must be >= 0 or None, not {timeout!r}")
            tmo = <int>ceil(t * 1000.0) if t < 2000000.0 else 2000000000
        self._check()  # after float(timeout), which may run Python code
        if max_events > STACK_EVENTS:
            evs = <nc_event *>malloc(max_events * sizeof(nc_event))
            if evs == NULL:
                raise MemoryError()
        q = self._q
        self._waiting += 1
        try:
            while True:
                with nogil:
                    n = nc_wait(q, evs, max_events, tmo)
                if n != NC_E_INTR:
                    break
                PyErr_CheckSignals()  # raises KeyboardInterrupt etc.
                # else: a handled signal; wait again (timeout restarts, as
                # with PEP 475 retries this may extend the wait slightly)
            if n < 0:
                raise _error(n, "wait")
            out = []
            i = 0
            try:
                while i < n:
                    out.append(self._convert(&evs[i]))
                    i += 1
            except BaseException:
                # Out of memory mid-batch: the events not converted still
                # hold their tags; drop those references, don't leak them.
                i += 1
                while i < n:
                    Py_DECREF(<object>evs[i].ctx)
                    i += 1
                raise
            return out
        finally:
            self._waiting -= 1
            if evs != stackev:
                free(evs)

    cdef object _convert(self, nc_event *ev):
        cdef object ctx = <object>ev.ctx
        if not ev.more:
            Py_DECREF(ctx)  # the reference the operation held; ctx keeps one
        op = ev.op
        value = None
        if op == NC_OP_RECV:
            tag = ctx
            if ev.more:
                op = RECV_MORE  # the recv stays armed and keeps its reference
            if ev.status == 0:
                value = PyBytes_FromStringAndSize(ev.data, <Py_ssize_t>ev.nbytes)
        elif op == NC_OP_SEND or op == NC_OP_SENDFILE:
            tag = (<tuple>ctx)[0]
            value = ev.nbytes
        elif op == NC_OP_ACCEPT or op == NC_OP_CONNECT:
            tag = ctx
            if ev.status == 0:
                value = self._new_handle(ev.handle)
        elif op == NC_OP_POST:
            tag, value = <tuple>ctx
        else:
            tag = ctx
        return (op, tag, ev.status, value)


cdef object _buffer_of(object item, nc_buf *buf):
    """Fill buf from a bytes-like item; return what must stay alive."""
    cdef _Pinned pin
    if PyBytes_CheckExact(item):
        buf.base = PyBytes_AS_STRING(item)
        buf.len = PyBytes_GET_SIZE(item)
        return item
    pin = _Pinned.__new__(_Pinned)
    try:
        PyObject_GetBuffer(item, &pin.view, PyBUF_SIMPLE)
    except TypeError:
        raise TypeError(f"send data must be bytes-like or a list/tuple of them, not {type(item).__name__}") from None
    pin.held = True
    buf.base = <const char *>pin.view.buf
    buf.len = pin.view.len
    return pin
