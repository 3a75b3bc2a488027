/* The C Request: a subclass of netcore.Request built by the lane.
 *
 * It keeps the bytes of the read its head came from and the head's
 * offsets (nc_head), and builds ``target``, ``raw_headers``, ``path``,
 * ``raw_path`` and ``query_string`` from them only when asked; everything
 * else (``headers``, ``query``, ``client``, ``text()``, ``json()``, the
 * repr) is netcore.Request's own code reading the same slots.  So
 * ``isinstance(req, netcore.Request)`` holds and a handler sees the same
 * API, while a plaintext handler that never looks at its headers never
 * pays for them.
 *
 * Storage: the base class's __slots__ (at their offsets, see slots.c) plus
 * an extension after them (req_ext).  The type has its own dealloc,
 * traverse and clear covering both, since CPython's generic ones for
 * classes with __slots__ only know Python-made subclasses.
 *
 * Assigning ``target`` or ``raw_headers`` (middleware rewriting a request)
 * stores the new value and from then on the derived attributes are
 * computed by netcore.Request's Python properties, as for any request.
 */
#include "http.h"

#include <string.h>

typedef struct {
    PyObject *data;          /* the read's bytes: h's offsets point into it; NULL: none */
    nc_head h;
    PyObject *path;          /* the decoded path, once asked for */
    unsigned char target_set, headers_set;
} req_ext;

PyTypeObject *nc_Request_Type = NULL;
static Py_ssize_t ext_offset;
/* netcore.Request's slots */
static nc_slot s_method, s_target, s_version, s_raw_headers, s_body, s_body_pending, s_keep_alive,
    s_seq, s_peer;
#define MAX_SLOTS 32
static nc_slot all_slots[MAX_SLOTS];
static int n_slots;
/* netcore.Request's own properties, for requests whose target was replaced */
static PyObject *base_path, *base_raw_path, *base_query_string;
static PyObject *v11, *v10, *empty_bytes;

#define EXT(o) ((req_ext *)((char *)(o) + ext_offset))
#define DATA(x) ((const unsigned char *)PyBytes_AS_STRING((x)->data))

int nc_request_ready(void)
{
    return nc_Request_Type != NULL;
}

/* ------------------------------------------------------------ target pieces */

void nc_target_split(const unsigned char *t, Py_ssize_t tlen, Py_ssize_t *plen, Py_ssize_t *q0,
                     Py_ssize_t *qlen)
{
    /* as request._split_target for origin-form: path before the first '?'
     * and then before its first '#'; the query after that '?' up to its
     * first '#' */
    const unsigned char *q = memchr(t, '?', (size_t)tlen);
    Py_ssize_t pend = q ? q - t : tlen;
    const unsigned char *hash = memchr(t, '#', (size_t)pend);
    *plen = hash ? hash - t : pend;
    if (!q) {
        *q0 = tlen;
        *qlen = 0;
        return;
    }
    *q0 = pend + 1;
    const unsigned char *qh = memchr(t + *q0, '#', (size_t)(tlen - *q0));
    *qlen = (qh ? qh - t : tlen) - *q0;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* urllib.parse.unquote_to_bytes: %XX (either case) becomes the byte, any
 * other '%' stays; returns the decoded length (dst holds n bytes) */
Py_ssize_t nc_percent_decode(unsigned char *dst, const unsigned char *src, Py_ssize_t n)
{
    Py_ssize_t j = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int hi, lo;
        if (src[i] == '%' && i + 2 < n && (hi = hexval(src[i + 1])) >= 0 &&
            (lo = hexval(src[i + 2])) >= 0) {
            dst[j++] = (unsigned char)(hi << 4 | lo);
            i += 2;
        } else {
            dst[j++] = src[i];
        }
    }
    return j;
}

/* p is ASCII: head.c takes only ASCII targets (a URI is ASCII) */
PyObject *nc_decode_path(const unsigned char *p, Py_ssize_t n)
{
    if (!memchr(p, '%', (size_t)n)) {
        PyObject *u = PyUnicode_New(n, 127);
        if (u && n)
            memcpy(PyUnicode_1BYTE_DATA(u), p, (size_t)n);
        return u;
    }
    /* unquote() of ASCII text is percent-decoding, then UTF-8 with surrogateescape */
    unsigned char stack[512];
    unsigned char *buf = n <= (Py_ssize_t)sizeof stack ? stack : PyMem_Malloc((size_t)n);
    if (!buf)
        return PyErr_NoMemory();
    Py_ssize_t m = nc_percent_decode(buf, p, n);
    PyObject *res = PyUnicode_DecodeUTF8((const char *)buf, m, "surrogateescape");
    if (buf != stack)
        PyMem_Free(buf);
    return res;
}

/* ------------------------------------------------------------ the type */

static int lazy(PyObject *self)
{
    req_ext *x = EXT(self);
    return x->data != NULL && !x->target_set;
}

static PyObject *no_attribute(PyObject *self, const char *name)
{
    PyErr_Format(PyExc_AttributeError, "'%.100s' object has no attribute '%s'",
                 Py_TYPE(self)->tp_name, name);
    return NULL;
}

static PyObject *req_get_target(PyObject *self, void *closure)
{
    PyObject *res = NULL;
    Py_BEGIN_CRITICAL_SECTION(self);
    PyObject *t = NC_SLOT(self, s_target);
    if (!t && lazy(self)) {
        req_ext *x = EXT(self);
        t = PyBytes_FromStringAndSize((const char *)DATA(x) + x->h.t0, x->h.tlen);
        NC_SLOT(self, s_target) = t;
    }
    if (t)
        res = Py_NewRef(t);
    else if (!PyErr_Occurred())
        no_attribute(self, "target");
    Py_END_CRITICAL_SECTION();
    return res;
}

static int req_set_target(PyObject *self, PyObject *value, void *closure)
{
    if (!value && !NC_SLOT(self, s_target) && !lazy(self)) {
        no_attribute(self, "target");
        return -1;
    }
    Py_BEGIN_CRITICAL_SECTION(self);
    req_ext *x = EXT(self);
    x->target_set = 1;
    Py_CLEAR(x->path);
    nc_set(self, s_target, value);
    Py_END_CRITICAL_SECTION();
    return 0;
}

static PyObject *req_get_raw_headers(PyObject *self, void *closure)
{
    PyObject *res = NULL;
    Py_BEGIN_CRITICAL_SECTION(self);
    PyObject *t = NC_SLOT(self, s_raw_headers);
    req_ext *x = EXT(self);
    if (!t && x->data && !x->headers_set) {
        t = nc_fields(DATA(x), &x->h, 0);
        NC_SLOT(self, s_raw_headers) = t;
    }
    if (t)
        res = Py_NewRef(t);
    else if (!PyErr_Occurred())
        no_attribute(self, "raw_headers");
    Py_END_CRITICAL_SECTION();
    return res;
}

static int req_set_raw_headers(PyObject *self, PyObject *value, void *closure)
{
    req_ext *x = EXT(self);
    if (!value && !NC_SLOT(self, s_raw_headers) && !(x->data && !x->headers_set)) {
        no_attribute(self, "raw_headers");
        return -1;
    }
    Py_BEGIN_CRITICAL_SECTION(self);
    x->headers_set = 1;
    nc_set(self, s_raw_headers, value);
    Py_END_CRITICAL_SECTION();
    return 0;
}

static PyObject *base_get(PyObject *prop, PyObject *self)
{
    return Py_TYPE(prop)->tp_descr_get(prop, self, (PyObject *)Py_TYPE(self));
}

PyObject *nc_request_path(PyObject *self)
{
    if (!lazy(self))
        return base_get(base_path, self);
    PyObject *res = NULL;
    Py_BEGIN_CRITICAL_SECTION(self);
    req_ext *x = EXT(self);
    if (!x->path) {
        Py_ssize_t plen, q0, qlen;
        const unsigned char *t = DATA(x) + x->h.t0;
        nc_target_split(t, x->h.tlen, &plen, &q0, &qlen);
        x->path = nc_decode_path(t, plen);
    }
    res = Py_XNewRef(x->path);
    Py_END_CRITICAL_SECTION();
    return res;
}

static PyObject *req_get_path(PyObject *self, void *closure)
{
    return nc_request_path(self);
}

static PyObject *req_get_raw_path(PyObject *self, void *closure)
{
    if (!lazy(self))
        return base_get(base_raw_path, self);
    req_ext *x = EXT(self);
    Py_ssize_t plen, q0, qlen;
    const unsigned char *t = DATA(x) + x->h.t0;
    nc_target_split(t, x->h.tlen, &plen, &q0, &qlen);
    return PyBytes_FromStringAndSize((const char *)t, plen);
}

static PyObject *req_get_query_string(PyObject *self, void *closure)
{
    if (!lazy(self))
        return base_get(base_query_string, self);
    req_ext *x = EXT(self);
    Py_ssize_t plen, q0, qlen;
    const unsigned char *t = DATA(x) + x->h.t0;
    nc_target_split(t, x->h.tlen, &plen, &q0, &qlen);
    return PyUnicode_DecodeLatin1((const char *)t + q0, qlen, NULL);
}

static PyGetSetDef req_getset[] = {
    {"target", req_get_target, req_set_target, "the raw request-target (bytes)", NULL},
    {"raw_headers", req_get_raw_headers, req_set_raw_headers,
     "((lower-case name, value), ...) as bytes, in arrival order", NULL},
    {"path", req_get_path, NULL, "percent-decoded path", NULL},
    {"raw_path", req_get_raw_path, NULL, "path as sent, without the query", NULL},
    {"query_string", req_get_query_string, NULL, "the raw query (after '?')", NULL},
    {NULL},
};

static int req_traverse(PyObject *self, visitproc visit, void *arg)
{
    for (int i = 0; i < n_slots; i++)
        Py_VISIT(NC_SLOT(self, all_slots[i]));
    req_ext *x = EXT(self);
    Py_VISIT(x->data);
    Py_VISIT(x->path);
    Py_VISIT(Py_TYPE(self));
    return 0;
}

static int req_clear(PyObject *self)
{
    for (int i = 0; i < n_slots; i++)
        Py_CLEAR(NC_SLOT(self, all_slots[i]));
    req_ext *x = EXT(self);
    Py_CLEAR(x->data);
    Py_CLEAR(x->path);
    return 0;
}

static void req_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    req_clear(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

PyObject *nc_request_new(PyObject *data, const nc_head *h, PyObject *peer, Py_ssize_t seq)
{
    PyObject *seqo = PyLong_FromSsize_t(seq);
    if (!seqo)
        return NULL;
    PyObject *method = nc_method_object((const unsigned char *)PyBytes_AS_STRING(data) + h->m0,
                                        h->mlen);
    if (!method) {
        Py_DECREF(seqo);
        return NULL;
    }
    PyObject *self = nc_Request_Type->tp_alloc(nc_Request_Type, 0);
    if (!self) {
        Py_DECREF(seqo);
        Py_DECREF(method);
        return NULL;
    }
    NC_SLOT(self, s_method) = method;
    NC_SLOT(self, s_seq) = seqo;
    NC_SLOT(self, s_version) = Py_NewRef(h->http11 ? v11 : v10);
    NC_SLOT(self, s_keep_alive) = Py_NewRef(h->keep_alive ? Py_True : Py_False);
    NC_SLOT(self, s_body) = Py_NewRef(empty_bytes);
    NC_SLOT(self, s_body_pending) = Py_NewRef(Py_False);
    NC_SLOT(self, s_peer) = Py_NewRef(peer);
    req_ext *x = EXT(self);
    x->data = Py_NewRef(data);
    x->h = *h;
    return self;
}

const unsigned char *nc_request_head(PyObject *req, const nc_head **h)
{
    if (Py_TYPE(req) != nc_Request_Type || !lazy(req))
        return NULL;
    req_ext *x = EXT(req);
    if (x->headers_set)
        return NULL;
    *h = &x->h;
    return DATA(x);
}

/* setup_request(Request): make the C subclass of netcore.Request */
PyObject *nc_setup_request(PyObject *module, PyObject *base)
{
    if (nc_Request_Type)
        return Py_NewRef((PyObject *)nc_Request_Type);
    if (!PyType_Check(base) || !(((PyTypeObject *)base)->tp_flags & Py_TPFLAGS_HEAPTYPE)) {
        PyErr_SetString(PyExc_TypeError, "setup_request(Request): a class with __slots__");
        return NULL;
    }
    PyTypeObject *bt = (PyTypeObject *)base;
    if (bt->tp_dictoffset || bt->tp_weaklistoffset || bt->tp_itemsize) {
        PyErr_SetString(PyExc_TypeError, "Request must have __slots__ and no __dict__");
        return NULL;
    }
    struct { nc_slot *off; const char *name; } need[] = {
        {&s_method, "method"}, {&s_target, "target"}, {&s_version, "http_version"},
        {&s_raw_headers, "raw_headers"}, {&s_body, "body"}, {&s_body_pending, "body_pending"},
        {&s_keep_alive, "keep_alive"}, {&s_seq, "seq"}, {&s_peer, "_peer"},
    };
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++)
        if ((*need[i].off = nc_slot_offset(bt, need[i].name)) < 0)
            return NULL;
    if ((n_slots = nc_slot_all(bt, all_slots, MAX_SLOTS)) < 0)
        return NULL;
    PyObject *dict = bt->tp_dict;
    base_path = PyDict_GetItemString(dict, "path");
    base_raw_path = PyDict_GetItemString(dict, "raw_path");
    base_query_string = PyDict_GetItemString(dict, "query_string");
    if (!base_path || !base_raw_path || !base_query_string || !Py_TYPE(base_path)->tp_descr_get ||
        !Py_TYPE(base_raw_path)->tp_descr_get || !Py_TYPE(base_query_string)->tp_descr_get) {
        PyErr_SetString(PyExc_TypeError, "Request needs path, raw_path and query_string properties");
        return NULL;
    }
    Py_INCREF(base_path);
    Py_INCREF(base_raw_path);
    Py_INCREF(base_query_string);
    if (!v11 && !(v11 = PyUnicode_InternFromString("1.1")))
        return NULL;
    if (!v10 && !(v10 = PyUnicode_InternFromString("1.0")))
        return NULL;
    if (!empty_bytes && !(empty_bytes = PyBytes_FromStringAndSize(NULL, 0)))
        return NULL;

    ext_offset = (bt->tp_basicsize + (Py_ssize_t)sizeof(void *) - 1) & ~((Py_ssize_t)sizeof(void *) - 1);
    PyType_Slot slots[] = {
        {Py_tp_dealloc, (void *)req_dealloc},
        {Py_tp_traverse, (void *)req_traverse},
        {Py_tp_clear, (void *)req_clear},
        {Py_tp_getset, req_getset},
        {Py_tp_doc, "A request parsed by netcore's C fast path (see netcore.Request)."},
        {0, NULL},
    };
    PyType_Spec spec = {
        "netcore._http.Request", (int)(ext_offset + (Py_ssize_t)sizeof(req_ext)), 0,
        Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, slots,
    };
    PyObject *bases = PyTuple_Pack(1, base);
    if (!bases)
        return NULL;
    PyObject *tp = PyType_FromSpecWithBases(&spec, bases);
    Py_DECREF(bases);
    if (!tp)
        return NULL;
    nc_Request_Type = (PyTypeObject *)tp;
    return Py_NewRef(tp);
}
