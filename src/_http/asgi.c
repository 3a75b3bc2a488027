/* ASGI on the lane: the HTTP scope of a C request.
 *
 * The same dict, key for key and in the same order, as
 * ASGIDispatcher._head_scope followed by ASGIDispatcher.scope: type,
 * http_version, server, scheme, method, root_path, path (which includes
 * root_path, prefixed when the proxy took it off), raw_path, query_string,
 * then a fresh asgi dict, client, headers (a new list of lower-cased byte
 * pairs) and a shallow copy of the lifespan state.  Nothing in it is
 * shared with another request.
 */
#include "http.h"

#include <string.h>

static PyObject *k_type, *k_version, *k_server, *k_scheme, *k_method, *k_root, *k_path,
    *k_raw_path, *k_query, *k_asgi, *k_client, *k_headers, *k_state, *v_http, *v_11, *v_10,
    *v_asgi_version, *v_spec_version, *k_asgi_version, *k_spec_version;

int nc_asgi_init(void)
{
    static const nc_name names[] = {
        {&k_type, "type"}, {&k_version, "http_version"}, {&k_server, "server"},
        {&k_scheme, "scheme"}, {&k_method, "method"}, {&k_root, "root_path"}, {&k_path, "path"},
        {&k_raw_path, "raw_path"}, {&k_query, "query_string"}, {&k_asgi, "asgi"},
        {&k_client, "client"}, {&k_headers, "headers"}, {&k_state, "state"}, {&v_http, "http"},
        {&v_11, "1.1"}, {&v_10, "1.0"}, {&v_asgi_version, "3.0"}, {&v_spec_version, "2.4"},
        {&k_asgi_version, "version"}, {&k_spec_version, "spec_version"},
    };
    return nc_intern_all(names, sizeof names / sizeof names[0]);
}

/* path unless it already starts with root: then root + path */
static PyObject *rooted(PyObject *path, PyObject *root)
{
    Py_ssize_t rl = PyUnicode_GET_LENGTH(root);
    if (!rl)
        return path;
    Py_ssize_t pl = PyUnicode_GET_LENGTH(path);
    if (pl >= rl && PyUnicode_Tailmatch(path, root, 0, rl, -1) == 1 &&
        (pl == rl || PyUnicode_ReadChar(path, rl) == '/'))
        return path;
    PyObject *res = PyUnicode_Concat(root, path);
    Py_DECREF(path);
    return res;
}

PyObject *nc_asgi_scope(PyObject *req, PyObject *server, PyObject *root, PyObject *client,
                        PyObject *state)
{
    const nc_head *h;
    const unsigned char *d = nc_request_head(req, &h);
    if (!d) {
        PyErr_SetString(PyExc_TypeError, "not a lane request");
        return NULL;
    }
    const unsigned char *t = d + h->t0;
    Py_ssize_t plen, q0, qlen;
    nc_target_split(t, h->tlen, &plen, &q0, &qlen);
    PyObject *scope = PyDict_New();
    if (!scope)
        return NULL;
    PyObject *path = nc_request_path(req);
    if (path)
        path = rooted(path, root);
    PyObject *asgi = PyDict_New();
    if (!path || !asgi || PyDict_SetItem(asgi, k_asgi_version, v_asgi_version) < 0 ||
        PyDict_SetItem(asgi, k_spec_version, v_spec_version) < 0)
        goto error;
    if (PyDict_SetItem(scope, k_type, v_http) < 0 ||
        PyDict_SetItem(scope, k_version, h->http11 ? v_11 : v_10) < 0 ||
        PyDict_SetItem(scope, k_server, server) < 0 || PyDict_SetItem(scope, k_scheme, v_http) < 0 ||
        nc_dict_put(scope, k_method, nc_method_object(d + h->m0, h->mlen)) < 0 ||
        PyDict_SetItem(scope, k_root, root) < 0 || PyDict_SetItem(scope, k_path, path) < 0 ||
        nc_dict_put(scope, k_raw_path, PyBytes_FromStringAndSize((const char *)t, plen)) < 0 ||
        nc_dict_put(scope, k_query, PyBytes_FromStringAndSize((const char *)t + q0, qlen)) < 0 ||
        PyDict_SetItem(scope, k_asgi, asgi) < 0 || PyDict_SetItem(scope, k_client, client) < 0 ||
        nc_dict_put(scope, k_headers, nc_fields(d, h, 1)) < 0 ||
        nc_dict_put(scope, k_state, PyDict_CheckExact(state) ? PyDict_Copy(state)
                                                     : PyObject_CallMethod(state, "copy", NULL)) < 0)
        goto error;
    Py_DECREF(path);
    Py_DECREF(asgi);
    return scope;
error:
    Py_XDECREF(path);
    Py_XDECREF(asgi);
    Py_DECREF(scope);
    return NULL;
}
