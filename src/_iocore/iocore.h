/* iocore.h: the backend-neutral completion-queue interface.
 *
 * The model is IOCP's: the caller starts an operation, and some later
 * nc_wait() hands back exactly one completion for it.  Readiness backends
 * (epoll) perform the I/O themselves inside nc_wait() so callers never see
 * EAGAIN.  Nothing here knows about HTTP or Python.
 *
 * Ownership: whatever an in-flight operation uses (the ctx pointer, send
 * buffers) must stay valid until its completion is returned by nc_wait().
 * The core never frees or dereferences ctx; it only hands it back.
 *
 * Threads: every function may be called from any thread.  Several threads
 * may block in nc_wait() on one queue; each completion reaches exactly one
 * of them, and completions of one connection are never held by two waiters
 * at once (a waiter holds the connections of its batch until its next
 * nc_wait, nc_leave, or the end of the thread).  Listeners are never held.
 */
#ifndef NC_IOCORE_H
#define NC_IOCORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
typedef SOCKET nc_sock_t;
#define NC_ERR(name) (-WSA##name)
#else
#include <errno.h>
#include <sys/socket.h>
typedef int nc_sock_t;
#define NC_ERR(name) (-name)
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Operation kinds, as reported in nc_event.op. */
enum nc_op_kind {
    NC_OP_ACCEPT = 1,
    NC_OP_CONNECT = 2,
    NC_OP_RECV = 3,
    NC_OP_SEND = 4,
    NC_OP_POST = 5,
    NC_OP_TIMER = 6,
    NC_OP_SHUTDOWN = 7,
    NC_OP_SENDFILE = 8
};

/* Status values: 0 is success; otherwise a negative errno of the platform
 * (Windows: the WSAE* number, which is what Python's errno module uses
 * there) or NC_CANCELLED.  The same condition maps to the same name on
 * every backend: a reset peer is always NC_ECONNRESET. */
#define NC_CANCELLED     (-100000)
#define NC_ECONNRESET    NC_ERR(ECONNRESET)
#define NC_ECONNREFUSED  NC_ERR(ECONNREFUSED)
#define NC_ETIMEDOUT     NC_ERR(ETIMEDOUT)
#define NC_EADDRINUSE    NC_ERR(EADDRINUSE)
#define NC_EMFILE        NC_ERR(EMFILE)

/* API misuse, returned by the submit functions (never as a completion). */
#define NC_E_BADHANDLE   (-100001) /* unknown or closed handle */
#define NC_E_WRONGKIND   (-100002) /* e.g. recv on a listener */
#define NC_E_BUSY        (-100003) /* a recv is already pending */
#define NC_E_INVAL       (-100004) /* bad argument */
#define NC_E_NOMEM       (-100005)
#define NC_E_NOBACKEND   (-100006) /* unknown backend name */
#define NC_E_CLOSED      (-100007) /* the queue is closed */
#define NC_E_INTR        (-100008) /* nc_wait: a signal arrived, no events */
#define NC_E_NOTSUP      (-100009) /* this backend cannot do that operation */

/* A handle names a listener or a connection: slot index in the low 32 bits,
 * generation in the high 32, so a reused slot never matches an old id. */
typedef uint64_t nc_id;

typedef struct nc_queue nc_queue;

typedef struct nc_buf {
    const char *base;
    size_t len;
} nc_buf;

typedef struct nc_event {
    int op;            /* enum nc_op_kind */
    int status;        /* 0, negative error, or NC_CANCELLED */
    void *ctx;         /* as given when the operation was started */
    nc_id handle;      /* RECV/SEND: the connection; ACCEPT/CONNECT: the new one */
    size_t nbytes;     /* RECV: bytes at data (0 with status 0 = EOF); SEND: bytes sent */
    const char *data;  /* RECV: valid until this thread's next nc_wait() */
    int more;          /* RECV of a multishot recv: 1 if it stays armed (ctx still in use) */
} nc_event;

typedef struct nc_stats {
    long live_handles;   /* listeners and connections not yet closed */
    long pending_ops;    /* started, completion not yet returned */
    long timers;         /* armed timers */
    long waiters;        /* threads that have called nc_wait() */
    long cq_overflow;    /* uring: completions the kernel had to hold back
                            (or dropped) because the ring was full; else 0 */
    long rings;          /* uring: rings in use (one per waiter thread); else 0 */
} nc_stats;

/* The i-th backend built in and usable here ("epoll", "iocp"), or NULL. */
const char *nc_backend_name(int i);
/* 0 if the named backend can run here; else a negative status and, in
 * why, the reason (e.g. why the kernel refused io_uring). */
int nc_backend_check(const char *name, char *why, size_t whylen);
/* backend: "auto" (or NULL) or a name above.  Returns 0 or a negative status. */
int nc_queue_new(const char *backend, nc_queue **out);
const char *nc_queue_backend(const nc_queue *q);
/* Closes every handle and timer, then hands each still-undelivered ctx to
 * release() (once each) so the owner can free it, then frees the queue.
 * No thread may be inside nc_wait() on it. */
void nc_queue_free(nc_queue *q, void (*release)(void *ctx, void *arg), void *arg);

int nc_listen(nc_queue *q, const struct sockaddr *addr, int addrlen,
              int backlog, int reuse_port, nc_id *out);
/* Takes over a listening socket made elsewhere (inherited by a worker,
 * say); it is closed with the handle, or at once on failure. */
int nc_adopt_listener(nc_queue *q, nc_sock_t s, nc_id *out);
int nc_accept(nc_queue *q, nc_id listener, void *ctx);
int nc_connect(nc_queue *q, const struct sockaddr *addr, int addrlen, void *ctx);
int nc_recv(nc_queue *q, nc_id conn, size_t max_bytes, void *ctx);
/* The nc_buf array is copied; the bytes it points to must live until the
 * completion.  Completes once every byte is sent, or with an error. */
int nc_send(nc_queue *q, nc_id conn, const nc_buf *bufs, int nbufs, void *ctx);

/* nc_send_ex flags */
#define NC_SEND_QUIET 1u   /* no completion for a send done in full within the call */
/* nc_send with flags.  With NC_SEND_QUIET a send whose every byte went out
 * before the call returns is not reported: the call returns 1, and ctx and
 * the bytes are the caller's again at once.  Otherwise (0) it completes as
 * nc_send does.  epoll and poll always try a send at once, IOCP makes a
 * non-blocking send first instead of queueing a kernel request; io_uring
 * submits every send with the batch's next io_uring_enter (measured
 * cheaper than a sendmsg of its own), so none is done within the call. */
int nc_send_ex(nc_queue *q, nc_id conn, const nc_buf *bufs, int nbufs, void *ctx,
               unsigned flags);

/* nc_recv_ex flags */
#define NC_RECV_MULTISHOT 1u
/* nc_recv with flags.  A multishot recv stays armed: it completes once per
 * read that brings bytes, with nc_event.more = 1 (ctx still in use), and
 * ends with one last completion (more = 0): EOF, an error, NC_CANCELLED
 * (close, nc_recv_stop), or, when nc_recv_stop came while bytes were being
 * read, those bytes.  Saves a call per read and keeps its place in line. */
int nc_recv_ex(nc_queue *q, nc_id conn, size_t max_bytes, void *ctx, unsigned flags);
/* Ends the multishot recv pending on conn (its last completion follows).
 * NC_E_INVAL if none is pending. */
int nc_recv_stop(nc_queue *q, nc_id conn);
/* Shuts down the sending side once every send started before it is out
 * (the peer then reads EOF); receiving goes on.  Completes with 0 or an
 * error, as a SHUTDOWN event. */
int nc_shutdown(nc_queue *q, nc_id conn, void *ctx);
/* Sends count bytes of the file fd from offset, in order with the sends
 * around it, by the kernel (sendfile(2)) without a copy through user space.
 * fd must stay open until the completion, which carries the bytes sent;
 * status 0 once all count are out, NC_ERR(EIO) if the file ended first.
 * NC_E_NOTSUP where the backend cannot (nc_can_sendfile): send the bytes. */
int nc_sendfile(nc_queue *q, nc_id conn, int fd, uint64_t offset, uint64_t count, void *ctx);
int nc_can_sendfile(const nc_queue *q);
/* Every operation still pending on the handle completes once, with NC_CANCELLED. */
int nc_close(nc_queue *q, nc_id h);
int nc_post(nc_queue *q, void *ctx);
/* A POST for one connection: it completes like that connection's own
 * operations, never in two waiters' batches at once (several waiter
 * threads can then hand each other work for a connection safely). */
int nc_post_to(nc_queue *q, nc_id conn, void *ctx);
int nc_timer_start(nc_queue *q, double seconds, void *ctx, uint64_t *timer_id);
/* Returns 1 and the ctx if the timer was armed (it will not complete), else 0. */
int nc_timer_cancel(nc_queue *q, uint64_t timer_id, void **ctx_out);

/* Blocks up to timeout_ms (-1 = forever) for at least one completion and
 * returns how many were stored in events[] (0 on timeout), or a negative status. */
int nc_wait(nc_queue *q, nc_event *events, int max_events, int timeout_ms);
/* The calling thread stops waiting on q: the handles its last batch holds
 * become free for other waiters, and its per-thread state is freed. */
void nc_leave(nc_queue *q);

int nc_fileno(nc_queue *q, nc_id h, nc_sock_t *out);
int nc_sockname(nc_queue *q, nc_id h, struct sockaddr_storage *out, int *len);
int nc_peername(nc_queue *q, nc_id h, struct sockaddr_storage *out, int *len);
int nc_is_listener(nc_queue *q, nc_id h);
void nc_get_stats(nc_queue *q, nc_stats *out);
/* Integer socket options on a handle's socket; 0 or a negative status. */
int nc_setsockopt(nc_queue *q, nc_id h, int level, int name, int value);
int nc_getsockopt(nc_queue *q, nc_id h, int level, int name, int *value);

/* Name of a status for messages ("ECONNRESET", "CANCELLED", ...). */
const char *nc_status_name(int status);

#ifdef __cplusplus
}
#endif
#endif
