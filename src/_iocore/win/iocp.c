/* win/iocp.c: the completion queue on an I/O completion port.
 *
 * Every overlapped call the kernel owns is an io_req (OVERLAPPED first).
 * A req holds a reference on its handle and a pin on its socket, and is
 * counted in `outstanding`, so the socket is closed only once the kernel
 * has handed every request on it back, and destroy() drains the port.
 *
 * - accept:  AcceptEx, up to MAX_ACCEPTS posted per listener while accept
 *            ops wait; SO_UPDATE_ACCEPT_CONTEXT on completion.
 * - connect: ConnectEx on a socket bound to the wildcard address.
 * - send:    one overlapped WSASend at a time per connection over the op's
 *            slices (core/cursor.h), re-issued until every byte is out.
 * - recv:    no buffer is pinned per idle connection (libuv, Asio): a
 *            zero-byte overlapped WSARecv says "readable", then a waiter
 *            reads non-blockingly into its arena, as on Linux.
 *
 * No Winsock call is made under the queue lock: what to post is decided
 * under it (kick), the calls are made without it, and packets are first
 * looked at without it (their errors, the accept/connect context calls),
 * then applied under it.  Close cancels with CancelIoEx; ops not in the
 * kernel complete with NC_CANCELLED at once, a send whose buffers the
 * kernel holds when its request comes back, so the caller never frees a
 * buffer the kernel may still read.
 */
#include "../core/cursor.h"
#include "../core/queue.h"
#include "../core/sock.h"
#include "wsa.h"

#include <limits.h>
#include <mswsock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ws2tcpip.h>

#define ENTRIES_PER_POLL 128
#define MAX_ACCEPTS 8
#define MAX_SEND_BUFS 64
#define MAX_RECV_TASKS 32
#define DRAIN_LIMIT_MS 10000
#define ADDR_ROOM (sizeof(struct sockaddr_storage) + 16) /* AcceptEx wants +16 */

#ifndef SO_UPDATE_CONNECT_CONTEXT
#define SO_UPDATE_CONNECT_CONTEXT 0x7010
#endif

enum req_type { REQ_ACCEPT = 1, REQ_CONNECT, REQ_POLL, REQ_SEND };

typedef struct io_req {
    OVERLAPPED ov;          /* first: a packet's OVERLAPPED* is the req */
    int type;
    nc_handle *h;           /* referenced and pinned until processed */
    nc_op *op;              /* SEND: the op whose buffers the kernel holds */
    SOCKET accepted;        /* ACCEPT: the socket AcceptEx fills */
    DWORD err;              /* the packet's error, read before the lock */
    DWORD nbytes;
    char addrs[2 * ADDR_ROOM];
    int nbufs;
    WSABUF bufs[];          /* SEND */
} io_req;

typedef struct iocp_handle {
    int family;
    int accepts;            /* AcceptEx requests made or being made */
    int polling;            /* a zero-byte read is (being) posted */
    io_req *send;           /* the WSASend in the kernel, if any */
    int cancel;             /* closed with requests out: CancelIoEx them */
} iocp_handle;

typedef struct iocp_state {
    HANDLE port;
    long outstanding;       /* reqs not yet freed (lock held) */
} iocp_state;

#define STATE(q) ((iocp_state *)(q)->be_state)
#define HSTATE(h) ((iocp_handle *)(h)->be)

static LPFN_ACCEPTEX accept_ex;
static LPFN_CONNECTEX connect_ex;

/* Extension functions come from the provider, via any socket of it. */
static const GUID accept_ex_guid = WSAID_ACCEPTEX;
static const GUID connect_ex_guid = WSAID_CONNECTEX;

static void *load_ext(SOCKET s, const GUID *guid)
{
    void *fn = NULL;
    DWORD n = 0;
    if (WSAIoctl(s, SIO_GET_EXTENSION_FUNCTION_POINTER, (void *)guid, sizeof *guid, &fn, sizeof fn,
                 &n, NULL, NULL) != 0)
        return NULL;
    return fn;
}

/* ------------------------------------------------------------- requests */

/* Lock held. */
static io_req *req_new(nc_queue *q, nc_handle *h, int type, int nbufs)
{
    io_req *r = calloc(1, sizeof *r + (size_t)nbufs * sizeof(WSABUF));
    if (!r)
        return NULL;
    r->type = type;
    r->h = h;
    r->accepted = INVALID_SOCKET;
    r->nbufs = nbufs;
    nc_handle_ref(h);
    nc_pin(h);
    STATE(q)->outstanding++;
    return r;
}

/* Lock held. */
static void req_free(nc_queue *q, io_req *r)
{
    STATE(q)->outstanding--;
    nc_unpin(q, r->h);
    nc_handle_unref(q, r->h);
    free(r);
}

/* The Win32 error a finished request carries (0: success); lock dropped,
 * the socket pinned by the request. */
static DWORD req_error(io_req *r)
{
    if (r->ov.Internal == 0)
        return 0;
    DWORD n, flags;
    if (WSAGetOverlappedResult(r->h->sock, &r->ov, &n, FALSE, &flags))
        return 0;
    return (DWORD)WSAGetLastError();
}

/* r->err holds a Win32/Winsock error, or a status negated (for a status
 * s, nc_win_status(-s) is s again). */
static int packet_status(const io_req *r)
{
    return nc_win_status(r->err);
}

/* A call that failed right away or is running: 1 if a packet will come. */
static int pending_or_done(int ok)
{
    return ok || WSAGetLastError() == WSA_IO_PENDING;
}

static int associate(nc_queue *q, SOCKET s)
{
    if (!CreateIoCompletionPort((HANDLE)s, STATE(q)->port, 0, 0))
        return nc_win_status(GetLastError());
    return 0;
}

static int count_ops(const nc_opq *qq)
{
    int n = 0;
    for (nc_op *op = qq->head; op; op = op->next)
        n++;
    return n;
}

/* Lock held: h has kernel work to start; a kick after the lock is dropped
 * does it (out of memory: the ready list, for a waiter's perform). */
static void need_kick(nc_queue *q, nc_handle *h)
{
    if (nc_defer_kick(q, h, 0) < 0)
        nc_mark_ready(q, h);
}

/* ------------------------------------------------------------------ kick */

/* What one kick posts, decided under the lock.  Once a call is made its
 * request belongs to the packet (another thread may free it at once), so
 * how each call went is kept here: 0 if its packet will come, else the
 * status of the failure. */
typedef struct plan {
    io_req *acc[MAX_ACCEPTS];
    int acc_rc[MAX_ACCEPTS];
    SOCKET acc_sock[MAX_ACCEPTS];
    int naccept;
    io_req *send;
    int send_rc;
    nc_op *now;             /* a quiet send tried at once (TX claimed), non-blocking */
    int now_sent, now_rc;
    io_req *poll;
    int poll_rc;
    int shutdown;           /* the txq head is a shutdown, TX claimed */
    int shutdown_rc;
    int cancel;             /* CancelIoEx, h's socket pinned */
} plan;

/* Lock held: what h needs from the kernel now.  0 if nothing. */
static int make_plan(nc_queue *q, nc_handle *h, plan *p)
{
    iocp_handle *hs = HSTATE(h);
    memset(p, 0, sizeof *p);
    if (!hs)
        return 0;
    if (h->closed) {
        if (hs->cancel && h->sock != NC_NO_SOCK) {
            hs->cancel = 0;
            p->cancel = 1;
            nc_pin(h);
        }
        return p->cancel;
    }
    if (h->kind == NC_LISTENER) {
        int want = count_ops(&h->rxq);
        while (hs->accepts < want && hs->accepts < MAX_ACCEPTS) {
            io_req *r = req_new(q, h, REQ_ACCEPT, 0);
            if (!r) {
                nc_complete(q, nc_opq_pop(&h->rxq), NC_E_NOMEM);
                want--;
                continue;
            }
            p->acc[p->naccept++] = r;
            hs->accepts++;
        }
        return p->naccept;
    }
    if (h->kind != NC_CONN)
        return 0;
    nc_op *op;
    while (!hs->send && !(h->busy & NC_BUSY_TX) && (op = h->txq.head)) {
        if (op->kind == NC_OP_SHUTDOWN) { /* every send before it is out */
            nc_claim(h, NC_BUSY_TX);
            p->shutdown = 1;
            break;
        }
        nc_buf slices[MAX_SEND_BUFS];
        int n = nc_send_slices(op, slices, MAX_SEND_BUFS);
        if (n == 0) {
            nc_complete(q, nc_opq_pop(&h->txq), 0);
            continue;
        }
        if (op->quiet && !op->tried) {
            /* NC_SEND_QUIET: a plain non-blocking send first, as the
             * poll-based backends make; an overlapped one for the rest */
            nc_claim(h, NC_BUSY_TX);
            p->now = op;
            break;
        }
        io_req *r = req_new(q, h, REQ_SEND, n);
        if (!r) {
            nc_complete(q, nc_opq_pop(&h->txq), NC_E_NOMEM);
            continue;
        }
        for (int i = 0; i < n; i++) {
            r->bufs[i].buf = (char *)slices[i].base;
            r->bufs[i].len = slices[i].len > 0x7fffffff ? 0x7fffffff : (ULONG)slices[i].len;
        }
        r->op = op;
        hs->send = r;
        p->send = r;
    }
    if (h->rxq.head && !h->readable && !hs->polling) {
        io_req *r = req_new(q, h, REQ_POLL, 0);
        if (r) {
            hs->polling = 1;
            p->poll = r;
        } else {
            nc_complete(q, nc_opq_pop(&h->rxq), NC_E_NOMEM);
        }
    } else if (h->rxq.head && h->readable) {
        nc_mark_ready(q, h); /* a waiter reads it */
    }
    return p->naccept || p->send || p->now || p->poll || p->shutdown;
}

/* Lock dropped: the calls. */
static void run_plan(nc_handle *h, plan *p)
{
    if (p->cancel)
        CancelIoEx((HANDLE)h->sock, NULL);
    for (int i = 0; i < p->naccept; i++) {
        io_req *r = p->acc[i];
        SOCKET s = nc_win_socket(HSTATE(h)->family, &p->acc_rc[i]);
        p->acc_sock[i] = s;
        if (s == INVALID_SOCKET)
            continue;
        r->accepted = s;
        DWORD n;
        BOOL ok = accept_ex(h->sock, s, r->addrs, 0, ADDR_ROOM, ADDR_ROOM, &n, &r->ov);
        p->acc_rc[i] = pending_or_done(ok) ? 0 : nc_sock_error();
    }
    if (p->send) {
        io_req *r = p->send;
        int ok = WSASend(h->sock, r->bufs, (DWORD)r->nbufs, NULL, 0, &r->ov, NULL) == 0;
        p->send_rc = pending_or_done(ok) ? 0 : nc_sock_error();
    }
    if (p->now) {
        nc_buf slices[MAX_SEND_BUFS];
        WSABUF bufs[MAX_SEND_BUFS];
        int n = nc_send_slices(p->now, slices, MAX_SEND_BUFS);
        for (int i = 0; i < n; i++) {
            bufs[i].buf = (char *)slices[i].base;
            bufs[i].len = slices[i].len > 0x7fffffff ? 0x7fffffff : (ULONG)slices[i].len;
        }
        DWORD sent = 0;
        int rc = WSASend(h->sock, bufs, (DWORD)n, &sent, 0, NULL, NULL);
        int err = rc == 0 ? 0 : WSAGetLastError();
        p->now_sent = err ? 0 : (int)sent;
        p->now_rc = err == WSAEWOULDBLOCK ? 0 : err ? nc_win_status((DWORD)err) : 0;
    }
    if (p->shutdown)
        p->shutdown_rc = nc_sock_shutdown_write(h->sock);
    if (p->poll) {
        WSABUF none = {0, NULL};
        DWORD flags = 0;
        int ok = WSARecv(h->sock, &none, 1, NULL, &flags, &p->poll->ov, NULL) == 0;
        p->poll_rc = pending_or_done(ok) ? 0 : nc_sock_error();
    }
}

/* Lock held again: calls that failed at once send no packet, so their
 * requests are still ours to undo. */
static void finish_plan(nc_queue *q, nc_handle *h, plan *p)
{
    iocp_handle *hs = HSTATE(h);
    int issued = 0;
    if (p->cancel)
        nc_unpin(q, h);
    for (int i = 0; i < p->naccept; i++) {
        if (p->acc_rc[i] == 0) {
            issued = 1;
            continue;
        }
        if (p->acc_sock[i] != INVALID_SOCKET)
            nc_defer_release(q, p->acc_sock[i]);
        hs->accepts--;
        if (!h->closed && h->rxq.head)
            nc_complete(q, nc_opq_pop(&h->rxq), p->acc_rc[i]);
        req_free(q, p->acc[i]);
    }
    if (p->send) {
        if (p->send_rc == 0) {
            issued = 1;
        } else {
            io_req *r = p->send;
            hs->send = NULL;
            /* Closed meanwhile: close left the op to this request. */
            nc_op *op = h->closed ? r->op : nc_opq_pop(&h->txq);
            nc_complete(q, op, h->closed ? NC_CANCELLED : p->send_rc);
            req_free(q, r);
        }
    }
    if (p->now) {
        nc_op *op = p->now;
        nc_unclaim(q, h, NC_BUSY_TX);
        op->tried = 1;
        int done = nc_send_advance(op, (size_t)p->now_sent);
        if (h->closed || p->now_rc || done) /* all out: a quiet send is not reported */
            nc_complete(q, nc_opq_pop(&h->txq), h->closed ? NC_CANCELLED : p->now_rc);
    }
    if (p->shutdown) {
        nc_unclaim(q, h, NC_BUSY_TX);
        nc_complete(q, nc_opq_pop(&h->txq), h->closed ? NC_CANCELLED : p->shutdown_rc);
    }
    if (p->poll) {
        if (p->poll_rc == 0) {
            issued = 1;
        } else {
            hs->polling = 0;
            if (!h->closed && h->rxq.head)
                nc_complete(q, nc_opq_pop(&h->rxq), p->poll_rc);
            req_free(q, p->poll);
        }
    }
    if (issued && h->closed)
        hs->cancel = 1; /* posted after the close's cancel: cancel again */
}

static void iocp_kick(nc_queue *q, nc_handle *h, unsigned what)
{
    (void)what;
    plan p;
    nc_lock(&q->lock);
    while (make_plan(q, h, &p)) {
        nc_unlock_q(q);
        run_plan(h, &p);
        nc_lock(&q->lock);
        finish_plan(q, h, &p);
    }
    nc_handle_unref(q, h);
    nc_unlock_q(q);
}

/* -------------------------------------------------------------- connect */

static int iocp_connect(nc_queue *q, const struct sockaddr *addr, int addrlen, nc_op *op)
{
    int rc;
    SOCKET s = nc_win_socket(addr->sa_family, &rc);
    if (s == INVALID_SOCKET)
        return rc;
    /* ConnectEx only works on a bound socket. */
    struct sockaddr_storage any;
    memset(&any, 0, sizeof any);
    any.ss_family = addr->sa_family;
    int anylen = addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (bind(s, (struct sockaddr *)&any, anylen) != 0) {
        rc = nc_sock_error();
        closesocket(s);
        return rc;
    }
    if (!connect_ex)
        connect_ex = (LPFN_CONNECTEX)load_ext(s, &connect_ex_guid);
    if (!connect_ex) {
        closesocket(s);
        return NC_ERR(EOPNOTSUPP);
    }
    BOOL one = TRUE;
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, (const char *)&one, sizeof one);
    nc_lock(&q->lock);
    nc_handle *h = q->closing ? NULL : nc_handle_new(q, s, NC_CONNECTING);
    if (!h) {
        rc = q->closing ? NC_E_CLOSED : NC_E_NOMEM;
        nc_unlock_q(q);
        closesocket(s);
        return rc;
    }
    op->result = h->id;
    nc_op_attach(h, &h->txq, op);
    nc_pin(h); /* nobody knows h yet; the calls below use its socket */
    nc_handle_ref(h); /* its packet may close it before we are done */
    nc_unlock_q(q);
    rc = q->be->attach(q, h);
    nc_lock(&q->lock);
    io_req *r = rc < 0 ? NULL : req_new(q, h, REQ_CONNECT, 0);
    if (rc == 0 && !r)
        rc = NC_E_NOMEM;
    nc_unlock_q(q);
    if (r && !pending_or_done(connect_ex(s, addr, addrlen, NULL, 0, NULL, &r->ov)))
        rc = nc_sock_error();
    nc_lock(&q->lock);
    nc_unpin(q, h);
    if (rc < 0) {
        /* Reported as a completion, as on Linux for an immediate failure. */
        if (r)
            req_free(q, r);
        op->result = 0;
        nc_complete(q, nc_opq_pop(&h->txq), rc);
        nc_handle_close(q, h);
    }
    nc_handle_unref(q, h);
    nc_unlock_q(q);
    return 0;
}

/* --------------------------------------------------------------- packets */

/* Lock dropped: what a packet needs from Winsock before it is applied. */
static void prepare_packet(nc_queue *q, io_req *r, DWORD nbytes)
{
    r->nbytes = nbytes;
    r->err = req_error(r);
    if (r->err)
        return;
    if (r->type == REQ_ACCEPT) {
        SOCKET s = r->accepted, lst = r->h->sock;
        if (setsockopt(s, SOL_SOCKET, SO_UPDATE_ACCEPT_CONTEXT, (const char *)&lst, sizeof lst) != 0) {
            r->err = (DWORD)WSAGetLastError();
            return;
        }
        BOOL one = TRUE;
        setsockopt(s, IPPROTO_TCP, TCP_NODELAY, (const char *)&one, sizeof one);
        int rc = associate(q, s);
        if (rc < 0)
            r->err = (DWORD)-rc;
    } else if (r->type == REQ_CONNECT) {
        if (setsockopt(r->h->sock, SOL_SOCKET, SO_UPDATE_CONNECT_CONTEXT, NULL, 0) != 0)
            r->err = (DWORD)WSAGetLastError();
    }
}

static void on_accept(nc_queue *q, io_req *r)
{
    nc_handle *lst = r->h;
    SOCKET s = r->accepted;
    HSTATE(lst)->accepts--;
    nc_op *op = lst->rxq.head;
    int status = packet_status(r);
    nc_handle *h = NULL;
    if (lst->closed || !op || status < 0) {
        nc_defer_release(q, s);
        /* A client that gave up before we got it (Linux never shows
         * those) is no failure of the accept: post another. */
        if (!lst->closed && op && status != NC_ECONNRESET && status != NC_CANCELLED)
            nc_complete(q, nc_opq_pop(&lst->rxq), status);
    } else if (!(h = nc_handle_new(q, s, NC_CONN)) || !(h->be = calloc(1, sizeof(iocp_handle)))) {
        if (h)
            nc_handle_close(q, h); /* releases s */
        else
            nc_defer_release(q, s);
        nc_complete(q, nc_opq_pop(&lst->rxq), NC_E_NOMEM);
    } else {
        HSTATE(h)->family = HSTATE(lst)->family;
        h->readable = 1; /* data may already be there: try a read first */
        nc_opq_pop(&lst->rxq);
        op->result = h->id;
        nc_complete(q, op, 0);
    }
    if (!lst->closed && lst->rxq.head)
        need_kick(q, lst);
}

static void on_connect(nc_queue *q, io_req *r)
{
    nc_handle *h = r->h;
    if (h->closed)
        return; /* its op was cancelled by close */
    nc_op *op = nc_opq_pop(&h->txq);
    int status = packet_status(r);
    if (status < 0) {
        op->result = 0;
        nc_complete(q, op, status);
        nc_handle_close(q, h); /* nobody else knows this handle yet */
        return;
    }
    h->kind = NC_CONN;
    h->readable = 1;
    nc_complete(q, op, 0);
}

static void on_poll(nc_queue *q, io_req *r)
{
    nc_handle *h = r->h;
    HSTATE(h)->polling = 0;
    if (h->closed)
        return;
    /* A failed zero-byte read has consumed the socket's error (a reset):
     * report it, a direct read would now only see EOF. */
    int status = packet_status(r);
    if (status < 0 && status != NC_CANCELLED && h->rxq.head && !(h->busy & NC_BUSY_RX)) {
        nc_complete(q, nc_opq_pop(&h->rxq), status);
        return;
    }
    /* Data or EOF: the next direct read says which. */
    h->readable = 1;
    if (h->rxq.head)
        nc_mark_ready(q, h);
}

static void on_send(nc_queue *q, io_req *r)
{
    nc_handle *h = r->h;
    nc_op *op = r->op;
    HSTATE(h)->send = NULL;
    if (h->closed) {
        /* close() took op off txq and left it to us: the kernel is done
         * with its buffers only now. */
        nc_complete(q, op, NC_CANCELLED);
        return;
    }
    int status = packet_status(r);
    if (status < 0)
        nc_complete(q, nc_opq_pop(&h->txq), status);
    else if (nc_send_advance(op, r->nbytes))
        nc_complete(q, nc_opq_pop(&h->txq), 0);
    if (h->txq.head)
        need_kick(q, h); /* the rest of op, or the next one */
}

/* Lock held. */
static void apply_packet(nc_queue *q, io_req *r)
{
    switch (r->type) {
    case REQ_ACCEPT:
        on_accept(q, r);
        break;
    case REQ_CONNECT:
        on_connect(q, r);
        break;
    case REQ_POLL:
        on_poll(q, r);
        break;
    case REQ_SEND:
        on_send(q, r);
        break;
    }
    req_free(q, r);
}

/* Takes up to one batch of packets off the port and applies them; the
 * lock is held on entry and return, dropped for the system calls.  <0 on
 * error, else the count. */
static int take_packets(nc_queue *q, DWORD timeout_ms)
{
    OVERLAPPED_ENTRY ents[ENTRIES_PER_POLL];
    ULONG n = 0;
    if (timeout_ms)
        nc_poll_begin(q);
    else
        nc_unlock_q(q);
    BOOL ok = GetQueuedCompletionStatusEx(STATE(q)->port, ents, ENTRIES_PER_POLL, &n, timeout_ms, FALSE);
    DWORD err = ok ? 0 : GetLastError();
    if (ok)
        for (ULONG i = 0; i < n; i++)
            if (ents[i].lpOverlapped)
                prepare_packet(q, (io_req *)ents[i].lpOverlapped, ents[i].dwNumberOfBytesTransferred);
    if (timeout_ms)
        nc_poll_end(q);
    else
        nc_lock(&q->lock);
    if (!ok)
        return err == WAIT_TIMEOUT ? 0 : nc_win_status(err);
    for (ULONG i = 0; i < n; i++) {
        if (ents[i].lpOverlapped)
            apply_packet(q, (io_req *)ents[i].lpOverlapped);
        else
            nc_woken(q); /* a wake() packet */
    }
    return (int)n;
}

static int iocp_poll(nc_queue *q, nc_waiter *w, int timeout_ms)
{
    (void)w;
    int rc = take_packets(q, timeout_ms < 0 ? INFINITE : (DWORD)timeout_ms);
    return rc < 0 ? rc : 0;
}

/* ---------------------------------------------------------- direct reads */

typedef struct recv_task {
    nc_handle *h;
    int new_hold;
    size_t want;
    char *buf;
    int n;                  /* bytes, or SOCKET_ERROR */
    int err;
} recv_task;

/* Lock held: reads for the ready connections (dropping the lock for the
 * recv calls); whatever else they need goes to a kick. */
static void iocp_perform(nc_queue *q, nc_waiter *w)
{
    long budget = q->nready; /* what is ready now, once */
    nc_handle *hs[MAX_RECV_TASKS];
    int nh;
    while ((nh = nc_take_ready(q, w, hs, MAX_RECV_TASKS, &budget)) > 0) {
        recv_task t[MAX_RECV_TASKS];
        int nt = 0, room = nc_batch_room(w);
        for (int j = 0; j < nh; j++) {
            nc_handle *h = hs[j];
            int fresh = h->holder == NULL;
            if (h->closed || (h->holder && h->holder != w)) {
                nc_mark_ready(q, h);
            } else if (h->kind == NC_CONN && h->rxq.head && h->readable && !(h->busy & NC_BUSY_RX)) {
                if (room > 0 && nc_hold(q, w, h) == 0 && nc_claim(h, NC_BUSY_RX)) {
                    t[nt++] = (recv_task){h, fresh, h->rxq.head->nbytes, NULL, 0, 0};
                    nc_handle_ref(h);
                    room--;
                } else {
                    nc_mark_ready(q, h);
                }
            } else {
                need_kick(q, h);
            }
            nc_handle_unref(q, h);
        }
        if (!nt)
            continue;
        nc_unlock_q(q);
        for (int i = 0; i < nt; i++) {
            size_t len;
            recv_task *k = &t[i];
            if (!(k->buf = nc_arena_take(w, k->want, &len)))
                continue;
            k->n = recv(k->h->sock, k->buf, len > INT_MAX ? INT_MAX : (int)len, 0);
            if (k->n == SOCKET_ERROR)
                k->err = WSAGetLastError();
            else
                nc_arena_used(w, (size_t)k->n);
            /* A short read drained the socket.  Unlike an epoll edge, a
             * zero-byte read posted later still sees data, EOF or reset. */
            if (k->n > 0 && (size_t)k->n < len)
                k->err = WSAEWOULDBLOCK;
        }
        nc_lock(&q->lock);
        for (int i = 0; i < nt; i++) {
            recv_task *k = &t[i];
            nc_handle *h = k->h;
            nc_unclaim(q, h, NC_BUSY_RX);
            int got = k->buf && (k->n > 0 || k->err != WSAEWOULDBLOCK);
            if (k->err == WSAEWOULDBLOCK)
                h->readable = 0;
            if (got) {
                int status = k->n == SOCKET_ERROR && k->err != WSAEWOULDBLOCK
                                 ? nc_win_status((DWORD)k->err) : 0;
                size_t n = status ? 0 : (size_t)k->n;
                nc_complete_recv(q, w, nc_recv_take(q, h, status, n), status,
                                 status ? NULL : k->buf, n);
            } else if (h->closed) {
                nc_complete_recv(q, w, nc_opq_pop(&h->rxq), NC_CANCELLED, NULL, 0);
            } else {
                if (k->new_hold)
                    nc_unhold(q, w, h);
                if (!k->buf)
                    nc_mark_ready(q, h); /* no room: a later batch */
                nc_recv_settle(q, h);
            }
            if (!h->closed && h->rxq.head && !h->readable)
                need_kick(q, h); /* ran dry: post a zero-byte read */
            else if (!h->closed && h->rxq.head)
                nc_mark_ready(q, h); /* a multishot recv reads on */
            nc_handle_unref(q, h);
        }
    }
}

/* -------------------------------------------------------------- backend */

static int iocp_probe(char *why, size_t whylen)
{
    int rc = nc_win_startup();
    if (rc < 0 && whylen)
        snprintf(why, whylen, "WSAStartup failed (%d)", rc);
    return rc;
}

static int iocp_init(nc_queue *q)
{
    int rc = nc_win_startup();
    if (rc < 0)
        return rc;
    iocp_state *st = calloc(1, sizeof *st);
    if (!st)
        return NC_E_NOMEM;
    st->port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    if (!st->port) {
        rc = nc_win_status(GetLastError());
        free(st);
        return rc;
    }
    q->be_state = st;
    return 0;
}

/* No lock: h is pinned and known to nobody else. */
static int iocp_attach(nc_queue *q, nc_handle *h)
{
    iocp_handle *hs = calloc(1, sizeof *hs);
    if (!hs)
        return NC_E_NOMEM;
    h->be = hs;
    struct sockaddr_storage ss;
    int len = (int)sizeof ss;
    hs->family = getsockname(h->sock, (struct sockaddr *)&ss, &len) == 0 ? ss.ss_family : AF_INET;
    if (h->kind == NC_LISTENER && !accept_ex) {
        accept_ex = (LPFN_ACCEPTEX)load_ext(h->sock, &accept_ex_guid);
        if (!accept_ex)
            return NC_ERR(EOPNOTSUPP);
    }
    return associate(q, h->sock);
}

static void iocp_free_handle(nc_queue *q, nc_handle *h)
{
    (void)q;
    free(h->be);
    h->be = NULL;
}

static void iocp_start(nc_queue *q, nc_handle *h, nc_op *op)
{
    iocp_handle *hs = HSTATE(h);
    switch (op->kind) {
    case NC_OP_ACCEPT:
        if (hs->accepts < MAX_ACCEPTS)
            need_kick(q, h);
        break;
    case NC_OP_SEND:
    case NC_OP_SHUTDOWN:
        if (!hs->send && !(h->busy & NC_BUSY_TX) && h->txq.head == op)
            need_kick(q, h);
        break;
    case NC_OP_RECV:
        if (h->readable)
            nc_mark_ready(q, h);
        else if (!hs->polling)
            need_kick(q, h);
        break;
    }
}

static void iocp_close(nc_queue *q, nc_handle *h)
{
    iocp_handle *hs = HSTATE(h);
    if (hs && hs->send && h->txq.head == hs->send->op)
        nc_opq_pop(&h->txq); /* completes when its request comes back */
    nc_cancel_all(q, h);
    if (hs && (hs->accepts || hs->polling || hs->send || h->kind == NC_CONNECTING)) {
        hs->cancel = 1; /* the kernel has requests on it: CancelIoEx */
        need_kick(q, h);
    }
}

static void iocp_release(nc_queue *q, nc_sock_t s)
{
    (void)q;
    closesocket(s);
}

static void iocp_wake(nc_queue *q)
{
    PostQueuedCompletionStatus(STATE(q)->port, 0, 0, NULL);
}

static void iocp_destroy(nc_queue *q)
{
    iocp_state *st = STATE(q);
    /* Every handle is closed and its I/O cancelled; the kernel still owns
     * the OVERLAPPEDs until their packets are taken (CPython's
     * IocpProactor.close does the same). */
    uint64_t give_up = nc_now_ms() + DRAIN_LIMIT_MS;
    nc_lock(&q->lock);
    while (st->outstanding > 0 && nc_now_ms() < give_up)
        if (take_packets(q, 100) < 0)
            break;
    long left = st->outstanding;
    nc_unlock_q(q);
    if (left > 0) {
        /* Freeing now could let the kernel write into freed memory;
         * leaking the port and the requests is the lesser harm. */
        q->be_state = NULL;
        return;
    }
    CloseHandle(st->port);
    free(st);
    q->be_state = NULL;
}

const nc_backend nc_backend_iocp = {
    .name = "iocp",
    .impl = NULL,
    .probe = iocp_probe,
    .init = iocp_init,
    .destroy = iocp_destroy,
    .attach = iocp_attach,
    .start = iocp_start,
    .close = iocp_close,
    .release = iocp_release,
    .free_handle = iocp_free_handle,
    .poll = iocp_poll,
    .perform = iocp_perform,
    .kick = iocp_kick,
    .wake = iocp_wake,
    .connect = iocp_connect,
    .resume_accept = NULL, /* AcceptEx sockets are made before the accept */
    .recycle = NULL,
    .stats = NULL,
};
