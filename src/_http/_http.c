/* netcore._http: C helpers for the HTTP layer's hot path (HTTP-only code;
 * the I/O core in src/_iocore stays protocol-agnostic).
 *
 * json_simple(obj) -> bytes | None
 *     UTF-8 JSON for the shapes handlers return most (dicts and lists of
 *     str, int, float, bool, None, nested), byte-identical to
 *     json.JSONEncoder(ensure_ascii=False, separators=(",", ":"),
 *     allow_nan=False).encode(obj).encode("utf-8").  Anything else (other
 *     types, subclasses, non-str keys, non-finite floats, lone surrogates,
 *     deep nesting, which includes cycles) returns None and the caller uses
 *     the json module, which then also produces any error.  The json module
 *     spends ~1.5 us on a one-key dict (encoder set-up, chunk list, join,
 *     encode); this spends ~0.1 us.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

/* Python 3.9 (the oldest supported) has no Py_NewRef. */
#if PY_VERSION_HEX < 0x030A0000
static inline PyObject *Py_NewRef(PyObject *o)
{
    Py_INCREF(o);
    return o;
}
#endif

/* Free-threaded CPython: another thread may mutate a dict or list while it
 * is being encoded, so json_simple walks a private snapshot that holds
 * strong references (PyDict_Items / PyList_AsTuple take the object's lock).
 * With the GIL nothing runs between two items, so the containers are read
 * in place.  -DNC_HTTP_SNAPSHOT forces the snapshot path for tests. */
#if defined(Py_GIL_DISABLED) && !defined(NC_HTTP_SNAPSHOT)
#define NC_HTTP_SNAPSHOT 1
#endif

#define MAX_DEPTH 32

typedef struct {
    char *buf;
    Py_ssize_t len, cap;
    char stack[512];
} out_t;

static int grow(out_t *o, Py_ssize_t need)
{
    if (o->len + need <= o->cap)
        return 0;
    Py_ssize_t cap = o->cap * 2;
    while (cap < o->len + need)
        cap *= 2;
    char *nb;
    if (o->buf == o->stack) {
        nb = PyMem_Malloc((size_t)cap);
        if (nb)
            memcpy(nb, o->buf, (size_t)o->len);
    } else {
        nb = PyMem_Realloc(o->buf, (size_t)cap);
    }
    if (!nb) {
        PyErr_NoMemory();
        return -1;
    }
    o->buf = nb;
    o->cap = cap;
    return 0;
}

static inline int put(out_t *o, const char *s, Py_ssize_t n)
{
    if (grow(o, n) < 0)
        return -1;
    memcpy(o->buf + o->len, s, (size_t)n);
    o->len += n;
    return 0;
}

/* 1 = written, 0 = not handled (fall back), -1 = error set */
static int put_str(out_t *o, PyObject *s)
{
    Py_ssize_t n;
    const char *u = PyUnicode_AsUTF8AndSize(s, &n);
    if (!u) {  /* lone surrogates: json's path raises the real error */
        PyErr_Clear();
        return 0;
    }
    /* worst case: every byte becomes \u00XX */
    if (grow(o, n * 6 + 2) < 0)
        return -1;
    char *p = o->buf + o->len;
    *p++ = '"';
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)u[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *p++ = (char)c;
            continue;
        }
        *p++ = '\\';
        switch (c) {
        case '"': *p++ = '"'; break;
        case '\\': *p++ = '\\'; break;
        case '\n': *p++ = 'n'; break;
        case '\r': *p++ = 'r'; break;
        case '\t': *p++ = 't'; break;
        case '\b': *p++ = 'b'; break;
        case '\f': *p++ = 'f'; break;
        default:
            *p++ = 'u';
            *p++ = '0';
            *p++ = '0';
            *p++ = "0123456789abcdef"[c >> 4];
            *p++ = "0123456789abcdef"[c & 15];
        }
    }
    *p++ = '"';
    o->len = p - o->buf;
    return 1;
}

static int put_repr(out_t *o, PyObject *obj, reprfunc repr)
{
    PyObject *r = repr(obj);
    if (!r) {  /* e.g. an int over sys.get_int_max_str_digits(): json raises */
        PyErr_Clear();
        return 0;
    }
    Py_ssize_t n;
    const char *u = PyUnicode_AsUTF8AndSize(r, &n);
    int rc = u ? put(o, u, n) : -1;
    Py_DECREF(r);
    return rc < 0 ? -1 : 1;
}

static int put_value(out_t *o, PyObject *v, int depth);

/* one "key":value member; 1 = written, 0 = decline, -1 = error */
static int put_member(out_t *o, PyObject *k, PyObject *val, int first, int depth)
{
    int rc;
    if (Py_TYPE(k) != &PyUnicode_Type)
        return 0;  /* json converts or rejects other keys */
    if (!first && put(o, ",", 1) < 0)
        return -1;
    if ((rc = put_str(o, k)) <= 0)
        return rc;
    if (put(o, ":", 1) < 0)
        return -1;
    return put_value(o, val, depth + 1);
}

static int put_dict(out_t *o, PyObject *v, int depth)
{
    int rc = 1;
    if (put(o, "{", 1) < 0)
        return -1;
#ifdef NC_HTTP_SNAPSHOT
    PyObject *items = PyDict_Items(v);
    if (!items)
        return -1;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items) && rc > 0; i++) {
        PyObject *kv = PyList_GET_ITEM(items, i);
        rc = put_member(o, PyTuple_GET_ITEM(kv, 0), PyTuple_GET_ITEM(kv, 1), i == 0, depth);
    }
    Py_DECREF(items);
#else
    /* borrowed references: nothing here runs Python code that could mutate
     * the dict (exact types only) and the GIL keeps other threads out */
    Py_ssize_t pos = 0;
    PyObject *k, *val;
    for (int first = 1; rc > 0 && PyDict_Next(v, &pos, &k, &val); first = 0)
        rc = put_member(o, k, val, first, depth);
#endif
    if (rc <= 0)
        return rc;
    return put(o, "}", 1) < 0 ? -1 : 1;
}

static int put_list(out_t *o, PyObject *v, int depth)
{
    int rc = 1;
    if (put(o, "[", 1) < 0)
        return -1;
#ifdef NC_HTTP_SNAPSHOT
    PyObject *seq = PyList_AsTuple(v);
    if (!seq)
        return -1;
#else
    PyObject *seq = v;
#endif
    /* the PySequence_Fast macros read a list or a tuple alike */
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq) && rc > 0; i++) {
        if (i && put(o, ",", 1) < 0)
            rc = -1;
        else
            rc = put_value(o, PySequence_Fast_GET_ITEM(seq, i), depth + 1);
    }
#ifdef NC_HTTP_SNAPSHOT
    Py_DECREF(seq);
#endif
    if (rc <= 0)
        return rc;
    return put(o, "]", 1) < 0 ? -1 : 1;
}

static int put_value(out_t *o, PyObject *v, int depth)
{
    PyTypeObject *t = Py_TYPE(v);
    if (t == &PyUnicode_Type)
        return put_str(o, v);
    if (v == Py_None)
        return put(o, "null", 4) < 0 ? -1 : 1;
    if (v == Py_True)
        return put(o, "true", 4) < 0 ? -1 : 1;
    if (v == Py_False)
        return put(o, "false", 5) < 0 ? -1 : 1;
    if (t == &PyLong_Type)  /* json uses int.__repr__ */
        return put_repr(o, v, PyLong_Type.tp_repr);
    if (t == &PyFloat_Type) {  /* float.__repr__; nan/inf: json raises */
        if (!isfinite(PyFloat_AS_DOUBLE(v)))
            return 0;
        return put_repr(o, v, PyFloat_Type.tp_repr);
    }
    if (depth >= MAX_DEPTH)
        return 0;
    if (t == &PyDict_Type)
        return put_dict(o, v, depth);
    if (t == &PyList_Type)
        return put_list(o, v, depth);
    return 0;
}

static PyObject *json_simple(PyObject *self, PyObject *obj)
{
    out_t o;
    o.buf = o.stack;
    o.len = 0;
    o.cap = sizeof o.stack;
    PyObject *res;
    int rc = put_value(&o, obj, 0);
    if (rc > 0)
        res = PyBytes_FromStringAndSize(o.buf, o.len);
    else if (rc == 0)
        res = Py_NewRef(Py_None);
    else
        res = NULL;
    if (o.buf != o.stack)
        PyMem_Free(o.buf);
    return res;
}

/* ------------------------------------------------------------------ heads
 *
 * parse_head_fast(data, start, end, max_request_line, max_header_bytes,
 *                 max_header_count, max_body_bytes) -> tuple | None
 *     The result of parser._parse_fields(data, start, end, config) for the
 *     head data[start:end] (end is where b"\r\n\r\n" starts):
 *     (method, target, http11, headers, keep_alive, framing).  Only the
 *     common well-formed shape is handled: origin-form target, HTTP/1.x, at
 *     most one Host, Content-Length as plain digits, Transfer-Encoding only
 *     as one exact "chunked", Expect only "100-continue", within the limits
 *     (config's, passed as ints: Python reads __slots__ far cheaper than
 *     PyObject_GetAttr does).  Anything else, and every input parser.py would reject,
 *     returns None and the Python parser decides (and picks the status).
 *     The memo caches in parser.py make repeated heads cheap; this is for
 *     the heads they miss (a varying header costs a regex per line there).
 */

/* tchar (RFC 9110 5.6.2) */
static unsigned char is_tchar[256];
/* field-value bytes parser.py accepts: HTAB, SP..~, obs-text (>= 0x80) */
static unsigned char is_vchar[256];
/* request-target bytes: visible ASCII (a URI is ASCII) */
static unsigned char is_target[256];
/* parser._HOST: [-._~%!$&'()*+,;=:\[\]0-9A-Za-z] */
static unsigned char is_host[256];

/* interned method names: the common ones are shared, not rebuilt per request */
static const char *const common_methods[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS",
                                              "PATCH"};
#define N_METHODS (sizeof common_methods / sizeof common_methods[0])
static PyObject *method_objs[N_METHODS];

static void init_tables(void)
{
    const char *tok = "!#$%&'*+-.^_`|~";
    for (int c = 0; c < 256; c++) {
        int alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        is_tchar[c] = alnum || (c && strchr(tok, c) != NULL);
        is_vchar[c] = c == '\t' || (c >= 0x20 && c != 0x7f);
        is_target[c] = c > 0x20 && c < 0x7f;
        is_host[c] = alnum || (c && strchr("-._~%!$&'()*+,;=:[]", c) != NULL);
    }
}

/* a limit as a non-negative Py_ssize_t; -1 when not an int that fits (the
 * caller declines: Python then compares it its own way) */
static Py_ssize_t limit(PyObject *v)
{
    if (!PyLong_Check(v))
        return -1;
    Py_ssize_t n = PyLong_AsSsize_t(v);
    if (n == -1 && PyErr_Occurred())
        PyErr_Clear();
    return n < 0 ? -1 : n;
}

/* ASCII case-insensitive equality with a lower-case literal */
static int eq_lower(const unsigned char *s, Py_ssize_t n, const char *lit, Py_ssize_t ln)
{
    if (n != ln)
        return 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c >= 'A' && c <= 'Z')
            c += 32;
        if (c != (unsigned char)lit[i])
            return 0;
    }
    return 1;
}

#define IS_OWS(c) ((c) == ' ' || (c) == '\t')

static PyObject *parse_head_fast(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "parse_head_fast(data, start, end, max_request_line, "
                        "max_header_bytes, max_header_count, max_body_bytes)");
        return NULL;
    }
    PyObject *data = args[0];
    /* exact bytes and exact ints only: anything else is Python's business */
    if (!PyBytes_CheckExact(data) || !PyLong_CheckExact(args[1]) || !PyLong_CheckExact(args[2]))
        Py_RETURN_NONE;
    Py_ssize_t start = PyLong_AsSsize_t(args[1]), end = PyLong_AsSsize_t(args[2]);
    if ((start == -1 || end == -1) && PyErr_Occurred()) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(data);
    Py_ssize_t len = PyBytes_GET_SIZE(data);
    /* parser.py looks for the request line's CRLF up to end + 2: insist on
     * the CRLF at end, so both agree on where every line stops */
    if (start < 0 || start > end || end > len - 2 || d[end] != '\r' || d[end + 1] != '\n')
        Py_RETURN_NONE;

    /* ---- request line: token SP target SP "HTTP/1." DIGIT */
    const unsigned char *p = d + start, *e = d + end;
    const unsigned char *m0 = p;
    while (p < e && is_tchar[*p])
        p++;
    Py_ssize_t mlen = p - m0;
    if (!mlen || p == e || *p != ' ')
        Py_RETURN_NONE;
    if (mlen == 7 && memcmp(m0, "CONNECT", 7) == 0)  /* a 501: Python's */
        Py_RETURN_NONE;
    const unsigned char *t0 = ++p;
    if (p == e || *p != '/')  /* origin-form only; '*' and absolute-form: Python */
        Py_RETURN_NONE;
    while (p < e && is_target[*p])
        p++;
    Py_ssize_t tlen = p - t0;
    if (e - p < 9 || memcmp(p, " HTTP/1.", 8) != 0 || p[8] < '0' || p[8] > '9')
        Py_RETURN_NONE;
    int http11 = p[8] != '0';
    p += 9;
    /* p is now the request line's end: the end of the head or a CRLF */
    if (p < e && (p[0] != '\r' || p[1] != '\n'))
        Py_RETURN_NONE;
    Py_ssize_t line_end = p - d;

    Py_ssize_t max_line = limit(args[3]), max_hbytes = limit(args[4]);
    Py_ssize_t max_count = limit(args[5]), max_body = limit(args[6]);
    if (max_line < 0 || max_hbytes < 0 || max_count < 0 || max_body < 0)
        Py_RETURN_NONE;
    if (line_end - start > max_line)
        Py_RETURN_NONE;
    if (end > line_end && end - line_end > max_hbytes)
        Py_RETURN_NONE;

    /* ---- header fields, one per CRLF-separated line up to e */
    PyObject *headers = PyList_New(0);
    if (!headers)
        return NULL;
    int hosts = 0, te = 0, close = 0, keep_alive = 0, expect = 0;
    long long content_length = -1;
    Py_ssize_t count = 0;
    if (p < e) {
        p += 2;  /* past the request line's CRLF; now at a field line */
        for (;;) {
            if (++count > max_count)
                goto decline;
            const unsigned char *n0 = p;
            while (p < e && is_tchar[*p])
                p++;
            Py_ssize_t nlen = p - n0;
            if (!nlen || p == e || *p != ':')  /* empty line, obs-fold, space before ':' */
                goto decline;
            p++;
            while (p < e && IS_OWS(*p))
                p++;
            const unsigned char *v0 = p;
            while (p < e && is_vchar[*p])
                p++;
            const unsigned char *v1 = p;
            while (v1 > v0 && IS_OWS(v1[-1]))
                v1--;
            Py_ssize_t vlen = v1 - v0;
            int last = p == e;
            /* a line ends at the head's end or at CRLF; a bare CR, LF or other
             * control byte is an error in parser.py */
            if (!last && (p[0] != '\r' || p[1] != '\n'))
                goto decline;

            PyObject *name = PyBytes_FromStringAndSize(NULL, nlen);
            if (!name)
                goto error;
            unsigned char *lo = (unsigned char *)PyBytes_AS_STRING(name);
            for (Py_ssize_t i = 0; i < nlen; i++) {
                unsigned char c = n0[i];
                lo[i] = (c >= 'A' && c <= 'Z') ? c + 32 : c;
            }
            PyObject *value = PyBytes_FromStringAndSize((const char *)v0, vlen);
            if (!value) {
                Py_DECREF(name);
                goto error;
            }
            PyObject *pair = PyTuple_New(2);
            if (!pair) {
                Py_DECREF(name);
                Py_DECREF(value);
                goto error;
            }
            PyTuple_SET_ITEM(pair, 0, name);
            PyTuple_SET_ITEM(pair, 1, value);
            int rc = PyList_Append(headers, pair);
            Py_DECREF(pair);
            if (rc < 0)
                goto error;

            /* the names parser._SPECIAL gives meaning to */
            switch (nlen) {
            case 4:
                if (memcmp(lo, "host", 4) == 0) {
                    if (++hosts > 1)
                        goto decline;
                    for (Py_ssize_t i = 0; i < vlen; i++)
                        if (!is_host[v0[i]])
                            goto decline;
                }
                break;
            case 14:
                if (memcmp(lo, "content-length", 14) == 0) {
                    /* plain digits only (lists like "5, 5" go to Python) */
                    if (vlen < 1 || vlen > 18)
                        goto decline;
                    long long n = 0;
                    for (Py_ssize_t i = 0; i < vlen; i++) {
                        if (v0[i] < '0' || v0[i] > '9')
                            goto decline;
                        n = n * 10 + (v0[i] - '0');
                    }
                    if (content_length >= 0)  /* repeated: a 400, Python's */
                        goto decline;
                    content_length = n;
                }
                break;
            case 17:
                if (memcmp(lo, "transfer-encoding", 17) == 0) {
                    /* one field, exactly "chunked"; codings lists go to Python */
                    if (te || !eq_lower(v0, vlen, "chunked", 7))
                        goto decline;
                    te = 1;
                }
                break;
            case 10:
                if (memcmp(lo, "connection", 10) == 0) {
                    /* comma-separated tokens, OWS-trimmed, case-insensitive */
                    const unsigned char *s = v0;
                    while (s <= v1) {
                        const unsigned char *c = s;
                        while (c < v1 && *c != ',')
                            c++;
                        const unsigned char *a = s, *b = c;
                        while (a < b && IS_OWS(*a))
                            a++;
                        while (b > a && IS_OWS(b[-1]))
                            b--;
                        if (eq_lower(a, b - a, "close", 5))
                            close = 1;
                        else if (eq_lower(a, b - a, "keep-alive", 10))
                            keep_alive = 1;
                        s = c + 1;
                    }
                }
                break;
            case 6:
                if (memcmp(lo, "expect", 6) == 0) {
                    if (!eq_lower(v0, vlen, "100-continue", 12))
                        goto decline;
                    expect = 1;
                }
                break;
            }
            if (last)
                break;
            p += 2;
        }
    }

    /* ---- framing and connection semantics, as _parse_fields decides them */
    if (http11 ? hosts != 1 : 0)
        goto decline;
    int ka = http11 ? !close : (keep_alive && !close);
    PyObject *framing;
    if (te) {
        if (content_length >= 0 || !http11)
            goto decline;
        framing = Py_BuildValue("(iOO)", 0, Py_True, expect ? Py_True : Py_False);
    } else if (content_length <= 0) {
        framing = Py_NewRef(Py_None);
    } else {
        if (content_length > max_body)
            goto decline;
        framing = Py_BuildValue("(LOO)", content_length, Py_False,
                                (expect && http11) ? Py_True : Py_False);
    }
    if (!framing)
        goto error;

    PyObject *method = NULL;
    for (size_t i = 0; i < N_METHODS; i++) {
        const char *cm = common_methods[i];
        if ((Py_ssize_t)strlen(cm) == mlen && memcmp(cm, m0, (size_t)mlen) == 0) {
            method = Py_NewRef(method_objs[i]);
            break;
        }
    }
    if (!method)
        method = PyUnicode_DecodeASCII((const char *)m0, mlen, NULL);
    PyObject *target = method ? PyBytes_FromStringAndSize((const char *)t0, tlen) : NULL;
    PyObject *htuple = target ? PyList_AsTuple(headers) : NULL;
    Py_DECREF(headers);
    if (!htuple) {
        Py_XDECREF(method);
        Py_XDECREF(target);
        Py_DECREF(framing);
        return NULL;
    }
    PyObject *res = PyTuple_New(6);
    if (!res) {
        Py_DECREF(method);
        Py_DECREF(target);
        Py_DECREF(htuple);
        Py_DECREF(framing);
        return NULL;
    }
    PyTuple_SET_ITEM(res, 0, method);
    PyTuple_SET_ITEM(res, 1, target);
    PyTuple_SET_ITEM(res, 2, Py_NewRef(http11 ? Py_True : Py_False));
    PyTuple_SET_ITEM(res, 3, htuple);
    PyTuple_SET_ITEM(res, 4, Py_NewRef(ka ? Py_True : Py_False));
    PyTuple_SET_ITEM(res, 5, framing);
    return res;

decline:
    Py_DECREF(headers);
    Py_RETURN_NONE;
error:
    Py_DECREF(headers);
    return NULL;
}

static PyMethodDef methods[] = {
    {"json_simple", json_simple, METH_O,
     "json_simple(obj) -> UTF-8 JSON bytes, or None when the json module must encode obj"},
    {"parse_head_fast", (PyCFunction)(void (*)(void))parse_head_fast, METH_FASTCALL,
     "parse_head_fast(data, start, end, max_request_line, max_header_bytes, max_header_count, "
     "max_body_bytes) -> parser._parse_fields' result, or None when Python must decide"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "netcore._http", "C helpers for netcore.http's hot path.", -1, methods,
};

/* Free-threading audit (docs/free-threading.md): the tables above are
 * written once here and only read afterwards; method_objs are created here
 * and never released; json_simple snapshots mutable containers (see
 * NC_HTTP_SNAPSHOT); parse_head_fast reads only its immutable bytes
 * argument.  So the module does not need the GIL. */
PyMODINIT_FUNC PyInit__http(void)
{
    init_tables();
    for (size_t i = 0; i < N_METHODS; i++)
        if (!method_objs[i] && !(method_objs[i] = PyUnicode_InternFromString(common_methods[i])))
            return NULL;
    PyObject *m = PyModule_Create(&module);
#ifdef Py_GIL_DISABLED
    if (m && PyUnstable_Module_SetGIL(m, Py_MOD_GIL_NOT_USED) < 0) {
        Py_DECREF(m);
        return NULL;
    }
#endif
    return m;
}
