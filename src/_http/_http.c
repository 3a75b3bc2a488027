/* netcore._http: C helpers for the HTTP layer's hot path (HTTP-only code;
 * the I/O core in src/_iocore stays protocol-agnostic).  http.h lists the
 * files and what each does.
 *
 * json_simple(obj) -> bytes | None
 *     UTF-8 JSON for plain data, byte-identical to the json module's
 *     (json.c), or None when the json module must encode obj.  The json
 *     module spends ~1.5 us on a one-key dict (encoder set-up, chunk list,
 *     join, encode); this spends ~0.1 us.
 *
 * parse_head_fast(data, start, end, max_request_line, max_header_bytes,
 *                 max_header_count, max_body_bytes) -> tuple | None
 *     The result of parser._parse_fields(data, start, end, config) for the
 *     head data[start:end] (end is where b"\r\n\r\n" starts):
 *     (method, target, http11, headers, keep_alive, framing), for the heads
 *     head.c accepts; None for everything else (the Python parser decides,
 *     and picks the status).  Limits come as ints: Python reads __slots__
 *     far cheaper than PyObject_GetAttr does.
 *
 * setup_request(Request) -> type, setup_render(reasons), setup_wsgi(...),
 * Lane(mode, parts), StartResponse: the C lane (lane.c), set up by
 * netcore.http.request and netcore.frontends.clane.
 */
#include "http.h"

static PyObject *json_simple(PyObject *self, PyObject *obj)
{
    nc_buf o;
    nc_buf_init(&o);
    PyObject *res;
    int rc = nc_json_encode(&o, obj);
    if (rc > 0)
        res = PyBytes_FromStringAndSize(o.buf, o.len);
    else if (rc == 0)
        res = Py_NewRef(Py_None);
    else
        res = NULL;
    nc_buf_free(&o);
    return res;
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
    nc_limits lim = {limit(args[3]), limit(args[4]), limit(args[5]), limit(args[6])};
    const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(data);
    nc_head h;
    if (!nc_parse_head(d, PyBytes_GET_SIZE(data), start, end, &lim, &h))
        Py_RETURN_NONE;
    PyObject *framing;
    if (h.chunked)
        framing = Py_BuildValue("(iOO)", 0, Py_True, h.expect ? Py_True : Py_False);
    else if (h.content_length <= 0)
        framing = Py_NewRef(Py_None);
    else
        framing = Py_BuildValue("(LOO)", h.content_length, Py_False,
                                h.expect ? Py_True : Py_False);
    if (!framing)
        return NULL;
    PyObject *method = nc_method_object(d + h.m0, h.mlen);
    PyObject *target = method ? PyBytes_FromStringAndSize((const char *)d + h.t0, h.tlen) : NULL;
    PyObject *headers = target ? nc_fields(d, &h, 0) : NULL;
    PyObject *res = headers ? PyTuple_New(6) : NULL;
    if (!res) {
        Py_XDECREF(method);
        Py_XDECREF(target);
        Py_XDECREF(headers);
        Py_DECREF(framing);
        return NULL;
    }
    PyTuple_SET_ITEM(res, 0, method);
    PyTuple_SET_ITEM(res, 1, target);
    PyTuple_SET_ITEM(res, 2, Py_NewRef(h.http11 ? Py_True : Py_False));
    PyTuple_SET_ITEM(res, 3, headers);
    PyTuple_SET_ITEM(res, 4, Py_NewRef(h.keep_alive ? Py_True : Py_False));
    PyTuple_SET_ITEM(res, 5, framing);
    return res;
}

static PyObject *setup_render(PyObject *self, PyObject *reasons)
{
    if (nc_render_init(reasons) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"json_simple", json_simple, METH_O,
     "json_simple(obj) -> UTF-8 JSON bytes, or None when the json module must encode obj"},
    {"parse_head_fast", (PyCFunction)(void (*)(void))parse_head_fast, METH_FASTCALL,
     "parse_head_fast(data, start, end, max_request_line, max_header_bytes, max_header_count, "
     "max_body_bytes) -> parser._parse_fields' result, or None when Python must decide"},
    {"setup_request", nc_setup_request, METH_O,
     "setup_request(Request) -> the C subclass of netcore.Request the lane builds"},
    {"setup_render", setup_render, METH_O,
     "setup_render(reasons): the reason phrases of the status lines the lane writes"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "netcore._http", "C helpers for netcore.http's hot path.", -1, methods,
};

/* Free-threading audit (docs/free-threading.md): the byte tables and the
 * interned names are written once here (the setup_* functions once at
 * import of netcore.http) and only read afterwards; json_simple snapshots
 * mutable containers; parse_head_fast reads only its immutable bytes
 * argument; a C Request builds its lazy fields under its own critical
 * section; a Lane and the connection objects it touches belong to one
 * transport's I/O thread.  So the module does not need the GIL. */
PyMODINIT_FUNC PyInit__http(void)
{
    nc_head_init();
    if (nc_head_methods_init() < 0 || nc_asgi_init() < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    if (nc_wsgi_init(m) < 0 || nc_lane_init(m) < 0 || nc_probe_init(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
#ifdef Py_GIL_DISABLED
    if (PyUnstable_Module_SetGIL(m, Py_MOD_GIL_NOT_USED) < 0) {
        Py_DECREF(m);
        return NULL;
    }
#endif
    return m;
}
