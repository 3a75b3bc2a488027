/* netcore._http: declarations shared by its C files (one mechanism each):
 *
 *   _http.c    the module: init, parse_head_fast, json_simple's entry
 *   json.c     JSON encoding of plain data
 *   head.c     the C head parser (well-formed heads; declines the rest)
 *   slots.c    byte offsets of Python __slots__ attributes
 *   request.c  the C Request (a subclass of netcore.Request, lazy fields)
 *   render.c   response heads and bodies into an output buffer
 *   wsgi.c     the WSGI environ and start_response
 *   asgi.c     the ASGI scope
 *   lane.c     the per-read loop (the "C lane") and the batch dispatcher
 *   probe.c    the pieces one at a time, for the differential tests
 *
 * Everything here runs with the GIL held or, on free-threaded builds, on
 * the one thread that owns a server's transport (docs/free-threading.md).
 */
#ifndef NC_HTTP_H
#define NC_HTTP_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

/* Python 3.9 (the oldest supported) has no Py_NewRef. */
#if PY_VERSION_HEX < 0x030A0000
static inline PyObject *Py_NewRef(PyObject *o)
{
    Py_INCREF(o);
    return o;
}
static inline PyObject *Py_XNewRef(PyObject *o)
{
    Py_XINCREF(o);
    return o;
}
#endif

/* Free-threaded builds lock objects for these; elsewhere (and before 3.13)
 * the GIL does. */
#ifndef Py_BEGIN_CRITICAL_SECTION
#define Py_BEGIN_CRITICAL_SECTION(op) {
#define Py_END_CRITICAL_SECTION() }
#endif

/* interned str constants, made at init */
typedef struct {
    PyObject **p;
    const char *s;
} nc_name;
int nc_intern_all(const nc_name *names, size_t n);

/* d[k] = v, stealing v (NULL: an error already set) */
static inline int nc_dict_put(PyObject *d, PyObject *k, PyObject *v)
{
    if (!v)
        return -1;
    int rc = PyDict_SetItem(d, k, v);
    Py_DECREF(v);
    return rc;
}

/* grow a byte buffer to hold need more bytes; stack: its initial storage
 * (not freed), or NULL */
int nc_grow(char **buf, Py_ssize_t *cap, Py_ssize_t len, Py_ssize_t need, char *stack);

/* ------------------------------------------------------------ head.c */

/* parser limits, from the server's Config */
typedef struct {
    Py_ssize_t max_line, max_hbytes, max_count, max_body;
} nc_limits;

/* A head the C parser accepted, as offsets into its buffer. */
typedef struct {
    Py_ssize_t m0, mlen;        /* method */
    Py_ssize_t t0, tlen;        /* request-target (origin-form) */
    Py_ssize_t h0, hend;        /* field lines d[h0:hend], CRLF-separated; h0 == hend: none */
    Py_ssize_t nfields;
    long long content_length;   /* -1: none */
    int http11, keep_alive, chunked, expect;
} nc_head;

/* one field line: the name as sent (not lower-cased), the value OWS-trimmed */
typedef struct {
    const unsigned char *name, *value;
    Py_ssize_t nlen, vlen;
} nc_field;

void nc_head_init(void);
int nc_head_methods_init(void);
/* 1: d[start:end] is a head parser.py accepts with exactly this meaning;
 * 0: anything else (the Python parser decides) */
int nc_parse_head(const unsigned char *d, Py_ssize_t len, Py_ssize_t start, Py_ssize_t end,
                  const nc_limits *lim, nc_head *h);
/* the next field line of an accepted head at *pos (< hend); advances *pos */
void nc_next_field(const unsigned char *d, Py_ssize_t *pos, Py_ssize_t hend, nc_field *f);
/* the request body follows (parser.py's framing is not None) */
static inline int nc_head_has_body(const nc_head *h)
{
    return h->chunked || h->content_length > 0;
}
/* a new reference to the method as str (common ones interned and shared) */
PyObject *nc_method_object(const unsigned char *m, Py_ssize_t n);
/* ((lower-case name, value), ...) of an accepted head, as parser.py gives
 * them; as_list: a list of those pairs (the ASGI scope's "headers") */
PyObject *nc_fields(const unsigned char *d, const nc_head *h, int as_list);
/* lower-case a name into dst (n bytes) */
void nc_lower(unsigned char *dst, const unsigned char *src, Py_ssize_t n);

/* ------------------------------------------------------------ json.c */

typedef struct {
    char *buf;
    Py_ssize_t len, cap;
    char stack[512];
} nc_buf;

void nc_buf_init(nc_buf *o);
void nc_buf_free(nc_buf *o);
/* 1 = encoded into o, 0 = not handled (the json module must), -1 = error set */
int nc_json_encode(nc_buf *o, PyObject *v);

/* ------------------------------------------------------------ slots.c */

/* A __slots__ attribute of a Python class is stored at a fixed byte offset
 * of its instances; reading it there costs a load instead of an attribute
 * lookup.  Only offsets of plain object slots (member descriptors of type
 * T_OBJECT_EX) of the exact class asked for are used: the lane checks each
 * object's exact type before it touches one. */
typedef Py_ssize_t nc_slot;

/* the offset of slot ``name`` of ``tp``; -1 with an exception set when it
 * is not a plain object slot */
nc_slot nc_slot_offset(PyTypeObject *tp, const char *name);
/* every object slot declared by ``tp`` itself (not its bases) */
int nc_slot_all(PyTypeObject *tp, nc_slot *out, int max);

#define NC_SLOT(obj, off) (*(PyObject **)((char *)(obj) + (off)))

/* borrowed; NULL when unset */
static inline PyObject *nc_get(PyObject *obj, nc_slot off)
{
    return NC_SLOT(obj, off);
}
/* stores a new reference to v (v may be NULL: unset) */
static inline void nc_set(PyObject *obj, nc_slot off, PyObject *v)
{
    PyObject *old = NC_SLOT(obj, off);
    Py_XINCREF(v);
    NC_SLOT(obj, off) = v;
    Py_XDECREF(old);
}
/* stores v, stealing the reference */
static inline void nc_set_steal(PyObject *obj, nc_slot off, PyObject *v)
{
    PyObject *old = NC_SLOT(obj, off);
    NC_SLOT(obj, off) = v;
    Py_XDECREF(old);
}
/* a slot holding True/False (or anything: Python truth), unset counts false */
static inline int nc_true(PyObject *obj, nc_slot off)
{
    PyObject *v = NC_SLOT(obj, off);
    if (v == Py_True)
        return 1;
    if (v == Py_False || v == Py_None || v == NULL)
        return 0;
    return PyObject_IsTrue(v);  /* may be -1 */
}

/* ------------------------------------------------------------ request.c */

extern PyTypeObject *nc_Request_Type;   /* NULL until setup_request() */

int nc_request_ready(void);
/* A C Request for the head h of data (a bytes object the request keeps),
 * its _peer and seq set; a new reference or NULL. */
PyObject *nc_request_new(PyObject *data, const nc_head *h, PyObject *peer, Py_ssize_t seq);
/* the request's decoded path (as Request.path gives it); a new reference */
PyObject *nc_request_path(PyObject *req);
/* raw path bytes and raw query bytes of the target of req (origin-form) */
void nc_target_split(const unsigned char *t, Py_ssize_t tlen, Py_ssize_t *plen,
                     Py_ssize_t *q0, Py_ssize_t *qlen);
/* the decoded path of an origin-form ASCII path (Request.path), a new reference */
PyObject *nc_decode_path(const unsigned char *p, Py_ssize_t n);
/* urllib.parse.unquote_to_bytes into dst (n bytes); the decoded length */
Py_ssize_t nc_percent_decode(unsigned char *dst, const unsigned char *src, Py_ssize_t n);
/* the request's buffer and head (borrowed), for the front ends' fast paths */
const unsigned char *nc_request_head(PyObject *req, const nc_head **h);
/* setup_request(Request): the C subclass of netcore.Request, made once */
PyObject *nc_setup_request(PyObject *module, PyObject *base);

/* ------------------------------------------------------------ render.c */

/* Output of one read: small pieces copied into buf, large bodies kept as
 * their own parts (no copy). */
typedef struct {
    char *buf;
    Py_ssize_t len, cap;
    PyObject *parts;      /* list of bytes, or NULL while everything is in buf */
    Py_ssize_t total;
} nc_out;

void nc_out_init(nc_out *o);
void nc_out_reset(nc_out *o);
void nc_out_free(nc_out *o);
int nc_out_put(nc_out *o, const void *p, Py_ssize_t n);
/* a body: copied when small, else appended as its own part */
int nc_out_body(nc_out *o, PyObject *bytes);
/* the bytes of every part of ``list`` (of bytes), in order */
int nc_out_list(nc_out *o, PyObject *list);
/* the output as one bytes object or a list of them; the buffer is reset */
PyObject *nc_out_take(nc_out *o, int as_list);

/* what render functions return */
#define NC_DECLINE 0      /* not a shape C renders: Python must (and may raise) */
#define NC_RENDERED 1     /* appended; the connection stays open */

/* per-server response state the renderers read */
typedef struct {
    PyObject *heads;             /* the HeadCache */
    nc_slot server_line, date_line;
    PyTypeObject *response_type;
    nc_slot r_body, r_status, r_headers;
} nc_render_ctx;

int nc_render_init(PyObject *reasons);
/* a native handler's result; -1 with an exception for errors C itself hit */
int nc_render_native(const nc_render_ctx *rc, nc_out *o, PyObject *result, int head_only,
                     int http11);
/* a WSGI application's list/tuple result with what start_response recorded */
int nc_render_wsgi(const nc_render_ctx *rc, nc_out *o, PyObject *status_text, PyObject *headers,
                   PyObject *written, PyObject *result, int head_only, int http11);

/* ------------------------------------------------------------ wsgi.c */

extern PyTypeObject nc_StartResponse_Type;
int nc_wsgi_init(PyObject *module);

typedef struct nc_keymap nc_keymap;
nc_keymap *nc_keymap_new(void);
void nc_keymap_free(nc_keymap *m);

/* environ of a C request from the server's base environ */
PyObject *nc_wsgi_environ(PyObject *base, nc_keymap *keys, PyObject *root, PyObject *req,
                          PyObject *client, PyObject *empty_input);
/* a fresh start_response for one call (a _Call look-alike); req: the
 * request on a pool (write() sends for it), NULL inline */
PyObject *nc_start_response_new(PyObject *dispatcher, PyObject *conn, PyObject *req);
/* what it recorded (borrowed; NULL when not called) */
void nc_start_response_state(PyObject *call, PyObject **status_text, PyObject **headers,
                             PyObject **written, PyObject **framer);

/* ------------------------------------------------------------ asgi.c */

int nc_asgi_init(void);
PyObject *nc_asgi_scope(PyObject *req, PyObject *server, PyObject *root, PyObject *client,
                        PyObject *state);

/* ------------------------------------------------------------ lane.c */

extern PyTypeObject nc_Lane_Type;
int nc_lane_init(PyObject *module);
int nc_probe_init(PyObject *module);

/* an exception instance with its traceback (the one raised), fetched */
PyObject *nc_fetch_exception(void);
/* is the pending exception an Exception (not a BaseException like
 * KeyboardInterrupt, which must go on propagating)? */
int nc_exception_pending_is_ordinary(void);

#endif
