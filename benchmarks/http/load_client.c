/* load_client.c: a fixed-count HTTP/1.1 load for deterministic profiling.
 *
 * wrk runs for a duration; a profiler (callgrind, perf stat) wants the same
 * number of requests every time, so the cost per request is the difference
 * between two runs divided by the difference in requests.  CONNS
 * connections each keep DEPTH requests in flight (DEPTH > 1: written back to
 * back, i.e. pipelined) until TOTAL responses have been read.  With VARY=1
 * each request carries an "X-Request-Id: <counter>" header, so the server's
 * memo caches for header blocks miss on every request.
 *
 * gcc -O2 -o load_client load_client.c
 * ./load_client PORT PATH CONNS DEPTH TOTAL [VARY]
 * Prints "<responses> <non-200 responses>"; exit 1 on a connection error.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct {
    int fd;
    long inflight;
    size_t have;
    char buf[1 << 16];
} conn;

static const char *path;
static int vary;
static long counter;

static int send_batch(conn *c, int depth)
{
    char req[16384];
    size_t n = 0;
    for (int i = 0; i < depth; i++) {
        if (vary)
            n += (size_t)snprintf(req + n, sizeof req - n,
                                  "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: %ld\r\n\r\n",
                                  path, counter++);
        else
            n += (size_t)snprintf(req + n, sizeof req - n, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path);
    }
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(c->fd, req + off, n - off);
        if (w <= 0)
            return -1;
        off += (size_t)w;
    }
    c->inflight += depth;
    return 0;
}

/* Consume complete responses from c->buf; return how many, count non-200s. */
static long consume(conn *c, long *bad)
{
    long done = 0;
    size_t pos = 0;
    for (;;) {
        char *start = c->buf + pos;
        char *end = memmem(start, c->have - pos, "\r\n\r\n", 4);
        if (!end)
            break;
        size_t head = (size_t)(end - start) + 4;
        long len = 0;
        char *cl = memmem(start, head, "content-length: ", 16);
        if (cl)
            len = strtol(cl + 16, NULL, 10);
        if (pos + head + (size_t)len > c->have)
            break;
        if (strncmp(start, "HTTP/1.1 200", 12) != 0)
            (*bad)++;
        pos += head + (size_t)len;
        done++;
    }
    memmove(c->buf, c->buf + pos, c->have - pos);
    c->have -= pos;
    return done;
}

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: %s PORT PATH CONNS DEPTH TOTAL [VARY]\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    path = argv[2];
    int nconn = atoi(argv[3]), depth = atoi(argv[4]);
    long total = atol(argv[5]);
    vary = argc > 6 && atoi(argv[6]);
    int ep = epoll_create1(0);
    conn *cs = calloc((size_t)nconn, sizeof(conn));
    long sent = 0, got = 0, bad = 0;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    for (int i = 0; i < nconn; i++) {
        cs[i].fd = socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        setsockopt(cs[i].fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(cs[i].fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
            perror("connect");
            return 1;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &cs[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
        if (sent < total) {
            int d = total - sent < depth ? (int)(total - sent) : depth;
            if (send_batch(&cs[i], d) < 0)
                return 1;
            sent += d;
        }
    }
    struct epoll_event evs[256];
    while (got < total) {
        int n = epoll_wait(ep, evs, 256, 10000);
        if (n <= 0) {
            fprintf(stderr, "timeout: %ld of %ld\n", got, total);
            return 1;
        }
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            ssize_t r = read(c->fd, c->buf + c->have, sizeof c->buf - c->have);
            if (r <= 0) {
                fprintf(stderr, "connection closed after %ld responses\n", got);
                return 1;
            }
            c->have += (size_t)r;
            long d = consume(c, &bad);
            c->inflight -= d;
            got += d;
            if (c->inflight == 0 && sent < total) {
                int k = total - sent < depth ? (int)(total - sent) : depth;
                if (send_batch(c, k) < 0)
                    return 1;
                sent += k;
            }
        }
    }
    printf("%ld %ld\n", got, bad);
    return 0;
}
