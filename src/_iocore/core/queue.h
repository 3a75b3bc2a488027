/* queue.h: what the shared core and the backends see of each other.
 *
 * The core owns handles, operations, the completion FIFO, timers, posts and
 * the per-thread waiter state.  A backend (unix/epoll.c, win/iocp.c) owns
 * its poller and turns OS events into completions with the helpers below.
 *
 * Locking: q->lock guards everything here.  Every backend hook is called
 * with it held; poll() may drop it while it blocks.
 */
#ifndef NC_CORE_QUEUE_H
#define NC_CORE_QUEUE_H

#include "../iocore.h"
#include "platform.h"
#include "starve.h"
#include "timers.h"

typedef struct nc_handle nc_handle;
typedef struct nc_waiter nc_waiter;

enum nc_handle_kind { NC_LISTENER = 1, NC_CONNECTING = 2, NC_CONN = 3 };

#define NC_INLINE_BUFS 4

typedef struct nc_op {
    struct nc_op *next;
    int kind;             /* enum nc_op_kind */
    int status;
    void *ctx;
    nc_handle *owner;     /* handle the op was started on (NULL: post/timer/connect) */
    nc_id result;         /* handle reported in the event */
    size_t nbytes;        /* RECV: max bytes asked; SEND: bytes sent so far */
    /* SEND: the caller's buffers; cur/off mark how far we got. */
    nc_buf *bufs;
    int nbufs, cur;
    size_t off;
    nc_buf inline_bufs[NC_INLINE_BUFS];
    void *be;             /* backend's per-operation state */
} nc_op;

typedef struct nc_opq {
    nc_op *head, *tail;
} nc_opq;

struct nc_handle {
    nc_id id;
    nc_sock_t sock;
    int kind;
    unsigned readable : 1, writable : 1, on_ready : 1, starved : 1, closed : 1;
    unsigned hup : 1;      /* peer shut down or reset: reads never block again */
    int refs;              /* slot + queued ops + ready list + holding waiter */
    nc_opq rxq;            /* pending accepts (listener) or recvs (connection) */
    nc_opq txq;            /* pending sends, or the connect */
    nc_waiter *holder;     /* waiter whose current batch holds this handle */
    nc_handle *ready_next; /* link in q->ready */
    void *be;              /* backend's per-handle state */
};

/* Per (thread, queue) state: where the RECV data of its batch lives (its
 * arena, or buffers a backend lent it), and the handles its batch holds. */
struct nc_waiter {
    nc_tid tid;
    nc_waiter *next;
    char *arena;
    size_t arena_len, arena_used;
    uintptr_t *loans;      /* backend buffers handed out in this batch */
    int nloans, loans_cap;
    nc_handle **held;      /* each holds a reference */
    int nheld, held_cap;
    /* output of the nc_wait() call in progress */
    nc_event *out;
    int nout, max_out;
    int skipped_poll;      /* the last batch was served without polling */
};

typedef struct nc_slot {
    nc_handle *h;
    uint32_t gen;
    uint32_t next_free;
} nc_slot;

typedef struct nc_backend {
    const char *name;
    const void *impl;      /* the backend's own description (stream.c: its poller) */
    int (*available)(void);
    int (*init)(nc_queue *q);
    /* After every handle is closed: wait for in-flight kernel operations. */
    void (*destroy)(nc_queue *q);
    /* A socket became a handle (listen, accepted, connecting). */
    int (*attach)(nc_queue *q, nc_handle *h);
    /* op was appended to h->rxq or h->txq; start it or mark h ready. */
    int (*start)(nc_queue *q, nc_handle *h, nc_op *op);
    /* Stop watching h, close its socket and complete its ops with
     * NC_CANCELLED, now or when the kernel hands them back.  Each op holds
     * a reference on h, so h outlives them. */
    void (*close)(nc_queue *q, nc_handle *h);
    /* Last reference to h is gone: free h->be. May be NULL. */
    void (*free_handle)(nc_queue *q, nc_handle *h);
    /* Block up to timeout_ms for OS events; mark handles ready or complete ops. */
    int (*poll)(nc_queue *q, int timeout_ms);
    /* Do the I/O a ready handle can do now; RECV data goes into w's arena. */
    void (*perform)(nc_queue *q, nc_handle *h, nc_waiter *w);
    /* Make one blocked poll() return (lock held; must not block). */
    void (*wake)(nc_queue *q);
    /* Create a socket, a NC_CONNECTING handle owning op, and start connecting. */
    int (*connect)(nc_queue *q, const struct sockaddr *addr, int addrlen, nc_op *op);
    /* A starved listener (starve.h) may accept again. NULL if it never starves. */
    void (*resume_accept)(nc_queue *q, nc_handle *lst);
    /* Take back buffers lent through nc_complete_recv_lent. May be NULL. */
    void (*recycle)(nc_queue *q, const uintptr_t *loans, int n);
} nc_backend;

struct nc_queue {
    const nc_backend *be;
    void *be_state;
    nc_mutex lock;
    int closing;
    nc_slot *slots;
    uint32_t nslots, free_slot;
    nc_opq done;           /* completions waiting to be delivered */
    nc_handle *ready_head, *ready_tail;
    nc_waiter *waiters;
    int sleepers;          /* threads blocked in poll() */
    int wake_pending;      /* a wake() is in flight and not yet consumed */
    nc_timers timers;
    nc_starved starved;    /* listeners out of descriptors */
    nc_op *op_cache;       /* free list */
    int op_cache_len;
    long live_handles, pending_ops, nwaiters;
};

/* --- helpers the backends use (lock held) --- */
/* A new handle in a fresh slot (one reference: the slot's). */
nc_handle *nc_handle_new(nc_queue *q, nc_sock_t sock, int kind);
/* What nc_close() does, for code that already holds the lock. */
void nc_handle_close(nc_queue *q, nc_handle *h);
void nc_handle_ref(nc_handle *h);
void nc_handle_unref(nc_queue *q, nc_handle *h);
nc_handle *nc_lookup(nc_queue *q, nc_id id);
void nc_mark_ready(nc_queue *q, nc_handle *h);
nc_op *nc_op_new(nc_queue *q, int kind, void *ctx);
/* Queue op on h (rxq or txq); op takes a reference on h. */
void nc_op_attach(nc_handle *h, nc_opq *qq, nc_op *op);
void nc_op_free(nc_queue *q, nc_op *op);
void nc_opq_push(nc_opq *qq, nc_op *op);
nc_op *nc_opq_pop(nc_opq *qq);
/* Queue a finished operation for delivery by any waiter. */
void nc_complete(nc_queue *q, nc_op *op, int status);
/* Deliver a RECV straight into w's batch (data lives in w's arena). */
void nc_complete_recv(nc_queue *q, nc_waiter *w, nc_op *op, int status,
                      const char *data, size_t n);
/* Deliver a RECV whose bytes stay in a buffer the backend owns (a kernel-
 * provided one): no copy into the arena; the buffer goes back through
 * be->recycle when w's batch ends, as arena data would expire. */
void nc_complete_recv_lent(nc_queue *q, nc_waiter *w, nc_op *op, const char *data,
                           size_t n, uintptr_t loan);
/* Room for one more RECV in w's batch: NULL if none, else *len bytes at the pointer. */
char *nc_arena_take(nc_waiter *w, size_t want, size_t *len);
/* Room for h's pending RECV; when w's batch is full, h stays ready for the
 * next batch and NULL comes back. */
char *nc_recv_space(nc_queue *q, nc_handle *h, nc_waiter *w, size_t *len);
/* Complete every queued op of h with NC_CANCELLED. */
void nc_cancel_all(nc_queue *q, nc_handle *h);
/* poll() brackets its blocking call with these: they drop the lock and
 * count the thread as asleep (so completions made meanwhile wake it), and
 * stop counting it the moment it is back, so it never wakes itself. */
static inline void nc_poll_begin(nc_queue *q)
{
    q->sleepers++;
    nc_unlock(&q->lock);
}

static inline void nc_poll_end(nc_queue *q)
{
    nc_lock(&q->lock);
    q->sleepers--;
}

/* Called by poll() when the backend consumed a wake(). */
static inline void nc_woken(nc_queue *q) { q->wake_pending = 0; }

extern const nc_backend nc_backend_epoll;
extern const nc_backend nc_backend_iocp;

#endif
