/* unix/stream.c: completions from readiness (see stream.h).
 *
 * A handle remembers whether it is readable/writable since the last EAGAIN.
 * Ready handles are worked on in three steps: claimed under the queue lock
 * (a busy bit per direction, so one thread at a time reads and one writes),
 * the system calls made with the lock dropped, and the results applied
 * under the lock again.  Sends are tried at once by the thread that starts
 * them (a deferred kick, right after it drops the lock), as uvloop does;
 * recvs and accepts run in a waiter's nc_wait().
 */
#include "posix.h"
#include "stream.h"
#include "../core/cursor.h"
#include "../core/sock.h"
#include "../core/starve.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#if NC_STREAM_SENDFILE
#include <sys/sendfile.h>
#endif
#include <unistd.h>

#define EVENTS_PER_POLL 256
#define MAX_IOV 64
#define MAX_TASKS 32
#define ACCEPT_BATCH 16

typedef struct stream_state {
    const nc_poller *poller;
    void *ps;              /* the poller's own state */
} stream_state;

#define STATE(q) ((stream_state *)(q)->be_state)
#define POLLER(q) (STATE(q)->poller)

enum task_kind { T_RECV = 1, T_SEND, T_ACCEPT, T_CONNECT };

/* One piece of I/O claimed under the lock and done without it. */
typedef struct task {
    int kind;
    nc_handle *h;          /* referenced by the task */
    int hup;               /* RECV: h->hup when claimed */
    int new_hold;          /* RECV: the claim made w hold h */
    size_t want;           /* RECV: the op's max bytes; ACCEPT: handles wanted */
    /* results */
    char *buf;             /* RECV: where the bytes went (NULL: no room) */
    ssize_t n;             /* RECV: bytes read; SEND: op finished (1) */
    int err;               /* errno, 0, or EAGAIN */
    /* ACCEPT: handles made for the connections, and how far it got */
    nc_handle *conn[ACCEPT_BATCH];
    int nconn, accepted;
} task;

int nc_stream_probe(char *why, size_t whylen)
{
    (void)why, (void)whylen;
    return 0;
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

void nc_stream_release(nc_queue *q, nc_sock_t s)
{
    /* Deregister before close: a dup()ed descriptor elsewhere would keep
     * the registration alive and deliver events for a dead handle. */
    POLLER(q)->del(STATE(q)->ps, s);
    close(s);
}

/* Ran dry on h (lock held): a level-triggered poller must watch for
 * `flags` again. */
static void arm(nc_queue *q, nc_handle *h, unsigned flags)
{
    if (POLLER(q)->arm && POLLER(q)->arm(STATE(q)->ps, h->sock, h->id, flags))
        nc_wake_one(q);
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

/* After a claim is given back: put h on the ready list if it can go on
 * (lock held).  Whoever drops a busy bit looks, so no readiness is lost. */
static void settle(nc_queue *q, nc_handle *h)
{
    if (h->closed)
        return;
    int rx = h->readable && h->rxq.head && !(h->busy & NC_BUSY_RX) && !h->starved;
    int tx = h->txq.head && !(h->busy & NC_BUSY_TX) &&
             (h->writable || (h->kind == NC_CONNECTING && h->readable));
    if (rx || tx)
        nc_mark_ready(q, h);
}

/* -------------------------------------------------- claims (lock held) */

static int count_ops(const nc_opq *qq, int max)
{
    int n = 0;
    for (nc_op *op = qq->head; op && n < max; op = op->next)
        n++;
    return n;
}

static task *add_task(task *t, int *nt, int kind, nc_handle *h)
{
    task *k = &t[(*nt)++];
    k->kind = kind;
    k->h = h;
    k->err = 0;
    k->n = 0;
    k->buf = NULL;
    nc_handle_ref(h);
    return k;
}

/* Claims what can be done on h now; returns how many tasks it added. */
static int claim(nc_queue *q, nc_waiter *w, nc_handle *h, task *t, int *nt, int *room)
{
    int before = *nt;
    if (h->closed)
        return 0;
    if (h->holder && h->holder != w) { /* held since it was taken: its holder's */
        nc_mark_ready(q, h);
        return 0;
    }
    if (h->kind == NC_LISTENER) {
        if (h->readable && h->rxq.head && !h->starved && nc_claim(h, NC_BUSY_RX)) {
            task *k = add_task(t, nt, T_ACCEPT, h);
            int want = count_ops(&h->rxq, ACCEPT_BATCH);
            k->want = (size_t)want;
            /* Handles for the connections, made now: their ids go to the
             * poller before anyone can know them. */
            for (k->nconn = 0; k->nconn < want; k->nconn++)
                if (!(k->conn[k->nconn] = nc_handle_new(q, NC_NO_SOCK, NC_CONN)))
                    break;
            k->accepted = 0;
        }
    } else if (h->kind == NC_CONNECTING) {
        if ((h->writable || h->readable) && h->txq.head && nc_claim(h, NC_BUSY_TX))
            add_task(t, nt, T_CONNECT, h);
    } else {
        if (h->readable && h->rxq.head && !(h->busy & NC_BUSY_RX)) {
            int fresh = h->holder == NULL;
            if (*room > 0 && nc_hold(q, w, h) == 0 && nc_claim(h, NC_BUSY_RX)) {
                task *k = add_task(t, nt, T_RECV, h);
                k->hup = h->hup;
                k->new_hold = fresh;
                k->want = h->rxq.head->nbytes;
                (*room)--;
            } else {
                nc_mark_ready(q, h); /* no room in this batch: a later one */
            }
        }
        if (h->txq.head && h->writable && *nt < MAX_TASKS && nc_claim(h, NC_BUSY_TX))
            add_task(t, nt, T_SEND, h);
    }
    return *nt - before;
}

/* ------------------------------------------------ I/O (lock dropped) */

static void exec_recv(task *k, nc_waiter *w)
{
    size_t len;
    k->buf = nc_arena_take(w, k->want, &len);
    if (!k->buf)
        return;
    ssize_t n;
    do
        n = recv(k->h->sock, k->buf, len, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        k->err = errno == EWOULDBLOCK ? EAGAIN : errno;
        return;
    }
    nc_arena_used(w, (size_t)n);
    k->n = n;
    /* A short read drained the socket; the next arrival raises a new edge.
     * Not after a hang-up: its edge is already spent, and the EOF or error
     * still has to be read. */
    if ((size_t)n < len && n > 0 && !k->hup)
        k->err = EAGAIN;
}

/* After a send call that failed: 0 to retry (EINTR), else 1 with the
 * outcome recorded (EAGAIN keeps the op queued, anything else ends it). */
static int send_failed(task *k)
{
    if (errno == EINTR)
        return 0;
    k->err = errno == EWOULDBLOCK ? EAGAIN : errno;
    k->n = k->err != EAGAIN;
    return 1;
}

/* A SENDFILE at the head of txq: the kernel copies file to socket until
 * the count is out, the socket is full (EAGAIN) or the file ends. */
static void exec_sendfile(task *k, nc_op *op)
{
#if NC_STREAM_SENDFILE
    while (op->file_left) {
        off_t off = (off_t)op->file_off;
        size_t want = op->file_left > ((size_t)1 << 30) ? (size_t)1 << 30 : (size_t)op->file_left;
        ssize_t sent = sendfile(k->h->sock, op->file, &off, want);
        if (sent < 0) {
            if (send_failed(k))
                return;
            continue;
        }
        if (sent == 0) { /* the file ended before the count */
            k->err = EIO;
            k->n = 1;
            return;
        }
        op->file_off += (uint64_t)sent;
        op->file_left -= (uint64_t)sent;
        op->nbytes += (size_t)sent;
    }
    k->n = 1;
#else
    (void)op;
    k->err = ENOTSUP;    /* not reached: nc_sendfile refuses where unsupported */
    k->n = 1;
#endif
}

/* Works on the txq head the claim covers (stable: the claim keeps close
 * from taking it, and others only append). */
static void exec_send(task *k)
{
    nc_handle *h = k->h;
    nc_op *op = h->txq.head;
    if (op->kind == NC_OP_SHUTDOWN) { /* every send before it is out */
        int rc = nc_sock_shutdown_write(h->sock);
        k->n = 1;
        k->err = -rc;
        return;
    }
    if (op->kind == NC_OP_SENDFILE) {
        exec_sendfile(k, op);
        return;
    }
    for (;;) {
        nc_buf slices[MAX_IOV];
        int n = nc_send_slices(op, slices, MAX_IOV);
        if (n == 0) {
            k->n = 1;
            return;
        }
        struct iovec iov[MAX_IOV];
        for (int i = 0; i < n; i++) {
            iov[i].iov_base = (void *)slices[i].base;
            iov[i].iov_len = slices[i].len;
        }
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t sent = sendmsg(h->sock, &msg, NC_SEND_FLAGS);
        if (sent < 0) {
            if (send_failed(k))
                return;
            continue;
        }
        if (nc_send_advance(op, (size_t)sent)) {
            k->n = 1;
            return;
        }
    }
}

static void exec_accept(nc_queue *q, task *k)
{
    for (k->accepted = 0; k->accepted < k->nconn;) {
        int fd = nc_posix_accept(k->h->sock);
        if (fd < 0) {
            int err = errno;
            if (err == EINTR || err == ECONNABORTED || err == EPROTO)
                continue;
            k->err = err == EWOULDBLOCK ? EAGAIN : err;
            return;
        }
        set_nodelay(fd);
        nc_handle *c = k->conn[k->accepted++];
        c->sock = fd; /* c is known to nobody yet */
        int rc = nc_stream_attach(q, c);
        if (rc < 0) {
            k->err = -rc; /* c is closed with its socket at commit */
            c->readable = 0;
            return;
        }
        c->readable = c->writable = 1; /* try the first read or write at once */
    }
}

static void exec_connect(task *k)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(k->h->sock, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    k->err = err;
}

static void exec(nc_queue *q, task *k, nc_waiter *w)
{
    switch (k->kind) {
    case T_RECV:
        exec_recv(k, w);
        break;
    case T_SEND:
        exec_send(k);
        break;
    case T_ACCEPT:
        exec_accept(q, k);
        break;
    case T_CONNECT:
        exec_connect(k);
        break;
    }
}

/* ------------------------------------------- results (lock held again) */

static void commit_recv(nc_queue *q, nc_waiter *w, task *k)
{
    nc_handle *h = k->h;
    int got = k->buf && (k->n > 0 || (k->err != EAGAIN));
    if (k->err == EAGAIN && h->rx_seq == h->rx_mark) {
        h->readable = 0;
        arm(q, h, NC_POLL_IN);
    }
    nc_unclaim(q, h, NC_BUSY_RX);
    if (got) {
        int status = k->err && k->err != EAGAIN ? map_errno(k->err) : 0;
        size_t n = status ? 0 : (size_t)k->n;
        /* Bytes read before a close came are handed over, never lost. */
        nc_complete_recv(q, w, nc_recv_take(q, h, status, n), status, status ? NULL : k->buf, n);
    } else if (h->closed) {
        nc_complete_recv(q, w, nc_opq_pop(&h->rxq), NC_CANCELLED, NULL, 0);
    } else {
        if (k->new_hold)
            nc_unhold(q, w, h); /* nothing for this batch after all */
        nc_recv_settle(q, h);
    }
    settle(q, h);
}

/* 1 if h has more to send and can: the caller goes on with it. */
static int commit_send(nc_queue *q, task *k)
{
    nc_handle *h = k->h;
    if (k->err == EAGAIN && h->tx_seq == h->tx_mark) {
        h->writable = 0;
        arm(q, h, NC_POLL_OUT);
    }
    nc_unclaim(q, h, NC_BUSY_TX);
    if (h->closed) {
        /* Pending when the close came: cancelled, as on every backend. */
        nc_complete(q, nc_opq_pop(&h->txq), NC_CANCELLED);
        return 0;
    }
    if (k->n)
        nc_complete(q, nc_opq_pop(&h->txq), k->err ? map_errno(k->err) : 0);
    return h->txq.head && h->writable && k->n;
}

static void commit_accept(nc_queue *q, task *k)
{
    nc_handle *lst = k->h;
    for (int i = 0; i < k->nconn; i++) {
        nc_handle *c = k->conn[i];
        int ok = i < k->accepted && c->readable;
        /* (also the accept a close of the listener found under way, which
         * close left to this thread: the connection it took is handed
         * over, as a recv's bytes are) */
        if (ok && lst->rxq.head) {
            nc_op *op = nc_opq_pop(&lst->rxq);
            op->result = c->id;
            nc_complete(q, op, 0);
        } else {
            /* Unused, failed to register, or its listener is gone. */
            c->readable = 0;
            nc_handle_close(q, c);
        }
    }
    int err = k->err;
    if (lst->closed) {
        /* That accept, if it took no connection: cancelled now, once. */
        nc_op *op;
        while ((op = nc_opq_pop(&lst->rxq)))
            nc_complete(q, op, NC_CANCELLED);
    } else if (err == EAGAIN) {
        if (lst->rx_seq == lst->rx_mark) {
            lst->readable = 0;
            arm(q, lst, NC_POLL_IN);
        }
    } else if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        lst->readable = 0;
        nc_starve(q, lst);
    } else if (err && !lst->closed && lst->rxq.head) {
        nc_complete(q, nc_opq_pop(&lst->rxq), -err);
    }
    if (k->nconn < (int)k->want && k->accepted == k->nconn && !err && !lst->closed) {
        lst->readable = 0; /* out of memory for handles: as for EMFILE */
        nc_starve(q, lst);
    }
    nc_unclaim(q, lst, NC_BUSY_RX);
    settle(q, lst);
}

static void commit_connect(nc_queue *q, task *k)
{
    nc_handle *h = k->h;
    nc_unclaim(q, h, NC_BUSY_TX);
    if (h->closed) { /* only by nc_queue_free, which knows no waiter */
        nc_complete(q, nc_opq_pop(&h->txq), NC_CANCELLED);
        return;
    }
    if (k->err == 0 && !h->writable) {
        settle(q, h); /* still in progress */
        return;
    }
    nc_op *op = nc_opq_pop(&h->txq);
    if (k->err == 0) {
        h->kind = NC_CONN;
        nc_complete(q, op, 0);
        settle(q, h);
        return;
    }
    op->result = 0;
    nc_complete(q, op, -k->err);
    nc_handle_close(q, h); /* nobody else knows this handle yet */
}

/* Applies k's results; 1 if h should be worked on again at once. */
static int commit(nc_queue *q, nc_waiter *w, task *k)
{
    int again = 0;
    switch (k->kind) {
    case T_RECV:
        commit_recv(q, w, k);
        break;
    case T_SEND:
        again = commit_send(q, k);
        break;
    case T_ACCEPT:
        commit_accept(q, k);
        again = k->h->readable && k->h->rxq.head && !k->h->starved && !k->h->closed;
        break;
    case T_CONNECT:
        commit_connect(q, k);
        break;
    }
    return again;
}

void nc_stream_perform(nc_queue *q, nc_waiter *w)
{
    /* What is ready now, once: handles that become ready meanwhile wait
     * for the next pass, so this ends. */
    long budget = q->nready;
    nc_handle *next[MAX_TASKS];
    int nnext = 0;
    for (;;) {
        nc_handle *hs[MAX_TASKS];
        int nh = nnext;
        memcpy(hs, next, (size_t)nnext * sizeof *hs);
        nnext = 0;
        nh += nc_take_ready(q, w, hs + nh, MAX_TASKS / 2 - nh, &budget);
        if (nh == 0)
            return;
        task t[MAX_TASKS];
        int nt = 0, room = nc_batch_room(w);
        for (int i = 0; i < nh; i++) {
            claim(q, w, hs[i], t, &nt, &room);
            nc_handle_unref(q, hs[i]); /* the ready list's (or next[]'s) reference */
        }
        if (!nt)
            continue;
        nc_unlock_q(q);
        for (int i = 0; i < nt; i++)
            exec(q, &t[i], w);
        nc_lock(&q->lock);
        for (int i = 0; i < nt; i++) {
            nc_handle *h = t[i].h;
            /* More of the same (the next send, more accepts): next round. */
            if (commit(q, w, &t[i]) && !h->on_ready && nnext < MAX_TASKS / 2) {
                nc_handle_ref(h);
                next[nnext++] = h;
            }
            nc_handle_unref(q, h);
        }
    }
}

/* -------------------------------------------------- starting operations */

/* A send started by this thread (lock dropped): out at once if it fits. */
void nc_stream_kick(nc_queue *q, nc_handle *h, unsigned what)
{
    (void)what;
    task k = {.kind = T_SEND, .h = h};
    for (;;) {
        exec_send(&k);
        nc_lock(&q->lock);
        int again = commit_send(q, &k) && nc_claim(h, NC_BUSY_TX);
        if (!again) {
            settle(q, h);
            nc_handle_unref(q, h);
            nc_unlock_q(q);
            return;
        }
        nc_unlock_q(q);
        k.err = 0;
        k.n = 0;
    }
}

void nc_stream_start(nc_queue *q, nc_handle *h, nc_op *op)
{
    if (op->kind == NC_OP_SEND || op->kind == NC_OP_SHUTDOWN || op->kind == NC_OP_SENDFILE) {
        /* Try at once, as uvloop does: most sends fit the socket buffer. */
        if (h->txq.head == op && h->writable && nc_claim(h, NC_BUSY_TX) &&
            nc_defer_kick(q, h, NC_BUSY_TX) < 0) {
            nc_unclaim(q, h, NC_BUSY_TX);
            nc_mark_ready(q, h); /* out of memory: a waiter will send it */
        }
    } else if (h->readable) {
        nc_mark_ready(q, h);
    }
}

void nc_stream_close(nc_queue *q, nc_handle *h)
{
    nc_cancel_all(q, h);
}

int nc_stream_connect(nc_queue *q, const struct sockaddr *addr, int addrlen, nc_op *op)
{
    int fd = nc_posix_socket(addr->sa_family);
    if (fd < 0)
        return -errno;
    set_nodelay(fd);
    nc_lock(&q->lock);
    nc_handle *h = q->closing ? NULL : nc_handle_new(q, fd, NC_CONNECTING);
    if (!h) {
        int rc = q->closing ? NC_E_CLOSED : NC_E_NOMEM;
        nc_unlock_q(q);
        close(fd);
        return rc;
    }
    op->result = h->id;
    nc_op_attach(h, &h->txq, op);
    nc_claim(h, NC_BUSY_TX); /* nobody may finish it before it started */
    nc_unlock_q(q);
    int r = connect(fd, addr, (socklen_t)addrlen);
    int err = r < 0 && errno != EINPROGRESS ? errno : 0;
    int rc = nc_stream_attach(q, h);
    nc_lock(&q->lock);
    nc_unclaim(q, h, NC_BUSY_TX);
    if (rc < 0 || err) {
        op->result = 0;
        nc_complete(q, nc_opq_pop(&h->txq), rc < 0 ? rc : -err);
        nc_handle_close(q, h);
    } else {
        if (r == 0)
            h->writable = 1;
        else
            arm(q, h, NC_POLL_OUT);
        settle(q, h);
    }
    nc_unlock_q(q);
    return 0;
}

/* ------------------------------------------------------------- polling */

int nc_stream_poll(nc_queue *q, nc_waiter *w, int timeout_ms)
{
    (void)w;
    stream_state *st = STATE(q);
    nc_poll_event evs[EVENTS_PER_POLL];
    int n;
    if (timeout_ms == 0) {
        nc_unlock_q(q);
        n = st->poller->wait(st->ps, evs, EVENTS_PER_POLL, 0);
        nc_lock(&q->lock);
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
        if (e & (NC_POLL_IN | NC_POLL_HUP)) {
            h->readable = 1;
            h->rx_seq++;
        }
        if (e & NC_POLL_HUP)
            h->hup = 1;
        if (e & (NC_POLL_OUT | NC_POLL_HUP)) {
            h->writable = 1;
            h->tx_seq++;
        }
        settle(q, h);
    }
    return 0;
}

void nc_stream_wake(nc_queue *q)
{
    POLLER(q)->wake(STATE(q)->ps);
}
