/* Responses into a read's output buffer, byte for byte what response.py
 * produces (render() for native handlers, complete_head() for WSGI).
 *
 * The head is written straight into the buffer from the server's Server
 * and Date lines (the HeadCache's slots, refreshed by the transport's
 * tick), a status line and the application's header set.  That costs
 * less than response.py's memo of finished heads (a key tuple, its hash
 * and a dict probe), so there is no memo here; the output is the same.
 *
 * Only plain shapes are handled: an exact Response, bytes, str, dict or
 * list (JSON through json.c); header sets that are None, a dict or a list
 * or tuple of 2-tuples of str, with ASCII names and latin-1 values, no
 * header that changes the framing or the connection (Connection,
 * Transfer-Encoding; for WSGI every hop-by-hop one), and a Content-Length
 * only as plain digits.  Anything else returns NC_DECLINE before anything
 * is written, and response.py renders it (or raises, and the client gets
 * its 500 from there), so every error keeps its one source.
 */
#include "http.h"

#include <string.h>

#define SMALL_BODY 16384       /* bodies below this are copied; larger ones sent as they are */
#define MAX_HEADERS 32         /* larger header sets: Python */

/* ------------------------------------------------------------ output buffer */

void nc_out_init(nc_out *o)
{
    o->buf = NULL;
    o->len = o->cap = o->total = 0;
    o->parts = NULL;
}

void nc_out_reset(nc_out *o)
{
    o->len = o->total = 0;
    Py_CLEAR(o->parts);
    if (o->cap > (1 << 18)) {   /* a burst of output: do not keep its buffer */
        PyMem_Free(o->buf);
        o->buf = NULL;
        o->cap = 0;
    }
}

void nc_out_free(nc_out *o)
{
    Py_CLEAR(o->parts);
    PyMem_Free(o->buf);
    o->buf = NULL;
    o->len = o->cap = o->total = 0;
}

static int out_grow(nc_out *o, Py_ssize_t need)
{
    return nc_grow(&o->buf, &o->cap, o->len, need, NULL);
}

int nc_out_put(nc_out *o, const void *p, Py_ssize_t n)
{
    if (out_grow(o, n) < 0)
        return -1;
    memcpy(o->buf + o->len, p, (size_t)n);
    o->len += n;
    o->total += n;
    return 0;
}

/* what is in buf becomes a part of its own */
static int out_seal(nc_out *o)
{
    if (!o->parts && !(o->parts = PyList_New(0)))
        return -1;
    if (!o->len)
        return 0;
    PyObject *b = PyBytes_FromStringAndSize(o->buf, o->len);
    if (!b)
        return -1;
    int rc = PyList_Append(o->parts, b);
    Py_DECREF(b);
    o->len = 0;
    return rc;
}

int nc_out_body(nc_out *o, PyObject *bytes)
{
    Py_ssize_t n = PyBytes_GET_SIZE(bytes);
    if (n < SMALL_BODY)
        return nc_out_put(o, PyBytes_AS_STRING(bytes), n);
    if (out_seal(o) < 0 || PyList_Append(o->parts, bytes) < 0)
        return -1;
    o->total += n;
    return 0;
}

int nc_out_list(nc_out *o, PyObject *list)
{
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list); i++) {
        PyObject *b = PyList_GET_ITEM(list, i);
        if (!PyBytes_Check(b)) {
            PyErr_SetString(PyExc_TypeError, "rendered parts must be bytes");
            return -1;
        }
        if (nc_out_body(o, b) < 0)
            return -1;
    }
    return 0;
}

PyObject *nc_out_take(nc_out *o, int as_list)
{
    PyObject *res;
    if (!o->parts && !as_list) {
        res = PyBytes_FromStringAndSize(o->buf, o->len);
    } else {
        if (out_seal(o) < 0)
            return NULL;
        res = Py_NewRef(o->parts);
        if (!as_list && PyList_GET_SIZE(res) == 1) {
            PyObject *one = Py_NewRef(PyList_GET_ITEM(res, 0));
            Py_DECREF(res);
            res = one;
        }
    }
    if (res)
        nc_out_reset(o);
    return res;
}

/* ------------------------------------------------------------ status lines */

/* "HTTP/1.1 NNN <reason>\r\n" for each status in 200..999 (an unknown
 * one has an empty reason, as response._status_line writes it) */
static char *status_line[1000];
static Py_ssize_t status_line_len[1000];

/* the decimal digits of v (>= 0) at the end of buf[0:20]; their count */
static int itoa_tail(char *end, unsigned long long v)
{
    char *p = end;
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return (int)(end - p);
}

/* response._REASONS: {status: reason phrase bytes}; the status lines made once */
int nc_render_init(PyObject *reasons)
{
    PyObject *k, *v;
    if (!PyDict_Check(reasons)) {
        PyErr_SetString(PyExc_TypeError, "reasons must be a dict");
        return -1;
    }
    if (status_line[200])
        return 0;   /* made once */
    for (long code = 999; code >= 200; code--) {   /* [200] last: it marks the table made */
        k = PyLong_FromLong(code);
        if (!k)
            return -1;
        v = PyDict_GetItemWithError(reasons, k);
        Py_DECREF(k);
        if (!v && PyErr_Occurred())
            return -1;
        const char *r = v && PyBytes_Check(v) ? PyBytes_AS_STRING(v) : "";
        Py_ssize_t rl = v && PyBytes_Check(v) ? PyBytes_GET_SIZE(v) : 0;
        char *s = PyMem_Malloc((size_t)(15 + rl));
        if (!s) {
            PyErr_NoMemory();
            return -1;
        }
        memcpy(s, "HTTP/1.1 ", 9);
        s[9] = (char)('0' + code / 100);
        s[10] = (char)('0' + code / 10 % 10);
        s[11] = (char)('0' + code % 10);
        s[12] = ' ';
        memcpy(s + 13, r, (size_t)rl);
        memcpy(s + 13 + rl, "\r\n", 2);
        status_line_len[code] = 15 + rl;
        status_line[code] = s;
    }
    return 0;
}

/* ------------------------------------------------------------ header sets */

typedef struct {
    PyObject *name[MAX_HEADERS], *value[MAX_HEADERS];   /* strong references */
    int n;
    int has_type, has_server, has_date;
    long long length;      /* the application's Content-Length, -1: none */
} henc;

static void henc_release(henc *e)
{
    for (int i = 0; i < e->n; i++) {
        Py_DECREF(e->name[i]);
        Py_DECREF(e->value[i]);
    }
    e->n = 0;
}

static int eq_lower(const char *s, Py_ssize_t n, const char *lit)
{
    Py_ssize_t ln = (Py_ssize_t)strlen(lit);
    if (n != ln)
        return 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z')
            c += 32;
        if (c != lit[i])
            return 0;
    }
    return 1;
}

/* str.strip()'s whitespace among the bytes a value may hold (no CR, LF) */
static int py_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\v' || c == '\f' || (c >= 0x1c && c <= 0x1f);
}

#define H_OK 1
#define H_SKIP 2     /* valid, not written (the server writes its own) */

/* one (name, value); H_OK / H_SKIP / NC_DECLINE */
static int header_item(PyObject *name, PyObject *value, int wsgi, henc *e)
{
    if (!PyUnicode_CheckExact(name) || !PyUnicode_CheckExact(value) || !PyUnicode_IS_ASCII(name)
        || PyUnicode_KIND(value) != PyUnicode_1BYTE_KIND)
        return NC_DECLINE;
    const char *n = (const char *)PyUnicode_1BYTE_DATA(name);
    Py_ssize_t nl = PyUnicode_GET_LENGTH(name);
    const unsigned char *v = PyUnicode_1BYTE_DATA(value);
    Py_ssize_t vl = PyUnicode_GET_LENGTH(value);
    if (!nl)
        return NC_DECLINE;
    for (Py_ssize_t i = 0; i < nl; i++) {
        char c = n[i];
        if (c == '\r' || c == '\n' || c == '\0' || c == ':' || c == ' ' || c == '\t')
            return NC_DECLINE;
    }
    for (Py_ssize_t i = 0; i < vl; i++)
        if (v[i] == '\r' || v[i] == '\n' || v[i] == '\0')
            return NC_DECLINE;
    switch (nl) {
    case 2:
        if (wsgi && eq_lower(n, nl, "te"))
            return NC_DECLINE;
        break;
    case 4:
        if (eq_lower(n, nl, "date"))
            e->has_date = 1;
        break;
    case 6:
        if (eq_lower(n, nl, "server"))
            e->has_server = 1;
        break;
    case 7:
        if (wsgi && (eq_lower(n, nl, "trailer") || eq_lower(n, nl, "upgrade")))
            return NC_DECLINE;
        break;
    case 8:
        if (wsgi && eq_lower(n, nl, "trailers"))
            return NC_DECLINE;
        break;
    case 10:
        if (eq_lower(n, nl, "connection"))
            return NC_DECLINE;    /* native: may close (Python decides); WSGI: hop-by-hop */
        if (eq_lower(n, nl, "keep-alive"))
            return wsgi ? NC_DECLINE : H_SKIP;
        break;
    case 12:
        if (eq_lower(n, nl, "content-type"))
            e->has_type = 1;
        break;
    case 14:
        if (eq_lower(n, nl, "content-length")) {
            /* value.strip(), then ASCII digits only (int() of them) */
            Py_ssize_t a = 0, b = vl;
            while (a < b && py_space(v[a]))
                a++;
            while (b > a && py_space(v[b - 1]))
                b--;
            if (b == a || b - a > 18)
                return NC_DECLINE;
            long long len = 0;
            for (Py_ssize_t i = a; i < b; i++) {
                if (v[i] < '0' || v[i] > '9')
                    return NC_DECLINE;
                len = len * 10 + (v[i] - '0');
            }
            e->length = len;   /* a repeat overrides, as in response._Encoded */
            return H_SKIP;
        }
        break;
    case 17:
        if (eq_lower(n, nl, "transfer-encoding"))
            return wsgi ? NC_DECLINE : H_SKIP;
        break;
    case 18:
        if (wsgi && eq_lower(n, nl, "proxy-authenticate"))
            return NC_DECLINE;
        break;
    case 19:
        if (wsgi && eq_lower(n, nl, "proxy-authorization"))
            return NC_DECLINE;
        break;
    }
    return H_OK;
}

static int henc_add(henc *e, PyObject *name, PyObject *value, int wsgi)
{
    int rc = header_item(name, value, wsgi, e);
    if (rc != H_OK)
        return rc == H_SKIP ? 1 : NC_DECLINE;
    if (e->n == MAX_HEADERS)
        return NC_DECLINE;
    e->name[e->n] = Py_NewRef(name);
    e->value[e->n] = Py_NewRef(value);
    e->n++;
    return 1;
}

/* a header set: 1 encoded (release with henc_release), NC_DECLINE */
static int henc_build(henc *e, PyObject *headers, int wsgi)
{
    e->n = e->has_type = e->has_server = e->has_date = 0;
    e->length = -1;
    if (headers == NULL || headers == Py_None)
        return wsgi ? NC_DECLINE : 1;
    int rc = 1;
    if (PyDict_CheckExact(headers) && !wsgi) {
        Py_BEGIN_CRITICAL_SECTION(headers);
        PyObject *k, *v;
        Py_ssize_t pos = 0;
        while (rc == 1 && PyDict_Next(headers, &pos, &k, &v))
            rc = henc_add(e, k, v, wsgi);
        Py_END_CRITICAL_SECTION();
    } else if (PyList_CheckExact(headers) || (PyTuple_CheckExact(headers) && !wsgi)) {
        /* (a list may change size only through Python code, none of which
         * runs here; free-threaded builds lock it) */
        Py_BEGIN_CRITICAL_SECTION(headers);
        for (Py_ssize_t i = 0; rc == 1 && i < PySequence_Fast_GET_SIZE(headers); i++) {
            PyObject *item = PySequence_Fast_GET_ITEM(headers, i);
            if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 2)
                rc = NC_DECLINE;
            else
                rc = henc_add(e, PyTuple_GET_ITEM(item, 0), PyTuple_GET_ITEM(item, 1), wsgi);
        }
        Py_END_CRITICAL_SECTION();
    } else {
        rc = NC_DECLINE;
    }
    if (rc != 1)
        henc_release(e);
    return rc;
}

/* ------------------------------------------------------------ heads */

static PyObject *bytes_slot(PyObject *obj, nc_slot off)
{
    PyObject *b = nc_get(obj, off);
    if (!b || !PyBytes_Check(b)) {
        PyErr_SetString(PyExc_TypeError, "HeadCache lines must be bytes");
        return NULL;
    }
    return b;
}

static int no_body_status(long status)
{
    return status == 204 || status == 304;
}

#define COPY(p, src, n) (memcpy((p), (src), (size_t)(n)), (p) += (n))

/* response._build_head: a status line (line: a WSGI status text, or the
 * standard one), the server's lines, the application's block, the
 * framing, the disposition; the size is worked out first and reserved once */
static int put_head(nc_out *o, const nc_render_ctx *rc, long status, const char *line,
                    Py_ssize_t linelen, const henc *e, const char *default_type,
                    long long length, int http11, int keep_alive)
{
    PyObject *server = e->has_server ? NULL : bytes_slot(rc->heads, rc->server_line);
    PyObject *date = e->has_date ? NULL : bytes_slot(rc->heads, rc->date_line);
    if ((!e->has_server && !server) || (!e->has_date && !date))
        return -1;
    const char *conn = http11 ? (keep_alive ? "" : "connection: close\r\n")
                              : (keep_alive ? "connection: keep-alive\r\n" : "connection: close\r\n");
    Py_ssize_t conn_len = (Py_ssize_t)strlen(conn);
    int body_status = !no_body_status(status);
    Py_ssize_t dt_len = !e->has_type && body_status && default_type ? (Py_ssize_t)strlen(default_type) : 0;
    char num[24];
    int nlen = length >= 0 && body_status ? itoa_tail(num + sizeof num, (unsigned long long)length) : 0;
    Py_ssize_t size = (line ? 11 + linelen : status_line_len[status]) +
                      (server ? PyBytes_GET_SIZE(server) : 0) + (date ? PyBytes_GET_SIZE(date) : 0) +
                      dt_len + (nlen ? 18 + nlen : 0) + conn_len + 2;
    for (int i = 0; i < e->n; i++)
        size += PyUnicode_GET_LENGTH(e->name[i]) + PyUnicode_GET_LENGTH(e->value[i]) + 4;
    if (out_grow(o, size) < 0)
        return -1;
    char *p = o->buf + o->len;
    if (line) {
        COPY(p, "HTTP/1.1 ", 9);
        COPY(p, line, linelen);
        COPY(p, "\r\n", 2);
    } else {
        COPY(p, status_line[status], status_line_len[status]);
    }
    if (server)
        COPY(p, PyBytes_AS_STRING(server), PyBytes_GET_SIZE(server));
    if (date)
        COPY(p, PyBytes_AS_STRING(date), PyBytes_GET_SIZE(date));
    for (int i = 0; i < e->n; i++) {
        COPY(p, PyUnicode_1BYTE_DATA(e->name[i]), PyUnicode_GET_LENGTH(e->name[i]));
        COPY(p, ": ", 2);
        COPY(p, PyUnicode_1BYTE_DATA(e->value[i]), PyUnicode_GET_LENGTH(e->value[i]));
        COPY(p, "\r\n", 2);
    }
    if (dt_len)
        COPY(p, default_type, dt_len);
    if (nlen) {
        COPY(p, "content-length: ", 16);
        COPY(p, num + sizeof num - nlen, nlen);
        COPY(p, "\r\n", 2);
    }
    COPY(p, conn, conn_len);
    COPY(p, "\r\n", 2);
    o->len += size;
    o->total += size;
    return 0;
}

static const char *const kind_types[] = {
    "content-type: application/octet-stream\r\n",
    "content-type: text/plain; charset=utf-8\r\n",
    "content-type: application/json\r\n",
};

/* a status that response._status_line accepts: an exact int in 200..999 */
static long plain_status(PyObject *s)
{
    if (!PyLong_CheckExact(s))
        return -1;
    int overflow;
    long v = PyLong_AsLongAndOverflow(s, &overflow);
    if (overflow || v < 200 || v > 999)
        return -1;
    return v;
}

int nc_render_native(const nc_render_ctx *rc, nc_out *o, PyObject *result, int head_only,
                     int http11)
{
    long status = 200;
    PyObject *headers = NULL, *bytes = NULL;
    const char *data;
    Py_ssize_t length;
    int kind, ret = NC_DECLINE;
    nc_buf json;
    nc_buf_init(&json);
    PyTypeObject *rtype = Py_TYPE(result);
    if (rtype == rc->response_type) {
        PyObject *body = nc_get(result, rc->r_body);
        PyObject *st = nc_get(result, rc->r_status);
        headers = nc_get(result, rc->r_headers);
        if (!body || !st || !headers || (status = plain_status(st)) < 0)
            return NC_DECLINE;
        if (PyBytes_CheckExact(body)) {
            bytes = body;
            kind = 0;
        } else if (PyUnicode_CheckExact(body)) {
            kind = 1;
        } else if (body == Py_None) {
            kind = 0;
        } else {
            return NC_DECLINE;    /* bytearray, memoryview, iterables: response.py */
        }
        result = body;
    } else if (rtype == &PyBytes_Type) {
        bytes = result;
        kind = 0;
    } else if (rtype == &PyUnicode_Type) {
        kind = 1;
    } else if (rtype == &PyDict_Type || rtype == &PyList_Type) {
        int j = nc_json_encode(&json, result);
        if (j <= 0) {
            nc_buf_free(&json);
            return j;             /* 0: the json module's; -1: error */
        }
        kind = 2;
    } else {
        return NC_DECLINE;
    }
    if (kind == 2) {
        data = json.buf;
        length = json.len;
    } else if (bytes) {
        data = PyBytes_AS_STRING(bytes);
        length = PyBytes_GET_SIZE(bytes);
    } else if (kind == 1) {
        data = PyUnicode_AsUTF8AndSize(result, &length);
        if (!data) {              /* lone surrogates: encode() raises there */
            PyErr_Clear();
            return NC_DECLINE;
        }
    } else {
        data = "";
        length = 0;
    }
    henc e;
    if (henc_build(&e, headers, 0) != 1)
        goto done;
    if (e.length >= 0 && e.length != length)
        goto release;             /* response.py raises: content-length mismatch */
    if (put_head(o, rc, status, NULL, 0, &e, kind_types[kind], length, http11, 1) < 0) {
        ret = -1;
        goto release;
    }
    ret = NC_RENDERED;
    if (length && !head_only && !no_body_status(status)) {
        if (bytes ? nc_out_body(o, bytes) : nc_out_put(o, data, length))
            ret = -1;
    }
release:
    henc_release(&e);
done:
    nc_buf_free(&json);
    return ret;
}

/* a WSGI status string: "NNN reason" with ASCII digits, latin-1, no CR/LF/NUL */
static int wsgi_status(PyObject *s, long *code)
{
    if (!PyUnicode_CheckExact(s) || PyUnicode_KIND(s) != PyUnicode_1BYTE_KIND)
        return 0;
    const unsigned char *p = PyUnicode_1BYTE_DATA(s);
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    if (n < 4 || p[3] != ' ')
        return 0;
    for (int i = 0; i < 3; i++)
        if (p[i] < '0' || p[i] > '9')
            return 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (p[i] == '\r' || p[i] == '\n' || p[i] == '\0')
            return 0;
    *code = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
    return *code >= 200;
}

static int all_bytes(PyObject *seq, Py_ssize_t *total)
{
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        PyObject *b = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyBytes_CheckExact(b))
            return 0;
        *total += PyBytes_GET_SIZE(b);
    }
    return 1;
}

static int put_all(nc_out *o, PyObject *seq)
{
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++)
        if (nc_out_body(o, PySequence_Fast_GET_ITEM(seq, i)) < 0)
            return -1;
    return 0;
}

int nc_render_wsgi(const nc_render_ctx *rc, nc_out *o, PyObject *status_text, PyObject *headers,
                   PyObject *written, PyObject *result, int head_only, int http11)
{
    long code;
    if (!status_text || !wsgi_status(status_text, &code))
        return NC_DECLINE;
    if (!PyList_CheckExact(result) && !PyTuple_CheckExact(result))
        return NC_DECLINE;
    if (written && !PyList_CheckExact(written))
        return NC_DECLINE;
    Py_ssize_t length = 0;
    if ((written && !all_bytes(written, &length)) || !all_bytes(result, &length))
        return NC_DECLINE;        /* bytes-like chunks: b"".join() there takes them */
    henc e;
    if (henc_build(&e, headers, 1) != 1)
        return NC_DECLINE;
    int ret = NC_DECLINE;
    long long declared = length;
    if (e.length >= 0 && e.length != length) {
        if (!head_only)
            goto release;         /* complete_head raises: content-length mismatch */
        declared = e.length;      /* a HEAD answer keeps its application's length */
    }
    if (put_head(o, rc, code, (const char *)PyUnicode_1BYTE_DATA(status_text),
                 PyUnicode_GET_LENGTH(status_text), &e, NULL, declared, http11, 1) < 0) {
        ret = -1;
        goto release;
    }
    ret = NC_RENDERED;
    if (length && !head_only && !no_body_status(code)) {
        if ((written && put_all(o, written) < 0) || put_all(o, result) < 0)
            ret = -1;
    }
release:
    henc_release(&e);
    return ret;
}
