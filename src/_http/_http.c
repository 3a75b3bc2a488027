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
    if (t == &PyDict_Type) {
        Py_ssize_t pos = 0;
        PyObject *k, *val;
        int first = 1, rc;
        if (put(o, "{", 1) < 0)
            return -1;
        while (PyDict_Next(v, &pos, &k, &val)) {
            if (Py_TYPE(k) != &PyUnicode_Type)
                return 0;  /* json converts or rejects other keys */
            if (!first && put(o, ",", 1) < 0)
                return -1;
            first = 0;
            /* values are borrowed: nothing here runs Python code that
             * could mutate the dict (exact types only) */
            if ((rc = put_str(o, k)) <= 0)
                return rc;
            if (put(o, ":", 1) < 0)
                return -1;
            if ((rc = put_value(o, val, depth + 1)) <= 0)
                return rc;
        }
        return put(o, "}", 1) < 0 ? -1 : 1;
    }
    if (t == &PyList_Type) {
        int rc;
        if (put(o, "[", 1) < 0)
            return -1;
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(v); i++) {
            if (i && put(o, ",", 1) < 0)
                return -1;
            if ((rc = put_value(o, PyList_GET_ITEM(v, i), depth + 1)) <= 0)
                return rc;
        }
        return put(o, "]", 1) < 0 ? -1 : 1;
    }
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

static PyMethodDef methods[] = {
    {"json_simple", json_simple, METH_O,
     "json_simple(obj) -> UTF-8 JSON bytes, or None when the json module must encode obj"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "netcore._http", "C helpers for netcore.http's hot path.", -1, methods,
};

PyMODINIT_FUNC PyInit__http(void)
{
    return PyModule_Create(&module);
}
