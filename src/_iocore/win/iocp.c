/* win/iocp.c: the completion queue on an I/O completion port.
 *
 * Every overlapped call the kernel owns is an io_req (OVERLAPPED first).
 * A req holds a reference on its handle and is counted in `outstanding`,
 * so neither outlives the other and destroy() can drain the port until
 * the kernel has handed every OVERLAPPED back.
 *
 * - accept:  AcceptEx, up to MAX_ACCEPTS posted per listener while accept
 *            ops wait; SO_UPDATE_ACCEPT_CONTEXT on completion.
 * - connect: ConnectEx on a socket bound to the wildcard address.
 * - send:    one overlapped WSASend at a time per connection over the op's
 *            nc_buf array, re-issued until every byte is out.
 * - recv:    no buffer is pinned per idle connection (libuv, Asio): a
 *            zero-byte overlapped WSARecv says "readable", then perform()
 *            reads non-blockingly into the waiter's arena, as epoll does.
 *
 * Close cancels with CancelIoEx.  Ops not in the kernel complete with
 * NC_CANCELLED at once; a send whose buffers the kernel holds completes
 * with NC_CANCELLED when its request comes back, so the caller never frees
 * a buffer the kernel may still read.  Any packet for a closed handle only
 * releases its request.
 */
#include "../core/cursor.h"
#include "../core/queue.h"
#include "../core/sock.h"
#include "wsa.h"

#include <limits.h>
#include <mswsock.h>
#include <stdlib.h>
#include <ws2tcpip.h>

#define ENTRIES_PER_POLL 128
#define MAX_ACCEPTS 8
#define MAX_SEND_BUFS 64
#define DRAIN_LIMIT_MS 10000
#define ADDR_ROOM (sizeof(struct sockaddr_storage) + 16) /* AcceptEx wants +16 */

#ifndef SO_UPDATE_CONNECT_CONTEXT
#define SO_UPDATE_CONNECT_CONTEXT 0x7010
#endif

enum req_type { REQ_ACCEPT = 1, REQ_CONNECT, REQ_POLL, REQ_SEND };

typedef struct io_req {
    OVERLAPPED ov;          /* first: a packet's OVERLAPPED* is the req */
    int type;
    nc_handle *h;           /* referenced until the packet is processed */
    nc_op *op;              /* SEND: the op whose buffers the kernel holds */
    SOCKET accepted;        /* ACCEPT: the socket AcceptEx fills */
    char addrs[2 * ADDR_ROOM];
    WSABUF bufs[];          /* SEND */
} io_req;

typedef struct iocp_handle {
    int family;
    int accepts;            /* AcceptEx calls in the kernel */
    int polling;            /* a zero-byte read is in the kernel */
    io_req *send;           /* the WSASend in the kernel, if any */
} iocp_handle;

typedef struct iocp_state {
    HANDLE port;
    long outstanding;       /* reqs the kernel owns */
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

static io_req *req_new(nc_queue *q, nc_handle *h, int type, int nbufs)
{
    io_req *r = calloc(1, sizeof *r + (size_t)nbufs * sizeof(WSABUF));
    if (!r)
        return NULL;
    r->type = type;
    r->h = h;
    r->accepted = INVALID_SOCKET;
    nc_handle_ref(h);
    STATE(q)->outstanding++;
    return r;
}

static void req_free(nc_queue *q, io_req *r)
{
    STATE(q)->outstanding--;
    nc_handle_unref(q, r->h);
    free(r);
}

/* The Win32 error a finished request carries (0: success). */
static DWORD req_error(io_req *r, SOCKET s)
{
    if (r->ov.Internal == 0)
        return 0;
    DWORD n, flags;
    if (WSAGetOverlappedResult(s, &r->ov, &n, FALSE, &flags))
        return 0;
    return (DWORD)WSAGetLastError();
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

/* --------------------------------------------------------------- accept */

static int count_ops(const nc_opq *qq)
{
    int n = 0;
    for (nc_op *op = qq->head; op; op = op->next)
        n++;
    return n;
}

/* Keeps one AcceptEx posted per waiting accept op, up to MAX_ACCEPTS. */
static void post_accepts(nc_queue *q, nc_handle *lst)
{
    iocp_handle *hs = HSTATE(lst);
    int want = count_ops(&lst->rxq);
    while (hs->accepts < want && hs->accepts < MAX_ACCEPTS) {
        int rc;
        SOCKET s = nc_win_socket(hs->family, &rc);
        io_req *r = s == INVALID_SOCKET ? NULL : req_new(q, lst, REQ_ACCEPT, 0);
        if (!r) {
            if (s != INVALID_SOCKET)
                closesocket(s);
            nc_complete(q, nc_opq_pop(&lst->rxq), rc < 0 ? rc : NC_E_NOMEM);
            want--;
            continue;
        }
        r->accepted = s;
        DWORD n;
        BOOL ok = accept_ex(lst->sock, s, r->addrs, 0, ADDR_ROOM, ADDR_ROOM, &n, &r->ov);
        if (!pending_or_done(ok)) {
            rc = nc_sock_error();
            closesocket(s);
            req_free(q, r);
            nc_complete(q, nc_opq_pop(&lst->rxq), rc);
            want--;
            continue;
        }
        hs->accepts++;
    }
}

/* Makes s a connection handle; s is closed on failure. */
static int attach_accepted(nc_queue *q, nc_handle *lst, SOCKET s, nc_handle **out)
{
    if (setsockopt(s, SOL_SOCKET, SO_UPDATE_ACCEPT_CONTEXT, (const char *)&lst->sock,
                   sizeof lst->sock) != 0) {
        int rc = nc_sock_error();
        closesocket(s);
        return rc;
    }
    BOOL one = TRUE;
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, (const char *)&one, sizeof one);
    nc_handle *h = nc_handle_new(q, s, NC_CONN);
    if (!h) {
        closesocket(s);
        return NC_E_NOMEM;
    }
    h->readable = 1; /* data may already be there: try a read first */
    int rc = q->be->attach(q, h);
    if (rc < 0) {
        nc_handle_close(q, h); /* closes s */
        return rc;
    }
    *out = h;
    return 0;
}

static void on_accept(nc_queue *q, io_req *r)
{
    nc_handle *lst = r->h;
    SOCKET s = r->accepted;
    if (lst->closed) {
        closesocket(s);
        return;
    }
    HSTATE(lst)->accepts--;
    DWORD err = req_error(r, lst->sock);
    nc_op *op = lst->rxq.head;
    if (!op) {
        closesocket(s); /* cannot happen: posts never exceed waiting ops */
        return;
    }
    int status = nc_win_status(err);
    if (status == NC_ECONNRESET) {
        /* The client gave up before we got it; Linux never shows those. */
        closesocket(s);
    } else if (status < 0) {
        closesocket(s);
        nc_complete(q, nc_opq_pop(&lst->rxq), status);
    } else {
        nc_handle *h = NULL;
        status = attach_accepted(q, lst, s, &h);
        nc_opq_pop(&lst->rxq);
        op->result = status < 0 ? 0 : h->id;
        nc_complete(q, op, status);
    }
    post_accepts(q, lst);
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
    nc_handle *h = nc_handle_new(q, s, NC_CONNECTING);
    if (!h) {
        closesocket(s);
        return NC_E_NOMEM;
    }
    op->result = h->id;
    nc_op_attach(h, &h->txq, op);
    rc = q->be->attach(q, h);
    io_req *r = rc < 0 ? NULL : req_new(q, h, REQ_CONNECT, 0);
    if (rc == 0 && !r)
        rc = NC_E_NOMEM;
    if (r && !pending_or_done(connect_ex(s, addr, addrlen, NULL, 0, NULL, &r->ov))) {
        rc = nc_sock_error();
        req_free(q, r);
    }
    if (rc < 0) {
        /* Reported as a completion, as epoll does for an immediate failure. */
        op->result = 0;
        nc_complete(q, nc_opq_pop(&h->txq), rc);
        nc_handle_close(q, h);
    }
    return 0;
}

static void on_connect(nc_queue *q, io_req *r)
{
    nc_handle *h = r->h;
    if (h->closed)
        return; /* its op was cancelled by close */
    nc_op *op = nc_opq_pop(&h->txq);
    DWORD err = req_error(r, h->sock);
    if (!err && setsockopt(h->sock, SOL_SOCKET, SO_UPDATE_CONNECT_CONTEXT, NULL, 0) != 0)
        err = (DWORD)WSAGetLastError();
    if (err) {
        op->result = 0;
        nc_complete(q, op, nc_win_status(err));
        nc_handle_close(q, h); /* nobody else knows this handle yet */
        return;
    }
    h->kind = NC_CONN;
    h->readable = 1;
    nc_complete(q, op, 0);
    if (h->rxq.head || h->txq.head) /* cannot happen before the id is known */
        nc_mark_ready(q, h);
}

/* ----------------------------------------------------------------- recv */

/* Asks the kernel to tell us when h has data, EOF or an error. */
static void post_poll(nc_queue *q, nc_handle *h)
{
    iocp_handle *hs = HSTATE(h);
    if (hs->polling)
        return;
    io_req *r = req_new(q, h, REQ_POLL, 0);
    if (!r) {
        nc_complete(q, nc_opq_pop(&h->rxq), NC_E_NOMEM);
        return;
    }
    WSABUF none = {0, NULL};
    DWORD flags = 0;
    if (!pending_or_done(WSARecv(h->sock, &none, 1, NULL, &flags, &r->ov, NULL) == 0)) {
        int status = nc_sock_error();
        req_free(q, r);
        nc_complete(q, nc_opq_pop(&h->rxq), status);
        return;
    }
    hs->polling = 1;
}

static void on_poll(nc_queue *q, io_req *r)
{
    nc_handle *h = r->h;
    if (h->closed)
        return;
    HSTATE(h)->polling = 0;
    /* A failed zero-byte read has consumed the socket's error (a reset):
     * report it, a direct read would now only see EOF. */
    int status = nc_win_status(req_error(r, h->sock));
    if (status < 0 && status != NC_CANCELLED && h->rxq.head) {
        nc_complete(q, nc_opq_pop(&h->rxq), status);
        return;
    }
    /* Data or EOF: the next direct read says which. */
    h->readable = 1;
    if (h->rxq.head)
        nc_mark_ready(q, h);
}

static void do_recv(nc_queue *q, nc_handle *h, nc_waiter *w)
{
    size_t len;
    char *buf = nc_recv_space(q, h, w, &len);
    if (!buf)
        return;
    int n = recv(h->sock, buf, len > INT_MAX ? INT_MAX : (int)len, 0);
    if (n == SOCKET_ERROR) {
        int err = WSAGetLastError();
        if (err == WSAEWOULDBLOCK) {
            h->readable = 0;
            post_poll(q, h);
            return;
        }
        nc_complete(q, nc_opq_pop(&h->rxq), nc_win_status((DWORD)err));
        return;
    }
    /* A short read drained the socket.  Unlike an epoll edge, a zero-byte
     * read posted later still sees data, EOF or reset already there. */
    if (n > 0 && (size_t)n < len)
        h->readable = 0;
    nc_complete_recv(q, w, nc_opq_pop(&h->rxq), 0, buf, (size_t)n);
}

/* ----------------------------------------------------------------- send */

/* Starts a WSASend for the op at the head of txq unless one is running;
 * ops with nothing (left) to send complete at once. */
static void issue_send(nc_queue *q, nc_handle *h)
{
    iocp_handle *hs = HSTATE(h);
    nc_op *op;
    while (!hs->send && (op = h->txq.head)) {
        if (op->kind == NC_OP_SHUTDOWN) { /* every send before it is out */
            nc_complete(q, nc_opq_pop(&h->txq), nc_sock_shutdown_write(h->sock));
            continue;
        }
        nc_buf slices[MAX_SEND_BUFS];
        int n = nc_send_slices(op, slices, MAX_SEND_BUFS);
        if (n == 0) {
            nc_complete(q, nc_opq_pop(&h->txq), 0);
            continue;
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
        if (!pending_or_done(WSASend(h->sock, r->bufs, (DWORD)n, NULL, 0, &r->ov, NULL) == 0)) {
            int status = nc_sock_error();
            req_free(q, r);
            nc_complete(q, nc_opq_pop(&h->txq), status);
            continue;
        }
        hs->send = r;
    }
}

static void on_send(nc_queue *q, io_req *r, DWORD nbytes)
{
    nc_handle *h = r->h;
    nc_op *op = r->op;
    if (h->closed) {
        /* close() took op off txq and left it to us: the kernel is done
         * with its buffers only now. */
        nc_complete(q, op, NC_CANCELLED);
        return;
    }
    HSTATE(h)->send = NULL;
    DWORD err = req_error(r, h->sock);
    if (err) {
        nc_complete(q, nc_opq_pop(&h->txq), nc_win_status(err));
    } else if (nc_send_advance(op, nbytes)) {
        nc_complete(q, nc_opq_pop(&h->txq), 0);
    }
    issue_send(q, h); /* the rest of op, or the next one */
}

/* -------------------------------------------------------------- backend */

static int iocp_available(void)
{
    return nc_win_startup() == 0;
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

static int iocp_start(nc_queue *q, nc_handle *h, nc_op *op)
{
    switch (op->kind) {
    case NC_OP_ACCEPT:
        post_accepts(q, h);
        break;
    case NC_OP_SEND:
    case NC_OP_SHUTDOWN:
        issue_send(q, h);
        break;
    case NC_OP_RECV:
        if (h->readable)
            nc_mark_ready(q, h);
        else
            post_poll(q, h);
        break;
    }
    return 0;
}

static void iocp_perform(nc_queue *q, nc_handle *h, nc_waiter *w)
{
    if (h->kind == NC_CONN && h->rxq.head) {
        if (h->readable)
            do_recv(q, h, w);
        else
            post_poll(q, h);
    }
}

static void iocp_close(nc_queue *q, nc_handle *h)
{
    iocp_handle *hs = HSTATE(h);
    if (hs && hs->send)
        nc_opq_pop(&h->txq); /* completes when its request comes back */
    if (hs) /* not yet attached: nothing of it is in the kernel */
        CancelIoEx((HANDLE)h->sock, NULL);
    closesocket(h->sock);
    nc_cancel_all(q, h);
}

static void dispatch(nc_queue *q, OVERLAPPED_ENTRY *e)
{
    io_req *r = (io_req *)e->lpOverlapped;
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
        on_send(q, r, e->dwNumberOfBytesTransferred);
        break;
    }
    req_free(q, r);
}

/* Takes up to one batch of packets off the port; <0 on error, else count. */
static int take_packets(nc_queue *q, DWORD timeout_ms, int drop_lock)
{
    OVERLAPPED_ENTRY ents[ENTRIES_PER_POLL];
    ULONG n = 0;
    if (drop_lock)
        nc_poll_begin(q);
    BOOL ok = GetQueuedCompletionStatusEx(STATE(q)->port, ents, ENTRIES_PER_POLL, &n, timeout_ms, FALSE);
    DWORD err = ok ? 0 : GetLastError();
    if (drop_lock)
        nc_poll_end(q);
    if (!ok)
        return err == WAIT_TIMEOUT ? 0 : nc_win_status(err);
    for (ULONG i = 0; i < n; i++) {
        if (ents[i].lpOverlapped)
            dispatch(q, &ents[i]);
        else
            nc_woken(q); /* a wake() packet */
    }
    return (int)n;
}

static int iocp_poll(nc_queue *q, int timeout_ms)
{
    int rc = take_packets(q, timeout_ms < 0 ? INFINITE : (DWORD)timeout_ms, timeout_ms != 0);
    return rc < 0 ? rc : 0;
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
    while (st->outstanding > 0 && nc_now_ms() < give_up)
        if (take_packets(q, 100, 0) < 0)
            break;
    if (st->outstanding > 0) {
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
    .available = iocp_available,
    .init = iocp_init,
    .destroy = iocp_destroy,
    .attach = iocp_attach,
    .start = iocp_start,
    .close = iocp_close,
    .free_handle = iocp_free_handle,
    .poll = iocp_poll,
    .perform = iocp_perform,
    .wake = iocp_wake,
    .connect = iocp_connect,
    .resume_accept = NULL, /* AcceptEx sockets are made before the accept */
    .recycle = NULL,
};
