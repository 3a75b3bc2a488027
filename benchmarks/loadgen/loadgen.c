/* loadgen.c: the built-in load generator's C engine, written on netcore's
 * completion queue (src/_iocore/iocore.h), so it runs on every backend the
 * core has (epoll, IOCP, ...).  The suite compiles it on the fly together
 * with the core's C sources where a C compiler exists; engine.py is the
 * same generator in Python, used where none does.  Both take the same
 * key=value arguments and print the same JSON.
 *
 * Modes:
 *   mode=http  CONNECTIONS keep-alive connections, each with DEPTH requests
 *              in flight (DEPTH > 1: written back to back, i.e. pipelined);
 *              the next batch goes out when the last response of the
 *              previous one is in.  With rate=R (requests/s over all
 *              connections; DEPTH is then 1, as with a body) each follows a
 *              fixed schedule, and a request that goes out late because
 *              the previous response was late is timed from when it was
 *              due: coordinated omission is corrected.
 *   mode=echo  one MSG_BYTES message in flight per connection, every
 *              echoed byte checked against what was sent.
 * Counting runs for DURATION seconds from the moment every connection is
 * up (or CONNECT_TIMEOUT seconds have passed), or until REQUESTS responses
 * (requests=N, for profilers; a DURATION then caps the time).
 *
 * Output: {"engine": "c", "requests": N, "duration_s": T, "errors": {...},
 *          "bytes": B, "hist": [[bucket, count], ...]}; the buckets are
 * those of benchmarks/stats.py (log-linear over microseconds).
 */
#include "iocore.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#include <windows.h>
#include <ws2tcpip.h>
#else
#include <arpa/inet.h>
#include <netinet/in.h>
#include <strings.h>
#include <time.h>
#endif

#ifdef _WIN32
#define strncasecmp _strnicmp
#endif

/* ------------------------------------------------------------ settings */

static struct {
    const char *host, *mode, *path, *method, *heads;
    int port, connections, depth, msg_bytes;
    long body_bytes;
    double duration, rate, connect_timeout;
    long long requests;   /* stop after this many responses (0: use duration) */
} cfg = {"127.0.0.1", "http", "/plaintext", "GET", "plain", 8000, 64, 1, 64, 0, 5.0, 0, 10.0, 0};

static int parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        if (!eq) {
            fprintf(stderr, "argument %s: expected key=value\n", argv[i]);
            return -1;
        }
        *eq = 0;
        const char *k = argv[i], *v = eq + 1;
        if (!strcmp(k, "host")) cfg.host = v;
        else if (!strcmp(k, "port")) cfg.port = atoi(v);
        else if (!strcmp(k, "mode")) cfg.mode = v;
        else if (!strcmp(k, "connections")) cfg.connections = atoi(v);
        else if (!strcmp(k, "duration")) cfg.duration = atof(v);
        else if (!strcmp(k, "requests")) cfg.requests = atoll(v);
        else if (!strcmp(k, "path")) cfg.path = v;
        else if (!strcmp(k, "method")) cfg.method = v;
        else if (!strcmp(k, "body_bytes")) cfg.body_bytes = atol(v);
        else if (!strcmp(k, "depth")) cfg.depth = atoi(v);
        else if (!strcmp(k, "heads")) cfg.heads = v;
        else if (!strcmp(k, "rate")) cfg.rate = atof(v);
        else if (!strcmp(k, "msg_bytes")) cfg.msg_bytes = atoi(v);
        else if (!strcmp(k, "connect_timeout")) cfg.connect_timeout = atof(v);
        else {
            fprintf(stderr, "unknown argument %s\n", k);
            return -1;
        }
    }
    if (cfg.connections <= 0 || cfg.depth <= 0 || cfg.msg_bytes <= 0 || cfg.port <= 0 ||
        (cfg.duration <= 0 && cfg.requests <= 0)) {
        fprintf(stderr, "bad arguments\n");
        return -1;
    }
    if (cfg.rate > 0 || cfg.body_bytes)
        cfg.depth = 1;  /* fixed rate and uploads send one request at a time */
    return 0;
}

/* ------------------------------------------------------------ time, histogram */

static int64_t now_ns(void)
{
#ifdef _WIN32
    static LARGE_INTEGER freq;
    LARGE_INTEGER t;
    if (!freq.QuadPart)
        QueryPerformanceFrequency(&freq);
    QueryPerformanceCounter(&t);
    return (int64_t)((double)t.QuadPart * 1e9 / (double)freq.QuadPart);
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
#endif
}

#define HIST_BUCKETS 1024
static long long hist[HIST_BUCKETS];

/* Same buckets as benchmarks/stats.py: 64 linear, then 32 per power of two. */
static int bucket_of(long long us)
{
    if (us < 64)
        return us < 0 ? 0 : (int)us;
    int bits = 0;
    for (long long v = us; v; v >>= 1)
        bits++;
    int shift = bits - 6;
    int b = 64 + (shift - 1) * 32 + (int)((us >> shift) - 32);
    return b < HIST_BUCKETS ? b : HIST_BUCKETS - 1;
}

/* ------------------------------------------------------------ state */

enum { P_HEAD, P_BODY, P_CHUNK_LINE, P_CHUNK_DATA, P_TRAILER };

typedef struct conn {
    int id;
    nc_id h;            /* 0 while connecting */
    int inflight;       /* responses still expected for the batch out */
    int timer_armed;
    int connecting;
    long long seq;      /* requests (or messages) sent on this connection */
    int64_t sent_at;    /* when the batch out was due or sent (ns) */
    int64_t due;        /* rate mode: when the next request is due (ns) */
    /* response parser */
    int state, status;
    char head[16384];
    size_t hlen;
    long long left;     /* body or chunk bytes still to skip */
    /* echo: bytes of the current message read back */
    size_t echoed;
} conn;

/* A send's bytes live until its completion: a heap record, or a constant. */
typedef struct sendbuf {
    int owned;
    nc_buf bufs[2];
    char data[];
} sendbuf;

static nc_queue *q;
static conn *conns;
static struct sockaddr_in addr;
static sendbuf *constant_batch;  /* plain heads: one batch for every send */
static char *upload_body;
static int measuring, stopping, started_all;
static int64_t t_start, t_end;
static long long counted, sent_total, bad_status, bytes_in;
static long long err_connect, err_closed, err_framing, err_echo;
static int connected;
static char stop_tag, guard_tag;

static const char *agents[] = {
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
};
static const char *accepts[] = {
    "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
    "application/json, text/plain, */*",
};
static const char *languages[] = {"en-US,en;q=0.9", "de-DE,de;q=0.9,en;q=0.8",
                                  "fr-FR,fr;q=0.8,en-US;q=0.5,en;q=0.3", "ja,en-US;q=0.7,en;q=0.3"};
static const char *encodings[] = {"gzip, deflate, br, zstd", "gzip, deflate"};
static long long browser_counter;

/* One request head (no body) into out; returns its length. */
static int format_head(char *out, size_t cap)
{
    if (!strcmp(cfg.heads, "browser")) {
        long long i = browser_counter++;
        return snprintf(out, cap,
                        "%s %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: %s\r\nAccept: %s\r\n"
                        "Accept-Language: %s\r\nAccept-Encoding: %s\r\n"
                        "Cookie: session=%016llx; theme=dark; visits=%lld\r\n"
                        "X-Request-Id: %08llx-%04llx\r\n\r\n",
                        cfg.method, cfg.path, cfg.host, cfg.port, agents[i % 4], accepts[i % 3],
                        languages[i % 4], encodings[i % 2], (unsigned long long)i, i % 1000,
                        (unsigned long long)i, (unsigned long long)(i % 65536));
    }
    if (cfg.body_bytes)
        return snprintf(out, cap,
                        "%s %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/octet-stream\r\n"
                        "Content-Length: %ld\r\n\r\n",
                        cfg.method, cfg.path, cfg.host, cfg.port, cfg.body_bytes);
    return snprintf(out, cap, "%s %s HTTP/1.1\r\nHost: %s:%d\r\n\r\n", cfg.method, cfg.path, cfg.host,
                    cfg.port);
}

static sendbuf *make_batch(int depth)
{
    size_t cap = (size_t)depth * 1024;
    sendbuf *s = malloc(sizeof *s + cap);
    if (!s)
        abort();
    size_t n = 0;
    for (int i = 0; i < depth; i++)
        n += (size_t)format_head(s->data + n, cap - n);
    s->owned = 1;
    s->bufs[0].base = s->data;
    s->bufs[0].len = n;
    s->bufs[1].base = upload_body;
    s->bufs[1].len = cfg.body_bytes ? (size_t)cfg.body_bytes : 0;
    return s;
}

/* Echo payload: depends on connection and sequence, so a stale, duplicated
 * or crossed echo fails the check. */
static unsigned char echo_byte(const conn *c, long long seq, size_t i)
{
    return (unsigned char)(c->id * 131u + (unsigned)seq * 7u + i);
}

static void fail(const char *what, int rc)
{
    fprintf(stderr, "%s: %s\n", what, nc_status_name(rc));
    exit(1);
}

/* ------------------------------------------------------------ sending */

static void send_batch(conn *c, int64_t ref)
{
    int rc;
    if (!strcmp(cfg.mode, "echo")) {
        sendbuf *s = malloc(sizeof *s + (size_t)cfg.msg_bytes);
        if (!s)
            abort();
        for (int i = 0; i < cfg.msg_bytes; i++)
            s->data[i] = (char)echo_byte(c, c->seq, (size_t)i);
        s->owned = 1;
        s->bufs[0].base = s->data;
        s->bufs[0].len = (size_t)cfg.msg_bytes;
        c->inflight = 1;
        c->echoed = 0;
        c->seq++;
        sent_total++;
        rc = nc_send(q, c->h, s->bufs, 1, s);
    } else {
        int depth = cfg.depth;
        if (cfg.requests && sent_total + depth > cfg.requests)
            depth = (int)(cfg.requests - sent_total);
        if (depth <= 0)
            return;
        sendbuf *s = constant_batch && depth == cfg.depth ? constant_batch : make_batch(depth);
        c->inflight = depth;
        c->seq += depth;
        sent_total += depth;
        rc = nc_send(q, c->h, s->bufs, cfg.body_bytes ? 2 : 1, s);
    }
    c->sent_at = ref;
    if (rc < 0)
        fail("send", rc);
}

static void start_connect(conn *c)
{
    c->h = 0;
    c->connecting = 1;
    c->inflight = 0;
    c->state = P_HEAD;
    c->hlen = 0;
    int rc = nc_connect(q, (struct sockaddr *)&addr, sizeof addr, c);
    if (rc < 0)
        fail("connect", rc);
}

static void arm_timer(conn *c, int64_t delay_ns)
{
    uint64_t tid;
    c->timer_armed = 1;
    int rc = nc_timer_start(q, (double)delay_ns / 1e9, c, &tid);
    if (rc < 0)
        fail("timer", rc);
}

/* The previous batch is in: what comes next on this connection. */
static void next_batch(conn *c, int64_t now)
{
    if (stopping || (cfg.requests && sent_total >= cfg.requests))
        return;
    if (cfg.rate <= 0) {
        send_batch(c, now);
        return;
    }
    c->due += (int64_t)(1e9 * cfg.connections / cfg.rate);
    if (c->due <= now)
        send_batch(c, c->due);          /* late because the server was: count from due */
    else if (!c->timer_armed)
        arm_timer(c, c->due - now);     /* on time: sent (and timed) when the timer fires */
}

static void begin_measuring(void)
{
    measuring = 1;
    t_start = now_ns();
    if (cfg.duration > 0) {  /* with requests=N too: a cap, so a lost connection cannot hang it */
        uint64_t tid;
        int rc = nc_timer_start(q, cfg.duration, &stop_tag, &tid);
        if (rc < 0)
            fail("timer", rc);
    }
    for (int i = 0; i < cfg.connections; i++) {
        conn *c = &conns[i];
        if (!c->h)
            continue;
        if (cfg.rate > 0) {
            /* spread the connections' schedules evenly over one interval */
            c->due = t_start + (int64_t)(1e9 * i / cfg.rate);
            if (i == 0)
                send_batch(c, t_start);
            else
                arm_timer(c, c->due - t_start);
        } else {
            send_batch(c, t_start);
        }
    }
}

/* ------------------------------------------------------------ receiving */

static void response_done(conn *c, int64_t now)
{
    c->inflight--;
    if (measuring && !stopping) {
        counted++;
        if (c->status < 200 || c->status > 399)
            bad_status++;
        hist[bucket_of((now - c->sent_at) / 1000)]++;
        if (cfg.requests && counted >= cfg.requests)
            stopping = 1;
    }
    c->status = 0;
}

/* The blank line ending a head in p[0..n), or NULL. */
static const char *find_head_end(const char *p, size_t n)
{
    const char *end = p + n;
    while (n >= 4) {
        const char *r = memchr(p, '\r', n - 3);
        if (!r)
            return NULL;
        if (r[1] == '\n' && r[2] == '\r' && r[3] == '\n')
            return r;
        p = r + 1;
        n = (size_t)(end - p);
    }
    return NULL;
}

/* A complete response head h[0..n): its status and how its body is framed. */
static void on_head(conn *c, const char *h, size_t n)
{
    c->status = (n > 12 && !memcmp(h, "HTTP/1.", 7)) ? atoi(h + 9) : 0;
    c->left = -1;
    int chunked = 0;
    for (size_t i = 0; i + 19 < n; i++) {
        if (h[i] != '\n')
            continue;
        if (!strncasecmp(h + i + 1, "content-length:", 15))
            c->left = atoll(h + i + 16);
        else if (!strncasecmp(h + i + 1, "transfer-encoding:", 18))
            chunked = 1;  /* chunked is the only coding a server sends unasked */
    }
    c->hlen = 0;
    if (chunked) {
        c->state = P_CHUNK_LINE;
        return;
    }
    if (c->left < 0) {
        /* no length: only bodiless statuses are fine; a read-until-close
         * body is not something a benchmark should see */
        if (!(c->status == 204 || c->status == 304 || (c->status >= 100 && c->status < 200)))
            err_framing++;
        c->left = 0;
    }
    c->state = P_BODY;
}

/* Passes over up to avail bytes of the body or chunk being skipped. */
static size_t skip_left(conn *c, size_t avail)
{
    long long k = (long long)avail < c->left ? (long long)avail : c->left;
    c->left -= k;
    return (size_t)k;
}

/* Feeds received bytes to the response parser, completing responses. */
static void feed_http(conn *c, const char *p, size_t n, int64_t now)
{
    size_t pos = 0;
    while (pos < n || (c->state == P_BODY && c->left == 0)) {
        switch (c->state) {
        case P_HEAD: {
            if (c->hlen == 0) {  /* fast path: the head lies whole in this read */
                const char *end = find_head_end(p + pos, n - pos);
                if (end) {
                    size_t len = (size_t)(end - (p + pos)) + 4;
                    on_head(c, p + pos, len);
                    pos += len;
                    break;
                }
            }
            while (pos < n) {  /* a head split over reads: gather it */
                if (c->hlen == sizeof c->head) {
                    err_framing++;
                    c->hlen = 0;
                    return;
                }
                c->head[c->hlen++] = p[pos++];
                if (c->hlen >= 4 && !memcmp(c->head + c->hlen - 4, "\r\n\r\n", 4)) {
                    on_head(c, c->head, c->hlen);
                    break;
                }
            }
            break;
        }
        case P_BODY: {
            pos += skip_left(c, n - pos);
            if (c->left == 0) {
                c->state = P_HEAD;
                response_done(c, now);
            }
            break;
        }
        case P_CHUNK_LINE:
        case P_TRAILER:
            while (pos < n) {
                char ch = p[pos++];
                if (c->hlen < sizeof c->head - 1)
                    c->head[c->hlen++] = ch;
                if (ch != '\n')
                    continue;
                c->head[c->hlen] = 0;
                size_t len = c->hlen;
                c->hlen = 0;
                if (c->state == P_TRAILER) {
                    if (len <= 2) {  /* the empty line after the last chunk */
                        c->state = P_HEAD;
                        response_done(c, now);
                    }
                } else {
                    long long size = strtoll(c->head, NULL, 16);
                    if (size == 0)
                        c->state = P_TRAILER;
                    else {
                        c->left = size + 2;  /* the data and its CRLF */
                        c->state = P_CHUNK_DATA;
                    }
                }
                break;
            }
            break;
        case P_CHUNK_DATA: {
            pos += skip_left(c, n - pos);
            if (c->left == 0)
                c->state = P_CHUNK_LINE;
            break;
        }
        }
    }
}

static int feed_echo(conn *c, const char *p, size_t n, int64_t now)
{
    for (size_t i = 0; i < n; i++)
        if (c->echoed + i >= (size_t)cfg.msg_bytes ||
            (unsigned char)p[i] != echo_byte(c, c->seq - 1, c->echoed + i))
            return -1;
    c->echoed += n;
    if (c->echoed == (size_t)cfg.msg_bytes) {
        c->status = 200;
        response_done(c, now);
    }
    return 0;
}

static void lost(conn *c, long long *counter)
{
    (*counter)++;
    nc_close(q, c->h);
    if (!stopping)
        start_connect(c);
    else
        c->h = 0;
}

/* ------------------------------------------------------------ main loop */

static void on_event(const nc_event *ev, int64_t now)
{
    switch (ev->op) {
    case NC_OP_CONNECT: {
        conn *c = ev->ctx;
        c->connecting = 0;
        if (ev->status != 0) {
            err_connect++;
            if (!stopping && !c->timer_armed)
                arm_timer(c, 50 * 1000000LL);  /* retry soon, not in a tight loop */
            return;
        }
        c->h = ev->handle;
        int rc = nc_recv(q, c->h, 65536, c);
        if (rc < 0)
            fail("recv", rc);
        if (!started_all) {
            if (++connected == cfg.connections) {
                started_all = 1;
                begin_measuring();
            }
        } else if (!stopping) {
            c->due = now;
            send_batch(c, now);   /* a reconnect picks up where it left off */
        }
        return;
    }
    case NC_OP_RECV: {
        conn *c = ev->ctx;
        if (ev->status == NC_CANCELLED)
            return;
        if (ev->status != 0 || ev->nbytes == 0) {
            lost(c, &err_closed);
            return;
        }
        if (measuring && !stopping)
            bytes_in += (long long)ev->nbytes;
        if (!strcmp(cfg.mode, "echo")) {
            if (feed_echo(c, ev->data, ev->nbytes, now) < 0) {
                lost(c, &err_echo);
                return;
            }
        } else {
            feed_http(c, ev->data, ev->nbytes, now);
        }
        int rc = nc_recv(q, c->h, 65536, c);
        if (rc < 0)
            fail("recv", rc);
        if (c->inflight == 0)
            next_batch(c, now);
        return;
    }
    case NC_OP_SEND: {
        sendbuf *s = ev->ctx;
        if (s && s->owned)
            free(s);
        return;  /* a failed send shows up on the pending recv as well */
    }
    case NC_OP_TIMER: {
        if (ev->ctx == &stop_tag) {
            stopping = 1;
            return;
        }
        if (ev->ctx == &guard_tag) {
            if (!started_all) {  /* some never connected: measure with those that did */
                started_all = 1;
                begin_measuring();
            }
            return;
        }
        conn *c = ev->ctx;
        c->timer_armed = 0;
        if (stopping)
            return;
        if (!c->h) {
            if (!c->connecting)
                start_connect(c);
        } else if (c->inflight == 0 && started_all) {
            send_batch(c, now);
        }
        return;
    }
    default:
        return;
    }
}

/* mode=buckets: the bucket of each value in a fixed list, for the test that
 * keeps this file's buckets identical to stats.py's. */
static int print_buckets(void)
{
    printf("[");
    for (long long v = 0, i = 0; v < 100000000LL; v = v < 200 ? v + 1 : v + v / 7 + 1, i++)
        printf("%s[%lld, %d]", i ? ", " : "", v, bucket_of(v));
    printf("]\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (parse_args(argc, argv) < 0)
        return 2;
    if (!strcmp(cfg.mode, "buckets"))
        return print_buckets();
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)cfg.port);
    int rc = nc_queue_new("auto", &q);
    if (rc < 0)
        fail("queue", rc);   /* the backend also starts Winsock where there is one */
    if (inet_pton(AF_INET, cfg.host, &addr.sin_addr) != 1) {
        fprintf(stderr, "bad IPv4 address %s\n", cfg.host);
        return 2;
    }
    if (cfg.body_bytes) {
        upload_body = malloc((size_t)cfg.body_bytes);
        memset(upload_body, 'x', (size_t)cfg.body_bytes);
    }
    if (strcmp(cfg.heads, "browser") != 0 && strcmp(cfg.mode, "echo") != 0) {
        constant_batch = make_batch(cfg.depth);
        constant_batch->owned = 0;
    }
    conns = calloc((size_t)cfg.connections, sizeof *conns);
    for (int i = 0; i < cfg.connections; i++) {
        conns[i].id = i;
        start_connect(&conns[i]);
    }
    uint64_t tid;
    nc_timer_start(q, cfg.connect_timeout, &guard_tag, &tid);
    nc_event evs[256];
    while (!stopping) {
        int n = nc_wait(q, evs, 256, -1);
        if (n < 0 && n != NC_E_INTR)
            fail("wait", n);
        int64_t now = now_ns();
        for (int i = 0; i < n; i++)
            on_event(&evs[i], now);
    }
    t_end = now_ns();
    printf("{\"engine\": \"c\", \"backend\": \"%s\", \"requests\": %lld, \"duration_s\": %.6f, "
           "\"sent\": %lld, \"bytes\": %lld, \"errors\": {\"connect\": %lld, \"closed\": %lld, "
           "\"status\": %lld, \"framing\": %lld, \"echo\": %lld}, \"hist\": [",
           nc_queue_backend(q), counted, (double)(t_end - t_start) / 1e9, sent_total, bytes_in,
           err_connect, err_closed, bad_status, err_framing, err_echo);
    int first = 1;
    for (int b = 0; b < HIST_BUCKETS; b++)
        if (hist[b]) {
            printf("%s[%d, %lld]", first ? "" : ", ", b, hist[b]);
            first = 0;
        }
    printf("]}\n");
    fflush(stdout);
    /* Exit without tearing the queue down: the process ends anyway, and
     * connections close with it. */
    return 0;
}
