/* JSON for the shapes handlers return most (dicts and lists of str, int,
 * float, bool, None, nested), byte-identical to
 * json.JSONEncoder(ensure_ascii=False, separators=(",", ":"),
 * allow_nan=False).encode(obj).encode("utf-8").  Anything else (other
 * types, subclasses, non-str keys, non-finite floats, lone surrogates, deep
 * nesting, which includes cycles) is declined and the caller uses the json
 * module, which then also produces any error.
 *
 * Free-threaded CPython: another thread may mutate a dict or list while it
 * is being encoded, so the encoder walks a private snapshot that holds
 * strong references (PyDict_Items / PyList_AsTuple take the object's lock).
 * With the GIL nothing runs between two items, so the containers are read
 * in place.  -DNC_HTTP_SNAPSHOT forces the snapshot path for tests. */
#include "http.h"

#include <math.h>
#include <string.h>

#if defined(Py_GIL_DISABLED) && !defined(NC_HTTP_SNAPSHOT)
#define NC_HTTP_SNAPSHOT 1
#endif

#define MAX_DEPTH 32

int nc_grow(char **buf, Py_ssize_t *cap, Py_ssize_t len, Py_ssize_t need, char *stack)
{
    if (len + need <= *cap)
        return 0;
    Py_ssize_t c = *cap ? *cap * 2 : 4096;
    while (c < len + need)
        c *= 2;
    char *nb;
    if (*buf == stack) {
        nb = PyMem_Malloc((size_t)c);
        if (nb && len)
            memcpy(nb, *buf, (size_t)len);
    } else {
        nb = PyMem_Realloc(*buf, (size_t)c);
    }
    if (!nb) {
        PyErr_NoMemory();
        return -1;
    }
    *buf = nb;
    *cap = c;
    return 0;
}

static int grow(nc_buf *o, Py_ssize_t need)
{
    return nc_grow(&o->buf, &o->cap, o->len, need, o->stack);
}

static inline int put(nc_buf *o, const char *s, Py_ssize_t n)
{
    if (grow(o, n) < 0)
        return -1;
    memcpy(o->buf + o->len, s, (size_t)n);
    o->len += n;
    return 0;
}

/* 1 = written, 0 = not handled (fall back), -1 = error set */
static int put_str(nc_buf *o, PyObject *s)
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

static int put_repr(nc_buf *o, PyObject *obj, reprfunc repr)
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

static int put_value(nc_buf *o, PyObject *v, int depth);

/* one "key":value member; 1 = written, 0 = decline, -1 = error */
static int put_member(nc_buf *o, PyObject *k, PyObject *val, int first, int depth)
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

static int put_dict(nc_buf *o, PyObject *v, int depth)
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

static int put_list(nc_buf *o, PyObject *v, int depth)
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

static int put_value(nc_buf *o, PyObject *v, int depth)
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


void nc_buf_init(nc_buf *o)
{
    o->buf = o->stack;
    o->len = 0;
    o->cap = sizeof o->stack;
}

void nc_buf_free(nc_buf *o)
{
    if (o->buf != o->stack)
        PyMem_Free(o->buf);
    o->buf = o->stack;
}

int nc_json_encode(nc_buf *o, PyObject *v)
{
    return put_value(o, v, 0);
}
