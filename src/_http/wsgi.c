/* WSGI on the lane: the environ of a C request, and start_response.
 *
 * The environ is the server's base environ (frontends/wsgi.py builds it at
 * start) copied, plus what WSGIDispatcher._fill and its fast path add, in
 * the same order: REQUEST_METHOD, PATH_INFO, QUERY_STRING,
 * SERVER_PROTOCOL, the header keys in arrival order (repeats joined as
 * there), wsgi.input, REMOTE_ADDR, REMOTE_PORT.
 *
 * StartResponse stands in for wsgi._Call on the lane: the same attributes
 * (so WSGIDispatcher._render, which the lane calls for results it does not
 * render itself, reads it as it reads a _Call), start_response as its call
 * and write as a method.  Calls outside their plain use (exc_info given,
 * keyword arguments, write() before start_response or of a non-bytes) are
 * handed to _Call's own Python methods, so their errors and messages are
 * exactly those.
 */
#include "http.h"

#include <string.h>

/* ------------------------------------------------------------ CGI keys */

#define KEYMAP_SIZE 512     /* a power of two */
#define KEYMAP_NAME 48      /* longer names are mapped every time */

typedef struct {
    unsigned char name[KEYMAP_NAME];
    Py_ssize_t len;         /* 0: empty entry */
    PyObject *key;          /* str, or None: the field is dropped */
} key_entry;

struct nc_keymap {
    key_entry e[KEYMAP_SIZE];
};

nc_keymap *nc_keymap_new(void)
{
    nc_keymap *m = PyMem_Calloc(1, sizeof(nc_keymap));
    if (!m)
        PyErr_NoMemory();
    return m;
}

void nc_keymap_free(nc_keymap *m)
{
    if (!m)
        return;
    for (int i = 0; i < KEYMAP_SIZE; i++)
        Py_XDECREF(m->e[i].key);
    PyMem_Free(m);
}

/* WSGIDispatcher._key for a lower-case field name: None for names with
 * "_" (they would be indistinguishable from "-" once a CGI key, letting a
 * client spoof a header a proxy set) */
static PyObject *make_key(const unsigned char *lo, Py_ssize_t n)
{
    if (memchr(lo, '_', (size_t)n))
        return Py_NewRef(Py_None);
    if (n == 12 && memcmp(lo, "content-type", 12) == 0)
        return PyUnicode_InternFromString("CONTENT_TYPE");
    if (n == 14 && memcmp(lo, "content-length", 14) == 0)
        return PyUnicode_InternFromString("CONTENT_LENGTH");
    PyObject *key = PyUnicode_New(n + 5, 127);
    if (!key)
        return NULL;
    Py_UCS1 *k = PyUnicode_1BYTE_DATA(key);
    memcpy(k, "HTTP_", 5);
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = lo[i];
        k[5 + i] = c == '-' ? '_' : (c >= 'a' && c <= 'z') ? c - 32 : c;
    }
    PyUnicode_InternInPlace(&key);
    return key;
}

/* a new reference to the key of field name f (as sent) */
static PyObject *field_key(nc_keymap *m, const unsigned char *name, Py_ssize_t n)
{
    unsigned char lo[KEYMAP_NAME];
    if (n > KEYMAP_NAME) {
        unsigned char *big = PyMem_Malloc((size_t)n);
        if (!big)
            return PyErr_NoMemory();
        nc_lower(big, name, n);
        PyObject *key = make_key(big, n);
        PyMem_Free(big);
        return key;
    }
    nc_lower(lo, name, n);
    unsigned int h = 2166136261u;
    for (Py_ssize_t i = 0; i < n; i++)
        h = (h ^ lo[i]) * 16777619u;
    for (int probe = 0; probe < 8; probe++) {
        key_entry *e = &m->e[(h + (unsigned)probe) & (KEYMAP_SIZE - 1)];
        if (e->len == n && memcmp(e->name, lo, (size_t)n) == 0)
            return Py_NewRef(e->key);
        if (e->len == 0) {
            PyObject *key = make_key(lo, n);
            if (!key)
                return NULL;
            /* making it may have run Python code (a collection), and on a
             * pool another thread may have filled the entry meanwhile */
            if (e->len == 0) {
                memcpy(e->name, lo, (size_t)n);
                e->len = n;
                e->key = Py_NewRef(key);
            }
            return key;
        }
    }
    return make_key(lo, n);   /* a full neighbourhood: not memoised */
}

/* ------------------------------------------------------------ environ */

static PyObject *s_method, *s_path_info, *s_query, *s_protocol, *s_input, *s_addr, *s_port,
    *s_http11, *s_http10, *s_cookie, *s_comma, *s_semicolon, *s_write;

/* WSGIDispatcher._path_info: percent-decoded bytes as latin-1 text, the
 * root path taken off when the client's path has it */
static PyObject *path_info(const unsigned char *p, Py_ssize_t n, PyObject *root)
{
    unsigned char stack[512];
    unsigned char *buf = n <= (Py_ssize_t)sizeof stack ? stack : PyMem_Malloc((size_t)n ? (size_t)n : 1);
    if (!buf)
        return PyErr_NoMemory();
    Py_ssize_t m = nc_percent_decode(buf, p, n);
    Py_ssize_t rl = PyBytes_GET_SIZE(root), skip = 0;
    if (rl && m >= rl && memcmp(buf, PyBytes_AS_STRING(root), (size_t)rl) == 0 &&
        (m == rl || buf[rl] == '/'))
        skip = rl;
    PyObject *res = PyUnicode_DecodeLatin1((const char *)buf + skip, m - skip, NULL);
    if (buf != stack)
        PyMem_Free(buf);
    return res;
}

PyObject *nc_wsgi_environ(PyObject *base, nc_keymap *keys, PyObject *root, PyObject *req,
                          PyObject *client, PyObject *empty_input)
{
    const nc_head *h;
    const unsigned char *d = nc_request_head(req, &h);
    if (!d) {
        PyErr_SetString(PyExc_TypeError, "not a lane request");
        return NULL;
    }
    PyObject *env = PyDict_Copy(base);
    if (!env)
        return NULL;
    const unsigned char *t = d + h->t0;
    Py_ssize_t plen, q0, qlen;
    nc_target_split(t, h->tlen, &plen, &q0, &qlen);
    if (nc_dict_put(env, s_method, nc_method_object(d + h->m0, h->mlen)) < 0 ||
        nc_dict_put(env, s_path_info, path_info(t, plen, root)) < 0 ||
        nc_dict_put(env, s_query, PyUnicode_DecodeLatin1((const char *)t + q0, qlen, NULL)) < 0 ||
        PyDict_SetItem(env, s_protocol, h->http11 ? s_http11 : s_http10) < 0)
        goto error;
    Py_ssize_t pos = h->h0;
    while (pos < h->hend) {
        nc_field f;
        nc_next_field(d, &pos, h->hend, &f);
        PyObject *key = field_key(keys, f.name, f.nlen);
        if (!key)
            goto error;
        if (key == Py_None) {
            Py_DECREF(key);
            continue;
        }
        PyObject *text = PyUnicode_DecodeLatin1((const char *)f.value, f.vlen, NULL);
        PyObject *had = text ? PyDict_GetItemWithError(env, key) : NULL;
        if (text && had) {
            /* a repeated field: one value, joined as RFC 9110 allows */
            PyObject *sep = PyUnicode_Compare(key, s_cookie) == 0 ? s_semicolon : s_comma;
            PyObject *a = PyUnicode_Concat(had, sep);
            PyObject *joined = a ? PyUnicode_Concat(a, text) : NULL;
            Py_XDECREF(a);
            Py_SETREF(text, joined);
        }
        int rc = (text && !PyErr_Occurred()) ? PyDict_SetItem(env, key, text) : -1;
        Py_XDECREF(text);
        Py_DECREF(key);
        if (rc < 0)
            goto error;
    }
    if (PyDict_SetItem(env, s_input, empty_input) < 0)
        goto error;
    if (client != Py_None) {
        PyObject *host = PySequence_GetItem(client, 0);
        if (nc_dict_put(env, s_addr, host) < 0)
            goto error;
        PyObject *port = PySequence_GetItem(client, 1);
        PyObject *ps = port ? PyObject_Str(port) : NULL;
        Py_XDECREF(port);
        if (nc_dict_put(env, s_port, ps) < 0)
            goto error;
    }
    return env;
error:
    Py_DECREF(env);
    return NULL;
}

/* ------------------------------------------------------------ start_response */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *dispatcher, *conn, *req;
    PyObject *status_text, *headers, *line, *framer;
    PyObject *written;          /* list, made on first use */
    int status;
    Py_ssize_t pending;
} StartResponse;

static PyObject *py_call_start_response, *py_call_write;   /* wsgi._Call's methods */
static Py_ssize_t stream_window = 65536;

/* _Call.<method>(self, *args, **kwargs), for the cases it alone decides */
static PyObject *delegate(PyObject *fn, PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                          PyObject *kwnames)
{
    if (!fn) {
        PyErr_SetString(PyExc_RuntimeError, "netcore._http: setup_wsgi() was not called");
        return NULL;
    }
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    PyObject *stack[8];
    if (nargs + nkw + 1 > 8) {
        PyErr_SetString(PyExc_TypeError, "start_response() takes at most 3 arguments");
        return NULL;
    }
    stack[0] = self;
    for (Py_ssize_t i = 0; i < nargs + nkw; i++)
        stack[i + 1] = args[i];
    return PyObject_Vectorcall(fn, stack, (size_t)(nargs + 1), kwnames);
}

static PyObject *sr_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf,
                               PyObject *kwnames)
{
    StartResponse *c = (StartResponse *)self;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (kwnames || nargs < 2 || nargs > 3 || (nargs == 3 && args[2] != Py_None))
        return delegate(py_call_start_response, self, args, nargs, kwnames);
    if (c->status_text && c->status_text != Py_None) {
        PyErr_SetString(PyExc_AssertionError,
                        "start_response() called a second time without exc_info");
        return NULL;
    }
    Py_XSETREF(c->status_text, Py_NewRef(args[0]));
    Py_XSETREF(c->headers, Py_NewRef(args[1]));
    return PyObject_GetAttr(self, s_write);
}

static PyObject *sr_write(PyObject *self, PyObject *data)
{
    StartResponse *c = (StartResponse *)self;
    if (!c->status_text || c->status_text == Py_None || !PyBytes_CheckExact(data))
        return delegate(py_call_write, self, &data, 1, NULL);
    Py_ssize_t n = PyBytes_GET_SIZE(data);
    if (!n)
        Py_RETURN_NONE;
    if (!c->written && !(c->written = PyList_New(0)))
        return NULL;
    if (PyList_Append(c->written, data) < 0)
        return NULL;
    c->pending += n;
    if (c->pending >= stream_window) {
        PyObject *pool = PyObject_GetAttrString(c->dispatcher, "pool");
        if (!pool)
            return NULL;
        int has = pool != Py_None;
        Py_DECREF(pool);
        if (has) {
            c->pending = 0;
            return PyObject_CallMethod(c->dispatcher, "send_written", "O", self);
        }
    }
    Py_RETURN_NONE;
}

static PyObject *sr_get_written(PyObject *self, void *closure)
{
    StartResponse *c = (StartResponse *)self;
    if (!c->written && !(c->written = PyList_New(0)))
        return NULL;
    return Py_NewRef(c->written);
}

static int sr_set_written(PyObject *self, PyObject *value, void *closure)
{
    StartResponse *c = (StartResponse *)self;
    if (!value) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete written");
        return -1;
    }
    Py_XSETREF(c->written, Py_NewRef(value));
    return 0;
}

static int sr_traverse(PyObject *self, visitproc visit, void *arg)
{
    StartResponse *c = (StartResponse *)self;
    Py_VISIT(c->dispatcher);
    Py_VISIT(c->conn);
    Py_VISIT(c->req);
    Py_VISIT(c->status_text);
    Py_VISIT(c->headers);
    Py_VISIT(c->line);
    Py_VISIT(c->framer);
    Py_VISIT(c->written);
    return 0;
}

static int sr_clear(PyObject *self)
{
    StartResponse *c = (StartResponse *)self;
    Py_CLEAR(c->dispatcher);
    Py_CLEAR(c->conn);
    Py_CLEAR(c->req);
    Py_CLEAR(c->status_text);
    Py_CLEAR(c->headers);
    Py_CLEAR(c->line);
    Py_CLEAR(c->framer);
    Py_CLEAR(c->written);
    return 0;
}

static void sr_dealloc(PyObject *self)
{
    PyObject_GC_UnTrack(self);
    sr_clear(self);
    Py_TYPE(self)->tp_free(self);
}

static PyMemberDef sr_members[] = {
    {"dispatcher", T_OBJECT, offsetof(StartResponse, dispatcher), 0, NULL},
    {"conn", T_OBJECT, offsetof(StartResponse, conn), 0, NULL},
    {"req", T_OBJECT, offsetof(StartResponse, req), 0, NULL},
    {"status_text", T_OBJECT, offsetof(StartResponse, status_text), 0, NULL},
    {"headers", T_OBJECT, offsetof(StartResponse, headers), 0, NULL},
    {"line", T_OBJECT, offsetof(StartResponse, line), 0, NULL},
    {"framer", T_OBJECT, offsetof(StartResponse, framer), 0, NULL},
    {"status", T_INT, offsetof(StartResponse, status), 0, NULL},
    {"pending", T_PYSSIZET, offsetof(StartResponse, pending), 0, NULL},
    {NULL},
};

static PyGetSetDef sr_getset[] = {
    {"written", sr_get_written, sr_set_written, "write() data not yet sent", NULL},
    {NULL},
};

static PyMethodDef sr_methods[] = {
    {"write", sr_write, METH_O, "the legacy write() callable"},
    {NULL},
};

PyTypeObject nc_StartResponse_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "netcore._http.StartResponse",
    .tp_basicsize = sizeof(StartResponse),
    .tp_dealloc = sr_dealloc,
    .tp_vectorcall_offset = offsetof(StartResponse, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "start_response for one WSGI call on the C lane (a wsgi._Call look-alike)",
    .tp_traverse = sr_traverse,
    .tp_clear = sr_clear,
    .tp_methods = sr_methods,
    .tp_members = sr_members,
    .tp_getset = sr_getset,
};

PyObject *nc_start_response_new(PyObject *dispatcher, PyObject *conn, PyObject *req)
{
    StartResponse *c = PyObject_GC_New(StartResponse, &nc_StartResponse_Type);
    if (!c)
        return NULL;
    c->vectorcall = sr_vectorcall;
    c->dispatcher = Py_NewRef(dispatcher);
    c->conn = Py_NewRef(conn);
    c->req = Py_XNewRef(req);
    c->status_text = c->headers = c->line = c->framer = c->written = NULL;
    c->status = 0;
    c->pending = 0;
    PyObject_GC_Track(c);
    return (PyObject *)c;
}

void nc_start_response_state(PyObject *call, PyObject **status_text, PyObject **headers,
                             PyObject **written, PyObject **framer)
{
    StartResponse *c = (StartResponse *)call;
    *status_text = c->status_text == Py_None ? NULL : c->status_text;
    *headers = c->headers;
    *written = c->written;
    *framer = c->framer == Py_None ? NULL : c->framer;
}

/* setup_wsgi(_Call, STREAM_WINDOW) */
static PyObject *setup_wsgi(PyObject *module, PyObject *args)
{
    PyObject *cls;
    Py_ssize_t window;
    if (!PyArg_ParseTuple(args, "On", &cls, &window))
        return NULL;
    PyObject *sr = PyObject_GetAttrString(cls, "start_response");
    PyObject *wr = sr ? PyObject_GetAttrString(cls, "write") : NULL;
    if (!wr) {
        Py_XDECREF(sr);
        return NULL;
    }
    Py_XSETREF(py_call_start_response, sr);
    Py_XSETREF(py_call_write, wr);
    stream_window = window;
    Py_RETURN_NONE;
}

static PyMethodDef wsgi_functions[] = {
    {"setup_wsgi", setup_wsgi, METH_VARARGS,
     "setup_wsgi(_Call, STREAM_WINDOW): the Python methods StartResponse defers to"},
    {NULL},
};

int nc_wsgi_init(PyObject *module)
{
    static const nc_name names[] = {
        {&s_method, "REQUEST_METHOD"}, {&s_path_info, "PATH_INFO"}, {&s_query, "QUERY_STRING"},
        {&s_protocol, "SERVER_PROTOCOL"}, {&s_input, "wsgi.input"}, {&s_addr, "REMOTE_ADDR"},
        {&s_port, "REMOTE_PORT"}, {&s_http11, "HTTP/1.1"}, {&s_http10, "HTTP/1.0"},
        {&s_cookie, "HTTP_COOKIE"}, {&s_comma, ","}, {&s_semicolon, "; "}, {&s_write, "write"},
    };
    if (nc_intern_all(names, sizeof names / sizeof names[0]) < 0 ||
        PyType_Ready(&nc_StartResponse_Type) < 0)
        return -1;
    if (PyModule_AddFunctions(module, wsgi_functions) < 0)
        return -1;
    Py_INCREF(&nc_StartResponse_Type);
    if (PyModule_AddObject(module, "StartResponse", (PyObject *)&nc_StartResponse_Type) < 0) {
        Py_DECREF(&nc_StartResponse_Type);
        return -1;
    }
    return 0;
}
