/* unix/uring.c: the completion queue on io_uring (Linux 5.19 or later).
 *
 * A ring per waiter thread (up to MAX_RINGS; see "Rings" below).  The kernel does the
 * I/O: a multishot accept per listener, a multishot recv per connection
 * into a ring of provided buffers (so an idle connection pins no buffer),
 * one send or sendmsg at a time per connection from the shared send cursor,
 * a shutdown in the send order, a connect.  Received bytes reach the
 * caller in the kernel's buffer itself when one buffer holds them (lent to
 * the waiter's batch, returned to the ring at its next wait), else copied
 * into the arena to join several.
 *
 * Batching is the point: SQEs are written under the queue lock (memory
 * only) and submitted with the next io_uring_enter, which is also the wait:
 * one system call per nc_wait for the sends and re-arms of a whole batch.
 * A thread that is not a waiter of the queue, or that starts work while
 * another waiter sleeps in the ring, submits at once instead (a deferred
 * kick), so nothing waits for a wait that may not come.
 *
 * Rings.  The kernel does a ring's submissions and completion work under
 * that ring's mutex, so threads sharing one ring take turns (measured: 2
 * threads echoed less than 1).  So each waiter thread gets a ring of its
 * own on its first wait, and a connection lives on one ring at a time: the
 * one of the thread that starts its I/O, moved only while the kernel holds
 * nothing of it.  Any waiter may still take any completion (the queue's
 * promise): a thread reaps its own ring, and those of threads that are not
 * in a wait; before it sleeps it arms a poll on each such ring's fd in its
 * own, and a thread leaving its wait arms one for its ring in a sleeper's,
 * so a completion on a ring whose thread is busy elsewhere still wakes
 * someone.  With one waiter thread there is one ring and none of this.
 *
 * Setup flags.  Other threads may still submit to a thread's ring (a send
 * from a pool thread, a stolen connection), so IORING_SETUP_SINGLE_ISSUER
 * and DEFER_TASKRUN (only the one submitter may reap, and deferred work
 * runs only when it waits) are not used; they measured no gain with one
 * thread either (README).  COOP_TASKRUN (with
 * TASKRUN_FLAG) spares a busy thread the IPIs: its completions are posted
 * when it next enters the kernel, which a waiter does at every wait.  The
 * CQ is 8x the SQ (multishot requests make more completions than
 * submissions); no SQPOLL.  Each flag is dropped if the kernel says EINVAL.
 *
 * Posts and timers need no ring work: a wake is a NOP submitted by the
 * waking thread (its completion ends any thread's wait at once, unlike an
 * eventfd read, which completes in its submitter's context), and the
 * wait's own timeout serves the timer heap (IORING_ENTER_EXT_ARG).
 *
 * Close cancels what the kernel holds with IORING_OP_ASYNC_CANCEL; each op
 * completes once, when its request ends, and a recv whose bytes had come in
 * gets them.  The socket itself is closed only once every SQE naming it has
 * been consumed, so a reused descriptor number can never receive them.
 *
 * No zero-copy send: on loopback (all of this project's traffic and tests)
 * MSG_ZEROCOPY copies anyway, and each such send costs a second
 * (notification) completion; published figures put the crossover at ~3 KB
 * only on real NICs with Linux 6.10+.
 */
#define _GNU_SOURCE
#include "uring_ring.h"
#include "../core/cursor.h"
#include "../core/queue.h"
#include "../core/sock.h"
#include "../core/starve.h"
#include "../core/thread.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define SQ_ENTRIES 1024
#define CQ_FACTOR 8
#define BUF_SIZE 8192
#define BUF_COUNT 2048           /* a power of two (NETCORE_URING_BUFFERS in tests) */
#define MAX_IOV 64
#define ACCEPT_BACKLOG 16        /* accepted before asked for: then pause */
#define RECV_BUFFERED_MAX (128 * 1024) /* per connection: then pause */
#define DRAIN_LIMIT_MS 10000
#define MAX_RINGS 8              /* waiter threads past it share (NETCORE_URING_RINGS) */
#define AWAY_MS 5                /* then other threads take over a ring (see away()) */

/* user_data of SQEs whose completion carries nothing */
#define UD_WAKE 1
#define UD_CANCEL 2
#define UD_WATCH 16              /* + i: the poll on ring i's fd fired */
#define UD_BELL 32               /* + i: ring i's bell rang */

enum { R_ACCEPT = 1, R_RECV, R_SEND, R_CONNECT };

/* A request the kernel may hold; user_data points here.  Each in flight
 * holds a reference on its handle, whose ur_handle embeds it. */
typedef struct ur_req {
    int kind;
    int inflight;
    int cancelled;
    nc_handle *h;
} ur_req;

typedef struct chunk {
    char *data;
    uint32_t len;
    uint16_t bid;
} chunk;

/* What a handle wants submitted when the SQ had no room. */
#define W_ACCEPT 1u
#define W_RECV 2u
#define W_SEND 4u
#define W_CONNECT 8u
#define W_CANCEL 16u

typedef struct ur_handle {
    ur_req accept, recv, send, connect;
    /* Received and not yet delivered (a ring of chunks), then EOF or an error. */
    chunk *chunks;
    int ccap, chead, ccount;
    size_t buffered;
    int eof, rx_err;
    int rx_paused;          /* recv cancelled while too much is buffered */
    nc_op *close_recv;      /* a recv pending at close: its request decides */
    nc_op *send_op;         /* the op the in-flight send works on */
    nc_op *connect_op;
    /* Listener: connections accepted before an accept op asked. */
    int *fds;
    int nfds, fcap;
    int accept_paused;
    unsigned want;          /* W_* not yet written */
    nc_handle *dirty_next, *nobuf_next, *closing_next;
    int dirty, nobuf, closing;
    int has_sqe;
    uint32_t last_sqe;      /* SQ position just past the last SQE naming sock */
    struct ur_msg *msg;     /* a gathered send's header, made on first use */
    struct sockaddr_storage *addr; /* the connect's, until it is done */
    socklen_t addrlen;
    int ring;               /* index of the ring its requests go to */
} ur_handle;

/* What a sendmsg needs to stay put while the kernel may read it.  Apart
 * from ur_handle: most connections never gather, and an idle connection
 * should cost little. */
typedef struct ur_msg {
    struct msghdr msg;
    struct iovec iov[MAX_IOV];
} ur_msg;

typedef struct ur_ring {
    nc_ring r;
    int waiters;            /* waiter threads it serves */
    nc_waiter *owner;       /* the first of them: its connections' home */
    int inwait;             /* of them, inside nc_wait (they reap it) */
    int sleepers;           /* of them, blocked in it (read unlocked by ur_wake) */
    uint64_t sleep_until;   /* when the latest of them wakes at the latest (ms) */
    uint64_t left_at;       /* when a thread of it last left nc_wait (ms) */
    unsigned watching;      /* rings its armed polls watch (bit i: ring i's fd) */
    int flush_pending;      /* a submitting kick is deferred */
    int efd;                /* its bell: an eventfd its multishot poll watches */
    int bell;               /* that poll is armed (read unlocked by ur_wake) */
    int overflowing;
    long inflight;          /* requests (and polls) the kernel holds here */
    long overflows;         /* times the CQ overflowed (kernel backlog) */
} ur_ring;

typedef struct ur_state {
    ur_ring rings[MAX_RINGS];
    int nrings;             /* opened, in order; written under the lock */
    int max_rings;
    int opening;            /* a thread is opening the next ring */
    int multishot_recv;     /* 0 once the kernel refused it (Linux < 6.0) */
    int reaping;            /* reap() is on the stack */
    long inflight;          /* requests the kernel holds, all rings */
    unsigned written;       /* rings need() wrote to since submit_soon looked */
    nc_handle *dirty, *nobuf, *closing;
} ur_state;

#define STATE(q) ((ur_state *)(q)->be_state)
#define HS(h) ((ur_handle *)(h)->be)
#define RING(st, h) (&(st)->rings[HS(h)->ring].r)

/* A lent buffer: which ring, which buffer. */
#define LOAN(ring, bid) (((uintptr_t)(ring) << 16) | (bid))

static unsigned long buffers_given(const ur_state *st)
{
    unsigned long n = 0;
    for (int i = 0; i < st->nrings; i++)
        n += st->rings[i].r.given;
    return n;
}

/* The ring of this thread's waiter on q, or -1 (not a waiter yet, or not
 * of q).  Thread-local data only: callable without the lock. */
static int my_ring(nc_queue *q)
{
    nc_waiter *w = nc_thread_waiter(q, 0);
    return w && w->be_slot ? w->be_slot - 1 : -1;
}

static void buffers_back(nc_queue *q);

/* Lock held: fills e for what h wants; 0 if there is nothing to write. */
static int fill_sqe(ur_state *st, nc_handle *h, unsigned what, nc_sqe *e)
{
    ur_handle *hs = HS(h);
    ur_req *r = NULL;
    switch (what) {
    case W_ACCEPT:
        r = &hs->accept;
        e->opcode = NC_OP_U_ACCEPT;
        e->ioprio = h->adopted ? 0 : NC_ACCEPT_MULTISHOT;
        e->op_flags = SOCK_NONBLOCK | SOCK_CLOEXEC;
        break;
    case W_RECV:
        r = &hs->recv;
        e->opcode = NC_OP_U_RECV;
        e->flags = NC_SQE_BUFFER_SELECT;
        e->buf_group = NC_RING_BUF_GROUP;
        e->ioprio = st->multishot_recv ? NC_URING_RECV_MULTISHOT : 0;
        e->len = st->multishot_recv ? 0 : BUF_SIZE;
        break;
    case W_SEND: {
        nc_op *op = h->txq.head;
        if (!op || hs->send.inflight || (h->busy & NC_BUSY_TX)) /* (busy: sent at once) */
            return 0;
        r = &hs->send;
        hs->send_op = op;
        if (op->kind == NC_OP_SHUTDOWN) {
            e->opcode = NC_OP_U_SHUTDOWN;
            e->len = SHUT_WR;
            break;
        }
        nc_buf slices[MAX_IOV];
        int n = nc_send_slices(op, slices, MAX_IOV); /* >0: send_next took empty ones */
        e->op_flags = MSG_NOSIGNAL;
        if (n > 1 && !hs->msg && !(hs->msg = malloc(sizeof *hs->msg)))
            n = 1; /* out of memory: the first slice alone, the rest after it */
        if (n == 1) {
            e->opcode = NC_OP_U_SEND;
            e->addr = (uintptr_t)slices[0].base;
            e->len = slices[0].len > 0x7fffffff ? 0x7fffffff : (uint32_t)slices[0].len;
        } else {
            ur_msg *m = hs->msg;
            for (int i = 0; i < n; i++) {
                m->iov[i].iov_base = (void *)slices[i].base;
                m->iov[i].iov_len = slices[i].len;
            }
            memset(&m->msg, 0, sizeof m->msg);
            m->msg.msg_iov = m->iov;
            m->msg.msg_iovlen = (size_t)n;
            e->opcode = NC_OP_U_SENDMSG;
            e->addr = (uintptr_t)&m->msg;
            e->len = 1;
        }
        break;
    }
    case W_CONNECT:
        r = &hs->connect;
        e->opcode = NC_OP_U_CONNECT;
        e->addr = (uintptr_t)hs->addr;
        e->off = hs->addrlen;
        break;
    default:
        return 0;
    }
    if (r->inflight) {
        memset(e, 0, sizeof *e);
        return 0; /* already with the kernel */
    }
    e->fd = h->sock;
    e->user_data = (uintptr_t)r;
    r->inflight = 1;
    r->cancelled = 0;
    st->inflight++;
    st->rings[hs->ring].inflight++;
    nc_handle_ref(h); /* the request's */
    return 1;
}

static void cancel_sqe(nc_sqe *e, ur_req *r)
{
    e->opcode = NC_OP_U_ASYNC_CANCEL;
    e->addr = (uintptr_t)r;
    e->fd = -1;
    e->user_data = UD_CANCEL;
}

static void add_dirty(ur_state *st, nc_handle *h, unsigned what)
{
    ur_handle *hs = HS(h);
    hs->want |= what;
    if (!hs->dirty) {
        hs->dirty = 1;
        nc_handle_ref(h);
        hs->dirty_next = st->dirty;
        st->dirty = h;
    }
}

/* Lock held: write what h needs into the SQ, or remember it for when the
 * SQ has room.  Cancels are for the requests marked cancelled. */
static void need(ur_state *st, nc_handle *h, unsigned what)
{
    ur_handle *hs = HS(h);
    nc_ring *ring = RING(st, h);
    st->written |= 1u << hs->ring;
    nc_lock(&ring->sq_lock);
    for (unsigned bit = 1; bit <= W_CANCEL; bit <<= 1) {
        if (!(what & bit))
            continue;
        if (bit == W_CANCEL) {
            ur_req *reqs[] = {&hs->accept, &hs->recv, &hs->send, &hs->connect};
            for (int i = 0; i < 4; i++) {
                if (!reqs[i]->inflight || reqs[i]->cancelled != 1)
                    continue;
                nc_sqe *e = nc_ring_sqe(ring);
                if (!e)
                    goto full;
                cancel_sqe(e, reqs[i]);
                reqs[i]->cancelled = 2; /* asked */
                nc_ring_publish(ring);
            }
            continue;
        }
        nc_sqe *e = nc_ring_sqe(ring);
        if (!e)
            goto full;
        if (fill_sqe(st, h, bit, e)) {
            nc_ring_publish(ring);
            hs->has_sqe = 1;
            hs->last_sqe = ring->sq_tail;
        }
        what &= ~bit;
    }
    nc_unlock(&ring->sq_lock);
    return;
full:
    nc_unlock(&ring->sq_lock);
    add_dirty(st, h, what);
}

/* Lock held: SQEs for the handles that found the SQ full. */
static void flush_dirty(nc_queue *q)
{
    ur_state *st = STATE(q);
    nc_handle *h = st->dirty;
    st->dirty = NULL;
    while (h) {
        ur_handle *hs = HS(h);
        nc_handle *next = hs->dirty_next;
        unsigned what = hs->want;
        hs->dirty = 0;
        hs->want = 0;
        need(st, h, h->closed ? what & W_CANCEL : what);
        nc_handle_unref(q, h);
        h = next;
    }
}

/* Lock held: the next send of h goes to the kernel; sends with nothing to
 * send complete here. */
static void send_next(nc_queue *q, nc_handle *h)
{
    nc_op *op;
    nc_buf one;
    while (!HS(h)->send.inflight && !(h->busy & NC_BUSY_TX) && (op = h->txq.head)) {
        if (op->kind == NC_OP_SEND && nc_send_slices(op, &one, 1) == 0) {
            nc_complete(q, nc_opq_pop(&h->txq), 0);
            continue;
        }
        need(STATE(q), h, W_SEND);
        return;
    }
}

/* Lock held: ring i's SQEs go to the kernel once this thread drops the
 * lock.  Out of memory, at once (a system call made locked, as a wake then). */
static void kick_ring(nc_queue *q, int i)
{
    ur_ring *rg = &STATE(q)->rings[i];
    if (rg->flush_pending)
        return;
    rg->flush_pending = 1;
    if (nc_defer_kick(q, NULL, (unsigned)i) < 0) {
        rg->flush_pending = 0;
        nc_ring_enter(&rg->r, nc_ring_unsubmitted(&rg->r), 0, 0, -1);
    }
}

/* An SQE with no handle in ring rg: a NOP (fd < 0) or a poll for POLLIN
 * on fd (multishot with len NC_POLL_ADD_MULTI).  0 if the SQ is full. */
static int put_sqe(ur_ring *rg, int fd, unsigned len, uint64_t user_data)
{
    nc_lock(&rg->r.sq_lock);
    nc_sqe *e = nc_ring_sqe(&rg->r);
    if (e) {
        e->opcode = fd < 0 ? NC_OP_U_NOP : NC_OP_U_POLL_ADD;
        e->fd = fd;
        e->op_flags = fd < 0 ? 0 : POLLIN; /* poll32_events */
        e->len = len;
        e->user_data = user_data;
        nc_ring_publish(&rg->r);
    }
    nc_unlock(&rg->r.sq_lock);
    return e != NULL;
}

/* Lock held: a poll in ring `from` on ring j's fd, whose completion wakes
 * a thread asleep in `from` once j has completions.  0 if the SQ is full. */
static int arm_watch(ur_state *st, int from, int j)
{
    ur_ring *f = &st->rings[from];
    if (!put_sqe(f, st->rings[j].r.fd, 0, UD_WATCH + (unsigned)j))
        return 0;
    f->watching |= 1u << j;
    f->inflight++;
    st->inflight++;
    return 1;
}

/* Ring j has work the kernel may finish: requests (its bell aside, which
 * is only for a thread asleep in it), completions, or SQEs not submitted. */
static int has_kernel_work(const ur_ring *rg)
{
    return rg->inflight > rg->bell || nc_ring_cq_ready(&rg->r) || nc_ring_unsubmitted(&rg->r);
}

/* Ring j's threads have been out of nc_wait long enough (or it has none)
 * that other threads take over its completions.  Until then they leave
 * them to it: taking another thread's connections makes both threads use
 * both rings, and their mutexes. */
static int away(const ur_ring *rg, uint64_t now)
{
    return !rg->inwait && (!rg->waiters || now - rg->left_at >= AWAY_MS);
}

/* Ring j is away with work, and no poll on its fd sits in a ring that a
 * thread waits in. */
static int uncovered(const ur_state *st, int j, uint64_t now)
{
    const ur_ring *rg = &st->rings[j];
    if (!away(rg, now) || !has_kernel_work(rg))
        return 0;
    for (int m = 0; m < st->nrings; m++)
        if (st->rings[m].inwait && (st->rings[m].watching & (1u << j)))
            return 0;
    return 1;
}

/* Lock held, about to sleep in ring k: its bell goes on, so that other
 * threads wake it with an eventfd write, never entering its ring (which
 * would wait for its mutex while the thread submits a batch). */
static void arm_bell(ur_state *st, int k)
{
    ur_ring *rg = &st->rings[k];
    if (put_sqe(rg, rg->efd, NC_POLL_ADD_MULTI, UD_BELL + (unsigned)k)) {
        __atomic_store_n(&rg->bell, 1, __ATOMIC_RELEASE);
        rg->inflight++;
        st->inflight++;
    }
}

/* Lock held: ring j's thread left nc_wait with work in the kernel.  A
 * thread asleep until later than j's grace ends is woken to look again
 * (watch_others), unless another sleeper will wake by then anyway. */
static void cover(nc_queue *q, int j)
{
    ur_state *st = STATE(q);
    if (st->nrings < 2 || !has_kernel_work(&st->rings[j]))
        return;
    uint64_t by = nc_now_ms() + AWAY_MS + 1;
    int late = -1;
    for (int m = 0; m < st->nrings; m++) {
        ur_ring *rg = &st->rings[m];
        if (m == j || rg->sleepers == 0)
            continue;
        if (rg->sleep_until <= by)
            return;
        late = m;
    }
    if (late < 0)
        return; /* nobody sleeps: the next to sleep looks (watch_others) */
    ur_ring *rg = &st->rings[late];
    rg->sleep_until = 0; /* (woken already) */
    if (rg->bell && nc_defer_kick(q, NULL, (unsigned)(MAX_RINGS + late)) == 0)
        return;
    /* No bell (it fell asleep while there was one ring): a NOP wakes it. */
    put_sqe(rg, -1, 0, UD_WAKE);
    kick_ring(q, late);
}

/* Lock held, in ring k's wait: what away rings' threads left unsubmitted
 * goes out (a busy thread that never sleeps must do it too). */
static void kick_away(nc_queue *q, int k)
{
    ur_state *st = STATE(q);
    uint64_t now = nc_now_ms();
    for (int j = 0; j < st->nrings; j++)
        if (j != k && !st->rings[j].inwait && away(&st->rings[j], now) && nc_ring_unsubmitted(&st->rings[j].r))
            kick_ring(q, j);
}

/* Lock held, about to sleep in ring k until `until`: it submits what away
 * rings' threads left unsubmitted (they may not wait again for long) and
 * watches each uncovered one.  Returns how long it may sleep at most, for
 * a ring whose thread left recently with work and may not come back
 * (-1: no limit). */
static int watch_others(nc_queue *q, int k)
{
    ur_state *st = STATE(q);
    uint64_t now = nc_now_ms();
    int limit = -1;
    for (int j = 0; j < st->nrings; j++) {
        ur_ring *rg = &st->rings[j];
        if (j == k)
            continue;
        if (rg->inwait) {
            /* Back in a wait, but busy (it left a moment ago): a sleep to
             * the end of that grace spares it a bell each time it leaves
             * (cover() sees this sleeper due then). */
            if (rg->waiters && now - rg->left_at < AWAY_MS && has_kernel_work(rg)) {
                int left = (int)(rg->left_at + AWAY_MS - now) + 1;
                if (limit < 0 || left < limit)
                    limit = left;
            }
            continue;
        }
        if (!away(rg, now)) {
            if (has_kernel_work(rg)) {
                int left = (int)(rg->left_at + AWAY_MS - now) + 1;
                if (limit < 0 || left < limit)
                    limit = left;
            }
            continue;
        }
        if (nc_ring_unsubmitted(&rg->r))
            kick_ring(q, j);
        if (uncovered(st, j, now) && !(st->rings[k].watching & (1u << j)))
            arm_watch(st, k, j);
    }
    return limit;
}

/* Lock held: the SQEs this thread wrote must reach the kernel now, not at
 * the next wait of their ring's thread: this thread is not that one (or
 * not a waiter at all), or another waiter sleeps and this one may not come
 * back soon.  A ring nobody waits in gets watched. */
static void submit_rings(nc_queue *q, int own_later)
{
    ur_state *st = STATE(q);
    int mine = -2;
    unsigned written = st->nrings == 1 ? 1u : st->written; /* (one ring: as ever) */
    st->written = 0;
    for (int i = 0; i < st->nrings; i++) {
        ur_ring *rg = &st->rings[i];
        if (!(written & (1u << i)) || rg->flush_pending || !nc_ring_unsubmitted(&rg->r))
            continue;
        if (mine == -2)
            mine = my_ring(q);
        /* Its own ring, with several: at its next wait, or by a sleeper
         * once it is away (watch_others). */
        if (i != mine || (q->sleepers > 0 && !own_later && st->nrings == 1))
            kick_ring(q, i);
        cover(q, i);
    }
}

static void submit_soon(nc_queue *q)
{
    submit_rings(q, 0);
}

/* Lock held, in this thread's wait: what it wrote to other rings (re-arms
 * while reaping or receiving for their connections) goes out now; its own
 * ring's SQEs go with its next io_uring_enter. */
static void submit_others(nc_queue *q)
{
    submit_rings(q, 1);
}

/* 0 or a negative errno; close_ring either way. */
static int open_ring(ur_ring *rg)
{
    memset(rg, 0, sizeof *rg);
    int rc = nc_ring_open(&rg->r, (unsigned)nc_ring_env("NETCORE_URING_ENTRIES", SQ_ENTRIES), CQ_FACTOR,
                          (unsigned)nc_ring_env("NETCORE_URING_BUFFERS", BUF_COUNT), BUF_SIZE);
    rg->efd = rc < 0 ? -1 : eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    return rc < 0 ? rc : rg->efd < 0 ? -errno : 0;
}

static void close_ring(ur_ring *rg)
{
    nc_ring_close(&rg->r);
    if (rg->efd >= 0)
        close(rg->efd);
    rg->efd = -1;
}

/* Lock held: the ring of this thread's waiter.  The first time: a ring
 * nobody serves, else a new one (opened with the lock dropped), else the
 * least busy. */
static int ring_of(nc_queue *q, nc_waiter *w)
{
    ur_state *st = STATE(q);
    if (w->be_slot)
        return w->be_slot - 1;
    while (st->opening) { /* another thread opens a ring: see what it gets */
        nc_unlock_q(q);
        struct timespec pause = {0, 200000};
        nanosleep(&pause, NULL);
        nc_lock(&q->lock);
    }
    int pick = -1;
    for (int i = 0; i < st->nrings && pick < 0; i++)
        if (st->rings[i].waiters == 0)
            pick = i;
    if (pick < 0 && st->nrings < st->max_rings) {
        int n = st->nrings;
        ur_ring *rg = &st->rings[n];
        st->opening = 1;
        nc_unlock_q(q);
        int rc = open_ring(rg);
        if (rc < 0)
            close_ring(rg);
        nc_lock(&q->lock);
        st->opening = 0;
        if (rc < 0) {
            st->max_rings = n; /* out of memory or locked memory: share */
        } else {
            __atomic_store_n(&st->nrings, n + 1, __ATOMIC_RELEASE);
        }
        if (rc == 0)
            pick = n;
    }
    if (pick < 0) {
        pick = 0;
        for (int i = 1; i < st->nrings; i++)
            if (st->rings[i].waiters < st->rings[pick].waiters)
                pick = i;
    }
    ur_ring *rg = &st->rings[pick];
    rg->waiters++;
    if (!rg->owner)
        rg->owner = w;
    w->be_slot = pick + 1;
    return pick;
}

static void ur_leave(nc_queue *q, nc_waiter *w)
{
    if (w->be_slot) {
        ur_ring *rg = &STATE(q)->rings[w->be_slot - 1];
        rg->waiters--;
        if (rg->owner == w)
            rg->owner = NULL;
        w->be_slot = 0;
    }
}

/* A connection's completions are for the thread of its ring, so that its
 * requests are submitted from there (see "Rings").  A listener's accepts
 * are for whichever thread is free: the connection then goes to its ring. */
static nc_waiter *ur_home(nc_queue *q, const nc_handle *h)
{
    ur_state *st = STATE(q);
    const ur_handle *hs = HS(h);
    return st->nrings > 1 && hs && h->kind != NC_LISTENER ? st->rings[hs->ring].owner : NULL;
}

/* Lock held: h's next requests go to the ring of the thread starting them,
 * if the kernel holds nothing of h on its present ring. */
static void bind_ring(nc_queue *q, nc_handle *h)
{
    ur_state *st = STATE(q);
    ur_handle *hs = HS(h);
    if (st->nrings < 2)
        return;
    int k = my_ring(q);
    if (k < 0 || k == hs->ring || h->closed || hs->ccount || hs->dirty || hs->accept.inflight ||
        hs->recv.inflight || hs->send.inflight || hs->connect.inflight)
        return;
    if (hs->has_sqe && !nc_ring_consumed(RING(st, h), hs->last_sqe))
        return;
    hs->ring = k;
    hs->has_sqe = 0;
}

/* Lock held: closed handles whose last SQE the kernel has now read let go
 * of their socket. */
static void check_closing(nc_queue *q)
{
    ur_state *st = STATE(q);
    nc_handle **ph = &st->closing;
    while (*ph) {
        nc_handle *h = *ph;
        ur_handle *hs = HS(h);
        if (nc_ring_consumed(RING(st, h), hs->last_sqe)) {
            *ph = hs->closing_next;
            hs->closing = 0;
            nc_unpin(q, h);
            nc_handle_unref(q, h);
        } else {
            ph = &hs->closing_next;
        }
    }
}

/* ------------------------------------------------------------- receiving */

static void recycle_chunks(ur_state *st, ur_handle *hs)
{
    while (hs->ccount) {
        nc_ring_give(&st->rings[hs->ring].r, hs->chunks[hs->chead].bid);
        hs->chead = (hs->chead + 1) % hs->ccap;
        hs->ccount--;
    }
    hs->buffered = 0;
}

static int push_chunk(ur_handle *hs, char *data, uint32_t len, uint16_t bid)
{
    if (hs->ccount == hs->ccap) {
        int cap = hs->ccap ? hs->ccap * 2 : 4;
        chunk *c = malloc((size_t)cap * sizeof *c);
        if (!c)
            return -1;
        for (int i = 0; i < hs->ccount; i++)
            c[i] = hs->chunks[(hs->chead + i) % hs->ccap];
        free(hs->chunks);
        hs->chunks = c;
        hs->ccap = cap;
        hs->chead = 0;
    }
    hs->chunks[(hs->chead + hs->ccount) % hs->ccap] = (chunk){data, len, bid};
    hs->ccount++;
    hs->buffered += len;
    return 0;
}

static int map_status(int res)
{
    return res == -EPIPE ? NC_ECONNRESET : res == -ECANCELED ? NC_CANCELLED : res;
}

/* A recv pending when its handle was closed ends with its request: with
 * the bytes it brought, else cancelled. */
static void finish_close_recv(nc_queue *q, ur_handle *hs, const nc_cqe *c, char *data)
{
    nc_op *op = hs->close_recv;
    hs->close_recv = NULL;
    if (c->res > 0 && data) {
        op->status = 0;
        nc_complete_lent(q, op, data, (size_t)c->res, LOAN(hs->ring, c->flags >> NC_CQE_BUFFER_SHIFT));
    } else {
        if (data)
            nc_ring_give(&STATE(q)->rings[hs->ring].r, (uint16_t)(c->flags >> NC_CQE_BUFFER_SHIFT));
        nc_complete(q, op, NC_CANCELLED);
    }
}

static void on_recv(nc_queue *q, nc_handle *h, const nc_cqe *c)
{
    ur_state *st = STATE(q);
    ur_handle *hs = HS(h);
    int more = c->flags & NC_CQE_F_MORE;
    char *data = NULL;
    uint16_t bid = (uint16_t)(c->flags >> NC_CQE_BUFFER_SHIFT);
    nc_ring *ring = RING(st, h);
    if (c->flags & NC_CQE_F_BUFFER)
        data = nc_ring_buffer(ring, bid);
    if (h->closed && hs->close_recv) {
        if (c->res > 0 || !more)
            finish_close_recv(q, hs, c, data);
        else if (data)
            nc_ring_give(ring, bid);
        return;
    }
    if (h->closed && !h->rxq.head) { /* nobody to hand them to */
        if (data)
            nc_ring_give(ring, bid);
        return;
    }
    /* Open, or being closed with a recv waiting (close() reaps first):
     * kept for that recv. */
    if (c->res > 0 && data) {
        if (push_chunk(hs, data, (uint32_t)c->res, bid) < 0) {
            nc_ring_give(ring, bid);
            hs->rx_err = NC_E_NOMEM;
        }
    } else if (c->res == 0) {
        if (data)
            nc_ring_give(ring, bid);
        hs->eof = 1;
    } else if (c->res == -EINVAL && st->multishot_recv && !more) {
        st->multishot_recv = 0; /* Linux < 6.0: one recv per request */
    } else if (c->res < 0 && c->res != -ENOBUFS && c->res != -ECANCELED) {
        hs->rx_err = map_status(c->res);
    }
    if (!more) {
        if (c->res == -ENOBUFS && !hs->nobuf) {
            /* The ring ran dry: re-armed when buffers come back. */
            hs->nobuf = 1;
            nc_handle_ref(h);
            hs->nobuf_next = st->nobuf;
            st->nobuf = h;
        }
    }
    if (!h->closed && h->rxq.head && (hs->ccount || hs->eof || hs->rx_err))
        nc_mark_ready(q, h);
}

/* After the recv request ended (lock held): arm another if wanted. */
static void maybe_rearm_recv(ur_state *st, nc_handle *h)
{
    ur_handle *hs = HS(h);
    if (h->closed || hs->recv.inflight || hs->eof || hs->rx_err || hs->nobuf || hs->rx_paused)
        return;
    /* Multishot stays armed (an idle connection pins no buffer); one-shot
     * recvs only while a recv op waits for bytes. */
    if (st->multishot_recv || (h->rxq.head && !hs->ccount))
        need(st, h, W_RECV);
}

/* ----------------------------------------------------------- accepting */

/* h's backend state, its requests going to this thread's ring. */
static ur_handle *new_hstate(nc_queue *q, nc_handle *h)
{
    ur_handle *hs = calloc(1, sizeof *hs);
    if (!hs)
        return NULL;
    int ring = STATE(q)->nrings > 1 ? my_ring(q) : 0;
    hs->ring = ring < 0 ? 0 : ring;
    hs->accept = (ur_req){R_ACCEPT, 0, 0, h};
    hs->recv = (ur_req){R_RECV, 0, 0, h};
    hs->send = (ur_req){R_SEND, 0, 0, h};
    hs->connect = (ur_req){R_CONNECT, 0, 0, h};
    h->be = hs;
    return hs;
}


static void close_fd_later(nc_queue *q, int fd)
{
    nc_defer_release(q, fd);
}

/* Lock held: fd becomes a connection handle for the next accept op. */
static void hand_accepted(nc_queue *q, nc_handle *lst, int fd)
{
    nc_op *op = nc_opq_pop(&lst->rxq);
    nc_handle *h = nc_handle_new(q, fd, NC_CONN);
    if (h && !new_hstate(q, h)) {
        nc_handle_close(q, h); /* closes fd */
        h = NULL;
        fd = -1;
    }
    if (!h) {
        if (fd >= 0)
            close_fd_later(q, fd);
        nc_complete(q, op, NC_E_NOMEM);
        return;
    }
    op->result = h->id;
    nc_complete(q, op, 0);
}

/* A listener's accept is multishot, and takes a few connections ahead of
 * the accept ops.  Not on an adopted listener, which other processes may
 * serve too: a multishot accept stays first in the socket's wait queue
 * and would take every connection, so there one accept is armed at a time,
 * only while an op waits, and the kernel hands connections round. */
static void arm_accept(ur_state *st, nc_handle *lst)
{
    ur_handle *hs = HS(lst);
    int room = lst->adopted ? lst->rxq.head != NULL : hs->nfds < ACCEPT_BACKLOG;
    if (!lst->closed && !hs->accept.inflight && !lst->starved && room)
        need(st, lst, W_ACCEPT);
}

static int keep_accepted(ur_handle *hs, int fd)
{
    if (hs->nfds == hs->fcap) {
        int cap = hs->fcap ? hs->fcap * 2 : 8;
        int *fds = realloc(hs->fds, (size_t)cap * sizeof *fds);
        if (!fds)
            return -1;
        hs->fds = fds;
        hs->fcap = cap;
    }
    hs->fds[hs->nfds++] = fd;
    return 0;
}

static void on_accept(nc_queue *q, nc_handle *lst, const nc_cqe *c)
{
    ur_state *st = STATE(q);
    ur_handle *hs = HS(lst);
    if (c->res >= 0) {
        if (lst->closed) {
            close_fd_later(q, c->res);
        } else if (lst->rxq.head) {
            hand_accepted(q, lst, c->res);
        } else if (keep_accepted(hs, c->res) == 0) {
            /* Taken ahead of the accept ops.  Past the backlog the accept is
             * cancelled (the rest stay in the kernel's), but what it took
             * meanwhile is kept: an accepted connection is never dropped. */
            if (hs->nfds >= ACCEPT_BACKLOG && hs->accept.inflight && !hs->accept.cancelled) {
                hs->accept.cancelled = 1;
                need(st, lst, W_CANCEL);
            }
        } else {
            close_fd_later(q, c->res); /* out of memory */
        }
    } else if (c->res == -EMFILE || c->res == -ENFILE || c->res == -ENOBUFS || c->res == -ENOMEM) {
        if (!lst->closed)
            nc_starve(q, lst);
    } else if (c->res != -ECANCELED && !lst->closed && lst->rxq.head) {
        nc_complete(q, nc_opq_pop(&lst->rxq), map_status(c->res));
    }
}

/* ------------------------------------------------------ sending, connect */

static void on_send(nc_queue *q, nc_handle *h, const nc_cqe *c)
{
    ur_handle *hs = HS(h);
    nc_op *op = hs->send_op;
    hs->send_op = NULL;
    if (h->closed) {
        /* Left to the request by close() (which may be reaping just now,
         * the op still queued): the kernel is done with its buffers only
         * now. */
        if (h->txq.head == op)
            nc_opq_pop(&h->txq);
        nc_complete(q, op, NC_CANCELLED);
        return;
    }
    if (op->kind == NC_OP_SHUTDOWN || c->res < 0)
        nc_complete(q, nc_opq_pop(&h->txq), c->res < 0 ? map_status(c->res) : 0);
    else if (nc_send_advance(op, (size_t)c->res))
        nc_complete(q, nc_opq_pop(&h->txq), 0);
}

static void on_connect(nc_queue *q, nc_handle *h, const nc_cqe *c)
{
    nc_op *op = HS(h)->connect_op;
    HS(h)->connect_op = NULL;
    if (h->txq.head == op)
        nc_opq_pop(&h->txq); /* unless close took it off already */
    if (h->closed) {
        nc_complete(q, op, NC_CANCELLED);
        return;
    }
    if (c->res == 0) {
        h->kind = NC_CONN;
        nc_complete(q, op, 0);
        return;
    }
    op->result = 0;
    nc_complete(q, op, map_status(c->res));
    nc_handle_close(q, h); /* nobody else knows this handle yet */
}

/* --------------------------------------------------------------- reaping */

/* A completion from ring i. */
static void on_cqe(nc_queue *q, int i, const nc_cqe *c)
{
    ur_state *st = STATE(q);
    if (c->user_data == UD_WAKE) {
        nc_woken(q);
        return;
    }
    if (c->user_data == UD_CANCEL)
        return;
    if (c->user_data >= UD_BELL && c->user_data < UD_BELL + MAX_RINGS) {
        nc_woken(q);
        if (!(c->flags & NC_CQE_F_MORE)) { /* cancelled (its thread ended, say) */
            __atomic_store_n(&st->rings[i].bell, 0, __ATOMIC_RELEASE);
            st->rings[i].inflight--;
            st->inflight--;
        }
        return;
    }
    if (c->user_data >= UD_WATCH && c->user_data < UD_WATCH + MAX_RINGS) {
        st->rings[i].watching &= ~(1u << (c->user_data - UD_WATCH)); /* reap() looks at it */
        st->rings[i].inflight--;
        st->inflight--;
        return;
    }
    ur_req *r = (ur_req *)(uintptr_t)c->user_data;
    nc_handle *h = r->h;
    int more = c->flags & NC_CQE_F_MORE;
    if (!more) {
        r->inflight = 0;
        st->rings[i].inflight--;
        st->inflight--;
    }
    switch (r->kind) {
    case R_ACCEPT:
        on_accept(q, h, c);
        if (!more && !h->closed) {
            HS(h)->accept.cancelled = 0;
            if (h->rxq.head || HS(h)->nfds < ACCEPT_BACKLOG)
                arm_accept(st, h);
        }
        break;
    case R_RECV:
        on_recv(q, h, c);
        if (!more)
            maybe_rearm_recv(st, h);
        break;
    case R_SEND:
        on_send(q, h, c);
        if (!h->closed)
            send_next(q, h); /* the rest of op, or the next one */
        break;
    case R_CONNECT:
        on_connect(q, h, c);
        break;
    }
    if (!more)
        nc_handle_unref(q, h); /* the request's */
}

/* Lock held: every completion ring i's CQ holds. */
static void reap_ring(nc_queue *q, int i)
{
    ur_ring *rg = &STATE(q)->rings[i];
    unsigned head = *rg->r.cq_khead;
    for (;;) {
        unsigned tail = __atomic_load_n(rg->r.cq_ktail, __ATOMIC_ACQUIRE);
        if (head == tail)
            break;
        while (head != tail) {
            nc_cqe c = rg->r.cqes[head & rg->r.cq_mask];
            head++;
            __atomic_store_n(rg->r.cq_khead, head, __ATOMIC_RELEASE);
            on_cqe(q, i, &c);
        }
    }
    int over = (nc_ring_sq_flags(&rg->r) & NC_SQ_CQ_OVERFLOW) != 0;
    if (over && !rg->overflowing)
        rg->overflows++;
    rg->overflowing = over;
}

/* Ring i is for a thread in ring k's wait (k < 0: any thread) to reap:
 * its own; another only once that one is away (see away()) and its own
 * has nothing (taking another thread's connections costs both threads).
 * reap() applies the same rule, deciding "its own has nothing" before it
 * reaps its own. */
static int reaps(const ur_state *st, int k, int i)
{
    return k < 0 || i == k || (away(&st->rings[i], nc_now_ms()) && !nc_ring_cq_ready(&st->rings[k].r));
}

/* Lock held: the completions of the rings reaps(k) allows (k < 0: all). */
static void reap(nc_queue *q, int k)
{
    ur_state *st = STATE(q);
    if (st->reaping)
        return; /* a handler closed a handle: the outer loop goes on */
    st->reaping = 1;
    unsigned long given = buffers_given(st);
    int own = k >= 0 && nc_ring_cq_ready(&st->rings[k].r);
    if (own)
        reap_ring(q, k);
    uint64_t now = own || st->nrings < 2 ? 0 : nc_now_ms();
    for (int i = 0; i < st->nrings; i++)
        if (i != k && (k < 0 || (!own && away(&st->rings[i], now)))) {
            reap_ring(q, i);
            if (st->rings[i].overflowing)
                kick_ring(q, i); /* only an io_uring_enter(GETEVENTS) flushes the kernel's backlog */
        }
    st->reaping = 0;
    if (st->nobuf && buffers_given(st) != given)
        buffers_back(q);
}

/* -------------------------------------------------------------- backend */

static int ur_init(nc_queue *q)
{
    ur_state *st = calloc(1, sizeof *st);
    if (!st)
        return NC_E_NOMEM;
    st->multishot_recv = !getenv("NETCORE_URING_NO_MULTISHOT_RECV");
    st->max_rings = nc_ring_env("NETCORE_URING_RINGS", MAX_RINGS);
    if (st->max_rings > MAX_RINGS)
        st->max_rings = MAX_RINGS;
    q->be_state = st;
    int rc = open_ring(&st->rings[0]);
    if (rc < 0) {
        close_ring(&st->rings[0]);
        free(st);
        q->be_state = NULL;
        return rc;
    }
    st->nrings = 1;
    return 0;
}

/* No lock: h is pinned and known to nobody else. */
static int ur_attach(nc_queue *q, nc_handle *h)
{
    (void)q;
    if (!new_hstate(q, h))
        return NC_E_NOMEM;
    if (h->kind == NC_LISTENER) {
        /* Accepted sockets inherit it: no system call per connection. */
        int one = 1;
        setsockopt(h->sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return 0;
}

static void ur_free_handle(nc_queue *q, nc_handle *h)
{
    (void)q;
    ur_handle *hs = HS(h);
    if (!hs)
        return;
    free(hs->chunks);
    free(hs->fds);
    free(hs->msg);
    free(hs->addr);
    free(hs);
    h->be = NULL;
}

static void ur_start(nc_queue *q, nc_handle *h, nc_op *op)
{
    ur_state *st = STATE(q);
    ur_handle *hs = HS(h);
    bind_ring(q, h);
    switch (op->kind) {
    case NC_OP_ACCEPT:
        if (hs->nfds) {
            int fd = hs->fds[0];
            memmove(hs->fds, hs->fds + 1, (size_t)--hs->nfds * sizeof(int));
            hand_accepted(q, h, fd);
        }
        arm_accept(st, h);
        break;
    case NC_OP_RECV:
        if (hs->ccount || hs->eof || hs->rx_err)
            nc_mark_ready(q, h);
        else
            maybe_rearm_recv(st, h);
        break;
    case NC_OP_SEND:
    case NC_OP_SHUTDOWN:
        if (h->txq.head != op)
            break;
        /* A quiet send (NC_SEND_QUIET) too goes to the kernel as a request,
         * submitted with the batch's next io_uring_enter: a sendmsg of its
         * own at once measured ~8% more server CPU per HTTP request (and
         * per echo) than the request and its completion.  So none is done
         * within the call here, and each reports its completion. */
        send_next(q, h);
        break;
    }
    submit_soon(q);
}

static void ur_resume_accept(nc_queue *q, nc_handle *lst)
{
    arm_accept(STATE(q), lst);
    submit_soon(q);
}

/* Lock held: buffers went back to the ring, so the connections that ran
 * it dry can read again. */
static void buffers_back(nc_queue *q)
{
    ur_state *st = STATE(q);
    nc_handle *h = st->nobuf;
    st->nobuf = NULL;
    while (h) {
        nc_handle *next = HS(h)->nobuf_next;
        HS(h)->nobuf = 0;
        maybe_rearm_recv(st, h);
        nc_handle_unref(q, h);
        h = next;
    }
    submit_soon(q);
}

static void ur_close(nc_queue *q, nc_handle *h)
{
    ur_state *st = STATE(q);
    ur_handle *hs = HS(h);
    if (!hs) { /* never attached */
        nc_cancel_all(q, h);
        return;
    }
    reap(q, -1); /* what the kernel already finished counts: a recv's bytes too */
    if (h->kind == NC_LISTENER) {
        while (hs->nfds)
            close_fd_later(q, hs->fds[--hs->nfds]);
    } else if (h->rxq.head) {
        nc_op *op = nc_opq_pop(&h->rxq);
        if (hs->ccount) { /* bytes had come: they are the recv's */
            chunk *c = &hs->chunks[hs->chead];
            hs->chead = (hs->chead + 1) % hs->ccap;
            hs->ccount--;
            op->status = 0;
            nc_complete_lent(q, op, c->data, c->len, LOAN(hs->ring, c->bid));
        } else if (hs->recv.inflight) {
            hs->close_recv = op; /* its request decides */
        } else {
            nc_complete(q, op, NC_CANCELLED);
        }
    }
    recycle_chunks(st, hs);
    if (st->nobuf)
        buffers_back(q);
    if (hs->send.inflight && hs->send_op == h->txq.head)
        nc_opq_pop(&h->txq); /* completes when its request ends */
    if (hs->connect.inflight && hs->connect_op == h->txq.head)
        nc_opq_pop(&h->txq); /* likewise */
    nc_cancel_all(q, h);
    ur_req *reqs[] = {&hs->accept, &hs->recv, &hs->send, &hs->connect};
    int cancel = 0;
    for (int i = 0; i < 4; i++)
        if (reqs[i]->inflight && !reqs[i]->cancelled) {
            reqs[i]->cancelled = 1;
            cancel = 1;
        }
    if (cancel)
        need(st, h, W_CANCEL);
    if (hs->has_sqe && !nc_ring_consumed(RING(st, h), hs->last_sqe)) {
        /* An SQE naming the socket is still in the SQ: keep it open. */
        nc_pin(h);
        nc_handle_ref(h);
        hs->closing = 1;
        hs->closing_next = st->closing;
        st->closing = h;
    }
    submit_soon(q);
}

static void ur_release(nc_queue *q, nc_sock_t s)
{
    (void)q;
    close(s);
}

static void ur_recycle(nc_queue *q, const uintptr_t *loans, int n)
{
    ur_state *st = STATE(q);
    for (int i = 0; i < n; i++)
        nc_ring_give(&st->rings[loans[i] >> 16].r, (uint16_t)loans[i]);
    buffers_back(q);
}

/* Lock held: recvs of the ready connections, out of what was received. */
static void ur_perform(nc_queue *q, nc_waiter *w)
{
    ur_state *st = STATE(q);
    unsigned long given = buffers_given(st);
    long budget = q->nready;
    nc_handle *hs_[32];
    int nh;
    while ((nh = nc_take_ready(q, w, hs_, 32, &budget)) > 0) {
        for (int i = 0; i < nh; i++) {
            nc_handle *h = hs_[i];
            ur_handle *hs = HS(h);
            nc_op *op = h->rxq.head;
            if (h->kind != NC_CONN || !op || !hs || nc_batch_room(w) == 0) {
                if (op && nc_batch_room(w) == 0)
                    nc_mark_ready(q, h);
                nc_handle_unref(q, h);
                continue;
            }
            if (hs->ccount == 1 && hs->chunks[hs->chead].len <= op->nbytes) {
                /* The kernel's buffer itself: lent to the batch. */
                chunk c = hs->chunks[hs->chead];
                hs->chead = (hs->chead + 1) % hs->ccap;
                hs->ccount = 0;
                hs->buffered = 0;
                nc_complete_recv_lent(q, w, nc_recv_take(q, h, 0, c.len), c.data, c.len, LOAN(hs->ring, c.bid));
            } else if (hs->ccount) {
                /* Several, or more than asked: joined in the arena. */
                size_t len, n = 0;
                char *buf = nc_arena_take(w, op->nbytes, &len);
                if (!buf) {
                    nc_mark_ready(q, h);
                    nc_handle_unref(q, h);
                    continue;
                }
                while (hs->ccount && n < len) {
                    chunk *c = &hs->chunks[hs->chead];
                    size_t take = c->len < len - n ? c->len : len - n;
                    memcpy(buf + n, c->data, take);
                    n += take;
                    c->data += take;
                    c->len -= (uint32_t)take;
                    if (c->len == 0) {
                        nc_ring_give(RING(st, h), c->bid);
                        hs->chead = (hs->chead + 1) % hs->ccap;
                        hs->ccount--;
                    }
                }
                hs->buffered -= n;
                nc_arena_used(w, n);
                nc_complete_recv(q, w, nc_recv_take(q, h, 0, n), 0, buf, n);
            } else if (hs->rx_err) {
                nc_complete_recv(q, w, nc_opq_pop(&h->rxq), hs->rx_err, NULL, 0);
            } else if (hs->eof) {
                nc_complete_recv(q, w, nc_opq_pop(&h->rxq), 0, NULL, 0);
            }
            /* A multishot recv goes on: what is left is for a later pass,
             * or a one-shot kernel request reads on (before Linux 6.0). */
            if (h->rxq.head && (hs->ccount || hs->eof || hs->rx_err))
                nc_mark_ready(q, h);
            else if (h->rxq.head)
                maybe_rearm_recv(st, h);
            /* Backpressure: past the limit the recv stops until drained. */
            if (hs->rx_paused && hs->buffered < RECV_BUFFERED_MAX / 2 && !hs->recv.inflight) {
                hs->rx_paused = 0;
                maybe_rearm_recv(st, h);
            } else if (!hs->rx_paused && hs->buffered > RECV_BUFFERED_MAX && hs->recv.inflight &&
                       !hs->recv.cancelled) {
                hs->rx_paused = 1;
                hs->recv.cancelled = 1;
                need(st, h, W_CANCEL);
            }
            nc_handle_unref(q, h);
        }
    }
    if (st->nobuf && buffers_given(st) != given)
        buffers_back(q);
    submit_others(q);
}

/* Completions for a thread in ring k's wait to reap. */
static int cq_ready(const ur_state *st, int k)
{
    for (int i = 0; i < st->nrings; i++)
        if (reaps(st, k, i) && nc_ring_cq_ready(&st->rings[i].r))
            return 1;
    return 0;
}

/* A thread's wait begins: its ring (made now if need be) is in a wait. */
static void ur_wait_begin(nc_queue *q, nc_waiter *w)
{
    STATE(q)->rings[ring_of(q, w)].inwait++;
}

/* ... and ends: its ring, and those its polls watch, are left to others
 * until it is back. */
static void ur_wait_end(nc_queue *q, nc_waiter *w)
{
    ur_state *st = STATE(q);
    int k = w->be_slot - 1;
    if (--st->rings[k].inwait == 0)
        st->rings[k].left_at = nc_now_ms();
    /* Every ring no thread in a wait covers: its own, those its polls
     * watched (fired or not), and any whose cover() an earlier leaver
     * skipped because this thread was to wake soon. */
    uint64_t now = nc_now_ms();
    for (int j = 0; j < st->nrings; j++) {
        if (st->rings[j].inwait)
            continue;
        int covered = 0;
        for (int m = 0; m < st->nrings && !covered; m++)
            covered = st->rings[m].inwait && (st->rings[m].watching & (1u << j)) && away(&st->rings[j], now);
        if (!covered)
            cover(q, j);
    }
}

static int ur_poll(nc_queue *q, nc_waiter *w, int timeout_ms)
{
    ur_state *st = STATE(q);
    int k = w->be_slot - 1;
    ur_ring *rg = &st->rings[k];
    int rc = 0;
    flush_dirty(q);
    submit_others(q);
    for (int round = 0;; round++) {
        unsigned submit = nc_ring_unsubmitted(&rg->r);
        int ready = cq_ready(st, k);
        int taskrun = (nc_ring_sq_flags(&rg->r) & NC_SQ_TASKRUN) != 0;
        rc = 0;
        if (!(ready && !submit && !taskrun && !rg->overflowing)) {
            /* One system call submits the batch and waits. */
            unsigned min = ready || rg->overflowing || round ? 0 : timeout_ms != 0;
            rg->flush_pending = 0;
            if (!min && st->nrings > 1)
                kick_away(q, k);
            if (min && st->nrings > 1) {
                if (!rg->bell)
                    arm_bell(st, k);
                int limit = watch_others(q, k);
                if (limit >= 0 && (timeout_ms < 0 || limit < timeout_ms))
                    timeout_ms = limit;
            }
            if (min) {
                /* (a ring opened later may need to know: cover()) */
                uint64_t until = timeout_ms < 0 ? UINT64_MAX : nc_now_ms() + (uint64_t)timeout_ms;
                if (rg->sleepers == 0 || until > rg->sleep_until)
                    rg->sleep_until = until;
                submit = nc_ring_unsubmitted(&rg->r);
                __atomic_add_fetch(&rg->sleepers, 1, __ATOMIC_RELAXED);
                w->polling = 0; /* what is for it may go to others meanwhile */
                nc_poll_begin(q);
            } else {
                nc_unlock_q(q);
            }
            rc = nc_ring_enter(&rg->r, submit, 1, min, timeout_ms);
            if (min) {
                nc_poll_end(q);
                w->polling = 1;
                if (st->nrings > 1)
                    nc_woken(q); /* a bell meant for it may come after it woke */
                __atomic_sub_fetch(&rg->sleepers, 1, __ATOMIC_RELAXED);
            } else {
                nc_lock(&q->lock);
            }
            check_closing(q);
        }
        reap(q, k);
        if (rc == -EINTR) {
            rc = NC_E_INTR;
            break;
        }
        if (rc < 0 && rc != -ETIME && rc != -EBUSY && rc != -EAGAIN)
            break;
        /* A backlog of overflowed completions: one more pass flushes it. */
        if (!(rg->overflowing || rc == -EBUSY) || round >= 2) {
            rc = 0;
            break;
        }
    }
    submit_others(q);
    return rc;
}

/* A submitting kick (lock dropped): the SQEs written to ring `what` go to
 * the kernel now. */
static void ur_kick(nc_queue *q, nc_handle *h, unsigned what)
{
    (void)h;
    ur_state *st = STATE(q);
    if (what >= MAX_RINGS) { /* ring that ring's bell */
        uint64_t one = 1;
        if (write(st->rings[what - MAX_RINGS].efd, &one, sizeof one) < 0) {
            /* EAGAIN: the count is full, so the bell is ringing anyway */
        }
        return;
    }
    ur_ring *rg = &st->rings[what];
    nc_lock(&q->lock);
    flush_dirty(q);
    rg->flush_pending = 1; /* this kick submits it; others get theirs */
    submit_soon(q);
    rg->flush_pending = 0;
    unsigned submit = nc_ring_unsubmitted(&rg->r);
    int over = (nc_ring_sq_flags(&rg->r) & NC_SQ_CQ_OVERFLOW) != 0;
    nc_unlock_q(q);
    if (submit || over)
        nc_ring_enter(&rg->r, submit, over, 0, -1);
    nc_lock(&q->lock);
    check_closing(q);
    nc_unlock_q(q);
}

/* No lock: a NOP whose completion ends the wait of a thread asleep in its
 * ring (ring 0 if none is: whoever waits next reaps it). */
static void ur_wake(nc_queue *q)
{
    ur_state *st = STATE(q);
    int n = __atomic_load_n(&st->nrings, __ATOMIC_ACQUIRE), pick = 0;
    for (int i = 0; i < n; i++)
        if (__atomic_load_n(&st->rings[i].sleepers, __ATOMIC_RELAXED) > 0) {
            pick = i;
            break;
        }
    if (__atomic_load_n(&st->rings[pick].bell, __ATOMIC_ACQUIRE)) {
        ur_kick(q, NULL, (unsigned)(MAX_RINGS + pick));
        return;
    }
    ur_ring *rg = &st->rings[pick];
    put_sqe(rg, -1, 0, UD_WAKE);
    nc_ring_enter(&rg->r, nc_ring_unsubmitted(&rg->r), 0, 0, -1);
}

static int ur_connect(nc_queue *q, const struct sockaddr *addr, int addrlen, nc_op *op)
{
    if (addrlen <= 0 || (size_t)addrlen > sizeof(struct sockaddr_storage))
        return NC_E_INVAL;
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    nc_lock(&q->lock);
    nc_handle *h = q->closing ? NULL : nc_handle_new(q, fd, NC_CONNECTING);
    ur_handle *hs = h ? new_hstate(q, h) : NULL;
    if (hs && !(hs->addr = malloc(sizeof *hs->addr))) {
        nc_handle_close(q, h); /* closes fd */
        nc_unlock_q(q);
        return NC_E_NOMEM;
    }
    if (!hs) {
        int rc = q->closing ? NC_E_CLOSED : NC_E_NOMEM;
        if (h)
            nc_handle_close(q, h); /* closes fd */
        nc_unlock_q(q);
        if (!h)
            close(fd);
        return rc;
    }
    memcpy(hs->addr, addr, (size_t)addrlen);
    hs->addrlen = (socklen_t)addrlen;
    op->result = h->id;
    nc_op_attach(h, &h->txq, op);
    hs->connect_op = op;
    need(STATE(q), h, W_CONNECT);
    submit_soon(q);
    nc_unlock_q(q);
    return 0;
}

static void ur_stats(nc_queue *q, nc_stats *out)
{
    ur_state *st = STATE(q);
    out->rings = st->nrings;
    for (int i = 0; i < st->nrings; i++)
        out->cq_overflow += st->rings[i].overflows +
                            (long)__atomic_load_n(st->rings[i].r.cq_koverflow, __ATOMIC_RELAXED);
}

static void ur_destroy(nc_queue *q)
{
    ur_state *st = STATE(q);
    if (!st)
        return;
    if (st->inflight > 0) {
        /* Every handle is closed; the kernel may still write into our
         * buffers until each request has ended, so cancel them all and
         * wait for the ends (as IOCP's drain does). */
        for (int i = 0; i < st->nrings; i++) {
            nc_ring *r = &st->rings[i].r;
            nc_lock(&r->sq_lock);
            nc_sqe *e = nc_ring_sqe(r);
            if (e) {
                e->opcode = NC_OP_U_ASYNC_CANCEL;
                e->op_flags = NC_CANCEL_ANY | NC_CANCEL_ALL;
                e->fd = -1;
                e->user_data = UD_CANCEL;
                nc_ring_publish(r);
            }
            nc_unlock(&r->sq_lock);
        }
        uint64_t give_up = nc_now_ms() + DRAIN_LIMIT_MS;
        nc_lock(&q->lock);
        while (st->inflight > 0 && nc_now_ms() < give_up) {
            flush_dirty(q);
            unsigned submit[MAX_RINGS];
            long held[MAX_RINGS];
            for (int i = 0; i < st->nrings; i++) {
                submit[i] = nc_ring_unsubmitted(&st->rings[i].r);
                held[i] = st->rings[i].inflight;
            }
            nc_unlock_q(q);
            for (int i = 0; i < st->nrings; i++)
                if (submit[i] || held[i])
                    nc_ring_enter(&st->rings[i].r, submit[i], 1, held[i] > 0, st->nrings > 1 ? 20 : 100);
            nc_lock(&q->lock);
            check_closing(q);
            reap(q, -1);
        }
        long left = st->inflight;
        nc_unlock_q(q);
        if (left > 0) {
            /* Freeing now could let the kernel write into freed memory;
             * leaking the rings and their buffers is the lesser harm. */
            q->be_state = NULL;
            return;
        }
    }
    nc_lock(&q->lock);
    while (st->closing) { /* their SQEs can never be read now */
        nc_handle *h = st->closing;
        st->closing = HS(h)->closing_next;
        HS(h)->closing = 0;
        nc_unpin(q, h);
        nc_handle_unref(q, h);
    }
    nc_unlock_q(q);
    for (int i = 0; i < st->nrings; i++)
        close_ring(&st->rings[i]);
    free(st);
    q->be_state = NULL;
}

const nc_backend nc_backend_uring = {
    .name = "uring",
    .impl = NULL,
    .probe = nc_ring_probe,
    .init = ur_init,
    .destroy = ur_destroy,
    .attach = ur_attach,
    .start = ur_start,
    .close = ur_close,
    .release = ur_release,
    .free_handle = ur_free_handle,
    .poll = ur_poll,
    .perform = ur_perform,
    .kick = ur_kick,
    .wake = ur_wake,
    .connect = ur_connect,
    .resume_accept = ur_resume_accept,
    .recycle = ur_recycle,
    .leave = ur_leave,
    .wait_begin = ur_wait_begin,
    .wait_end = ur_wait_end,
    .home = ur_home,
    .stats = ur_stats,
};
