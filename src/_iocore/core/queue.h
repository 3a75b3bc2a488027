/* queue.h: what the shared core and the backends see of each other.
 *
 * The core owns handles, operations, the completion FIFO, timers, posts and
 * the per-thread waiter state.  A backend (unix/stream.c with a poller,
 * win/iocp.c) turns OS events into completions with the helpers below.
 *
 * Locking: q->lock guards everything here, and no system call is ever made
 * under it.  A thread that must do I/O on a handle claims it first (a busy
 * bit and a pin on the socket, under the lock), does the I/O with the lock
 * dropped, and takes the lock again to apply the result.  Work a locked
 * section cannot do (closing a socket, waking a poller, running a send at
 * once) is deferred with nc_defer_*() and run by the same thread right
 * after it drops the lock, in nc_unlock_q().
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

/* Claims on a handle's I/O, held by one thread outside the lock. */
#define NC_BUSY_RX 1u /* the rxq head: a recv, or accepting */
#define NC_BUSY_TX 2u /* the txq head: a send, a shutdown, or the connect */

#ifdef _WIN32
#define NC_NO_SOCK INVALID_SOCKET
#else
#define NC_NO_SOCK (-1)
#endif

#define NC_INLINE_BUFS 4

typedef struct nc_op {
    struct nc_op *next;
    int kind;             /* enum nc_op_kind */
    int status;
    void *ctx;
    nc_handle *owner;     /* handle the op was started on (NULL: post/timer/connect) */
    nc_id result;         /* handle reported in the event */
    size_t nbytes;        /* RECV: max bytes asked; SEND: bytes sent so far */
    /* SEND: the caller's buffers; cur/off mark how far we got (cursor.h). */
    nc_buf *bufs;
    int nbufs, cur;
    size_t off;
    /* RECV through the FIFO with bytes in a lent buffer (nc_complete_lent) */
    const char *data;
    uintptr_t loan;
    unsigned lent : 1;
    unsigned quiet : 1;   /* SEND: NC_SEND_QUIET (thread.h: nc_thread_quiet_*) */
    unsigned multi : 1;   /* RECV: multishot; stays on rxq across its completions */
    unsigned more : 1;    /* the completion of a multishot recv that stays armed */
    unsigned stop : 1;    /* RECV: nc_recv_stop came while a thread was reading */
    unsigned tried : 1;   /* SEND: the at-once attempt of a quiet send was made */
    nc_buf inline_bufs[NC_INLINE_BUFS];
    /* SENDFILE: the file, where the next byte is, and how many are left */
    int file;
    uint64_t file_off, file_left;
} nc_op;

typedef struct nc_opq {
    nc_op *head, *tail;
} nc_opq;

struct nc_handle {
    nc_id id;
    nc_sock_t sock;        /* NC_NO_SOCK once handed to release() */
    int kind;
    unsigned readable : 1, writable : 1, on_ready : 1, starved : 1, closed : 1;
    unsigned hup : 1;      /* peer shut down or reset: reads never block again */
    unsigned adopted : 1;  /* a listener made elsewhere, maybe shared with other processes */
    unsigned busy;         /* NC_BUSY_* claims */
    /* Readiness reports seen: a thread that ran dry (EAGAIN) clears
     * readable/writable only if no report came while it was reading. */
    uint32_t rx_seq, tx_seq;
    uint32_t rx_mark, tx_mark; /* the seqs when the claim was made */
    int refs;              /* slot + queued ops + ready list + holder + deferred work */
    int sock_users;        /* threads using sock with the lock dropped */
    nc_opq rxq;            /* pending accepts (listener) or recvs (connection) */
    nc_opq txq;            /* pending sends and shutdowns, or the connect */
    nc_waiter *holder;     /* waiter whose current batch holds this connection */
    nc_handle *ready_next; /* link in q->ready */
    void *be;              /* backend's per-handle state */
};

/* Per (thread, queue) state: where the RECV data of its batch lives (its
 * arena, or buffers a backend lent it), and the connections it holds. */
struct nc_waiter {
    nc_queue *q;           /* NULL once the queue is freed (thread.c) */
    nc_waiter *next;       /* in q->waiters */
    nc_waiter *tnext;      /* in its thread's list (thread.c) */
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
    int be_slot;           /* the backend's: which of its parts serves this thread (0: none) */
    int polling;           /* in nc_wait and not blocked in the OS (see be->home) */
    uint64_t until;        /* in poll(): when it is back at the latest (ms); else 0 */
};

typedef struct nc_slot {
    nc_handle *h;
    uint32_t gen;
    uint32_t next_free;
} nc_slot;

/* Hooks say whether they run with q->lock held.  Those called with it
 * must not make system calls. */
typedef struct nc_backend {
    const char *name;
    const void *impl;      /* the backend's own description (stream.c: its poller) */
    /* 0 if it can run here; else a negative status and, in why, the reason. */
    int (*probe)(char *why, size_t whylen);
    int (*init)(nc_queue *q);                               /* no lock */
    /* No lock, no waiter, every handle closed: wait for kernel work. */
    void (*destroy)(nc_queue *q);
    /* No lock: start watching h's new socket (listener, accepted or
     * connecting); h is pinned and nobody else knows it yet. */
    int (*attach)(nc_queue *q, nc_handle *h);
    /* Lock held: op was appended to h->rxq or h->txq; make it happen
     * (mark h ready for a waiter, or nc_defer_kick). */
    void (*start)(nc_queue *q, nc_handle *h, nc_op *op);
    /* Lock held: h was closed.  Complete its ops with NC_CANCELLED, now
     * or when the kernel hands them back; an op a thread is busy with is
     * that thread's to finish.  The core releases the socket later. */
    void (*close)(nc_queue *q, nc_handle *h);
    /* No lock: stop watching s and close it (nobody uses it any more). */
    void (*release)(nc_queue *q, nc_sock_t s);
    /* Lock held: the last reference to h is gone: free h->be. May be NULL. */
    void (*free_handle)(nc_queue *q, nc_handle *h);
    /* Lock held (dropped around system calls): wait up to timeout_ms for
     * OS events and turn them into ready handles or completions. */
    int (*poll)(nc_queue *q, nc_waiter *w, int timeout_ms);
    /* Lock held (dropped around system calls): do the I/O of the ready
     * handles (nc_take_ready) that w may do; RECV data goes to w's batch. */
    void (*perform)(nc_queue *q, nc_waiter *w);
    /* No lock: run what was deferred with nc_defer_kick(q, h, what); owns
     * one reference to h (h may be NULL for queue-wide work). */
    void (*kick)(nc_queue *q, nc_handle *h, unsigned what);
    /* No lock: make one blocked poll() return; must not block. */
    void (*wake)(nc_queue *q);
    /* No lock: make op's socket and NC_CONNECTING handle (op->result),
     * start connecting; failures after the handle exists are completions. */
    int (*connect)(nc_queue *q, const struct sockaddr *addr, int addrlen, nc_op *op);
    /* Lock held: a starved listener (starve.h) may accept again. */
    void (*resume_accept)(nc_queue *q, nc_handle *lst);
    /* Lock held: take back buffers lent by nc_complete_recv_lent. */
    void (*recycle)(nc_queue *q, const uintptr_t *loans, int n);
    /* Lock held: the waiter h's completions should go to while that one is
     * polling (it then takes them itself before it sleeps or returns), or
     * NULL.  A backend with this hook clears w->polling while it blocks.
     * May be NULL. */
    nc_waiter *(*home)(nc_queue *q, const nc_handle *h);
    /* Lock held: w's nc_wait call begins (may drop the lock; before the
     * core looks for work) and ends (before it returns).  May be NULL. */
    void (*wait_begin)(nc_queue *q, nc_waiter *w);
    void (*wait_end)(nc_queue *q, nc_waiter *w);
    /* Lock held: w stops waiting (nc_leave, or its thread ended). May be NULL. */
    void (*leave)(nc_queue *q, nc_waiter *w);
    /* Lock held: add the backend's counters. May be NULL. */
    void (*stats)(nc_queue *q, nc_stats *out);
    int sendfile;          /* it performs NC_OP_SENDFILE (else NC_E_NOTSUP) */
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
    long nready;           /* handles on the ready list */
    nc_waiter *waiters;
    int sleepers;          /* threads blocked in poll() */
    nc_waiter *deadline_waiter; /* in nc_wait, to wake by the next timer or retry */
    int wake_pending;      /* a wake() is in flight and not yet consumed */
    nc_timers timers;
    nc_starved starved;    /* listeners out of descriptors */
    nc_op *op_cache;       /* free list */
    int op_cache_len;
    long live_handles, pending_ops, nwaiters;
};

/* --- helpers for the backends (lock held unless said otherwise) --- */

/* A new handle in a fresh slot (one reference: the slot's). */
nc_handle *nc_handle_new(nc_queue *q, nc_sock_t sock, int kind);
/* What nc_close() does, for code that already holds the lock. */
void nc_handle_close(nc_queue *q, nc_handle *h);
void nc_handle_ref(nc_handle *h);
void nc_handle_unref(nc_queue *q, nc_handle *h);
nc_handle *nc_lookup(nc_queue *q, nc_id id);

/* The socket stays open while pinned; the last unpin of a closed handle
 * hands it to release(). */
static inline void nc_pin(nc_handle *h) { h->sock_users++; }
void nc_unpin(nc_queue *q, nc_handle *h);
/* Claim `bits` of h's I/O and pin its socket; 0 if already claimed.
 * Notes the readiness reports seen so far (rx_mark, tx_mark). */
int nc_claim(nc_handle *h, unsigned bits);
/* Give the claim back (and the pin). */
void nc_unclaim(nc_queue *q, nc_handle *h, unsigned bits);

void nc_mark_ready(nc_queue *q, nc_handle *h);
/* Takes up to max ready handles w may work on into out[], each with the
 * ready list's reference (the caller unrefs).  Looks at no more than
 * *budget list entries (and counts them down): handles another waiter's
 * batch holds, or that w has no room for, go to the back of the list. */
int nc_take_ready(nc_queue *q, nc_waiter *w, nc_handle **out, int max, long *budget);
/* w's batch holds h from now until w's next wait (connections only). */
int nc_hold(nc_queue *q, nc_waiter *w, nc_handle *h);
/* Undo an nc_hold that turned out to deliver nothing. */
void nc_unhold(nc_queue *q, nc_waiter *w, nc_handle *h);
/* Room left in w's batch for events. */
static inline int nc_batch_room(const nc_waiter *w) { return w->max_out - w->nout; }

nc_op *nc_op_new(nc_queue *q, int kind, void *ctx);
/* Queue op on h (rxq or txq); op takes a reference on h. */
void nc_op_attach(nc_handle *h, nc_opq *qq, nc_op *op);
void nc_op_free(nc_queue *q, nc_op *op);
void nc_opq_push(nc_opq *qq, nc_op *op);
nc_op *nc_opq_pop(nc_opq *qq);
/* Queue a finished operation for delivery by any waiter. */
void nc_complete(nc_queue *q, nc_op *op, int status);
/* The same for a RECV (status 0) whose n bytes at data stay in a buffer the
 * backend lends (given back through be->recycle after the batch that gets
 * it): how a backend hands over bytes when no waiter is at hand. */
void nc_complete_lent(nc_queue *q, nc_op *op, const char *data, size_t n, uintptr_t loan);
/* Deliver a RECV straight into w's batch (data lives in w's arena, taken
 * with nc_arena_take and nc_arena_used). */
void nc_complete_recv(nc_queue *q, nc_waiter *w, nc_op *op, int status,
                      const char *data, size_t n);
/* Deliver a RECV whose bytes stay in a buffer the backend owns (a kernel-
 * provided one): no copy into the arena; the buffer goes back through
 * be->recycle when w's batch ends, as arena data would expire. */
void nc_complete_recv_lent(nc_queue *q, nc_waiter *w, nc_op *op, const char *data,
                           size_t n, uintptr_t loan);
/* Room in w's arena for a RECV of up to `want` bytes: NULL if too little
 * is left (the recv waits for the next batch), else *len bytes.  The
 * arena is the thread's own: callable with the lock dropped. */
char *nc_arena_take(nc_waiter *w, size_t want, size_t *len);
static inline void nc_arena_used(nc_waiter *w, size_t n) { w->arena_used += n; }
/* Complete every queued op of h that no thread is busy with, with NC_CANCELLED. */
void nc_cancel_all(nc_queue *q, nc_handle *h);

/* The op a backend completes for h's rxq head, given the outcome (status,
 * bytes): the head itself, taken off rxq; or, for a multishot recv that
 * brought bytes and goes on, a copy that reports them (more = 1) while the
 * head stays armed.  Every RECV completion of a connection goes through it. */
nc_op *nc_recv_take(nc_queue *q, nc_handle *h, int status, size_t n);
/* After a read of h that brought nothing: a multishot recv stopped while it
 * was being read ends now (NC_CANCELLED).  Lock held, RX claim given back. */
void nc_recv_settle(nc_queue *q, nc_handle *h);

/* --- deferred work: queued under the lock, run by this thread once it
 * has dropped it (nc_unlock_q).  Out of memory, a kick reports -1 (the
 * caller leaves the work to a waiter); a release or a wake then happens
 * at once, the only system calls ever made under the lock. --- */
int nc_defer_kick(nc_queue *q, nc_handle *h, unsigned what);
void nc_defer_release(nc_queue *q, nc_sock_t s);
/* Wake one thread blocked in poll(), if any (at most one wake in flight). */
void nc_wake_one(nc_queue *q);
/* Drops q->lock, then runs what this thread deferred. */
void nc_unlock_q(nc_queue *q);

/* poll() brackets its blocking call with these: they drop the lock and
 * count the thread as asleep (so completions made meanwhile wake it), and
 * stop counting it the moment it is back, so it never wakes itself. */
static inline void nc_poll_begin(nc_queue *q)
{
    q->sleepers++;
    nc_unlock_q(q);
}

static inline void nc_poll_end(nc_queue *q)
{
    nc_lock(&q->lock);
    q->sleepers--;
}

/* Called by poll() when the backend consumed a wake(). */
static inline void nc_woken(nc_queue *q) { q->wake_pending = 0; }

extern const nc_backend nc_backend_epoll;
extern const nc_backend nc_backend_poll;
extern const nc_backend nc_backend_uring;
extern const nc_backend nc_backend_iocp;

#endif
