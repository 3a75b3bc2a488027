/* The lane's pieces one at a time, for the differential tests
 * (tests/http/test_lane_units.py): a C Request from a head, and the two
 * renderers on their own.  Not used by the server.
 *
 * make_request(data, start, end, max_request_line, max_header_bytes,
 *              max_header_count, max_body_bytes, peer, seq) -> Request | None
 *     the C Request the lane would build for the head data[start:end]
 *     (end: where b"\r\n\r\n" starts), or None when the lane would leave
 *     the head to the Python parser (as parse_head_fast declines, or a
 *     body follows, or the request closes the connection).
 * render_native(result, head_only, http11, heads, Response) -> bytes | None
 * render_wsgi(status, headers, written, result, head_only, http11, heads)
 *     -> bytes | None
 *     what the lane writes for a result (keep-alive), or None: Python's.
 */
#include "http.h"

static PyObject *make_request(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 9 || !PyBytes_CheckExact(args[0])) {
        PyErr_SetString(PyExc_TypeError, "make_request(data: bytes, start, end, max_request_line, "
                        "max_header_bytes, max_header_count, max_body_bytes, peer, seq)");
        return NULL;
    }
    Py_ssize_t v[7];
    for (int i = 0; i < 6; i++)
        if ((v[i] = PyLong_AsSsize_t(args[i + 1])) == -1 && PyErr_Occurred())
            return NULL;
    if ((v[6] = PyLong_AsSsize_t(args[8])) == -1 && PyErr_Occurred())
        return NULL;
    if (!nc_request_ready()) {
        PyErr_SetString(PyExc_RuntimeError, "setup_request() first");
        return NULL;
    }
    nc_limits lim = {v[2], v[3], v[4], v[5]};
    nc_head h;
    const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    if (!nc_parse_head(d, PyBytes_GET_SIZE(args[0]), v[0], v[1], &lim, &h) ||
        nc_head_has_body(&h) || !h.keep_alive)
        Py_RETURN_NONE;
    return nc_request_new(args[0], &h, args[7], v[6]);
}

static int render_ctx(nc_render_ctx *rc, PyObject *heads, PyObject *response)
{
    rc->heads = heads;
    rc->response_type = PyType_Check(response) ? (PyTypeObject *)response : NULL;
    if ((rc->server_line = nc_slot_offset(Py_TYPE(heads), "server_line")) < 0 ||
        (rc->date_line = nc_slot_offset(Py_TYPE(heads), "date_line")) < 0)
        return -1;
    if (rc->response_type &&
        ((rc->r_body = nc_slot_offset(rc->response_type, "body")) < 0 ||
         (rc->r_status = nc_slot_offset(rc->response_type, "status")) < 0 ||
         (rc->r_headers = nc_slot_offset(rc->response_type, "headers")) < 0))
        return -1;
    return 0;
}

static PyObject *finish(nc_out *o, int rc)
{
    PyObject *res = NULL;
    if (rc == NC_RENDERED) {
        res = nc_out_take(o, 1);
        if (res) {
            PyObject *empty = PyBytes_FromStringAndSize(NULL, 0);
            Py_SETREF(res, empty ? PyObject_CallMethod(empty, "join", "O", res) : NULL);
            Py_XDECREF(empty);
        }
    }
    else if (rc == NC_DECLINE)
        res = Py_NewRef(Py_None);
    nc_out_free(o);
    return res;
}

static PyObject *render_native(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "render_native(result, head_only, http11, heads, Response)");
        return NULL;
    }
    nc_render_ctx rc;
    if (render_ctx(&rc, args[3], args[4]) < 0)
        return NULL;
    nc_out o;
    nc_out_init(&o);
    int r = nc_render_native(&rc, &o, args[0], PyObject_IsTrue(args[1]), PyObject_IsTrue(args[2]));
    return finish(&o, r);
}

static PyObject *render_wsgi(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError,
                        "render_wsgi(status, headers, written, result, head_only, http11, heads)");
        return NULL;
    }
    nc_render_ctx rc;
    if (render_ctx(&rc, args[6], Py_None) < 0)
        return NULL;
    nc_out o;
    nc_out_init(&o);
    int r = nc_render_wsgi(&rc, &o, args[0] == Py_None ? NULL : args[0], args[1],
                           args[2] == Py_None ? NULL : args[2], args[3], PyObject_IsTrue(args[4]),
                           PyObject_IsTrue(args[5]));
    return finish(&o, r);
}

static PyMethodDef probe_functions[] = {
    {"make_request", (PyCFunction)(void (*)(void))make_request, METH_FASTCALL,
     "make_request(data, start, end, limits..., peer, seq) -> the lane's Request, or None"},
    {"render_native", (PyCFunction)(void (*)(void))render_native, METH_FASTCALL,
     "render_native(result, head_only, http11, heads, Response) -> bytes, or None"},
    {"render_wsgi", (PyCFunction)(void (*)(void))render_wsgi, METH_FASTCALL,
     "render_wsgi(status, headers, written, result, head_only, http11, heads) -> bytes, or None"},
    {NULL},
};

int nc_probe_init(PyObject *module)
{
    return PyModule_AddFunctions(module, probe_functions);
}
