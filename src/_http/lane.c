/* The C lane: the per-request path of one server in C.
 *
 * A Lane belongs to one transport and its dispatcher (native, WSGI inline,
 * WSGI on a pool, or ASGI; frontends/clane.py makes it) and offers these
 * entry points:
 *
 * fast_rx(conn, data) -> bool
 *     The dispatcher fast-path contract (frontends/base.py): from the plain
 *     keep-alive state, the complete body-less keep-alive requests at the
 *     start of a read are parsed (head.c), become C Requests (request.c)
 *     and are answered: a native handler's result or a WSGI list result is
 *     rendered into one buffer (render.c); an ASGI request starts its
 *     cycle with a scope built here (asgi.c).  Then the protocol is told
 *     through its API (Protocol.answered_inline / accept_inline), and the
 *     rest of the read goes to the general path (rest_of_read).  Declines
 *     (returns False) before changing anything.
 *
 * dispatch(events)
 *     Transport.dispatch's equivalent, installed on the transport: the
 *     RECV completions of connections in the plain state are answered as
 *     above and their answer sent, the recv re-armed and the deadline set,
 *     exactly as Transport.handle_rx would (when every request of the read
 *     was answered, the lane advances the protocol's two sequence numbers
 *     itself, as answered_inline would; otherwise it commits through the
 *     API and runs Transport.after_rx); SEND completions that only
 *     lower the count of sends in flight are counted here; every other
 *     completion goes to the transport's own Python handlers, in order.
 *
 * answer_all(conn, requests, answers)   (WSGI on a pool)
 *     Pooled, fast_rx answers nothing itself: it accepts the requests and
 *     hands them to the pool as one batch (the dispatcher's lane_submit);
 *     there answer_all builds each environ, calls the application and
 *     renders a list result as above, and the dispatcher posts the
 *     answers back to the I/O thread.  dispatch() leaves such reads to
 *     Transport.handle_rx.
 *
 * So the Python executed per request on this path is the application's.
 * What the lane does is tied to the Python reference by tests: the bytes
 * on the wire against the pure-Python path (tests/http/test_lane_diff.py)
 * and the state every completion leaves behind on the connection, its
 * protocol and the transport (tests/http/test_lane_state.py).
 *
 * The connection state is read and written at the __slots__ offsets of the
 * exact classes given at setup (slots.c); an object of any other type goes
 * to the Python path.  A Lane is used by its transport's I/O thread only,
 * but for answer_all, which pool threads call with the GIL held (the
 * pooled lane is made only where there is a GIL: frontends/clane.py).
 */
#include "http.h"

#include <string.h>

#define LANE_NATIVE 0
#define LANE_WSGI 1
#define LANE_ASGI 2

/* answer outcomes besides NC_RENDERED */
#define A_CLOSE 2    /* a closing answer, a stream or file parts: parts and keep go to lane_finish */

typedef struct {
    PyObject_HEAD
    int mode;
    Py_ssize_t op_recv, op_send;       /* iocore.RECV, iocore.SEND */
    PyObject *transport, *dispatcher, *app;
    PyObject *q_send, *q_recv;
    PyTypeObject *conn_type, *proto_type, *state_type;
    nc_slot c_rx_armed, c_closed, c_lingering, c_proto, c_handle, c_sending, c_app_paused, c_state,
        c_deadline, c_dirty, c_client, c_want_drain, c_tx_at, c_files;
    nc_slot p_reading, p_buf, p_body_req, p_seq_in, p_seq_out, p_held, p_close_after, p_phase,
        p_out;
    nc_slot s_body, s_streams;
    nc_render_ctx rc;
    nc_limits lim;
    double ka_timeout, write_probe;
    Py_ssize_t max_sends, max_inflight;
    PyObject *idle;                    /* protocol.IDLE */
    /* the Python pieces the lane calls */
    PyObject *handle_rx, *handle_tx, *py_dispatch, *internal_error, *after_rx;
    PyObject *answered_inline, *accept_inline, *render;
    PyObject *lane_failed, *lane_finish, *lane_rest, *lane_cycle, *wsgi_render, *client_of;
    /* WSGI */
    PyObject *base_env, *root_bytes, *empty_input;
    nc_keymap *keys;
    /* WSGI on a pool: the I/O thread parses, the pool thread answers */
    int pooled;
    PyObject *lane_submit, *pool_outcome;
    /* ASGI */
    PyObject *server, *root_str, *lifespan;
    /* the transport's batch state, cached */
    int fresh;
    double now, next_expiry;
    int stopping;
    /* per read */
    nc_out out;
    int busy;
    PyObject *declined;               /* the last read the lane declined (fast_rx skips it) */
    /* counters, for tests and the curious (stats()) */
    unsigned long long n_reads, n_requests, n_sends, n_sent_done, n_quiet, n_python, n_pooled;
} Lane;

static PyObject *s_now, *s_next_expiry, *s_stopping, *s_state;

/* ------------------------------------------------------------ helpers */

PyObject *nc_fetch_exception(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (!type)
        return NULL;
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb && value)
        PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
#endif
}

int nc_exception_pending_is_ordinary(void)
{
    return PyErr_ExceptionMatches(PyExc_Exception);
}

static Py_ssize_t int_of(PyObject *v)
{
    if (v && PyLong_CheckExact(v)) {
        Py_ssize_t n = PyLong_AsSsize_t(v);
        if (n == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            return -1;
        }
        return n;
    }
    return -1;
}

static int is_zero(PyObject *v)
{
    return PyLong_CheckExact(v) && int_of(v) == 0;
}

static int set_int(PyObject *obj, nc_slot off, Py_ssize_t n)
{
    PyObject *v = PyLong_FromSsize_t(n);
    if (!v)
        return -1;
    nc_set_steal(obj, off, v);
    return 0;
}

static PyObject *call(PyObject *fn, PyObject *const *args, size_t n)
{
    return PyObject_Vectorcall(fn, args, n, NULL);
}

/* refresh the transport's batch state after Python code may have run */
static int refresh(Lane *L)
{
    if (L->fresh)
        return 0;
    PyObject *now = PyObject_GetAttr(L->transport, s_now);
    PyObject *ne = now ? PyObject_GetAttr(L->transport, s_next_expiry) : NULL;
    PyObject *st = ne ? PyObject_GetAttr(L->transport, s_stopping) : NULL;
    int rc = -1;
    if (st) {
        L->now = PyFloat_AsDouble(now);
        L->next_expiry = PyFloat_AsDouble(ne);
        L->stopping = PyObject_IsTrue(st);
        if (!PyErr_Occurred() && L->stopping >= 0) {
            L->fresh = 1;
            rc = 0;
        }
    }
    Py_XDECREF(now);
    Py_XDECREF(ne);
    Py_XDECREF(st);
    return rc;
}

/* Python code ran (a handler of the transport's): re-read before use */
#define STALE(L) ((L)->fresh = 0)

static int set_next_expiry(Lane *L, double when)
{
    PyObject *v = PyFloat_FromDouble(when);
    if (!v || PyObject_SetAttr(L->transport, s_next_expiry, v) < 0) {
        Py_XDECREF(v);
        return -1;
    }
    Py_DECREF(v);
    L->next_expiry = when;
    return 0;
}

/* conn.tx_at = the batch clock */
static int stamp_tx(Lane *L, PyObject *conn)
{
    PyObject *now = PyFloat_FromDouble(L->now);
    if (!now)
        return -1;
    nc_set_steal(conn, L->c_tx_at, now);
    return 0;
}

/* proto.fast_ready, and for the blocking front ends a connection state
 * with no body arriving and no stream in progress */
static int plain_state(Lane *L, PyObject *conn, PyObject *proto)
{
    PyObject *buf = nc_get(proto, L->p_buf), *held = nc_get(proto, L->p_held);
    PyObject *bin = nc_get(proto, L->p_seq_in), *bout = nc_get(proto, L->p_seq_out);
    /* file regions not yet handed to the kernel: Transport.flush orders them */
    if (int_of(nc_get(conn, L->c_files)) != 0)
        return 0;
    if (nc_get(proto, L->p_reading) != Py_True || !buf || !PyBytes_CheckExact(buf) ||
        PyBytes_GET_SIZE(buf) || nc_get(proto, L->p_body_req) != Py_None ||
        nc_get(proto, L->p_close_after) != Py_False || !held || !PyDict_CheckExact(held) ||
        PyDict_GET_SIZE(held) || !bin || !bout)
        return 0;
    if (bin != bout && (int_of(bin) < 0 || int_of(bin) != int_of(bout)))
        return 0;
    if (L->mode == LANE_ASGI)
        return 1;
    PyObject *st = nc_get(conn, L->c_state);
    if (st == Py_None)
        return 1;
    if (!st || Py_TYPE(st) != L->state_type || nc_get(st, L->s_body) != Py_None)
        return 0;
    PyObject *streams = nc_get(st, L->s_streams);
    return streams && PyObject_Size(streams) == 0;
}

/* ------------------------------------------------------------ answers */

/* an application failed: its 500 (lane_failed logs it) becomes a closing answer */
static int failed(Lane *L, PyObject *req, PyObject *result, PyObject **parts, PyObject **keep)
{
    if (!nc_exception_pending_is_ordinary())
        return -1;   /* KeyboardInterrupt and friends go on propagating */
    PyObject *exc = nc_fetch_exception();
    PyObject *args[3] = {req, exc, result ? result : Py_None};
    PyObject *answer = call(L->lane_failed, args, 3);
    Py_XDECREF(exc);
    if (!answer)
        return -1;
    *parts = PyList_New(1);
    if (!*parts) {
        Py_DECREF(answer);
        return -1;
    }
    PyList_SET_ITEM(*parts, 0, answer);
    *keep = Py_NewRef(Py_False);
    return A_CLOSE;
}

/* What Python's renderer gave: keep-alive bytes -> into the buffer; else
 * (closing, or parts only the transport sends) the general output path */
static int rendered_by_python(Lane *L, PyObject *req, PyObject *result, PyObject *plist,
                              PyObject *keep, PyObject **parts, PyObject **keepo)
{
    if (!keep) {
        Py_DECREF(plist);
        return failed(L, req, result, parts, keepo);
    }
    int truth = PyObject_IsTrue(keep);
    if (truth < 0) {
        Py_DECREF(plist);
        Py_DECREF(keep);
        return -1;
    }
    int plain = 1;   /* parts that are not bytes (a FileRange): Transport.flush sends them */
    for (Py_ssize_t i = 0; plain && i < PyList_GET_SIZE(plist); i++)
        plain = PyBytes_Check(PyList_GET_ITEM(plist, i));
    if (truth && plain) {
        Py_DECREF(keep);
        int rc = nc_out_list(&L->out, plist);
        Py_DECREF(plist);
        return rc < 0 ? -1 : NC_RENDERED;
    }
    *parts = plist;
    *keepo = keep;
    return A_CLOSE;
}

static int answer_native(Lane *L, PyObject *req, const nc_head *h, int head_only,
                         PyObject **parts, PyObject **keep)
{
    PyObject *result = call(L->app, &req, 1);
    if (!result)
        return failed(L, req, NULL, parts, keep);
    int rc = nc_render_native(&L->rc, &L->out, result, head_only, h->http11);
    if (rc != NC_DECLINE) {
        Py_DECREF(result);
        return rc;
    }
    PyObject *plist = PyList_New(0);
    if (!plist) {
        Py_DECREF(result);
        return -1;
    }
    PyObject *args[6] = {result, head_only ? Py_True : Py_False, h->http11 ? Py_True : Py_False,
                         Py_True, plist, L->rc.heads};
    PyObject *k = call(L->render, args, 6);
    rc = rendered_by_python(L, req, result, plist, k, parts, keep);
    Py_DECREF(result);
    return rc;
}

/* conn.client, read from its slot once known */
static PyObject *client_of(Lane *L, PyObject *conn)
{
    PyObject *c = nc_get(conn, L->c_client);
    if (c && c != Py_None)
        return Py_NewRef(c);
    return call(L->client_of, &conn, 1);
}

static int answer_wsgi(Lane *L, PyObject *conn, PyObject *req, const nc_head *h, int head_only,
                       PyObject **parts, PyObject **keep)
{
    PyObject *client = client_of(L, conn);
    if (!client)
        return -1;
    PyObject *env = nc_wsgi_environ(L->base_env, L->keys, L->root_bytes, req, client,
                                    L->empty_input);
    Py_DECREF(client);
    if (!env)
        return -1;
    PyObject *sr = nc_start_response_new(L->dispatcher, conn, NULL);
    if (!sr) {
        Py_DECREF(env);
        return -1;
    }
    PyObject *args[6] = {env, sr};
    PyObject *result = call(L->app, args, 2);
    Py_DECREF(env);
    if (!result) {
        Py_DECREF(sr);
        return failed(L, req, NULL, parts, keep);
    }
    PyObject *st, *hd, *wr, *fr;
    nc_start_response_state(sr, &st, &hd, &wr, &fr);
    int rc = NC_DECLINE;
    if (!fr)
        rc = nc_render_wsgi(&L->rc, &L->out, st, hd, wr, result, head_only, h->http11);
    if (rc == NC_DECLINE) {
        PyObject *plist = PyList_New(0);
        if (!plist) {
            rc = -1;
        } else {
            args[0] = head_only ? Py_True : Py_False;
            args[1] = h->http11 ? Py_True : Py_False;
            args[2] = Py_True;
            args[3] = sr;
            args[4] = result;
            args[5] = plist;
            PyObject *k = call(L->wsgi_render, args, 6);
            rc = rendered_by_python(L, req, result, plist, k, parts, keep);
        }
    }
    Py_DECREF(sr);
    Py_DECREF(result);
    return rc;
}

/* ------------------------------------------------------------ one read */

typedef struct {
    Py_ssize_t count;      /* requests answered into L->out, all keep-alive */
    Py_ssize_t pos;        /* where the lane stopped in the read */
    PyObject *parts;       /* a closing answer (the request after those): its parts */
    PyObject *keep;        /* ... and its keep-alive value (False or a Stream) */
    PyObject *batch;       /* pooled: the C Requests for the pool, in order */
} run_t;

/* the b"\r\n\r\n" that ends the head starting at pos */
static const unsigned char *find_end(const unsigned char *d, Py_ssize_t pos, Py_ssize_t n)
{
    const unsigned char *p = d + pos, *e = d + n;
    while (e - p >= 4) {
        const unsigned char *r = memchr(p, '\r', (size_t)(e - p - 3));
        if (!r)
            return NULL;
        if (r[1] == '\n' && r[2] == '\r' && r[3] == '\n')
            return r;
        p = r + 1;
    }
    return NULL;
}

/* the complete, plain requests at the start of data: answered (native,
 * WSGI inline), started (ASGI) or collected for the pool (WSGI pooled).
 * 0, or -1 with an exception set. */
static int run_requests(Lane *L, PyObject *conn, PyObject *proto, PyObject *data, Py_ssize_t seq,
                        run_t *r)
{
    const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(data);
    Py_ssize_t n = PyBytes_GET_SIZE(data), pos = 0;
    r->count = 0;
    r->parts = r->keep = r->batch = NULL;
    while (pos < n) {
        if (L->mode == LANE_ASGI && nc_get(proto, L->p_reading) != Py_True)
            break;   /* an answer closed the connection */
        const unsigned char *e = find_end(d, pos, n);
        nc_head h;
        if (!e || !nc_parse_head(d, n, pos, e - d, &L->lim, &h) || nc_head_has_body(&h) ||
            !h.keep_alive)
            break;   /* incomplete, a body, a closing request, malformed: Python's */
        int head_only = h.mlen == 4 && memcmp(d + h.m0, "HEAD", 4) == 0;
        int rc;
        if (L->mode == LANE_ASGI || L->pooled) {
            PyObject *seqo = call(L->accept_inline, &proto, 1);
            if (!seqo)
                return -1;
            seq = int_of(seqo);
            Py_DECREF(seqo);
        }
        PyObject *req = nc_request_new(data, &h, conn, seq);
        if (!req)
            return -1;
        if (L->pooled) {
            if (!r->batch && !(r->batch = PyList_New(0))) {
                Py_DECREF(req);
                return -1;
            }
            rc = PyList_Append(r->batch, req) < 0 ? -1 : NC_RENDERED;
        } else if (L->mode == LANE_NATIVE) {
            rc = answer_native(L, req, &h, head_only, &r->parts, &r->keep);
        } else if (L->mode == LANE_WSGI) {
            rc = answer_wsgi(L, conn, req, &h, head_only, &r->parts, &r->keep);
        } else {
            PyObject *client = client_of(L, conn);
            PyObject *state = client ? PyObject_GetAttr(L->lifespan, s_state) : NULL;
            PyObject *scope = state ? nc_asgi_scope(req, L->server, L->root_str, client, state)
                                    : NULL;
            Py_XDECREF(client);
            Py_XDECREF(state);
            PyObject *res = NULL;
            if (scope) {
                PyObject *args[3] = {conn, req, scope};
                res = call(L->lane_cycle, args, 3);
                Py_DECREF(scope);
            }
            Py_XDECREF(res);
            rc = res ? NC_RENDERED : -1;
        }
        Py_DECREF(req);
        if (rc < 0)
            return -1;
        pos = e - d + 4;
        seq++;
        L->n_requests++;
        if (rc == A_CLOSE)
            break;
        r->count++;
    }
    r->pos = pos;
    return 0;
}

static void run_clear(run_t *r)
{
    Py_CLEAR(r->parts);
    Py_CLEAR(r->keep);
    Py_CLEAR(r->batch);
}

/* Tell the protocol what the read did, through its API, and hand over the
 * rest: the closing answer (lane_finish) or the rest of the read
 * (lane_rest).  The answers so far go to proto.out; pooled, the batch goes
 * to the pool first (lane_submit), ahead of any request the rest holds. */
static int commit(Lane *L, PyObject *conn, PyObject *proto, PyObject *data, run_t *r)
{
    PyObject *res = NULL;
    if (r->batch) {
        PyObject *args[2] = {conn, r->batch};
        res = call(L->lane_submit, args, 2);
        if (!res)
            return -1;
        Py_DECREF(res);
    } else if (L->mode != LANE_ASGI) {   /* (ASGI cycles were accepted one by one) */
        PyObject *out = nc_out_take(&L->out, 1);
        if (!out)
            return -1;
        PyObject *cnt = PyLong_FromSsize_t(r->count);
        if (cnt) {
            PyObject *args[3] = {proto, cnt, out};
            res = call(L->answered_inline, args, 3);
            Py_DECREF(cnt);
        }
        Py_DECREF(out);
        if (!res)
            return -1;
        Py_DECREF(res);
    }
    Py_ssize_t n = PyBytes_GET_SIZE(data);
    if (!r->parts && r->pos >= n)
        return 0;
    PyObject *pos = PyLong_FromSsize_t(r->pos);
    if (!pos)
        return -1;
    if (r->parts) {
        PyObject *args[5] = {conn, r->parts, r->keep, data, pos};
        res = call(L->lane_finish, args, 5);
    } else {
        PyObject *args[3] = {conn, data, pos};
        res = call(L->lane_rest, args, 3);
    }
    Py_DECREF(pos);
    Py_XDECREF(res);
    return res ? 0 : -1;
}

/* fast_rx's checks: a plain connection and a read the lane may take */
static PyObject *takeable(Lane *L, PyObject *conn, PyObject *data)
{
    if (L->busy || Py_TYPE(conn) != L->conn_type || !PyBytes_CheckExact(data) ||
        PyBytes_GET_SIZE(data) == 0)
        return NULL;
    PyObject *proto = nc_get(conn, L->c_proto);
    if (!proto || Py_TYPE(proto) != L->proto_type || !plain_state(L, conn, proto))
        return NULL;
    return proto;
}

static PyObject *lane_fast_rx(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Lane *L = (Lane *)self;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "fast_rx(conn, data)");
        return NULL;
    }
    PyObject *conn = args[0], *data = args[1];
    if (data == L->declined) {    /* dispatch() tried this very read already */
        Py_CLEAR(L->declined);
        Py_RETURN_FALSE;
    }
    PyObject *proto = takeable(L, conn, data);
    if (!proto)
        Py_RETURN_FALSE;
    PyObject *stopping = PyObject_GetAttr(L->transport, s_stopping);
    if (!stopping)
        return NULL;
    int stop = PyObject_IsTrue(stopping);
    Py_DECREF(stopping);
    if (stop)
        return stop < 0 ? NULL : Py_NewRef(Py_False);
    Py_INCREF(proto);
    L->busy = 1;
    run_t r;
    int rc = run_requests(L, conn, proto, data, int_of(nc_get(proto, L->p_seq_in)), &r);
    int taken = r.count || r.parts;
    if (rc == 0 && taken)
        rc = commit(L, conn, proto, data, &r);
    L->busy = 0;
    nc_out_reset(&L->out);
    run_clear(&r);
    Py_DECREF(proto);
    STALE(L);
    if (rc < 0)
        return NULL;
    return Py_NewRef(taken ? Py_True : Py_False);
}

/* ------------------------------------------------------------ pool */

/* transport.stopping, read now: a pool thread runs while it may change */
static int stopping_now(Lane *L)
{
    PyObject *st = PyObject_GetAttr(L->transport, s_stopping);
    if (!st)
        return -1;
    int rc = PyObject_IsTrue(st);
    Py_DECREF(st);
    return rc;
}

/* One request of a pooled batch, on the pool thread: (req, bytes, True)
 * for a plain keep-alive answer rendered here, else (req, parts, keep)
 * from the dispatcher's pool_outcome (WSGIDispatcher._outcome: the
 * Python rendering, or the answer to the application's exception).  Only
 * the application call may release the GIL; the lane state used across it
 * is read-only (the render context) or the caller's own (the output). */
static PyObject *answer_pooled(Lane *L, PyObject *conn, PyObject *req)
{
    const nc_head *h;
    const unsigned char *d = nc_request_head(req, &h);
    int head_only = h->mlen == 4 && memcmp(d + h->m0, "HEAD", 4) == 0;
    PyObject *client = client_of(L, conn);
    if (!client)
        return NULL;
    PyObject *env = nc_wsgi_environ(L->base_env, L->keys, L->root_bytes, req, client,
                                    L->empty_input);
    Py_DECREF(client);
    if (!env)
        return NULL;
    PyObject *sr = nc_start_response_new(L->dispatcher, conn, req);
    if (!sr) {
        Py_DECREF(env);
        return NULL;
    }
    PyObject *args[5] = {env, sr};
    PyObject *result = call(L->app, args, 2);
    Py_DECREF(env);
    L->n_pooled++;
    PyObject *exc = NULL, *parts = NULL, *keep = NULL, *entry = NULL;
    int stop = result ? stopping_now(L) : 0;
    if (stop < 0)
        goto done;
    if (result && !stop) {
        PyObject *st, *hd, *wr, *fr;
        nc_start_response_state(sr, &st, &hd, &wr, &fr);
        if (!fr) {
            nc_out o;
            nc_out_init(&o);
            int rc = nc_render_wsgi(&L->rc, &o, st, hd, wr, result, head_only, h->http11);
            if (rc == NC_RENDERED && (parts = nc_out_take(&o, 0)))
                keep = Py_NewRef(Py_True);
            nc_out_free(&o);
            if (rc < 0 || (rc == NC_RENDERED && !parts))
                goto done;
        }
    }
    if (!parts && !result) {
        if (!nc_exception_pending_is_ordinary())
            goto done;   /* KeyboardInterrupt and friends go on propagating */
        exc = nc_fetch_exception();
        if (!exc)
            goto done;
    }
    if (!parts) {
        if (!(parts = PyList_New(0)))
            goto done;
        PyObject *a[5] = {req, sr, result ? result : Py_None, parts, exc ? exc : Py_None};
        keep = call(L->pool_outcome, a, 5);
        if (!keep)
            goto done;
    }
    entry = PyTuple_Pack(3, req, parts, keep);
done:
    Py_XDECREF(parts);
    Py_XDECREF(keep);
    Py_XDECREF(exc);
    Py_XDECREF(result);
    Py_DECREF(sr);
    return entry;
}

static PyObject *lane_answer_all(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Lane *L = (Lane *)self;
    if (!L->pooled) {
        PyErr_SetString(PyExc_RuntimeError, "answer_all: the lane is not a pooled WSGI lane");
        return NULL;
    }
    if (nargs != 3 || !PyList_CheckExact(args[1]) || !PyList_CheckExact(args[2])) {
        PyErr_SetString(PyExc_TypeError, "answer_all(conn, requests: list, answers: list)");
        return NULL;
    }
    PyObject *conn = args[0], *reqs = args[1], *answers = args[2];
    Py_INCREF(reqs);
    PyObject *res = Py_None;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(reqs); i++) {
        PyObject *req = PyList_GET_ITEM(reqs, i);
        if (Py_TYPE(req) != nc_Request_Type) {
            PyErr_SetString(PyExc_TypeError, "answer_all: the lane's own requests only");
            res = NULL;
            break;
        }
        Py_INCREF(req);
        PyObject *entry = answer_pooled(L, conn, req);
        Py_DECREF(req);
        int rc = entry ? PyList_Append(answers, entry) : -1;
        Py_XDECREF(entry);
        if (rc < 0) {
            res = NULL;
            break;
        }
    }
    Py_DECREF(reqs);
    return Py_XNewRef(res);
}

/* ------------------------------------------------------------ dispatch */

/* A RECV Transport.handle_rx would give the fast path and whose plain
 * case the lane finishes itself: 1 handled, 0 Python's, -1 error. */
static int lane_rx(Lane *L, PyObject *conn, PyObject *status, PyObject *data)
{
    if (L->mode == LANE_ASGI || L->pooled || !is_zero(status) || !PyBytes_CheckExact(data) ||
        Py_TYPE(conn) != L->conn_type)
        return 0;
    if (nc_get(conn, L->c_closed) != Py_False || nc_get(conn, L->c_lingering) != Py_False ||
        nc_get(conn, L->c_dirty) != Py_False)
        return 0;
    PyObject *proto = takeable(L, conn, data);
    if (!proto)
        return 0;
    PyObject *out = nc_get(proto, L->p_out);
    if (int_of(nc_get(proto, L->p_phase)) != int_of(L->idle) || !out || !PyList_CheckExact(out) ||
        PyList_GET_SIZE(out))
        return 0;
    if (refresh(L) < 0)
        return -1;
    if (L->stopping)
        return 0;
    Py_ssize_t seq = int_of(nc_get(proto, L->p_seq_in));
    if (seq < 0)
        return 0;
    Py_INCREF(proto);
    nc_set(conn, L->c_rx_armed, Py_False);
    L->busy = 1;
    run_t r;
    int rc = run_requests(L, conn, proto, data, seq, &r);
    L->busy = 0;
    if (rc < 0)
        goto done;
    Py_ssize_t n = PyBytes_GET_SIZE(data);
    if (!r.count && !r.parts) {
        /* nothing taken: the general path reads it (and fast_rx skips it) */
        Py_XSETREF(L->declined, Py_NewRef(data));
        rc = 0;
        goto done;
    }
    if (r.parts || r.pos < n) {
        /* a closing answer or a rest for the general path: the protocol's
         * API and the transport's own epilogue */
        L->busy = 1;
        rc = commit(L, conn, proto, data, &r);
        L->busy = 0;
        STALE(L);
        if (rc == 0) {
            PyObject *args[2] = {conn, L->idle};
            PyObject *res = call(L->after_rx, args, 2);
            Py_XDECREF(res);
            rc = res ? 1 : -1;
        }
        goto done;
    }
    /* The plain case: every request of the read answered, keep-alive, and
     * the answers sent from here.  What Protocol.answered_inline(count, [])
     * and Transport.after_rx do for it, done here: calling the former is a
     * Python frame per read (~10% of a request's instructions without
     * pipelining); test_lane_state.py checks the two leave the same state. */
    {
        PyObject *seqo = PyLong_FromSsize_t(seq + r.count);
        if (!seqo) {
            rc = -1;
            goto done;
        }
        nc_set(proto, L->p_seq_in, seqo);
        nc_set_steal(proto, L->p_seq_out, seqo);
    }
    double deadline = L->now + L->ka_timeout;
    PyObject *dl = PyFloat_FromDouble(deadline);
    if (!dl) {
        rc = -1;
        goto done;
    }
    nc_set_steal(conn, L->c_deadline, dl);
    if (deadline < L->next_expiry && set_next_expiry(L, deadline) < 0) {
        rc = -1;
        goto done;
    }
    rc = 1;
    if (nc_get(conn, L->c_closed) != Py_False)
        goto done;
    PyObject *handle = nc_get(conn, L->c_handle);
    Py_ssize_t sending = int_of(nc_get(conn, L->c_sending));
    PyObject *bytes = nc_out_take(&L->out, 0);
    if (!bytes || sending < 0) {
        Py_XDECREF(bytes);
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "Connection.sending is not an int");
        rc = -1;
        goto done;
    }
    /* The only send of the connection, and its completion would do nothing
     * but count it (lane_tx): asked quiet, so that one that goes out at
     * once is not reported at all. */
    int quiet = !sending && nc_get(conn, L->c_want_drain) == Py_False &&
                nc_get(conn, L->c_app_paused) == Py_False;
    if (!sending) {
        /* output is pending from now on: the write timeout runs (Transport.flush) */
        if (stamp_tx(L, conn) < 0 || (L->now + L->write_probe < L->next_expiry &&
                                      set_next_expiry(L, L->now + L->write_probe) < 0)) {
            Py_DECREF(bytes);
            rc = -1;
            goto done;
        }
    }
    if (set_int(conn, L->c_sending, ++sending) < 0) {
        Py_DECREF(bytes);
        rc = -1;
        goto done;
    }
    Py_INCREF(handle);
    PyObject *args[4] = {handle, conn, bytes, quiet ? Py_True : Py_False};
    L->n_sends++;   /* counted first: the bytes may reach the client within the call */
    L->n_reads++;
    PyObject *res = call(L->q_send, args, 4);
    Py_DECREF(bytes);
    if (!res) {
        Py_DECREF(handle);
        rc = -1;
        goto done;
    }
    if (res == Py_True) {   /* out already: what lane_tx would have done */
        L->n_sent_done++;
        L->n_quiet++;
        if (set_int(conn, L->c_sending, --sending) < 0) {
            Py_DECREF(res);
            Py_DECREF(handle);
            rc = -1;
            goto done;
        }
    }
    Py_DECREF(res);
    /* reading goes on: the protocol is reading, nothing is unanswered */
    if (sending < L->max_sends && nc_get(conn, L->c_app_paused) == Py_False &&
        nc_get(conn, L->c_closed) == Py_False) {
        res = call(L->q_recv, args, 2);
        if (!res)
            rc = -1;
        else
            nc_set(conn, L->c_rx_armed, Py_True);
        Py_XDECREF(res);
    }
    Py_DECREF(handle);
done:
    nc_out_reset(&L->out);
    run_clear(&r);
    Py_DECREF(proto);
    return rc;
}

/* A SEND completion that only lowers the count of sends in flight (the
 * common case of Transport.handle_tx): 1 handled, 0 Python's. */
static int lane_tx(Lane *L, PyObject *conn, PyObject *status)
{
    if (!is_zero(status) || Py_TYPE(conn) != L->conn_type)
        return 0;
    Py_ssize_t sending = int_of(nc_get(conn, L->c_sending)) - 1;
    if (sending < 0)
        return 0;
    if (refresh(L) < 0)
        return -1;
    if (sending == 0 && nc_get(conn, L->c_closed) != Py_True) {
        PyObject *proto = nc_get(conn, L->c_proto);
        if (!proto || Py_TYPE(proto) != L->proto_type ||
            nc_get(proto, L->p_close_after) != Py_False ||
            nc_get(conn, L->c_app_paused) != Py_False || nc_get(conn, L->c_want_drain) != Py_False ||
            L->stopping || nc_get(conn, L->c_rx_armed) != Py_True)
            return 0;
    }
    L->n_sent_done++;
    /* progress: the write timeout and the idle clock restart */
    return set_int(conn, L->c_sending, sending) < 0 || stamp_tx(L, conn) < 0 ? -1 : 1;
}

static PyObject *lane_dispatch(PyObject *self, PyObject *events)
{
    Lane *L = (Lane *)self;
    if (!PyList_CheckExact(events)) {
        PyErr_SetString(PyExc_TypeError, "dispatch(events): a list");
        return NULL;
    }
    L->fresh = 0;
    Py_INCREF(events);
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(events); i++) {
        PyObject *ev = PyList_GET_ITEM(events, i);
        if (!PyTuple_CheckExact(ev) || PyTuple_GET_SIZE(ev) != 4) {
            PyErr_SetString(PyExc_TypeError, "a completion is (op, tag, status, value)");
            Py_DECREF(events);
            return NULL;
        }
        Py_INCREF(ev);
        PyObject *op = PyTuple_GET_ITEM(ev, 0), *tag = PyTuple_GET_ITEM(ev, 1);
        PyObject *status = PyTuple_GET_ITEM(ev, 2), *value = PyTuple_GET_ITEM(ev, 3);
        Py_ssize_t opn = int_of(op);
        int rc = 0;
        PyObject *res = NULL;
        int recv = opn == L->op_recv;
        if (recv || opn == L->op_send) {
            rc = recv ? lane_rx(L, tag, status, value) : lane_tx(L, tag, status);
            if (rc == 0) {   /* the transport's own handle_rx / handle_tx */
                STALE(L);
                L->n_python++;
                PyObject *args[3] = {tag, status, value};
                res = call(recv ? L->handle_rx : L->handle_tx, args, 3);
                rc = res ? 1 : -1;
            }
        } else {
            STALE(L);
            L->n_python++;
            PyObject *one = PyList_New(1);
            if (one) {
                PyList_SET_ITEM(one, 0, Py_NewRef(ev));
                PyObject *args[2] = {L->transport, one};
                res = call(L->py_dispatch, args, 2);
                Py_DECREF(one);
            }
            rc = res ? 1 : -1;
        }
        Py_XDECREF(res);
        if (rc < 0) {
            /* as Transport.dispatch: an internal error closes its connection */
            if (!nc_exception_pending_is_ordinary()) {
                Py_DECREF(ev);
                Py_DECREF(events);
                return NULL;
            }
            STALE(L);
            PyObject *exc = nc_fetch_exception();
            PyObject *args[2] = {tag, exc};
            res = call(L->internal_error, args, 2);
            Py_XDECREF(exc);
            if (!res) {
                Py_DECREF(ev);
                Py_DECREF(events);
                return NULL;
            }
            Py_DECREF(res);
        }
        Py_DECREF(ev);
    }
    Py_DECREF(events);
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------ setup */

static PyObject *need(PyObject *parts, const char *name)
{
    PyObject *v = PyDict_GetItemString(parts, name);
    if (!v) {
        PyErr_Format(PyExc_KeyError, "Lane: missing %s", name);
        return NULL;
    }
    return Py_NewRef(v);
}

static int need_type(PyObject *parts, const char *name, PyTypeObject **out)
{
    PyObject *t = need(parts, name);
    if (!t)
        return -1;
    if (!PyType_Check(t)) {
        Py_DECREF(t);
        PyErr_Format(PyExc_TypeError, "Lane: %s must be a class", name);
        return -1;
    }
    *out = (PyTypeObject *)t;
    return 0;
}

static int slots(PyTypeObject *tp, const char *const *names, nc_slot *const *offs, int n)
{
    for (int i = 0; i < n; i++)
        if ((*offs[i] = nc_slot_offset(tp, names[i])) < 0)
            return -1;
    return 0;
}

static Py_ssize_t need_size(PyObject *parts, const char *name)
{
    PyObject *v = need(parts, name);
    if (!v)
        return -1;
    Py_ssize_t n = PyLong_AsSsize_t(v);
    Py_DECREF(v);
    return n;
}

static int lane_init(PyObject *self, PyObject *args, PyObject *kw)
{
    Lane *L = (Lane *)self;
    PyObject *parts;
    int mode;
    if (kw && PyDict_GET_SIZE(kw)) {
        PyErr_SetString(PyExc_TypeError, "Lane(mode, parts)");
        return -1;
    }
    if (!PyArg_ParseTuple(args, "iO!", &mode, &PyDict_Type, &parts))
        return -1;
    if (mode < LANE_NATIVE || mode > LANE_ASGI || L->transport) {
        PyErr_SetString(PyExc_ValueError, "Lane: bad mode, or initialised twice");
        return -1;
    }
    if (!nc_request_ready()) {
        PyErr_SetString(PyExc_RuntimeError, "Lane: setup_request() first");
        return -1;
    }
    L->mode = mode;
    struct { PyObject **p; const char *name; } objs[] = {
        {&L->transport, "transport"}, {&L->dispatcher, "dispatcher"}, {&L->app, "app"},
        {&L->q_send, "q_send"}, {&L->q_recv, "q_recv"}, {&L->idle, "IDLE"},
        {&L->handle_rx, "handle_rx"}, {&L->handle_tx, "handle_tx"}, {&L->py_dispatch, "dispatch"},
        {&L->internal_error, "internal_error"}, {&L->after_rx, "after_rx"},
        {&L->answered_inline, "answered_inline"}, {&L->accept_inline, "accept_inline"},
        {&L->render, "render"}, {&L->lane_failed, "lane_failed"}, {&L->lane_finish, "lane_finish"},
        {&L->lane_rest, "lane_rest"}, {&L->client_of, "client"}, {&L->rc.heads, "heads"},
    };
    for (size_t i = 0; i < sizeof objs / sizeof objs[0]; i++)
        if (!(*objs[i].p = need(parts, objs[i].name)))
            return -1;
    PyTypeObject *resp;
    if (need_type(parts, "Connection", &L->conn_type) < 0 ||
        need_type(parts, "Protocol", &L->proto_type) < 0 ||
        need_type(parts, "ConnState", &L->state_type) < 0 || need_type(parts, "Response", &resp) < 0)
        return -1;
    L->rc.response_type = resp;
    static const char *const cn[] = {"rx_armed", "closed", "lingering", "proto", "handle", "sending",
                                     "app_paused", "state", "deadline", "dirty", "_client",
                                     "want_drain", "tx_at", "files"};
    nc_slot *const co[] = {&L->c_rx_armed, &L->c_closed, &L->c_lingering, &L->c_proto,
                           &L->c_handle, &L->c_sending, &L->c_app_paused, &L->c_state,
                           &L->c_deadline, &L->c_dirty, &L->c_client, &L->c_want_drain,
                           &L->c_tx_at, &L->c_files};
    static const char *const pn[] = {"reading", "buf", "body_req", "seq_in", "seq_out", "held",
                                     "close_after", "phase", "out"};
    nc_slot *const po[] = {&L->p_reading, &L->p_buf, &L->p_body_req, &L->p_seq_in, &L->p_seq_out,
                           &L->p_held, &L->p_close_after, &L->p_phase, &L->p_out};
    static const char *const sn[] = {"body", "streams"};
    nc_slot *const so[] = {&L->s_body, &L->s_streams};
    static const char *const hn[] = {"server_line", "date_line"};
    nc_slot *const ho[] = {&L->rc.server_line, &L->rc.date_line};
    static const char *const rn[] = {"body", "status", "headers"};
    nc_slot *const ro[] = {&L->rc.r_body, &L->rc.r_status, &L->rc.r_headers};
    if (slots(L->conn_type, cn, co, 14) < 0 || slots(L->proto_type, pn, po, 9) < 0 ||
        slots(L->state_type, sn, so, 2) < 0 || slots(Py_TYPE(L->rc.heads), hn, ho, 2) < 0 ||
        slots(resp, rn, ro, 3) < 0)
        return -1;
    if ((L->op_recv = need_size(parts, "RECV")) < 0 || (L->op_send = need_size(parts, "SEND")) < 0 ||
        (L->lim.max_line = need_size(parts, "max_request_line")) < 0 ||
        (L->lim.max_hbytes = need_size(parts, "max_header_bytes")) < 0 ||
        (L->lim.max_count = need_size(parts, "max_header_count")) < 0 ||
        (L->lim.max_body = need_size(parts, "max_body_bytes")) < 0 ||
        (L->max_sends = need_size(parts, "MAX_PENDING_SENDS")) < 0 ||
        (L->max_inflight = need_size(parts, "MAX_INFLIGHT")) < 0)
        return -1;
    PyObject *ka = need(parts, "timeout_keep_alive");
    if (!ka)
        return -1;
    L->ka_timeout = PyFloat_AsDouble(ka);
    Py_DECREF(ka);
    PyObject *probe = PyErr_Occurred() ? NULL : need(parts, "write_probe");
    if (!probe)
        return -1;
    L->write_probe = PyFloat_AsDouble(probe);
    Py_DECREF(probe);
    if (PyErr_Occurred())
        return -1;
    if (mode == LANE_WSGI) {
        if (!(L->base_env = need(parts, "base_environ")) || !(L->root_bytes = need(parts, "root")) ||
            !(L->empty_input = need(parts, "empty_input")) ||
            !(L->wsgi_render = need(parts, "wsgi_render")) || !(L->keys = nc_keymap_new()))
            return -1;
        if (!PyDict_Check(L->base_env) || !PyBytes_Check(L->root_bytes)) {
            PyErr_SetString(PyExc_TypeError, "Lane: base_environ dict, root bytes");
            return -1;
        }
        PyObject *pooled = PyDict_GetItemString(parts, "pooled");
        L->pooled = pooled ? PyObject_IsTrue(pooled) : 0;
        if (L->pooled < 0)
            return -1;
        if (L->pooled && (!(L->lane_submit = need(parts, "lane_submit")) ||
                          !(L->pool_outcome = need(parts, "pool_outcome"))))
            return -1;
    } else if (mode == LANE_ASGI) {
        if (!(L->server = need(parts, "server")) || !(L->root_str = need(parts, "root")) ||
            !(L->lifespan = need(parts, "lifespan")) || !(L->lane_cycle = need(parts, "lane_cycle")))
            return -1;
        if (!PyUnicode_Check(L->root_str)) {
            PyErr_SetString(PyExc_TypeError, "Lane: root must be str");
            return -1;
        }
    }
    nc_out_init(&L->out);
    return 0;
}

static int lane_traverse(PyObject *self, visitproc visit, void *arg)
{
    Lane *L = (Lane *)self;
    PyObject *objs[] = {L->transport, L->dispatcher, L->app, L->q_send, L->q_recv, L->idle,
                        L->handle_rx, L->handle_tx, L->py_dispatch, L->internal_error, L->after_rx,
                        L->answered_inline, L->accept_inline, L->render, L->lane_failed,
                        L->lane_finish, L->lane_rest, L->lane_cycle, L->wsgi_render, L->client_of,
                        L->base_env, L->root_bytes, L->empty_input, L->server, L->root_str,
                        L->lifespan, L->lane_submit, L->pool_outcome, L->rc.heads,
                        (PyObject *)L->conn_type,
                        (PyObject *)L->proto_type, (PyObject *)L->state_type,
                        (PyObject *)L->rc.response_type, L->declined, L->out.parts};
    for (size_t i = 0; i < sizeof objs / sizeof objs[0]; i++)
        Py_VISIT(objs[i]);
    return 0;
}

static int lane_clear(PyObject *self)
{
    Lane *L = (Lane *)self;
    PyObject **objs[] = {&L->transport, &L->dispatcher, &L->app, &L->q_send, &L->q_recv, &L->idle,
                         &L->handle_rx, &L->handle_tx, &L->py_dispatch, &L->internal_error,
                         &L->after_rx, &L->answered_inline, &L->accept_inline, &L->render,
                         &L->lane_failed, &L->lane_finish, &L->lane_rest, &L->lane_cycle,
                         &L->wsgi_render, &L->client_of, &L->base_env, &L->root_bytes,
                         &L->empty_input, &L->server, &L->root_str, &L->lifespan,
                         &L->lane_submit, &L->pool_outcome, &L->rc.heads,
                         (PyObject **)&L->conn_type, (PyObject **)&L->proto_type,
                         (PyObject **)&L->state_type, (PyObject **)&L->rc.response_type,
                         &L->declined};
    for (size_t i = 0; i < sizeof objs / sizeof objs[0]; i++)
        Py_CLEAR(*objs[i]);
    nc_out_free(&L->out);
    return 0;
}

static void lane_dealloc(PyObject *self)
{
    Lane *L = (Lane *)self;
    PyObject_GC_UnTrack(self);
    lane_clear(self);
    nc_keymap_free(L->keys);
    L->keys = NULL;
    Py_TYPE(self)->tp_free(self);
}

static PyObject *lane_stats(PyObject *self, PyObject *unused)
{
    Lane *L = (Lane *)self;
    return Py_BuildValue("{sKsKsKsKsKsKsK}", "reads", L->n_reads, "requests", L->n_requests,
                         "sends", L->n_sends, "sends_done", L->n_sent_done,
                         "sends_quiet", L->n_quiet, "python", L->n_python,
                         "pooled", L->n_pooled);
}

static PyMethodDef lane_methods[] = {
    {"stats", lane_stats, METH_NOARGS,
     "stats() -> {reads: answered and sent by the lane alone, requests: answered or started "
     "by the lane, sends: its q.send calls, sends_done: send completions it counted "
     "(sends_quiet of them: out within the call, quiet=True, no completion at all), "
     "python: completions it handed to the transport's Python handlers, "
     "pooled: requests answer_all ran on a pool thread}"},
    {"fast_rx", (PyCFunction)(void (*)(void))lane_fast_rx, METH_FASTCALL,
     "fast_rx(conn, data) -> bool: the dispatcher fast path (frontends/base.py)"},
    {"dispatch", lane_dispatch, METH_O,
     "dispatch(events): Transport.dispatch, with the plain reads and sends done here"},
    {"answer_all", (PyCFunction)(void (*)(void))lane_answer_all, METH_FASTCALL,
     "answer_all(conn, requests, answers): on a pool thread, run a pooled batch's "
     "applications in order, appending (request, parts, keep) for each to answers"},
    {NULL},
};

PyTypeObject nc_Lane_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "netcore._http.Lane",
    .tp_basicsize = sizeof(Lane),
    .tp_dealloc = lane_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Lane(mode, parts): one server's per-request path in C (see lane.c)",
    .tp_traverse = lane_traverse,
    .tp_clear = lane_clear,
    .tp_methods = lane_methods,
    .tp_init = lane_init,
    .tp_new = PyType_GenericNew,
};

int nc_lane_init(PyObject *module)
{
    static const nc_name names[] = {
        {&s_now, "now"}, {&s_next_expiry, "next_expiry"}, {&s_stopping, "stopping"},
        {&s_state, "state"},
    };
    if (nc_intern_all(names, sizeof names / sizeof names[0]) < 0 || PyType_Ready(&nc_Lane_Type) < 0)
        return -1;
    Py_INCREF(&nc_Lane_Type);
    if (PyModule_AddObject(module, "Lane", (PyObject *)&nc_Lane_Type) < 0) {
        Py_DECREF(&nc_Lane_Type);
        return -1;
    }
    if (PyModule_AddIntConstant(module, "LANE_NATIVE", LANE_NATIVE) < 0 ||
        PyModule_AddIntConstant(module, "LANE_WSGI", LANE_WSGI) < 0 ||
        PyModule_AddIntConstant(module, "LANE_ASGI", LANE_ASGI) < 0)
        return -1;
    return 0;
}
