/* iocore_tests.c: drives the C interface of iocore.h directly, on any
 * backend the platform builds (epoll or io_uring on Linux, IOCP on
 * Windows/Wine).
 *
 * Every scenario uses loopback only and every wait has a deadline.
 * Usage: iocore_tests [--list] [--only NAME] [--backend NAME]
 */
#include "iocore.h"
#include "harness.h"

#ifdef _WIN32
#include "win/wsa.h"
#else
#include <netinet/in.h>
#include <arpa/inet.h>
#include <signal.h>
#include <unistd.h>
#endif

#define WAIT_MS 10000

/* Distinct addresses to use as ctx values. */
static char tag_accept, tag_connect, tag_recv, tag_send, tag_post;

/* ---------------------------------------------------------------- helpers */

static struct sockaddr_in loopback(int port)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)port);
    a.sin_addr.s_addr = htonl(0x7f000001);
    return a;
}

static int new_queue(nc_queue **q)
{
    int rc = nc_queue_new(t_backend, q);
    if (rc < 0)
        printf("  nc_queue_new: %s\n", nc_status_name(rc));
    return rc;
}

/* A listener on 127.0.0.1 with a kernel-chosen port. */
static int listen_any(nc_queue *q, nc_id *lst, int *port)
{
    struct sockaddr_in a = loopback(0);
    int rc = nc_listen(q, (struct sockaddr *)&a, sizeof a, 128, 0, lst);
    if (rc < 0)
        return rc;
    struct sockaddr_storage ss;
    int len = 0;
    rc = nc_sockname(q, *lst, &ss, &len);
    if (rc < 0)
        return rc;
    *port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return 0;
}

/* One event per nc_wait, so its data stays valid for the caller.
 * 1: got one; 0: deadline passed; <0: error status. */
static int next_event(nc_queue *q, nc_event *ev, int timeout_ms)
{
    uint64_t deadline = t_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        uint64_t now = t_now_ms();
        int left = deadline > now ? (int)(deadline - now) : 0;
        int n = nc_wait(q, ev, 1, left);
        if (n != 0 && n != NC_E_INTR)
            return n;
        if (t_now_ms() >= deadline)
            return 0;
    }
}

/* Accepted and connected ends of one loopback connection. */
static int make_pair(nc_queue *q, nc_id lst, int port, nc_id *client, nc_id *server)
{
    struct sockaddr_in a = loopback(port);
    CHECK_OK(nc_accept(q, lst, &tag_accept));
    CHECK_OK(nc_connect(q, (struct sockaddr *)&a, sizeof a, &tag_connect));
    *client = *server = 0;
    while (!*client || !*server) {
        nc_event ev;
        CHECK(next_event(q, &ev, WAIT_MS) == 1, "no accept/connect completion");
        CHECK(ev.status == 0, "op %d failed: %s", ev.op, nc_status_name(ev.status));
        if (ev.op == NC_OP_ACCEPT && ev.ctx == &tag_accept)
            *server = ev.handle;
        else if (ev.op == NC_OP_CONNECT && ev.ctx == &tag_connect)
            *client = ev.handle;
        else
            CHECK(0, "unexpected event op=%d", ev.op);
    }
    return 0;
}

/* Fails unless nothing completes for ms milliseconds. */
static int expect_quiet(nc_queue *q, int ms)
{
    nc_event ev;
    int n = next_event(q, &ev, ms);
    CHECK(n == 0, "unexpected completion: op=%d status=%s", ev.op, nc_status_name(ev.status));
    return 0;
}

static int stats_zero(nc_queue *q)
{
    nc_stats st;
    nc_get_stats(q, &st);
    CHECK(st.live_handles == 0 && st.pending_ops == 0 && st.timers == 0,
          "stats not back to zero: handles=%ld ops=%ld timers=%ld",
          st.live_handles, st.pending_ops, st.timers);
    return 0;
}

/* A queue, a listener and one connected pair on it: most scenarios' start. */
static int open_pair(nc_queue **q, nc_id *lst, nc_id *client, nc_id *server)
{
    int port;
    CHECK_OK(new_queue(q));
    CHECK_OK(listen_any(*q, lst, &port));
    return make_pair(*q, *lst, port, client, server);
}

/* Every scenario ends with nothing left: no handle, op or timer. */
static int finish(nc_queue *q)
{
    int rc = stats_zero(q);
    nc_queue_free(q, NULL, NULL);
    return rc;
}

static unsigned char pattern(size_t i, unsigned seed)
{
    return (unsigned char)(i * 131u + (i >> 9) + seed * 17u);
}

static void fill(char *buf, size_t n, size_t start, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)pattern(start + i, seed);
}

static void nc_sock_close_raw(nc_sock_t s)
{
#ifdef _WIN32
    closesocket(s);
#else
    close(s);
#endif
}

static void set_linger0(nc_queue *q, nc_id h)
{
    nc_sock_t s;
    struct linger lg;
    lg.l_onoff = 1;
    lg.l_linger = 0;
    if (nc_fileno(q, h, &s) == 0)
        setsockopt(s, SOL_SOCKET, SO_LINGER, (const char *)&lg, sizeof lg);
}

/* ---------------------------------------------------------------- scenarios */

static int test_accept(void)
{
    nc_queue *q;
    nc_id lst, c, s;
    int port;
    CHECK_OK(new_queue(&q));
    CHECK_OK(listen_any(q, &lst, &port));
    CHECK(nc_is_listener(q, lst) == 1, "listener not reported as such");
    CHECK(make_pair(q, lst, port, &c, &s) == 0, "pair");
    CHECK(nc_is_listener(q, s) == 0, "accepted handle is a listener");
    struct sockaddr_storage peer, local;
    int plen = 0, llen = 0;
    CHECK_OK(nc_peername(q, s, &peer, &plen));
    CHECK_OK(nc_sockname(q, c, &local, &llen));
    CHECK(plen == llen && !memcmp(&peer, &local, (size_t)plen), "accepted peer != client address");
    CHECK(nc_recv(q, lst, 10, NULL) == NC_E_WRONGKIND, "recv on a listener");
    CHECK(nc_accept(q, s, NULL) == NC_E_WRONGKIND, "accept on a connection");
    CHECK_OK(nc_close(q, c));
    CHECK_OK(nc_close(q, s));
    CHECK_OK(nc_close(q, lst));
    return finish(q);
}

/* A listening socket made outside the core (as a worker inherits one)
 * serves accepts like one from nc_listen, and closes with its handle. */
static int test_adopt_listener(void)
{
    nc_queue *q;
    nc_id lst, c, s, plain;
    CHECK_OK(new_queue(&q));
    struct sockaddr_in a = loopback(0);
    nc_sock_t raw = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(bind(raw, (struct sockaddr *)&a, sizeof a) == 0 && listen(raw, 16) == 0, "bind/listen");
    CHECK_OK(nc_adopt_listener(q, raw, &lst));
    struct sockaddr_storage ss;
    int len = 0;
    CHECK_OK(nc_sockname(q, lst, &ss, &len));
    CHECK(make_pair(q, lst, ntohs(((struct sockaddr_in *)&ss)->sin_port), &c, &s) == 0, "pair");
    nc_sock_t idle = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(nc_adopt_listener(q, idle, &plain) == NC_E_INVAL, "adopted a socket that does not listen");
    CHECK_OK(nc_close(q, c));
    CHECK_OK(nc_close(q, s));
    CHECK_OK(nc_close(q, lst));
    return finish(q);
}

static int test_connect(void)
{
    nc_queue *q;
    nc_id lst, c, s;
    int port;
    CHECK_OK(new_queue(&q));
    CHECK_OK(listen_any(q, &lst, &port));
    CHECK(make_pair(q, lst, port, &c, &s) == 0, "pair");
    struct sockaddr_storage peer;
    int plen = 0;
    CHECK_OK(nc_peername(q, c, &peer, &plen));
    CHECK(ntohs(((struct sockaddr_in *)&peer)->sin_port) == port, "connected to the wrong port");
    /* The new connection is usable at once. */
    nc_buf b = {"ping", 4};
    CHECK_OK(nc_send(q, c, &b, 1, &tag_send));
    CHECK_OK(nc_recv(q, s, 100, &tag_recv));
    int got_send = 0, got_recv = 0;
    while (!got_send || !got_recv) {
        nc_event ev;
        CHECK(next_event(q, &ev, WAIT_MS) == 1, "no completion");
        CHECK(ev.status == 0, "status %s", nc_status_name(ev.status));
        if (ev.op == NC_OP_SEND) {
            CHECK(ev.handle == c && ev.nbytes == 4, "send event");
            got_send++;
        } else {
            CHECK(ev.op == NC_OP_RECV && ev.handle == s && ev.ctx == &tag_recv, "recv event");
            CHECK(ev.nbytes == 4 && !memcmp(ev.data, "ping", 4), "recv data");
            got_recv++;
        }
    }
    nc_queue_free(q, NULL, NULL);
    return 0;
}

static int test_connect_refused(void)
{
    nc_queue *q;
    nc_id lst;
    int port;
    CHECK_OK(new_queue(&q));
    /* A port that was just free and has no listener now. */
    CHECK_OK(listen_any(q, &lst, &port));
    CHECK_OK(nc_close(q, lst));
    struct sockaddr_in a = loopback(port);
    CHECK_OK(nc_connect(q, (struct sockaddr *)&a, sizeof a, &tag_connect));
    nc_event ev;
    CHECK(next_event(q, &ev, WAIT_MS) == 1, "no connect completion");
    CHECK(ev.op == NC_OP_CONNECT && ev.ctx == &tag_connect, "wrong event");
    CHECK(ev.status == NC_ECONNREFUSED, "status %d (%s), want ECONNREFUSED",
          ev.status, nc_status_name(ev.status));
    CHECK(ev.handle == 0, "a failed connect reports a handle");
    return finish(q);
}

/* Client sends 1 MiB; the server reads it in small pieces and echoes each
 * piece back; the client reads the echo in even smaller pieces. */
#define ECHO_TOTAL (1024 * 1024)

static int test_echo_1mib(void)
{
    nc_queue *q;
    nc_id lst, c, s;
    CHECK(open_pair(&q, &lst, &c, &s) == 0, "pair");
    char *src = malloc(ECHO_TOTAL), *echo = malloc(ECHO_TOTAL);
    CHECK(src && echo, "malloc");
    fill(src, ECHO_TOTAL, 0, 1);
    static char srv_recv, cli_recv, srv_send, cli_send;
    nc_buf b = {src, ECHO_TOTAL};
    CHECK_OK(nc_send(q, c, &b, 1, &cli_send));
    CHECK_OK(nc_recv(q, s, 3000, &srv_recv));
    CHECK_OK(nc_recv(q, c, 1000, &cli_recv));
    size_t srv_got = 0, cli_got = 0, srv_sent = 0, cli_sent = 0;
    long srv_sends = 0, srv_send_done = 0;
    uint64_t deadline = t_now_ms() + 30000;
    nc_event evs[16];
    while (cli_got < ECHO_TOTAL || cli_sent < ECHO_TOTAL || srv_send_done < srv_sends ||
           srv_got < ECHO_TOTAL) {
        CHECK(t_now_ms() < deadline, "stalled: srv_got=%zu cli_got=%zu", srv_got, cli_got);
        int n = nc_wait(q, evs, 16, 1000);
        CHECK(n >= 0, "nc_wait: %s", nc_status_name(n));
        for (int i = 0; i < n; i++) {
            nc_event *ev = &evs[i];
            CHECK(ev->status == 0, "op %d: %s", ev->op, nc_status_name(ev->status));
            if (ev->ctx == &srv_recv) {
                CHECK(ev->nbytes > 0 && ev->nbytes <= 3000, "server read %zu", ev->nbytes);
                memcpy(echo + srv_got, ev->data, ev->nbytes);
                nc_buf e = {echo + srv_got, ev->nbytes};
                CHECK_OK(nc_send(q, s, &e, 1, &srv_send));
                srv_sends++;
                srv_got += ev->nbytes;
                if (srv_got < ECHO_TOTAL)
                    CHECK_OK(nc_recv(q, s, 3000, &srv_recv));
            } else if (ev->ctx == &cli_recv) {
                CHECK(ev->nbytes > 0 && ev->nbytes <= 1000, "client read %zu", ev->nbytes);
                CHECK(!memcmp(ev->data, src + cli_got, ev->nbytes), "echo differs near %zu", cli_got);
                cli_got += ev->nbytes;
                if (cli_got < ECHO_TOTAL)
                    CHECK_OK(nc_recv(q, c, 1000, &cli_recv));
            } else if (ev->ctx == &srv_send) {
                srv_sent += ev->nbytes;
                srv_send_done++;
            } else if (ev->ctx == &cli_send) {
                CHECK(ev->nbytes == ECHO_TOTAL, "client send reported %zu", ev->nbytes);
                cli_sent = ev->nbytes;
            } else {
                CHECK(0, "stray event op=%d", ev->op);
            }
        }
    }
    CHECK(srv_sent == ECHO_TOTAL, "server sent %zu", srv_sent);
    CHECK(!memcmp(src, echo, ECHO_TOTAL), "server received corrupted data");
    free(src);
    free(echo);
    nc_close(q, c);
    nc_close(q, s);
    nc_close(q, lst);
    return finish(q);
}

static int test_gathered_send(void)
{
    nc_queue *q;
    nc_id lst, c, s;
    CHECK(open_pair(&q, &lst, &c, &s) == 0, "pair");
    static char big1[10000], big2[70000], tiny[1] = {'x'};
    fill(big1, sizeof big1, 0, 2);
    fill(big2, sizeof big2, 0, 3);
    nc_buf bufs[6] = {{"hello", 5}, {"", 0}, {big1, sizeof big1}, {tiny, 1}, {big2, sizeof big2}, {"!", 1}};
    size_t total = 0;
    for (int i = 0; i < 6; i++)
        total += bufs[i].len;
    char *want = malloc(total), *got = malloc(total);
    CHECK(want && got, "malloc");
    for (int i = 0, off = 0; i < 6; off += (int)bufs[i].len, i++)
        memcpy(want + off, bufs[i].base, bufs[i].len);
    CHECK_OK(nc_send(q, c, bufs, 6, &tag_send));
    /* The array was copied: scribbling on it must not matter. */
    memset(bufs, 0, sizeof bufs);
    CHECK_OK(nc_recv(q, s, 65536, &tag_recv));
    size_t n = 0;
    int sent = 0;
    while (n < total || !sent) {
        nc_event ev;
        CHECK(next_event(q, &ev, WAIT_MS) == 1, "stalled at %zu/%zu", n, total);
        CHECK(ev.status == 0, "status %s", nc_status_name(ev.status));
        if (ev.op == NC_OP_SEND) {
            CHECK(ev.nbytes == total, "send reported %zu of %zu", ev.nbytes, total);
            sent = 1;
        } else {
            CHECK(ev.nbytes > 0 && n + ev.nbytes <= total, "recv %zu", ev.nbytes);
            memcpy(got + n, ev.data, ev.nbytes);
            n += ev.nbytes;
            if (n < total)
                CHECK_OK(nc_recv(q, s, 65536, &tag_recv));
        }
    }
    CHECK(!memcmp(want, got, total), "gathered bytes arrived out of order");
    /* An empty send completes at once with 0 bytes. */
    CHECK_OK(nc_send(q, c, NULL, 0, &tag_post));
    nc_event ev;
    CHECK(next_event(q, &ev, WAIT_MS) == 1, "empty send never completed");
    CHECK(ev.ctx == &tag_post && ev.status == 0 && ev.nbytes == 0, "empty send event");
    free(want);
    free(got);
    nc_queue_free(q, NULL, NULL);
    return 0;
}

/* NC_SEND_QUIET: a send that fits goes out within the call and reports
 * nothing (io_uring: never within the call, it goes with the batch's next
 * io_uring_enter, and completes); one the socket cannot take at once
 * completes as ever. */
static int test_quiet_send(void)
{
    nc_queue *q;
    nc_id lst, c, s;
    CHECK(open_pair(&q, &lst, &c, &s) == 0, "pair");
    int at_once = strcmp(nc_queue_backend(q), "uring") != 0;
    nc_buf b = {"hello", 5};
    int rc = nc_send_ex(q, c, &b, 1, &tag_send, NC_SEND_QUIET);
    CHECK(rc == at_once, "a small quiet send: %d, expected %d", rc, at_once);
    CHECK(nc_send_ex(q, c, &b, 1, &tag_send, 2) == NC_E_INVAL, "unknown flag taken");
    CHECK_OK(nc_recv(q, s, 64, &tag_recv));
    nc_event ev;
    int got_recv = 0, got_send = 0;
    while (!got_recv || got_send < !at_once) {
        CHECK(next_event(q, &ev, WAIT_MS) == 1, "no %s", got_recv ? "send" : "recv");
        if (ev.op == NC_OP_SEND) {
            CHECK(!at_once && ev.status == 0 && ev.nbytes == 5, "a send reported");
            got_send++;
        } else {
            CHECK(ev.op == NC_OP_RECV && ev.nbytes == 5 && !memcmp(ev.data, "hello", 5), "bytes");
            got_recv = 1;
        }
    }
    CHECK(expect_quiet(q, 200) == 0, "the quiet send was reported");
    /* More than the socket buffers take, the peer not reading yet: not done
     * at once, so it completes, once every byte is out. */
    size_t total = 32u << 20;
    char *big = malloc(total), *got = malloc(total);
    CHECK(big && got, "malloc");
    fill(big, total, 0, 7);
    nc_buf bb = {big, total};
    rc = nc_send_ex(q, c, &bb, 1, &tag_send, NC_SEND_QUIET);
    CHECK(rc == 0, "32 MiB done at once (%d)", rc);
    size_t n = 0;
    int sent = 0;
    CHECK_OK(nc_recv(q, s, 65536, &tag_recv));
    uint64_t deadline = t_now_ms() + 60000;
    while (n < total || !sent) {
        CHECK(t_now_ms() < deadline, "stalled at %zu", n);
        CHECK(next_event(q, &ev, WAIT_MS) == 1, "no event at %zu", n);
        CHECK(ev.status == 0, "op %d: %s", ev.op, nc_status_name(ev.status));
        if (ev.op == NC_OP_SEND) {
            CHECK(ev.ctx == &tag_send && ev.nbytes == total, "send reported %zu", ev.nbytes);
            sent = 1;
        } else {
            CHECK(n + ev.nbytes <= total, "too much");
            memcpy(got + n, ev.data, ev.nbytes);
            n += ev.nbytes;
            if (n < total)
                CHECK_OK(nc_recv(q, s, 65536, &tag_recv));
        }
    }
    CHECK(!memcmp(big, got, total), "bytes differ");
    free(big);
    free(got);
    nc_close(q, c);
    nc_close(q, s);
    nc_close(q, lst);
    return finish(q);
}

/* NC_RECV_MULTISHOT: one recv, a completion per read (more = 1), bytes in
 * order; nc_recv_stop, close and EOF end it with one last completion. */
static int test_multishot_recv(void)
{
    nc_queue *q;
    nc_id lst, c, s;
    CHECK(open_pair(&q, &lst, &c, &s) == 0, "pair");
    CHECK(nc_recv_stop(q, s) == NC_E_INVAL, "stop without a multishot recv");
    CHECK_OK(nc_recv_ex(q, s, 4, &tag_recv, NC_RECV_MULTISHOT));
    CHECK(nc_recv(q, s, 4, &tag_post) == NC_E_BUSY, "a second recv beside a multishot one");
    const char *msgs[] = {"abcdefghij", "XYZ", "0123456789abcdef"};
    char want[64], got[64];
    size_t nw = 0, n = 0;
    nc_event ev;
    for (int m = 0; m < 3; m++) {
        nc_buf b = {msgs[m], strlen(msgs[m])};
        CHECK_OK(nc_send(q, c, &b, 1, &tag_send));
        memcpy(want + nw, msgs[m], b.len);
        nw += b.len;
        int sent = 0;
        while (n < nw || !sent) {
            CHECK(next_event(q, &ev, WAIT_MS) == 1, "stalled at %zu of %zu", n, nw);
            CHECK(ev.status == 0, "op %d: %s", ev.op, nc_status_name(ev.status));
            if (ev.op == NC_OP_SEND) {
                sent = 1;
                continue;
            }
            CHECK(ev.op == NC_OP_RECV && ev.ctx == &tag_recv && ev.more == 1, "not armed on");
            CHECK(ev.nbytes > 0 && ev.nbytes <= 4 && n + ev.nbytes <= nw, "read %zu", ev.nbytes);
            memcpy(got + n, ev.data, ev.nbytes);
            n += ev.nbytes;
        }
    }
    CHECK(!memcmp(want, got, nw), "bytes out of order");
    /* Stopped: one last completion; bytes sent after it wait for the next recv. */
    CHECK_OK(nc_recv_stop(q, s));
    CHECK(next_event(q, &ev, WAIT_MS) == 1, "no last completion after stop");
    CHECK(ev.op == NC_OP_RECV && ev.more == 0 && ev.ctx == &tag_recv, "last completion");
    CHECK(ev.status == NC_CANCELLED, "stop: %s", nc_status_name(ev.status));
    CHECK(nc_recv_stop(q, s) == NC_E_INVAL, "stopped twice");
    nc_buf b = {"end", 3};
    CHECK_OK(nc_send(q, c, &b, 1, &tag_send));
    CHECK(next_event(q, &ev, WAIT_MS) == 1 && ev.op == NC_OP_SEND, "send");
    CHECK_OK(nc_recv_ex(q, s, 64, &tag_recv, NC_RECV_MULTISHOT));
    CHECK(next_event(q, &ev, WAIT_MS) == 1 && ev.more == 1 && ev.nbytes == 3 &&
          !memcmp(ev.data, "end", 3), "bytes after a stop lost");
    /* The peer closes: EOF is the last completion. */
    CHECK_OK(nc_close(q, c));
    CHECK(next_event(q, &ev, WAIT_MS) == 1, "no EOF");
    CHECK(ev.op == NC_OP_RECV && ev.status == 0 && ev.nbytes == 0 && ev.more == 0, "EOF %s",
          nc_status_name(ev.status));
    /* Close with one armed: cancelled, once. */
    nc_id c2, s2;
    int port;
    struct sockaddr_storage ss;
    int len = 0;
    CHECK_OK(nc_sockname(q, lst, &ss, &len));
    port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    CHECK(make_pair(q, lst, port, &c2, &s2) == 0, "second pair");
    CHECK_OK(nc_recv_ex(q, s2, 64, &tag_recv, NC_RECV_MULTISHOT));
    CHECK_OK(nc_close(q, s2));
    CHECK(next_event(q, &ev, WAIT_MS) == 1 && ev.status == NC_CANCELLED && ev.more == 0,
          "close of an armed multishot recv");
    CHECK(expect_quiet(q, 200) == 0, "more after the last completion");
    nc_close(q, c2);
    nc_close(q, s);
    nc_close(q, lst);
    return finish(q);
}

static int test_eof(void)
{
    nc_queue *q;
    nc_id lst, c, s;
    CHECK(open_pair(&q, &lst, &c, &s) == 0, "pair");
    nc_buf b = {"bye", 3};
    CHECK_OK(nc_send(q, c, &b, 1, &tag_send));
    nc_event ev;
    CHECK(next_event(q, &ev, WAIT_MS) == 1 && ev.op == NC_OP_SEND && ev.status == 0, "send");
    CHECK_OK(nc_close(q, c));
    char got[8];
    size_t n = 0;
    for (;;) {
        CHECK_OK(nc_recv(q, s, sizeof got, &tag_recv));
        CHECK(next_event(q, &ev, WAIT_MS) == 1, "no recv completion");
        CHECK(ev.op == NC_OP_RECV && ev.status == 0, "recv status %s", nc_status_name(ev.status));
        if (ev.nbytes == 0)
            break;
        CHECK(n + ev.nbytes <= 3, "too much data");
        memcpy(got + n, ev.data, ev.nbytes);
        n += ev.nbytes;
    }
    CHECK(n == 3 && !memcmp(got, "bye", 3), "data before EOF lost");
    /* EOF is sticky. */
    CHECK_OK(nc_recv(q, s, sizeof got, &tag_recv));
    CHECK(next_event(q, &ev, WAIT_MS) == 1 && ev.status == 0 && ev.nbytes == 0, "second EOF");
    nc_close(q, s);
    nc_close(q, lst);
    return finish(q);
}

/* Shutdown waits for the sends queued before it, then the peer reads every
 * byte and EOF; the half-closed side still receives. */
static int test_shutdown(void)
{
    nc_queue *q;
    nc_id lst, c, s;
    CHECK(open_pair(&q, &lst, &c, &s) == 0, "pair");
    static char big[1 << 20];
    fill(big, sizeof big, 0, 7);
    nc_buf b = {big, sizeof big};
    static char tag_shutdown;
    CHECK_OK(nc_send(q, s, &b, 1, &tag_send));
    CHECK_OK(nc_shutdown(q, s, &tag_shutdown));
    size_t got = 0;
    int sent = 0, shut = 0, eof = 0, bad = 0;
    CHECK_OK(nc_recv(q, c, 65536, &tag_recv));
    while (!eof) {
        nc_event ev;
        CHECK(next_event(q, &ev, WAIT_MS) == 1, "stalled: got %zu sent=%d shut=%d", got, sent, shut);
        CHECK(ev.status == 0, "op %d failed: %s", ev.op, nc_status_name(ev.status));
        if (ev.op == NC_OP_SEND) {
            CHECK(!shut, "shutdown completed before the send it follows");
            sent = 1;
        } else if (ev.op == NC_OP_SHUTDOWN) {
            CHECK(ev.ctx == &tag_shutdown && ev.handle == s, "shutdown event fields");
            shut = 1;
        } else if (ev.op == NC_OP_RECV) {
            if (ev.nbytes == 0) {
                eof = 1;
                break;
            }
            for (size_t i = 0; i < ev.nbytes; i++)
                bad |= ((unsigned char)ev.data[i] != pattern(got + i, 7));
            got += ev.nbytes;
            CHECK_OK(nc_recv(q, c, 65536, &tag_recv));
        }
    }
    CHECK(got == sizeof big && !bad, "peer got %zu of %zu bytes (corrupt: %d)", got, sizeof big, bad);
    while (!sent || !shut) {
        nc_event ev;
        CHECK(next_event(q, &ev, WAIT_MS) == 1, "send/shutdown never completed");
        sent |= ev.op == NC_OP_SEND;
        shut |= ev.op == NC_OP_SHUTDOWN;
    }
    /* The half-closed side still reads what the peer sends. */
    nc_buf pong = {"pong", 4};
    CHECK_OK(nc_send(q, c, &pong, 1, &tag_send));
    CHECK_OK(nc_recv(q, s, 16, &tag_recv));
    int have_data = 0, have_send = 0;
    while (!have_data || !have_send) {
        nc_event ev;
        CHECK(next_event(q, &ev, WAIT_MS) == 1, "no pong");
        CHECK(ev.status == 0, "op %d: %s", ev.op, nc_status_name(ev.status));
        if (ev.op == NC_OP_RECV) {
            CHECK(ev.nbytes == 4 && !memcmp(ev.data, "pong", 4), "pong data");
            have_data = 1;
        } else {
            have_send |= ev.op == NC_OP_SEND;
        }
    }
    /* Shutdown on a listener is misuse, reported at once. */
    CHECK(nc_shutdown(q, lst, &tag_shutdown) == NC_E_WRONGKIND, "shutdown on a listener");
    nc_close(q, c);
    nc_close(q, s);
    nc_close(q, lst);
    return finish(q);
}

static int test_reset(void)
{
    nc_queue *q;
    nc_id lst, c, s;
    CHECK(open_pair(&q, &lst, &c, &s) == 0, "pair");
    CHECK_OK(nc_recv(q, s, 4096, &tag_recv));
    /* Let the recv find nothing and park (epoll: armed; IOCP: a zero-byte
     * read in the kernel) before the reset arrives.  (Under Wine a direct
     * read after an already-received RST says EOF: wineserver consumed the
     * socket error; Linux and real Windows both say reset.) */
    CHECK(expect_quiet(q, 100) == 0, "recv completed early");
    set_linger0(q, c);
    CHECK_OK(nc_close(q, c));
    nc_event ev;
    CHECK(next_event(q, &ev, WAIT_MS) == 1, "no recv completion");
    CHECK(ev.op == NC_OP_RECV && ev.status == NC_ECONNRESET, "recv status %d (%s), want ECONNRESET",
          ev.status, nc_status_name(ev.status));
    CHECK(ev.nbytes == 0, "reset recv carries data");
    /* Sending to the reset peer fails as a completion, never as a signal. */
    static char payload[200000];
    nc_buf b = {payload, sizeof payload};
    int rc = nc_send(q, s, &b, 1, &tag_send);
    CHECK_OK(rc);
    CHECK(next_event(q, &ev, WAIT_MS) == 1, "no send completion");
    CHECK(ev.op == NC_OP_SEND && ev.status < 0 && ev.status != NC_CANCELLED,
          "send to reset peer: status %d (%s)", ev.status, nc_status_name(ev.status));
    printf("  send to a reset peer: %s\n", nc_status_name(ev.status));
    nc_close(q, s);
    nc_close(q, lst);
    return finish(q);
}

/* Closing handles with an accept, a recv and a send (stuck on a full socket
 * buffer) pending: each completes once with NC_CANCELLED. */
static int test_close_pending(void)
{
    nc_queue *q;
    nc_id lst, c, s;
    int port;
    CHECK_OK(new_queue(&q));
    CHECK_OK(listen_any(q, &lst, &port));
    CHECK_OK(nc_setsockopt(q, lst, SOL_SOCKET, SO_RCVBUF, 32768));
    CHECK(make_pair(q, lst, port, &c, &s) == 0, "pair");
    CHECK_OK(nc_setsockopt(q, c, SOL_SOCKET, SO_SNDBUF, 32768));
    size_t big = 32u * 1024 * 1024;
    char *payload = calloc(1, big);
    CHECK(payload, "malloc");
    nc_buf b = {payload, big};
    CHECK_OK(nc_accept(q, lst, &tag_accept));
    CHECK_OK(nc_recv(q, c, 4096, &tag_recv)); /* s never sends */
    CHECK_OK(nc_send(q, c, &b, 1, &tag_send));
    CHECK(expect_quiet(q, 300) == 0, "an op completed early");
    nc_stats st;
    nc_get_stats(q, &st);
    CHECK(st.pending_ops == 3, "pending_ops=%ld", st.pending_ops);
    CHECK_OK(nc_close(q, c));
    CHECK_OK(nc_close(q, lst));
    CHECK_OK(nc_close(q, s));
    CHECK(nc_close(q, s) == NC_E_BADHANDLE, "double close accepted");
    int seen_accept = 0, seen_recv = 0, seen_send = 0;
    for (int i = 0; i < 3; i++) {
        nc_event ev;
        CHECK(next_event(q, &ev, WAIT_MS) == 1, "only %d of 3 cancellations", i);
        CHECK(ev.status == NC_CANCELLED, "op %d: status %s", ev.op, nc_status_name(ev.status));
        if (ev.ctx == &tag_accept && ev.op == NC_OP_ACCEPT)
            seen_accept++;
        else if (ev.ctx == &tag_recv && ev.op == NC_OP_RECV && ev.nbytes == 0)
            seen_recv++;
        else if (ev.ctx == &tag_send && ev.op == NC_OP_SEND)
            seen_send++;
        else
            CHECK(0, "stray event op=%d", ev.op);
    }
    CHECK(seen_accept == 1 && seen_recv == 1 && seen_send == 1, "accept=%d recv=%d send=%d",
          seen_accept, seen_recv, seen_send);
    CHECK(expect_quiet(q, 200) == 0, "a second completion");
    CHECK(stats_zero(q) == 0, "stats");
    nc_queue_free(q, NULL, NULL);
    free(payload); /* only now: the kernel may have held it until the drain */
    return 0;
}

static int released[8];

static void count_release(void *ctx, void *arg)
{
    (void)arg;
    int *p = ctx;
    if (p > released && p < released + 7)
        (*p)++;
    else
        released[0]++; /* not one of ours */
}

/* A connect can only be abandoned by freeing the queue (its handle is not
 * known before it completes); every undelivered ctx comes back once. */
static int test_close_pending_connect(void)
{
    nc_queue *q;
    nc_id lst, c, s;
    int port;
    memset(released, 0, sizeof released);
    CHECK_OK(new_queue(&q));
    CHECK_OK(listen_any(q, &lst, &port));
    CHECK(make_pair(q, lst, port, &c, &s) == 0, "pair");
    struct sockaddr_in a = loopback(port);
    CHECK_OK(nc_connect(q, (struct sockaddr *)&a, sizeof a, &released[1]));
    CHECK_OK(nc_accept(q, lst, &released[2]));
    CHECK_OK(nc_recv(q, s, 100, &released[3]));
    CHECK_OK(nc_post(q, &released[4]));
    uint64_t tid;
    CHECK_OK(nc_timer_start(q, 60, &released[5], &tid));
    nc_queue_free(q, count_release, NULL);
    for (int i = 1; i <= 5; i++)
        CHECK(released[i] == 1, "ctx %d released %d times", i, released[i]);
    CHECK(released[0] == 0 && released[6] == 0, "unknown ctx released");
    return 0;
}

typedef struct poster {
    nc_queue *q;
    int delay_ms;
} poster;

static void post_later(void *arg)
{
    poster *p = arg;
    t_sleep_ms(p->delay_ms);
    nc_post(p->q, &tag_post);
}

static int test_post_wakes_waiter(void)
{
    nc_queue *q;
    CHECK_OK(new_queue(&q));
    poster p = {q, 150};
    t_thread t;
    uint64_t t0 = t_now_ms();
    CHECK(t_thread_start(&t, post_later, &p) == 0, "thread");
    nc_event ev;
    int n = nc_wait(q, &ev, 1, 8000); /* blocks until the post arrives */
    uint64_t took = t_now_ms() - t0;
    t_thread_join(t);
    CHECK(n == 1, "nc_wait returned %d", n);
    CHECK(ev.op == NC_OP_POST && ev.ctx == &tag_post && ev.status == 0, "wrong event");
    CHECK(took >= 100 && took < 4000, "woke after %u ms", (unsigned)took);
    return finish(q);
}

/* A post for a connection completes like its own operations; a listener
 * or a closed handle refuses one. */
static int test_post_to_connection(void)
{
    nc_queue *q;
    nc_id lst, c, s;
    CHECK(open_pair(&q, &lst, &c, &s) == 0, "pair");
    CHECK_OK(nc_post_to(q, s, &tag_post));
    nc_event ev;
    CHECK(next_event(q, &ev, WAIT_MS) == 1, "no post");
    CHECK(ev.op == NC_OP_POST && ev.ctx == &tag_post && ev.status == 0, "wrong event");
    CHECK(nc_post_to(q, lst, &tag_post) == NC_E_WRONGKIND, "post to a listener");
    nc_close(q, s);
    CHECK(nc_post_to(q, s, &tag_post) == NC_E_BADHANDLE, "post to a closed handle");
    nc_close(q, c);
    nc_close(q, lst);
    return finish(q);
}

static int test_timers(void)
{
    nc_queue *q;
    CHECK_OK(new_queue(&q));
    static char ta, tb, tc, td;
    uint64_t ia, ib, ic, id;
    uint64_t t0 = t_now_ms();
    CHECK_OK(nc_timer_start(q, 0.15, &ta, &ia));
    CHECK_OK(nc_timer_start(q, 0.05, &tb, &ib));
    CHECK_OK(nc_timer_start(q, 0.10, &tc, &ic));
    CHECK_OK(nc_timer_start(q, 0.20, &td, &id));
    void *ctx = NULL;
    CHECK(nc_timer_cancel(q, ic, &ctx) == 1 && ctx == &tc, "cancel");
    CHECK(nc_timer_cancel(q, ic, &ctx) == 0, "cancelled twice");
    char *want[3] = {&tb, &ta, &td};
    unsigned due[3] = {50, 150, 200};
    for (int i = 0; i < 3; i++) {
        nc_event ev;
        CHECK(next_event(q, &ev, 5000) == 1, "timer %d never fired", i);
        unsigned at = (unsigned)(t_now_ms() - t0);
        CHECK(ev.op == NC_OP_TIMER && ev.status == 0, "not a timer event");
        CHECK(ev.ctx == want[i], "timer %d fired out of order", i);
        /* Tick granularity on Windows is ~16 ms. */
        CHECK(at + 20 >= due[i], "timer %d fired at %u ms, due %u", i, at, due[i]);
    }
    CHECK(nc_timer_cancel(q, ia, &ctx) == 0, "a fired timer cancelled");
    CHECK(expect_quiet(q, 200) == 0, "the cancelled timer fired");
    return finish(q);
}

/* ------------------------------------------------- many threads, one queue */

#define MT_CONNS 50
#define MT_THREADS 4
#define MT_BYTES (64 * 1024)

typedef struct mt_conn {
    nc_id id;
    int client;
    unsigned seed;
    int busy;           /* waiter thread (1-based) whose batch holds this handle */
    size_t got, sent_done;
    char *buf;          /* client: what it sends; server: what it echoes */
} mt_conn;

typedef struct mt_shared {
    nc_queue *q;
    mt_conn conns[2 * MT_CONNS];
    int done_clients;
    int failures;
    int overlaps;
    long events[MT_THREADS];
} mt_shared;

static void mt_fail(mt_shared *sh, const char *what, mt_conn *c, int status)
{
    if (__atomic_fetch_add(&sh->failures, 1, __ATOMIC_SEQ_CST) < 5)
        printf("  %s conn %p: %s\n", what, (void *)c, nc_status_name(status));
}

static void mt_on_event(mt_shared *sh, const nc_event *ev)
{
    mt_conn *c = ev->ctx;
    if (ev->status != 0) {
        mt_fail(sh, "event failed", c, ev->status);
        return;
    }
    if (ev->op == NC_OP_SEND) {
        c->sent_done += ev->nbytes;
        return;
    }
    if (ev->nbytes == 0) {
        mt_fail(sh, "unexpected EOF", c, 0);
        return;
    }
    if (c->client) {
        if (memcmp(ev->data, c->buf + c->got, ev->nbytes)) {
            mt_fail(sh, "echo corrupted", c, 0);
            return;
        }
        c->got += ev->nbytes;
        if (c->got == MT_BYTES)
            __atomic_fetch_add(&sh->done_clients, 1, __ATOMIC_SEQ_CST);
        else
            nc_recv(sh->q, c->id, 4096, c);
    } else {
        memcpy(c->buf + c->got, ev->data, ev->nbytes);
        nc_buf b = {c->buf + c->got, ev->nbytes};
        c->got += ev->nbytes;
        int rc = nc_send(sh->q, c->id, &b, 1, c);
        if (rc < 0)
            mt_fail(sh, "echo send", c, rc);
        if (c->got < MT_BYTES)
            nc_recv(sh->q, c->id, 8192, c);
    }
}

typedef struct mt_worker {
    mt_shared *sh;
    int index;
} mt_worker;

static void mt_run(void *arg)
{
    mt_worker *wk = arg;
    mt_shared *sh = wk->sh;
    int me = wk->index + 1;
    nc_event evs[8];
    mt_conn *mine[8];
    uint64_t deadline = t_now_ms() + 60000;
    /* Run until every echo is in and every completion delivered (a worker
     * that left early would keep the handles of its last batch held). */
    for (;;) {
        nc_stats st;
        nc_get_stats(sh->q, &st);
        if (__atomic_load_n(&sh->done_clients, __ATOMIC_SEQ_CST) == MT_CONNS && st.pending_ops == 0)
            break;
        if (__atomic_load_n(&sh->failures, __ATOMIC_SEQ_CST) || t_now_ms() > deadline)
            break;
        int n = nc_wait(sh->q, evs, 8, 50);
        if (n < 0 && n != NC_E_INTR) {
            mt_fail(sh, "nc_wait", NULL, n);
            return;
        }
        int nmine = 0;
        /* Claim each handle of the batch; a claim held by another thread
         * means two waiters own one handle's completions at once. */
        for (int i = 0; i < n; i++) {
            mt_conn *c = evs[i].ctx;
            int expect = 0;
            if (__atomic_compare_exchange_n(&c->busy, &expect, me, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
                mine[nmine++] = c;
            else if (expect != me) {
                if (__atomic_fetch_add(&sh->overlaps, 1, __ATOMIC_SEQ_CST) < 3)
                    printf("  overlap: thread %d got op %d (client=%d) held by thread %d\n", me, evs[i].op,
                           c->client, expect);
            }
        }
        for (int i = 0; i < n; i++)
            mt_on_event(sh, &evs[i]);
        sh->events[wk->index] += n;
        if (n > 1)
            t_sleep_ms(0); /* widen the window in which an overlap would show */
        for (int i = 0; i < nmine; i++)
            __atomic_store_n(&mine[i]->busy, 0, __ATOMIC_SEQ_CST);
    }
}

static int test_threads_echo(void)
{
    nc_queue *q;
    nc_id lst;
    int port;
    static mt_shared sh;
    memset(&sh, 0, sizeof sh);
    CHECK_OK(new_queue(&q));
    sh.q = q;
    CHECK_OK(listen_any(q, &lst, &port));
    for (int i = 0; i < MT_CONNS; i++) {
        mt_conn *cl = &sh.conns[2 * i], *sv = &sh.conns[2 * i + 1];
        CHECK(make_pair(q, lst, port, &cl->id, &sv->id) == 0, "pair %d", i);
        cl->client = 1;
        cl->seed = sv->seed = (unsigned)i + 10;
        cl->buf = malloc(MT_BYTES);
        sv->buf = malloc(MT_BYTES);
        CHECK(cl->buf && sv->buf, "malloc");
        fill(cl->buf, MT_BYTES, 0, cl->seed);
    }
    /* The setup's last nc_wait left a handle held by this thread's batch;
     * a wait that returns only a post releases it. */
    CHECK_OK(nc_post(q, &tag_post));
    nc_event pev;
    CHECK(next_event(q, &pev, WAIT_MS) == 1 && pev.ctx == &tag_post, "post");
    /* Start everything before the waiters run: four gathered sends per client. */
    for (int i = 0; i < MT_CONNS; i++) {
        mt_conn *cl = &sh.conns[2 * i], *sv = &sh.conns[2 * i + 1];
        CHECK_OK(nc_recv(q, sv->id, 8192, sv));
        CHECK_OK(nc_recv(q, cl->id, 4096, cl));
        for (int k = 0; k < 4; k++) {
            size_t part = MT_BYTES / 4, off = (size_t)k * part;
            nc_buf b[2] = {{cl->buf + off, 1000}, {cl->buf + off + 1000, part - 1000}};
            CHECK_OK(nc_send(q, cl->id, b, 2, cl));
        }
    }
    t_thread th[MT_THREADS];
    mt_worker wk[MT_THREADS];
    for (int i = 0; i < MT_THREADS; i++) {
        wk[i].sh = &sh;
        wk[i].index = i;
        CHECK(t_thread_start(&th[i], mt_run, &wk[i]) == 0, "thread");
    }
    for (int i = 0; i < MT_THREADS; i++)
        t_thread_join(th[i]);
    printf("  events per thread: %ld %ld %ld %ld\n", sh.events[0], sh.events[1], sh.events[2], sh.events[3]);
    CHECK(sh.failures == 0, "%d failures", sh.failures);
    CHECK(sh.overlaps == 0, "%d times one handle's completions were in two threads", sh.overlaps);
    CHECK(sh.done_clients == MT_CONNS, "only %d of %d clients got their echo", sh.done_clients, MT_CONNS);
    nc_stats st;
    nc_get_stats(q, &st);
    CHECK(st.pending_ops == 0, "%ld ops never completed", st.pending_ops);
    for (int i = 0; i < 2 * MT_CONNS; i++) {
        mt_conn *c = &sh.conns[i];
        CHECK(c->got == MT_BYTES, "conn %d received %zu", i, c->got);
        CHECK(c->sent_done == MT_BYTES, "conn %d sent %zu", i, c->sent_done);
        if (!c->client)
            CHECK(!memcmp(c->buf, sh.conns[i - 1].buf, MT_BYTES), "conn %d data", i);
        CHECK_OK(nc_close(q, c->id));
    }
    for (int i = 0; i < 2 * MT_CONNS; i++)
        free(sh.conns[i].buf);
    CHECK_OK(nc_close(q, lst));
    return finish(q);
}

/* A closed handle's id stays dead even when its slot is reused. */
static int test_slot_reuse(void)
{
    nc_queue *q;
    nc_id lst, c, s, c2, s2;
    int port;
    CHECK_OK(new_queue(&q));
    CHECK_OK(listen_any(q, &lst, &port));
    CHECK(make_pair(q, lst, port, &c, &s) == 0, "pair");
    nc_sock_t old_sock;
    CHECK_OK(nc_fileno(q, s, &old_sock));
    CHECK_OK(nc_close(q, s));
    CHECK_OK(nc_close(q, c));
    CHECK(make_pair(q, lst, port, &c2, &s2) == 0, "second pair");
    int reused = (uint32_t)c2 == (uint32_t)s || (uint32_t)s2 == (uint32_t)s ||
                 (uint32_t)c2 == (uint32_t)c || (uint32_t)s2 == (uint32_t)c;
    CHECK(reused, "no slot was reused (ids %llx %llx -> %llx %llx)", (unsigned long long)c,
          (unsigned long long)s, (unsigned long long)c2, (unsigned long long)s2);
    nc_id stale[2] = {c, s};
    for (int i = 0; i < 2; i++) {
        nc_buf b = {"x", 1};
        nc_sock_t fd;
        struct sockaddr_storage ss;
        int len;
        CHECK(stale[i] != c2 && stale[i] != s2, "an id was handed out twice");
        CHECK(nc_recv(q, stale[i], 10, NULL) == NC_E_BADHANDLE, "recv on stale id");
        CHECK(nc_send(q, stale[i], &b, 1, NULL) == NC_E_BADHANDLE, "send on stale id");
        CHECK(nc_close(q, stale[i]) == NC_E_BADHANDLE, "close of stale id");
        CHECK(nc_fileno(q, stale[i], &fd) == NC_E_BADHANDLE, "fileno of stale id");
        CHECK(nc_peername(q, stale[i], &ss, &len) == NC_E_BADHANDLE, "peername of stale id");
        CHECK(nc_setsockopt(q, stale[i], SOL_SOCKET, SO_RCVBUF, 4096) == NC_E_BADHANDLE, "setsockopt");
        CHECK(nc_is_listener(q, stale[i]) == NC_E_BADHANDLE, "is_listener");
    }
    CHECK(nc_recv(q, 0, 10, NULL) == NC_E_BADHANDLE, "id 0");
    CHECK(nc_recv(q, (nc_id)1 << 40 | 12345, 10, NULL) == NC_E_BADHANDLE, "made-up id");
    /* The new pair works, and nothing meant for the old one reaches it. */
    nc_buf b = {"new", 3};
    CHECK_OK(nc_send(q, c2, &b, 1, &tag_send));
    CHECK_OK(nc_recv(q, s2, 10, &tag_recv));
    int got = 0;
    while (got < 2) {
        nc_event ev;
        CHECK(next_event(q, &ev, WAIT_MS) == 1, "stalled");
        CHECK(ev.status == 0, "status %s", nc_status_name(ev.status));
        if (ev.op == NC_OP_RECV)
            CHECK(ev.handle == s2 && ev.nbytes == 3 && !memcmp(ev.data, "new", 3), "recv");
        else
            CHECK(ev.op == NC_OP_SEND && ev.handle == c2, "send");
        got++;
    }
    (void)old_sock;
    nc_queue_free(q, NULL, NULL);
    return 0;
}

/* -------------------------------------------- waiter hand-off and wake-ups */

/* CPU time of the whole process, to catch threads that spin. */
static uint64_t cpu_ms(void)
{
#ifdef _WIN32
    FILETIME c, e, k, u;
    GetProcessTimes(GetCurrentProcess(), &c, &e, &k, &u);
    uint64_t kt = ((uint64_t)k.dwHighDateTime << 32) | k.dwLowDateTime;
    uint64_t ut = ((uint64_t)u.dwHighDateTime << 32) | u.dwLowDateTime;
    return (kt + ut) / 10000u;
#else
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
#endif
}

/* One nc_wait with a single-event batch; what it got and when. */
typedef struct one_wait {
    nc_queue *q;
    int timeout_ms;
    int n;
    nc_event ev;
    uint64_t took;
} one_wait;

static void wait_once(void *arg)
{
    one_wait *w = arg;
    uint64_t t0 = t_now_ms();
    w->n = nc_wait(w->q, &w->ev, 1, w->timeout_ms);
    w->took = t_now_ms() - t0;
}

/* Two cancellations of one closed connection: while the first is in this
 * thread's batch, no other waiter may be handed the second. */
static int test_closed_handle_one_waiter(void)
{
    nc_queue *q;
    nc_id lst, c, s;
    CHECK(open_pair(&q, &lst, &c, &s) == 0, "pair");
    CHECK_OK(nc_setsockopt(q, c, SOL_SOCKET, SO_SNDBUF, 32768));
    size_t big = 32u * 1024 * 1024;
    char *payload = calloc(1, big);
    CHECK(payload, "malloc");
    nc_buf b = {payload, big};
    CHECK_OK(nc_recv(q, c, 4096, &tag_recv));
    CHECK_OK(nc_send(q, c, &b, 1, &tag_send));
    CHECK(expect_quiet(q, 200) == 0, "an op completed early");
    CHECK_OK(nc_close(q, c));
    nc_event ev;
    CHECK(next_event(q, &ev, WAIT_MS) == 1 && ev.status == NC_CANCELLED, "first cancellation");
    one_wait other = {q, 300, 0, {0}, 0};
    t_thread t;
    CHECK(t_thread_start(&t, wait_once, &other) == 0, "thread");
    t_thread_join(t);
    CHECK(other.n == 0, "another waiter got op %d (%s) of the connection this batch holds",
          other.ev.op, nc_status_name(other.ev.status));
    CHECK(next_event(q, &ev, WAIT_MS) == 1 && ev.status == NC_CANCELLED, "second cancellation");
    nc_close(q, s);
    nc_close(q, lst);
    CHECK(stats_zero(q) == 0, "stats");
    nc_queue_free(q, NULL, NULL);
    free(payload);
    return 0;
}

typedef struct idler {
    nc_queue *q;
    int stop;
} idler;

static void idle_waiter(void *arg)
{
    idler *id = arg;
    nc_event evs[8];
    while (!__atomic_load_n(&id->stop, __ATOMIC_SEQ_CST))
        nc_wait(id->q, evs, 8, 200);
}

/* A ready handle held by a busy thread's batch: the idle waiters must sleep,
 * not wake each other over and over until the holder comes back. */
static int test_held_ready_no_spin(void)
{
    nc_queue *q;
    nc_id lst, c, s;
    CHECK(open_pair(&q, &lst, &c, &s) == 0, "pair");
    nc_buf b = {"abcdefgh", 8};
    CHECK_OK(nc_send(q, c, &b, 1, &tag_send));
    CHECK_OK(nc_recv(q, s, 4, &tag_recv)); /* a full read: s stays readable */
    nc_event ev;
    int got_recv = 0;
    while (!got_recv) {
        CHECK(next_event(q, &ev, WAIT_MS) == 1 && ev.status == 0, "send/recv");
        got_recv = ev.op == NC_OP_RECV;
    }
    CHECK(ev.nbytes == 4, "read %zu", ev.nbytes);
    /* This thread's batch now holds s. */
    idler id = {q, 0};
    t_thread t[2];
    for (int i = 0; i < 2; i++)
        CHECK(t_thread_start(&t[i], idle_waiter, &id) == 0, "thread");
    t_sleep_ms(100);
    CHECK_OK(nc_recv(q, s, 4, &tag_recv)); /* s goes on the ready list */
    uint64_t cpu0 = cpu_ms();
    t_sleep_ms(500);
    uint64_t used = cpu_ms() - cpu0;
    __atomic_store_n(&id.stop, 1, __ATOMIC_SEQ_CST);
    for (int i = 0; i < 2; i++)
        t_thread_join(t[i]);
    CHECK(used < 50, "idle waiters used %u ms of CPU in 500 ms", (unsigned)used);
    CHECK(next_event(q, &ev, WAIT_MS) == 1 && ev.op == NC_OP_RECV && ev.nbytes == 4, "second read");
    nc_queue_free(q, NULL, NULL);
    return 0;
}

/* A waiter whose batch is full leaves completions behind: another sleeping
 * waiter must be woken for them, not left to its timeout. */
static int test_full_batch_wakes_another(void)
{
    nc_queue *q;
    CHECK_OK(new_queue(&q));
    for (int round = 0; round < 5; round++) {
        one_wait w[2];
        t_thread t[2];
        for (int i = 0; i < 2; i++) {
            w[i] = (one_wait){q, 3000, 0, {0}, 0};
            CHECK(t_thread_start(&t[i], wait_once, &w[i]) == 0, "thread");
        }
        t_sleep_ms(100); /* both asleep in the poller */
        CHECK_OK(nc_post(q, &tag_post));
        CHECK_OK(nc_post(q, &tag_post));
        for (int i = 0; i < 2; i++)
            t_thread_join(t[i]);
        for (int i = 0; i < 2; i++)
            CHECK(w[i].n == 1 && w[i].took < 1000, "round %d: waiter %d got %d after %u ms",
                  round, i, w[i].n, (unsigned)w[i].took);
    }
    return finish(q);
}

/* A waiter thread that ends without nc_leave() gives its batch back: the
 * connection it held gets its next completion in another thread. */
typedef struct exiting_waiter {
    nc_queue *q;
    int n;
    nc_event ev;
} exiting_waiter;

static void wait_then_end(void *arg)
{
    exiting_waiter *e = arg;
    e->n = next_event(e->q, &e->ev, WAIT_MS); /* and ends, holding its batch */
}

static int test_thread_exit_gives_batch_back(void)
{
    nc_queue *q;
    nc_id lst, c, s;
    CHECK(open_pair(&q, &lst, &c, &s) == 0, "pair");
    nc_leave(q); /* this thread's setup batch held c and s */
    nc_buf b = {"x", 1};
    CHECK_OK(nc_send(q, c, &b, 1, &tag_send));
    exiting_waiter e = {q, 0, {0}};
    t_thread t;
    CHECK(t_thread_start(&t, wait_then_end, &e) == 0, "thread");
    t_thread_join(t); /* its exit hooks have run once join returns */
    CHECK(e.n == 1 && e.ev.op == NC_OP_SEND && e.ev.handle == c, "the thread got n=%d op=%d", e.n, e.ev.op);
    nc_stats st;
    nc_get_stats(q, &st);
    CHECK(st.waiters == 0, "%ld waiters after the thread ended", st.waiters);
    CHECK_OK(nc_send(q, c, &b, 1, &tag_send));
    nc_event ev;
    CHECK(next_event(q, &ev, 3000) == 1, "the ended thread still holds the connection");
    CHECK(ev.op == NC_OP_SEND && ev.handle == c && ev.status == 0, "op %d", ev.op);
    nc_close(q, c);
    nc_close(q, s);
    nc_close(q, lst);
    return finish(q);
}

/* A thread that waited once (on io_uring: it has a ring of its own) starts
 * I/O on a connection and then stays away from nc_wait without leaving:
 * the completions still reach a thread that waits, whether that one went to
 * sleep before the I/O started or after. */
typedef struct away_waiter {
    nc_queue *q;
    nc_id c, s;
    int delay_ms, started, release, rc;
} away_waiter;

static void start_then_stay_away(void *arg)
{
    away_waiter *a = arg;
    nc_event ev;
    t_sleep_ms(a->delay_ms);
    a->rc = nc_wait(a->q, &ev, 1, 0);
    nc_buf b = {"hello", 5};
    if (a->rc >= 0)
        a->rc = nc_recv(a->q, a->s, 16, &tag_recv);
    if (a->rc >= 0)
        a->rc = nc_send(a->q, a->c, &b, 1, &tag_send);
    __atomic_store_n(&a->started, 1, __ATOMIC_SEQ_CST);
    while (!__atomic_load_n(&a->release, __ATOMIC_SEQ_CST))
        t_sleep_ms(5);
}

static int test_away_thread_io_still_delivered(void)
{
    for (int sleeper_first = 0; sleeper_first < 2; sleeper_first++) {
        nc_queue *q;
        nc_id lst, c, s;
        CHECK(open_pair(&q, &lst, &c, &s) == 0, "pair");
        nc_leave(q); /* this thread's setup batch held c and s */
        away_waiter a = {q, c, s, sleeper_first ? 200 : 0, 0, 0, 0};
        t_thread t;
        CHECK(t_thread_start(&t, start_then_stay_away, &a) == 0, "thread");
        while (!sleeper_first && !__atomic_load_n(&a.started, __ATOMIC_SEQ_CST))
            t_sleep_ms(1);
        int got_send = 0, got_recv = 0;
        for (int i = 0; i < 2; i++) {
            nc_event ev;
            CHECK(next_event(q, &ev, 5000) == 1, "sleeper_first=%d: event %d did not come", sleeper_first, i);
            CHECK(ev.status == 0, "status %d", ev.status);
            got_send += ev.op == NC_OP_SEND;
            got_recv += ev.op == NC_OP_RECV && ev.nbytes == 5;
        }
        CHECK(a.started && a.rc == 0, "the away thread's calls: %d", a.rc);
        CHECK(got_send == 1 && got_recv == 1, "send %d recv %d", got_send, got_recv);
        __atomic_store_n(&a.release, 1, __ATOMIC_SEQ_CST);
        t_thread_join(t);
        nc_close(q, c);
        nc_close(q, s);
        nc_close(q, lst);
        CHECK(finish(q) == 0, "finish");
    }
    return 0;
}

/* A timer started while one waiter sleeps briefly and another for long:
 * the brief one leaves before it is due, so the long one must be told. */
typedef struct timed_waiter {
    nc_queue *q;
    int timeout_ms, ready, go, n, op;
    uint64_t at;
} timed_waiter;

static void wait_when_told(void *arg)
{
    timed_waiter *w = arg;
    nc_event ev;
    nc_wait(w->q, &ev, 1, 0); /* a waiter now (on io_uring: with its ring) */
    __atomic_store_n(&w->ready, 1, __ATOMIC_SEQ_CST);
    while (!__atomic_load_n(&w->go, __ATOMIC_SEQ_CST))
        t_sleep_ms(1);
    w->n = nc_wait(w->q, &ev, 1, w->timeout_ms);
    w->op = w->n == 1 ? ev.op : 0;
    w->at = t_now_ms();
}

static int test_timer_reaches_the_long_sleeper(void)
{
    nc_queue *q;
    CHECK_OK(new_queue(&q));
    timed_waiter w[2] = {{q, 150, 0, 0, 0, 0, 0}, {q, 4000, 0, 0, 0, 0, 0}};
    t_thread t[2];
    for (int i = 0; i < 2; i++) {
        CHECK(t_thread_start(&t[i], wait_when_told, &w[i]) == 0, "thread");
        while (!__atomic_load_n(&w[i].ready, __ATOMIC_SEQ_CST))
            t_sleep_ms(1);
    }
    for (int i = 0; i < 2; i++)
        __atomic_store_n(&w[i].go, 1, __ATOMIC_SEQ_CST);
    t_sleep_ms(30); /* both asleep */
    uint64_t t0 = t_now_ms(), id;
    CHECK_OK(nc_timer_start(q, 0.4, &tag_post, &id));
    for (int i = 0; i < 2; i++)
        t_thread_join(t[i]);
    int who = w[0].op == NC_OP_TIMER ? 0 : 1;
    CHECK(w[who].op == NC_OP_TIMER, "nobody got the timer (ops %d, %d)", w[0].op, w[1].op);
    CHECK(w[who].at - t0 < 1500, "the 400 ms timer came after %u ms", (unsigned)(w[who].at - t0));
    return finish(q);
}

/* A thread sends from outside nc_wait and stays away; another waits all the
 * time but never sleeps (there is always work): the send still goes out. */
typedef struct busy_waiter {
    nc_queue *q;
    nc_id s;
    int ready, go, got_recv;
} busy_waiter;

static void wait_busily(void *arg)
{
    busy_waiter *b = arg;
    nc_event ev[8];
    nc_wait(b->q, ev, 8, 0);
    __atomic_store_n(&b->ready, 1, __ATOMIC_SEQ_CST);
    while (!__atomic_load_n(&b->go, __ATOMIC_SEQ_CST))
        t_sleep_ms(1);
    uint64_t give_up = t_now_ms() + 3000;
    while (!b->got_recv && t_now_ms() < give_up) {
        nc_post(b->q, &tag_post); /* work for its next wait: it never sleeps */
        int n = nc_wait(b->q, ev, 8, 1000);
        for (int i = 0; i < n; i++)
            b->got_recv |= ev[i].op == NC_OP_RECV && ev[i].handle == b->s && ev[i].nbytes == 1;
    }
}

static int test_busy_waiter_sends_for_an_away_one(void)
{
    nc_queue *q;
    nc_id lst, c, s;
    CHECK(open_pair(&q, &lst, &c, &s) == 0, "pair");
    nc_leave(q); /* its setup batch held c and s */
    busy_waiter b = {q, s, 0, 0, 0};
    t_thread t;
    CHECK(t_thread_start(&t, wait_busily, &b) == 0, "thread");
    while (!__atomic_load_n(&b.ready, __ATOMIC_SEQ_CST))
        t_sleep_ms(1);
    nc_event ev;
    CHECK(nc_wait(q, &ev, 1, 0) >= 0, "wait"); /* this thread is a waiter too */
    __atomic_store_n(&b.go, 1, __ATOMIC_SEQ_CST);
    nc_buf x = {"x", 1};
    CHECK_OK(nc_recv(q, s, 16, &tag_recv));
    CHECK_OK(nc_send(q, c, &x, 1, &tag_send)); /* and it stays away from nc_wait */
    t_thread_join(t);
    CHECK(b.got_recv, "the busy waiter never got the byte the away one sent");
    nc_close(q, c);
    nc_close(q, s);
    nc_close(q, lst);
    while (next_event(q, &ev, 300) == 1) {
        /* the send's completion, if the busy waiter left it */
    }
    return finish(q);
}

/* A batch never holds a listener: while one thread sits on an accepted
 * connection, another gets the next accept at once. */
typedef struct parked_waiter {
    nc_queue *q;
    int n;
    nc_event ev;
    int got, release;
} parked_waiter;

static void wait_then_park(void *arg)
{
    parked_waiter *p = arg;
    p->n = next_event(p->q, &p->ev, WAIT_MS);
    __atomic_store_n(&p->got, 1, __ATOMIC_SEQ_CST);
    uint64_t deadline = t_now_ms() + WAIT_MS;
    while (!__atomic_load_n(&p->release, __ATOMIC_SEQ_CST) && t_now_ms() < deadline)
        t_sleep_ms(1); /* keeps its batch: no nc_wait, no nc_leave */
    nc_leave(p->q);
}

static int test_listener_never_held(void)
{
    nc_queue *q;
    nc_id lst;
    int port;
    CHECK_OK(new_queue(&q));
    CHECK_OK(listen_any(q, &lst, &port));
    static char first, second;
    CHECK_OK(nc_accept(q, lst, &first));
    CHECK_OK(nc_accept(q, lst, &second));
    struct sockaddr_in a = loopback(port);
    nc_sock_t peers[2];
    for (int i = 0; i < 2; i++) {
        peers[i] = socket(AF_INET, SOCK_STREAM, 0);
        CHECK(connect(peers[i], (struct sockaddr *)&a, sizeof a) == 0, "connect %d", i);
    }
    parked_waiter p = {q, 0, {0}, 0, 0};
    t_thread t;
    CHECK(t_thread_start(&t, wait_then_park, &p) == 0, "thread");
    uint64_t deadline = t_now_ms() + WAIT_MS;
    while (!__atomic_load_n(&p.got, __ATOMIC_SEQ_CST) && t_now_ms() < deadline)
        t_sleep_ms(1);
    CHECK(p.n == 1 && p.ev.op == NC_OP_ACCEPT && p.ev.status == 0, "first accept: n=%d", p.n);
    nc_event ev;
    uint64_t t0 = t_now_ms();
    int n = next_event(q, &ev, 3000);
    unsigned took = (unsigned)(t_now_ms() - t0);
    __atomic_store_n(&p.release, 1, __ATOMIC_SEQ_CST);
    t_thread_join(t);
    CHECK(n == 1 && ev.op == NC_OP_ACCEPT && ev.status == 0, "no second accept while the first's batch is held (n=%d)", n);
    CHECK(ev.ctx != p.ev.ctx, "one accept delivered twice");
    CHECK(took < 2000, "the second accept waited %u ms", took);
    nc_close(q, p.ev.handle);
    nc_close(q, ev.handle);
    for (int i = 0; i < 2; i++)
        nc_sock_close_raw(peers[i]);
    nc_close(q, lst);
    return finish(q);
}

#ifdef _WIN32
/* The Windows error table gives the statuses Linux gives. */
static int test_win_error_map(void)
{
    static const struct {
        DWORD err;
        int want;
    } cases[] = {
        {WSAECONNRESET, NC_ECONNRESET},
        {ERROR_NETNAME_DELETED, NC_ECONNRESET},
        {WSAECONNABORTED, NC_ECONNRESET},
        {ERROR_CONNECTION_ABORTED, NC_ECONNRESET},
        {ERROR_CONNECTION_REFUSED, NC_ECONNREFUSED},
        {WSAECONNREFUSED, NC_ECONNREFUSED},
        {ERROR_PORT_UNREACHABLE, NC_ECONNREFUSED},
        {ERROR_OPERATION_ABORTED, NC_CANCELLED},
        {ERROR_SEM_TIMEOUT, NC_ETIMEDOUT},
        {WSAETIMEDOUT, NC_ETIMEDOUT},
        {ERROR_NETWORK_UNREACHABLE, -WSAENETUNREACH},
        {ERROR_HOST_UNREACHABLE, -WSAEHOSTUNREACH},
        {WSAEADDRINUSE, NC_EADDRINUSE},
        {WSAEMFILE, NC_EMFILE},
        {ERROR_NOT_ENOUGH_MEMORY, -WSAENOBUFS},
        {WSAEINVAL, -WSAEINVAL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int got = nc_win_status(cases[i].err);
        CHECK(got == cases[i].want, "error %lu -> %d (%s), want %d (%s)", (unsigned long)cases[i].err,
              got, nc_status_name(got), cases[i].want, nc_status_name(cases[i].want));
    }
    CHECK(NC_ECONNRESET == -10054 && NC_ECONNREFUSED == -10061, "NC_ERR uses WSAE numbers");
    return 0;
}
#endif

static const t_case cases[] = {
    {"accept", test_accept, 20},
    {"adopt_listener", test_adopt_listener, 20},
    {"connect", test_connect, 20},
    {"connect_refused", test_connect_refused, 20},
    {"echo_1mib", test_echo_1mib, 60},
    {"gathered_send", test_gathered_send, 20},
    {"quiet_send", test_quiet_send, 90},
    {"multishot_recv", test_multishot_recv, 30},
    {"eof", test_eof, 20},
    {"shutdown", test_shutdown, 30},
    {"reset", test_reset, 20},
    {"close_pending", test_close_pending, 30},
    {"close_pending_connect", test_close_pending_connect, 20},
    {"post_wakes_waiter", test_post_wakes_waiter, 20},
    {"post_to_connection", test_post_to_connection, 20},
    {"timers", test_timers, 20},
    {"threads_echo", test_threads_echo, 90},
    {"slot_reuse", test_slot_reuse, 20},
    {"closed_handle_one_waiter", test_closed_handle_one_waiter, 30},
    {"held_ready_no_spin", test_held_ready_no_spin, 20},
    {"full_batch_wakes_another", test_full_batch_wakes_another, 60},
    {"thread_exit_gives_batch_back", test_thread_exit_gives_batch_back, 30},
    {"listener_never_held", test_listener_never_held, 30},
    {"away_thread_io_still_delivered", test_away_thread_io_still_delivered, 30},
    {"timer_reaches_the_long_sleeper", test_timer_reaches_the_long_sleeper, 30},
    {"busy_waiter_sends_for_an_away_one", test_busy_waiter_sends_for_an_away_one, 30},
#ifdef _WIN32
    {"win_error_map", test_win_error_map, 10},
#endif
    {NULL, NULL, 0},
};

int main(int argc, char **argv)
{
#ifndef _WIN32
    /* Default SIGPIPE: a send that raised it would kill the run and fail it. */
    signal(SIGPIPE, SIG_DFL);
#endif
    return t_main(cases, argc, argv);
}
