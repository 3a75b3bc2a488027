/* unix/stream.c: completions from readiness (see stream.h).
 *
 * A handle remembers whether it is readable/writable since the last EAGAIN;
 * an operation started on a ready handle is performed at the next nc_wait()
 * (sends are tried at once).  The I/O itself happens here, so the caller
 * only ever sees completions.
 */
#define _GNU_SOURCE /* accept4 */
#include "stream.h"
#include "../core/cursor.h"
#include "../core/sock.h"
#include "../core/starve.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/uio.h>
#include <unistd.h>

#define EVENTS_PER_POLL 256
#define MAX_IOV 64

typedef struct stream_state {
    const nc_poller *poller;
    void *ps;              /* the poller's own state */
} stream_state;

#define STATE(q) ((stream_state *)(q)->be_state)
#define POLLER(q) (STATE(q)->poller)

int nc_stream_available(void)
{
    return 1;
}

int nc_stream_init(nc_queue *q)
{
    stream_state *st = calloc(1, sizeof *st);
    if (!st)
        return NC_E_NOMEM;
    st->poller = q->be->impl;
    int rc = st->poller->init(&st->ps);
    if (rc < 0) {
        free(st);
        return rc;
    }
    q->be_state = st;
    return 0;
}

void nc_stream_destroy(nc_queue *q)
{
    stream_state *st = STATE(q);
    st->poller->destroy(st->ps);
    free(st);
    q->be_state = NULL;
}

int nc_stream_attach(nc_queue *q, nc_handle *h)
{
    return POLLER(q)->add(STATE(q)->ps, h->sock, h->id, h->kind == NC_LISTENER);
}

/* Ran dry on h: a level-triggered poller must watch for `flags` again. */
static void arm(nc_queue *q, nc_handle *h, unsigned flags)
{
    if (POLLER(q)->arm)
        POLLER(q)->arm(STATE(q)->ps, h->sock, h->id, flags);
}

void nc_stream_resume_accept(nc_queue *q, nc_handle *lst)
{
    lst->readable = 1;
    nc_mark_ready(q, lst);
}

static int map_errno(int err)
{
    /* Writing to a peer that reset shows up as EPIPE here but as a reset
     * on Windows; callers see one meaning. */
    return err == EPIPE ? NC_ECONNRESET : -err;
}

static void set_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* Accepts until EAGAIN or no accept op is left waiting. */
static void do_accept(nc_queue *q, nc_handle *lst)
{
    nc_op *op;
    while (lst->readable && (op = lst->rxq.head)) {
        int fd = accept4(lst->sock, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int err = errno;
            if (err == EINTR || err == ECONNABORTED || err == EPROTO)
                continue;
            if (err == EAGAIN || err == EWOULDBLOCK) {
                lst->readable = 0;
                arm(q, lst, NC_POLL_IN);
            } else if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
                lst->readable = 0;
                nc_starve(q, lst);
            } else {
                nc_complete(q, nc_opq_pop(&lst->rxq), -err);
                continue;
            }
            return;
        }
        set_nodelay(fd);
        nc_handle *h = nc_handle_new(q, fd, NC_CONN);
        if (!h) {
            close(fd);
            lst->readable = 0;
            nc_starve(q, lst);
            return;
        }
        h->readable = h->writable = 1; /* try the first read or write at once */
        int rc = nc_stream_attach(q, h);
        if (rc < 0) {
            nc_handle_close(q, h);
            nc_complete(q, nc_opq_pop(&lst->rxq), rc);
            continue;
        }
        nc_opq_pop(&lst->rxq);
        op->result = h->id;
        nc_complete(q, op, 0);
    }
}

static void do_recv(nc_queue *q, nc_handle *h, nc_waiter *w)
{
    size_t len;
    char *buf = nc_recv_space(q, h, w, &len);
    if (!buf)
        return;
    ssize_t n;
    do
        n = recv(h->sock, buf, len, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            h->readable = 0;
            arm(q, h, NC_POLL_IN);
            return;
        }
        nc_complete(q, nc_opq_pop(&h->rxq), map_errno(errno));
        return;
    }
    /* A short read drained the socket; the next arrival raises a new edge.
     * Not after a hang-up: its edge is already spent, and the EOF or error
     * still has to be read. */
    if (n > 0 && (size_t)n < len && !h->hup) {
        h->readable = 0;
        arm(q, h, NC_POLL_IN);
    }
    nc_complete_recv(q, w, nc_opq_pop(&h->rxq), 0, buf, (size_t)n);
}

/* Sends queued data until done or EAGAIN; each op completes when all of
 * its bytes are out, a shutdown once every send before it is. */
static void do_send(nc_queue *q, nc_handle *h)
{
    nc_op *op;
    while ((op = h->txq.head)) {
        if (op->kind == NC_OP_SHUTDOWN) {
            nc_complete(q, nc_opq_pop(&h->txq), nc_sock_shutdown_write(h->sock));
            continue;
        }
        nc_buf slices[MAX_IOV];
        int n = nc_send_slices(op, slices, MAX_IOV);
        if (n == 0) {
            nc_complete(q, nc_opq_pop(&h->txq), 0);
            continue;
        }
        if (!h->writable)
            return;
        struct iovec iov[MAX_IOV];
        for (int i = 0; i < n; i++) {
            iov[i].iov_base = (void *)slices[i].base;
            iov[i].iov_len = slices[i].len;
        }
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t sent = sendmsg(h->sock, &msg, MSG_NOSIGNAL);
        if (sent < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                h->writable = 0;
                arm(q, h, NC_POLL_OUT);
                return;
            }
            nc_complete(q, nc_opq_pop(&h->txq), map_errno(errno));
            continue;
        }
        if (nc_send_advance(op, (size_t)sent))
            nc_complete(q, nc_opq_pop(&h->txq), 0);
    }
}

static void finish_connect(nc_queue *q, nc_handle *h)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(h->sock, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err == 0 && !h->writable)
        return; /* still in progress */
    nc_op *op = nc_opq_pop(&h->txq);
    if (err == 0) {
        h->kind = NC_CONN;
        nc_complete(q, op, 0);
        return;
    }
    op->result = 0;
    nc_complete(q, op, -err);
    nc_handle_close(q, h); /* nobody else knows this handle yet */
}

void nc_stream_perform(nc_queue *q, nc_handle *h, nc_waiter *w)
{
    switch (h->kind) {
    case NC_LISTENER:
        do_accept(q, h);
        break;
    case NC_CONNECTING:
        if (h->writable || h->readable)
            finish_connect(q, h);
        break;
    default:
        if (h->readable && h->rxq.head)
            do_recv(q, h, w);
        if (h->txq.head)
            do_send(q, h);
    }
}

int nc_stream_start(nc_queue *q, nc_handle *h, nc_op *op)
{
    if (op->kind == NC_OP_SEND || op->kind == NC_OP_SHUTDOWN) {
        /* Try at once, as uvloop does: most sends fit the socket buffer. */
        if (h->txq.head == op)
            do_send(q, h);
    } else if (h->readable) {
        nc_mark_ready(q, h);
    }
    return 0;
}

void nc_stream_close(nc_queue *q, nc_handle *h)
{
    /* Deregister before close: a dup()ed descriptor elsewhere would keep
     * the registration alive and deliver events for a dead handle. */
    POLLER(q)->del(STATE(q)->ps, h->sock);
    close(h->sock);
    nc_cancel_all(q, h);
}

int nc_stream_connect(nc_queue *q, const struct sockaddr *addr, int addrlen, nc_op *op)
{
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    set_nodelay(fd);
    int r = connect(fd, addr, (socklen_t)addrlen);
    int err = r < 0 ? errno : 0;
    if (err == EINPROGRESS)
        err = 0;
    nc_handle *h = nc_handle_new(q, fd, NC_CONNECTING);
    if (!h) {
        close(fd);
        return NC_E_NOMEM;
    }
    op->result = h->id;
    nc_op_attach(h, &h->txq, op);
    int rc = nc_stream_attach(q, h);
    if (rc < 0 || err) {
        op->result = 0;
        nc_complete(q, nc_opq_pop(&h->txq), rc < 0 ? rc : -err);
        nc_handle_close(q, h);
        return 0;
    }
    if (r == 0) {
        h->writable = 1;
        nc_mark_ready(q, h);
    } else {
        arm(q, h, NC_POLL_OUT);
    }
    return 0;
}

int nc_stream_poll(nc_queue *q, int timeout_ms)
{
    stream_state *st = STATE(q);
    nc_poll_event evs[EVENTS_PER_POLL];
    int n;
    if (timeout_ms == 0) {
        n = st->poller->wait(st->ps, evs, EVENTS_PER_POLL, 0);
    } else {
        nc_poll_begin(q);
        n = st->poller->wait(st->ps, evs, EVENTS_PER_POLL, timeout_ms);
        nc_poll_end(q);
    }
    if (n < 0)
        return n;
    for (int i = 0; i < n; i++) {
        unsigned e = evs[i].flags;
        if (evs[i].id == NC_POLL_WAKE_ID) {
            nc_woken(q);
            continue;
        }
        /* A stale id (closed, maybe reused fd) finds no handle. */
        nc_handle *h = nc_lookup(q, evs[i].id);
        if (!h)
            continue;
        if (e & (NC_POLL_IN | NC_POLL_HUP))
            h->readable = 1;
        if (e & NC_POLL_HUP)
            h->hup = 1;
        if (e & (NC_POLL_OUT | NC_POLL_HUP))
            h->writable = 1;
        if (h->rxq.head || h->txq.head)
            nc_mark_ready(q, h);
    }
    return 0;
}

void nc_stream_wake(nc_queue *q)
{
    POLLER(q)->wake(STATE(q)->ps);
}
