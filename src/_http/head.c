/* The C head parser: the common well-formed shape of a request head, with
 * exactly the meaning parser._parse_fields gives it; anything else (every
 * input parser.py rejects, and some it accepts) is declined, so the Python
 * parser stays the authority for every error status.
 *
 * Accepted: origin-form target, HTTP/1.x, at most one Host (exactly one in
 * 1.1) of valid bytes, Content-Length as plain digits (equal repeats),
 * Transfer-Encoding only as one exact "chunked", Expect only
 * "100-continue", within the configured limits.  The head is validated
 * without building anything: the objects a caller needs are built from
 * the offsets afterwards (nc_fields_tuple), or never.
 */
#include "http.h"

#include <string.h>

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

void nc_head_init(void)
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

int nc_intern_all(const nc_name *names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!*names[i].p && !(*names[i].p = PyUnicode_InternFromString(names[i].s)))
            return -1;
    return 0;
}

int nc_head_methods_init(void)
{
    for (size_t i = 0; i < N_METHODS; i++)
        if (!method_objs[i] && !(method_objs[i] = PyUnicode_InternFromString(common_methods[i])))
            return -1;
    return 0;
}

PyObject *nc_method_object(const unsigned char *m, Py_ssize_t n)
{
    for (size_t i = 0; i < N_METHODS; i++) {
        const char *cm = common_methods[i];
        if ((Py_ssize_t)strlen(cm) == n && memcmp(cm, m, (size_t)n) == 0)
            return Py_NewRef(method_objs[i]);
    }
    return PyUnicode_DecodeASCII((const char *)m, n, NULL);
}

void nc_lower(unsigned char *dst, const unsigned char *src, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = src[i];
        dst[i] = (c >= 'A' && c <= 'Z') ? c + 32 : c;
    }
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

int nc_parse_head(const unsigned char *d, Py_ssize_t len, Py_ssize_t start, Py_ssize_t end,
                  const nc_limits *lim, nc_head *h)
{
    /* parser.py looks for the request line's CRLF up to end + 2: insist on
     * the CRLF at end, so both agree on where every line stops */
    if (start < 0 || start > end || end > len - 2 || d[end] != '\r' || d[end + 1] != '\n')
        return 0;

    /* ---- request line: token SP target SP "HTTP/1." DIGIT */
    const unsigned char *p = d + start, *e = d + end;
    const unsigned char *m0 = p;
    while (p < e && is_tchar[*p])
        p++;
    Py_ssize_t mlen = p - m0;
    if (!mlen || p == e || *p != ' ')
        return 0;
    if (mlen == 7 && memcmp(m0, "CONNECT", 7) == 0)  /* a 501: Python's */
        return 0;
    const unsigned char *t0 = ++p;
    if (p == e || *p != '/')  /* origin-form only; '*' and absolute-form: Python */
        return 0;
    while (p < e && is_target[*p])
        p++;
    Py_ssize_t tlen = p - t0;
    if (e - p < 9 || memcmp(p, " HTTP/1.", 8) != 0 || p[8] < '0' || p[8] > '9')
        return 0;
    int http11 = p[8] != '0';
    p += 9;
    /* p is now the request line's end: the end of the head or a CRLF */
    if (p < e && (p[0] != '\r' || p[1] != '\n'))
        return 0;
    Py_ssize_t line_end = p - d;
    if (lim->max_line < 0 || lim->max_hbytes < 0 || lim->max_count < 0 || lim->max_body < 0)
        return 0;
    if (line_end - start > lim->max_line)
        return 0;
    if (end > line_end && end - line_end > lim->max_hbytes)
        return 0;

    /* ---- header fields, one per CRLF-separated line up to e */
    int hosts = 0, te = 0, close = 0, keep_alive = 0, expect = 0;
    long long content_length = -1;
    Py_ssize_t count = 0;
    h->h0 = h->hend = end;
    if (p < e) {
        p += 2;  /* past the request line's CRLF; now at a field line */
        h->h0 = p - d;
        for (;;) {
            if (++count > lim->max_count)
                return 0;
            const unsigned char *n0 = p;
            while (p < e && is_tchar[*p])
                p++;
            Py_ssize_t nlen = p - n0;
            if (!nlen || p == e || *p != ':')  /* empty line, obs-fold, space before ':' */
                return 0;
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
                return 0;

            /* the names parser._SPECIAL gives meaning to */
            switch (nlen) {
            case 4:
                if (eq_lower(n0, 4, "host", 4)) {
                    if (++hosts > 1)
                        return 0;
                    for (Py_ssize_t i = 0; i < vlen; i++)
                        if (!is_host[v0[i]])
                            return 0;
                }
                break;
            case 14:
                if (eq_lower(n0, 14, "content-length", 14)) {
                    /* plain digits only (lists like "5, 5" go to Python) */
                    if (vlen < 1 || vlen > 18)
                        return 0;
                    long long n = 0;
                    for (Py_ssize_t i = 0; i < vlen; i++) {
                        if (v0[i] < '0' || v0[i] > '9')
                            return 0;
                        n = n * 10 + (v0[i] - '0');
                    }
                    if (content_length >= 0)  /* repeated: a 400, Python's */
                        return 0;
                    content_length = n;
                }
                break;
            case 17:
                if (eq_lower(n0, 17, "transfer-encoding", 17)) {
                    /* one field, exactly "chunked"; codings lists go to Python */
                    if (te || !eq_lower(v0, vlen, "chunked", 7))
                        return 0;
                    te = 1;
                }
                break;
            case 10:
                if (eq_lower(n0, 10, "connection", 10)) {
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
                if (eq_lower(n0, 6, "expect", 6)) {
                    if (!eq_lower(v0, vlen, "100-continue", 12))
                        return 0;
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
    if (http11 && hosts != 1)
        return 0;
    if (te) {
        if (content_length >= 0 || !http11)
            return 0;
    } else if (content_length > 0 && content_length > lim->max_body) {
        return 0;
    }
    h->m0 = m0 - d;
    h->mlen = mlen;
    h->t0 = t0 - d;
    h->tlen = tlen;
    h->nfields = count;
    h->content_length = te ? -1 : content_length;
    h->http11 = http11;
    h->keep_alive = http11 ? !close : (keep_alive && !close);
    h->chunked = te;
    h->expect = expect && http11;
    return 1;
}

void nc_next_field(const unsigned char *d, Py_ssize_t *pos, Py_ssize_t hend, nc_field *f)
{
    const unsigned char *p = d + *pos, *e = d + hend;
    const unsigned char *n0 = p;
    while (*p != ':')
        p++;
    f->name = n0;
    f->nlen = p - n0;
    p++;
    while (p < e && IS_OWS(*p))
        p++;
    const unsigned char *v0 = p;
    while (p < e && *p != '\r')
        p++;
    const unsigned char *v1 = p;
    while (v1 > v0 && IS_OWS(v1[-1]))
        v1--;
    f->value = v0;
    f->vlen = v1 - v0;
    *pos = (p < e ? p + 2 : e) - d;
}

static PyObject *field_pair(const nc_field *f)
{
    PyObject *name = PyBytes_FromStringAndSize(NULL, f->nlen);
    if (!name)
        return NULL;
    nc_lower((unsigned char *)PyBytes_AS_STRING(name), f->name, f->nlen);
    PyObject *value = PyBytes_FromStringAndSize((const char *)f->value, f->vlen);
    if (!value) {
        Py_DECREF(name);
        return NULL;
    }
    PyObject *pair = PyTuple_New(2);
    if (!pair) {
        Py_DECREF(name);
        Py_DECREF(value);
        return NULL;
    }
    PyTuple_SET_ITEM(pair, 0, name);
    PyTuple_SET_ITEM(pair, 1, value);
    return pair;
}

PyObject *nc_fields(const unsigned char *d, const nc_head *h, int as_list)
{
    Py_ssize_t n = h->h0 < h->hend ? h->nfields : 0;
    PyObject *seq = as_list ? PyList_New(n) : PyTuple_New(n);
    if (!seq)
        return NULL;
    Py_ssize_t pos = h->h0;
    for (Py_ssize_t i = 0; i < n; i++) {
        nc_field f;
        nc_next_field(d, &pos, h->hend, &f);
        PyObject *pair = field_pair(&f);
        if (!pair) {
            Py_DECREF(seq);
            return NULL;
        }
        if (as_list)
            PyList_SET_ITEM(seq, i, pair);
        else
            PyTuple_SET_ITEM(seq, i, pair);
    }
    return seq;
}
