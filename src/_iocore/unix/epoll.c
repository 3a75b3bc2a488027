/* unix/epoll.c: completions on top of epoll readiness.
 *
 * Each socket is registered once, edge-triggered, for input and output, so
 * no epoll_ctl is needed per operation.  A handle remembers whether it is
 * readable/writable since the last EAGAIN; an operation started on a ready
 * handle is performed at the next nc_wait() (sends are tried at once).
 * The I/O itself happens here, so the caller only ever sees completions.
 */
#define _GNU_SOURCE /* accept4 */
#include "../core/queue.h"
#include "../core/sock.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

#define EVENTS_PER_POLL 256
#define WAKE_ID 0
#define MAX_STARVED 64
#define STARVED_RETRY_MS 200

typedef struct ep_state {
    int epfd;
    int evfd;
    /* Listeners that hit EMFILE/ENFILE: retried when we close a handle or
     * after STARVED_RETRY_MS, never in a busy loop. */
    nc_id starved[MAX_STARVED];
    int nstarved;
    int overflow;        /* more starved than the array holds: scan slots */
    uint64_t retry_at;
} ep_state;

#define STATE(q) ((ep_state *)(q)->be_state)

static int ep_available(void)
{
    return 1;
}

static int ep_init(nc_queue *q)
{
    ep_state *st = calloc(1, sizeof *st);
    if (!st)
        return NC_E_NOMEM;
    st->epfd = epoll_create1(EPOLL_CLOEXEC);
    st->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.u64 = WAKE_ID};
    if (st->epfd < 0 || st->evfd < 0 || epoll_ctl(st->epfd, EPOLL_CTL_ADD, st->evfd, &ev) < 0) {
        int err = -errno;
        if (st->epfd >= 0)
            close(st->epfd);
        if (st->evfd >= 0)
            close(st->evfd);
        free(st);
        return err;
    }
    q->be_state = st;
    return 0;
}

static void ep_destroy(nc_queue *q)
{
    ep_state *st = STATE(q);
    close(st->evfd);
    close(st->epfd);
    free(st);
    q->be_state = NULL;
}

static int ep_attach(nc_queue *q, nc_handle *h)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.u64 = h->id};
    if (h->kind != NC_LISTENER)
        ev.events |= EPOLLOUT;
    return epoll_ctl(STATE(q)->epfd, EPOLL_CTL_ADD, h->sock, &ev) < 0 ? -errno : 0;
}

static void wake_listener(nc_queue *q, nc_handle *h)
{
    h->starved = 0;
    h->readable = 1;
    nc_mark_ready(q, h);
}

static void wake_starved(nc_queue *q)
{
    ep_state *st = STATE(q);
    for (int i = 0; i < st->nstarved; i++) {
        nc_handle *h = nc_lookup(q, st->starved[i]);
        if (h)
            wake_listener(q, h);
    }
    if (st->overflow)
        for (uint32_t i = 1; i < q->nslots; i++)
            if (q->slots[i].h && q->slots[i].h->starved)
                wake_listener(q, q->slots[i].h);
    st->nstarved = 0;
    st->overflow = 0;
    st->retry_at = 0;
}

static void starve(nc_queue *q, nc_handle *h)
{
    ep_state *st = STATE(q);
    h->readable = 0;
    if (!h->starved) {
        h->starved = 1;
        if (st->nstarved < MAX_STARVED)
            st->starved[st->nstarved++] = h->id;
        else
            st->overflow = 1;
    }
    st->retry_at = nc_now_ms() + STARVED_RETRY_MS;
}

static int map_errno(int err)
{
    /* Writing to a peer that reset shows up as EPIPE here but as a reset
     * on Windows; callers see one meaning. */
    return err == EPIPE ? NC_ECONNRESET : -err;
}

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
            } else if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
                starve(q, lst);
            } else {
                nc_complete(q, nc_opq_pop(&lst->rxq), -err);
                continue;
            }
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        nc_handle *h = nc_handle_new(q, fd, NC_CONN);
        if (!h) {
            close(fd);
            starve(q, lst);
            return;
        }
        h->writable = 1;
        int rc = ep_attach(q, h);
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
            return;
        }
        nc_complete(q, nc_opq_pop(&h->rxq), map_errno(errno));
        return;
    }
    /* A short read drained the socket; the next arrival raises a new edge.
     * Not after a hang-up: its edge is already spent, and the EOF or error
     * still has to be read. */
    if (n > 0 && (size_t)n < len && !h->hup)
        h->readable = 0;
    nc_complete_recv(q, w, nc_opq_pop(&h->rxq), 0, buf, (size_t)n);
}

/* Sends queued data until done or EAGAIN; each op completes when all of
 * its bytes are out. */
static void do_send(nc_queue *q, nc_handle *h)
{
    nc_op *op;
    while ((op = h->txq.head)) {
        if (op->kind == NC_OP_SHUTDOWN) { /* every send before it is out */
            nc_complete(q, nc_opq_pop(&h->txq), nc_sock_shutdown_write(h->sock));
            continue;
        }
        if (!h->writable)
            return;
        struct iovec iov[64];
        int n = 0;
        for (int i = op->cur; i < op->nbufs && n < 64; i++, n++) {
            size_t skip = i == op->cur ? op->off : 0;
            iov[n].iov_base = (char *)op->bufs[i].base + skip;
            iov[n].iov_len = op->bufs[i].len - skip;
        }
        ssize_t sent = 0;
        if (n > 0) {
            struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n};
            sent = sendmsg(h->sock, &msg, MSG_NOSIGNAL);
            if (sent < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    h->writable = 0;
                    return;
                }
                nc_complete(q, nc_opq_pop(&h->txq), map_errno(errno));
                continue;
            }
        }
        op->nbytes += (size_t)sent;
        while (op->cur < op->nbufs) {
            size_t left = op->bufs[op->cur].len - op->off;
            if ((size_t)sent < left) {
                op->off += (size_t)sent;
                break;
            }
            sent -= (ssize_t)left;
            op->cur++;
            op->off = 0;
        }
        if (op->cur < op->nbufs)
            continue; /* more to send: go on until EAGAIN */
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

static void ep_perform(nc_queue *q, nc_handle *h, nc_waiter *w)
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

static int ep_start(nc_queue *q, nc_handle *h, nc_op *op)
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

static void ep_close(nc_queue *q, nc_handle *h)
{
    /* Deregister before close: a dup()ed descriptor elsewhere would keep
     * the registration alive and deliver events for a dead handle. */
    epoll_ctl(STATE(q)->epfd, EPOLL_CTL_DEL, h->sock, NULL);
    close(h->sock);
    nc_cancel_all(q, h);
    if (STATE(q)->nstarved || STATE(q)->overflow)
        wake_starved(q);
}

static int ep_connect(nc_queue *q, const struct sockaddr *addr, int addrlen, nc_op *op)
{
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
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
    int rc = ep_attach(q, h);
    if (rc < 0 || err) {
        op->result = 0;
        nc_complete(q, nc_opq_pop(&h->txq), rc < 0 ? rc : -err);
        nc_handle_close(q, h);
        return 0;
    }
    if (r == 0) {
        h->writable = 1;
        nc_mark_ready(q, h);
    }
    return 0;
}

static int ep_poll(nc_queue *q, int timeout_ms)
{
    ep_state *st = STATE(q);
    struct epoll_event evs[EVENTS_PER_POLL];
    if (st->retry_at) {
        uint64_t now = nc_now_ms();
        int left = st->retry_at > now ? (int)(st->retry_at - now) : 0;
        if (timeout_ms < 0 || left < timeout_ms)
            timeout_ms = left;
    }
    int n;
    if (timeout_ms == 0) {
        n = epoll_wait(st->epfd, evs, EVENTS_PER_POLL, 0);
    } else {
        nc_poll_begin(q);
        n = epoll_wait(st->epfd, evs, EVENTS_PER_POLL, timeout_ms);
        nc_poll_end(q);
    }
    if (n < 0)
        return errno == EINTR ? NC_E_INTR : -errno;
    for (int i = 0; i < n; i++) {
        uint32_t e = evs[i].events;
        if (evs[i].data.u64 == WAKE_ID) {
            uint64_t v;
            if (read(st->evfd, &v, sizeof v) < 0) {
                /* EAGAIN: another waiter already drained it */
            }
            nc_woken(q);
            continue;
        }
        /* A stale id (closed, maybe reused fd) finds no handle. */
        nc_handle *h = nc_lookup(q, evs[i].data.u64);
        if (!h)
            continue;
        if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            h->readable = 1;
        if (e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            h->hup = 1;
        if (e & (EPOLLOUT | EPOLLHUP | EPOLLERR))
            h->writable = 1;
        if (h->rxq.head || h->txq.head)
            nc_mark_ready(q, h);
    }
    if (st->retry_at && nc_now_ms() >= st->retry_at)
        wake_starved(q);
    return 0;
}

static void ep_wake(nc_queue *q)
{
    uint64_t one = 1;
    if (write(STATE(q)->evfd, &one, sizeof one) < 0) {
        /* EAGAIN: the counter is already non-zero, a wake is pending */
    }
}

const nc_backend nc_backend_epoll = {
    .name = "epoll",
    .available = ep_available,
    .init = ep_init,
    .destroy = ep_destroy,
    .attach = ep_attach,
    .start = ep_start,
    .close = ep_close,
    .free_handle = NULL,
    .poll = ep_poll,
    .perform = ep_perform,
    .wake = ep_wake,
    .connect = ep_connect,
};
