/* c_server.c: the floor of the HTTP rows, a minimal epoll server in C.
 *
 * Single-threaded, level-triggered epoll.  It finds each request head by
 * its blank line, routes on the path (/plaintext, /json, /64k, /upload;
 * anything else gets the plaintext reply), skips a Content-Length body and
 * answers with a precomputed response (the upload reply carries the body
 * length).  The responses to everything one read completed go out in one
 * writev; while a connection has output pending it is not read (so a
 * client that does not read cannot grow the server's memory); an idle
 * connection holds only its small struct.  No
 * validation, no chunked request bodies: this is a yardstick, not a server.
 *
 *     cc -O2 -o c_server c_server.c && ./c_server PORT
 * Prints "READY <port>" once listening.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define HEAD_MAX 16384
#define MAXEV 256

#define HEAD(type, len) "HTTP/1.1 200 OK\r\nServer: c\r\nDate: Thu, 01 Jan 2026 00:00:00 GMT\r\n" \
                        "Content-Type: " type "\r\nContent-Length: " len "\r\n\r\n"
static const char PLAIN[] = HEAD("text/plain", "13") "Hello, World!";
static const char JSON[] = HEAD("application/json", "27") "{\"message\":\"Hello, World!\"}";
static const char BIG_HEAD[] = HEAD("application/octet-stream", "65536");
static char *big;          /* BIG_HEAD + 64 KiB of 'x' */
static size_t big_len;

typedef struct seg { const char *base; size_t off, len; } seg;  /* base NULL: in c->dyn */

typedef struct conn {
    int fd;
    char *head;             /* a head that spans reads (allocated only then) */
    size_t hlen;
    size_t body_left;       /* body bytes still to skip */
    size_t body_len;        /* the whole body (for the upload reply) */
    int reply_after_body;   /* an upload reply waits for its body */
    seg *segs;
    int nsegs, cap, first;  /* pending output: segs[first..nsegs) */
    size_t first_done;      /* bytes of segs[first] written */
    char *dyn;
    size_t dyn_len, dyn_cap;
    int writing;            /* EPOLLOUT armed, reading paused */
} conn;

static int ep;

static void push(conn *c, const char *base, size_t off, size_t len)
{
    if (c->nsegs == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 32;
        c->segs = realloc(c->segs, (size_t)c->cap * sizeof *c->segs);
    }
    c->segs[c->nsegs++] = (seg){base, off, len};
}

static void push_upload_reply(conn *c)
{
    char tmp[160];
    char num[32];
    int n = snprintf(num, sizeof num, "%zu", c->body_len);
    int len = snprintf(tmp, sizeof tmp,
                       "HTTP/1.1 200 OK\r\nServer: c\r\nDate: Thu, 01 Jan 2026 00:00:00 GMT\r\n"
                       "Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s", n, num);
    if (c->dyn_len + (size_t)len > c->dyn_cap) {
        c->dyn_cap = (c->dyn_len + (size_t)len) * 2;
        c->dyn = realloc(c->dyn, c->dyn_cap);
    }
    memcpy(c->dyn + c->dyn_len, tmp, (size_t)len);
    push(c, NULL, c->dyn_len, (size_t)len);
    c->dyn_len += (size_t)len;
}

static size_t content_length(const char *h, size_t n)
{
    static const char key[] = "\ncontent-length:";
    for (size_t i = 0; i + sizeof key - 1 <= n; i++)
        if (h[i] == '\n' && !strncasecmp(h + i, key, sizeof key - 1))
            return strtoul(h + i + sizeof key - 1, NULL, 10);
    return 0;
}

/* A complete head h[0..n): queue its reply and note its body. */
static void on_head(conn *c, const char *h, size_t n)
{
    const char *p = memchr(h, ' ', n);
    const char *path = p ? p + 1 : h;
    size_t left = n - (size_t)(path - h);
    size_t plen = 0;
    while (plen < left && path[plen] != ' ' && path[plen] != '?')
        plen++;
    c->body_left = c->body_len = content_length(h, n);
    if (plen == 5 && !memcmp(path, "/json", 5))
        push(c, JSON, 0, sizeof JSON - 1);
    else if (plen == 4 && !memcmp(path, "/64k", 4))
        push(c, big, 0, big_len);
    else if (plen == 7 && !memcmp(path, "/upload", 7)) {
        if (c->body_left)
            c->reply_after_body = 1;
        else
            push_upload_reply(c);
    } else
        push(c, PLAIN, 0, sizeof PLAIN - 1);
}

static void consume(conn *c, const char *in, size_t n)
{
    size_t pos = 0;
    while (pos < n) {
        if (c->body_left) {
            size_t k = n - pos < c->body_left ? n - pos : c->body_left;
            c->body_left -= k;
            pos += k;
            if (!c->body_left && c->reply_after_body) {
                c->reply_after_body = 0;
                push_upload_reply(c);
            }
            continue;
        }
        if (c->hlen == 0) {  /* the common case: the head lies whole in this read */
            const char *end = memmem(in + pos, n - pos, "\r\n\r\n", 4);
            if (end) {
                on_head(c, in + pos, (size_t)(end - (in + pos)) + 4);
                pos = (size_t)(end - in) + 4;
                continue;
            }
        }
        /* A head that spans reads: gather it byte by byte in c->head. */
        if (!c->head && !(c->head = malloc(HEAD_MAX)))
            abort();
        while (pos < n) {
            if (c->hlen == HEAD_MAX) {  /* too long: give up on this client */
                c->hlen = 0;
                shutdown(c->fd, SHUT_RDWR);
                return;
            }
            c->head[c->hlen++] = in[pos++];
            if (c->hlen >= 4 && !memcmp(c->head + c->hlen - 4, "\r\n\r\n", 4)) {
                on_head(c, c->head, c->hlen);
                c->hlen = 0;
                free(c->head);  /* idle connections keep no head buffer */
                c->head = NULL;
                break;
            }
        }
    }
}

static void drop(conn *c)
{
    close(c->fd);
    free(c->head);
    free(c->segs);
    free(c->dyn);
    free(c);
}

/* Writes pending output; returns -1 when the connection is gone. */
static int flush(conn *c)
{
    while (c->first < c->nsegs) {
        struct iovec iov[IOV_MAX < 512 ? IOV_MAX : 512];
        int k = 0;
        for (int i = c->first; i < c->nsegs && k < (int)(sizeof iov / sizeof *iov); i++, k++) {
            seg *s = &c->segs[i];
            const char *b = (s->base ? s->base : c->dyn) + s->off;
            size_t skip = i == c->first ? c->first_done : 0;
            iov[k].iov_base = (void *)(b + skip);
            iov[k].iov_len = s->len - skip;
        }
        ssize_t w = writev(c->fd, iov, k);
        if (w < 0) {
            if (errno == EAGAIN) {
                if (!c->writing) {
                    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                    c->writing = 1;
                }
                return 0;
            }
            return -1;
        }
        size_t done = (size_t)w;
        while (done && c->first < c->nsegs) {
            size_t rest = c->segs[c->first].len - c->first_done;
            if (done >= rest) {
                done -= rest;
                c->first++;
                c->first_done = 0;
            } else {
                c->first_done += done;
                done = 0;
            }
        }
    }
    c->first = c->nsegs = 0;
    c->dyn_len = 0;
    if (c->writing) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->writing = 0;
    }
    return 0;
}

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 8080;
    big_len = sizeof BIG_HEAD - 1 + 65536;
    big = malloc(big_len);
    memcpy(big, BIG_HEAD, sizeof BIG_HEAD - 1);
    memset(big + sizeof BIG_HEAD - 1, 'x', 65536);
    signal(SIGPIPE, SIG_IGN);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t slen = sizeof sa;
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 4096) < 0 ||
        getsockname(lfd, (struct sockaddr *)&sa, &slen) < 0) {
        perror("listen");
        return 1;
    }
    printf("READY %d\n", ntohs(sa.sin_port));
    fflush(stdout);
    ep = epoll_create1(0);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
    static char in[65536];
    struct epoll_event evs[MAXEV];
    for (;;) {
        int n = epoll_wait(ep, evs, MAXEV, -1);
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            if (!c) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    c = calloc(1, sizeof *c);
                    c->fd = fd;
                    struct epoll_event cev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
                }
                continue;
            }
            if (c->writing) {
                if (flush(c) < 0)
                    drop(c);
                continue;
            }
            ssize_t r = read(c->fd, in, sizeof in);
            if (r <= 0) {
                if (r < 0 && errno == EAGAIN)
                    continue;
                drop(c);
                continue;
            }
            consume(c, in, (size_t)r);
            if (flush(c) < 0)
                drop(c);
        }
    }
}
