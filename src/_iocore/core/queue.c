/* queue.c: the backend-neutral half of a completion queue: handle slots,
 * operation records, the completion FIFO, waiter batches, posts, timers.
 * No system call is made here with q->lock held (see queue.h). */
#include "queue.h"
#include "sock.h"
#include "thread.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_SIZE (256 * 1024)
/* Below this much free arena a recv waits for the next batch rather than
 * reading a sliver. */
#define MIN_RECV_CHUNK (16 * 1024)
#define OP_CACHE_MAX 4096

/* Every backend built for this platform, in the order "auto" tries them. */
static const nc_backend *const backends[] = {
#ifdef _WIN32
    &nc_backend_iocp,
#else
#ifdef __linux__
    &nc_backend_epoll, /* auto: epoll; uring measured no clear win (README) */
    &nc_backend_uring,
#endif
    &nc_backend_poll, /* every POSIX system: the one auto takes where nothing else is built */
#endif
    NULL,
};

/* ---------------------------------------------------------------- slots */

static int grow_slots(nc_queue *q)
{
    uint32_t n = q->nslots ? q->nslots * 2 : 256;
    nc_slot *s = realloc(q->slots, n * sizeof *s);
    if (!s)
        return -1;
    /* Slot 0 is never used, so id 0 means "no handle". */
    for (uint32_t i = n - 1; i >= (q->nslots ? q->nslots : 1); i--) {
        s[i].h = NULL;
        s[i].gen = 1;
        s[i].next_free = q->free_slot;
        q->free_slot = i;
    }
    if (!q->nslots)
        memset(&s[0], 0, sizeof s[0]);
    q->slots = s;
    q->nslots = n;
    return 0;
}

nc_handle *nc_handle_new(nc_queue *q, nc_sock_t sock, int kind)
{
    if (!q->free_slot && grow_slots(q) < 0)
        return NULL;
    nc_handle *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    uint32_t idx = q->free_slot;
    nc_slot *s = &q->slots[idx];
    q->free_slot = s->next_free;
    s->h = h;
    h->id = ((uint64_t)s->gen << 32) | idx;
    h->sock = sock;
    h->kind = kind;
    h->refs = 1;
    q->live_handles++;
    return h;
}

nc_handle *nc_lookup(nc_queue *q, nc_id id)
{
    uint32_t idx = (uint32_t)id;
    if (idx == 0 || idx >= q->nslots)
        return NULL;
    nc_slot *s = &q->slots[idx];
    if (!s->h || s->gen != (uint32_t)(id >> 32))
        return NULL;
    return s->h;
}

/* Frees the slot; the id stops matching at once.  The handle itself lives
 * on while operations refer to it. */
static void detach(nc_queue *q, nc_handle *h)
{
    uint32_t idx = (uint32_t)h->id;
    nc_slot *s = &q->slots[idx];
    s->h = NULL;
    if (++s->gen == 0)
        s->gen = 1;
    s->next_free = q->free_slot;
    q->free_slot = idx;
    h->closed = 1;
    q->live_handles--;
}

void nc_handle_ref(nc_handle *h)
{
    h->refs++;
}

void nc_handle_unref(nc_queue *q, nc_handle *h)
{
    if (--h->refs > 0)
        return;
    if (q->be->free_handle)
        q->be->free_handle(q, h);
    free(h);
}

/* A closed handle's socket goes back once nobody uses it. */
static void release_if_unused(nc_queue *q, nc_handle *h)
{
    if (h->closed && h->sock_users == 0 && h->sock != NC_NO_SOCK) {
        nc_defer_release(q, h->sock);
        h->sock = NC_NO_SOCK;
    }
}

void nc_unpin(nc_queue *q, nc_handle *h)
{
    h->sock_users--;
    release_if_unused(q, h);
}

int nc_claim(nc_handle *h, unsigned bits)
{
    if (h->busy & bits)
        return 0;
    h->busy |= bits;
    if (bits & NC_BUSY_RX)
        h->rx_mark = h->rx_seq;
    if (bits & NC_BUSY_TX)
        h->tx_mark = h->tx_seq;
    nc_pin(h);
    return 1;
}

void nc_unclaim(nc_queue *q, nc_handle *h, unsigned bits)
{
    h->busy &= ~bits;
    nc_unpin(q, h);
}

/* ------------------------------------------------------------ operations */

nc_op *nc_op_new(nc_queue *q, int kind, void *ctx)
{
    nc_op *op = q->op_cache;
    if (op) {
        q->op_cache = op->next;
        q->op_cache_len--;
    } else if (!(op = malloc(sizeof *op))) {
        return NULL;
    }
    memset(op, 0, offsetof(nc_op, inline_bufs));
    op->kind = kind;
    op->ctx = ctx;
    q->pending_ops++;
    return op;
}

void nc_op_free(nc_queue *q, nc_op *op)
{
    if (op->bufs && op->bufs != op->inline_bufs)
        free(op->bufs);
    if (op->owner)
        nc_handle_unref(q, op->owner);
    q->pending_ops--;
    if (q->op_cache_len < OP_CACHE_MAX) {
        op->next = q->op_cache;
        q->op_cache = op;
        q->op_cache_len++;
    } else {
        free(op);
    }
}

void nc_opq_push(nc_opq *qq, nc_op *op)
{
    op->next = NULL;
    if (qq->tail)
        qq->tail->next = op;
    else
        qq->head = op;
    qq->tail = op;
}

nc_op *nc_opq_pop(nc_opq *qq)
{
    nc_op *op = qq->head;
    if (op) {
        qq->head = op->next;
        if (!qq->head)
            qq->tail = NULL;
        op->next = NULL;
    }
    return op;
}

void nc_op_attach(nc_handle *h, nc_opq *qq, nc_op *op)
{
    op->owner = h;
    nc_handle_ref(h);
    nc_opq_push(qq, op);
}

/* h's home waiter (be->home), if it is polling: it takes h's work itself. */
static int home_polling(nc_queue *q, const nc_handle *h, const nc_waiter *w)
{
    if (!h || !q->be->home)
        return 0;
    nc_waiter *home = q->be->home(q, h);
    return home && home != w && home->polling;
}

/* Work on a connection some batch holds is for its holder alone, which
 * looks at it on its next nc_wait(), and work for a connection whose home
 * polls is for that one: waking anyone else would only make them re-queue
 * it and wake the next sleeper, round and round. */
static int for_holder_only(nc_queue *q, const nc_handle *h)
{
    return h && (h->holder || home_polling(q, h, NULL));
}

static void push_done(nc_queue *q, nc_op *op)
{
    nc_opq_push(&q->done, op);
    if (!for_holder_only(q, op->owner))
        nc_wake_one(q);
}

void nc_complete(nc_queue *q, nc_op *op, int status)
{
    if (op->quiet && status == 0 && nc_thread_quiet_take(op)) {
        nc_op_free(q, op); /* out at once: the caller of nc_send_ex is told so */
        return;
    }
    op->status = status;
    if (op->kind == NC_OP_RECV)
        op->nbytes = 0; /* a RECV through the FIFO carries no data */
    push_done(q, op);
}

void nc_complete_lent(nc_queue *q, nc_op *op, const char *data, size_t n, uintptr_t loan)
{
    op->status = 0;
    op->nbytes = n;
    op->data = data;
    op->loan = loan;
    op->lent = 1;
    push_done(q, op);
}

/* Ops a thread is busy with (the head of a busy queue) are that thread's
 * to complete when it is back. */
static void cancel_queue(nc_queue *q, nc_opq *qq, int keep_head)
{
    nc_op *keep = keep_head ? nc_opq_pop(qq) : NULL, *op;
    while ((op = nc_opq_pop(qq)))
        nc_complete(q, op, NC_CANCELLED);
    if (keep)
        nc_opq_push(qq, keep);
}

void nc_cancel_all(nc_queue *q, nc_handle *h)
{
    cancel_queue(q, &h->rxq, (h->busy & NC_BUSY_RX) != 0);
    cancel_queue(q, &h->txq, (h->busy & NC_BUSY_TX) != 0);
}

nc_op *nc_recv_take(nc_queue *q, nc_handle *h, int status, size_t n)
{
    nc_op *op = h->rxq.head;
    if (op->multi && !op->stop && status == 0 && n > 0 && !h->closed) {
        nc_op *copy = nc_op_new(q, NC_OP_RECV, op->ctx);
        if (copy) { /* out of memory: the head itself, its last completion */
            copy->more = 1;
            copy->result = op->result;
            copy->owner = op->owner;
            nc_handle_ref(copy->owner);
            return copy;
        }
    }
    return nc_opq_pop(&h->rxq);
}

void nc_recv_settle(nc_queue *q, nc_handle *h)
{
    nc_op *op = h->rxq.head;
    if (op && op->stop && !(h->busy & NC_BUSY_RX))
        nc_complete(q, nc_opq_pop(&h->rxq), NC_CANCELLED);
}

void nc_mark_ready(nc_queue *q, nc_handle *h)
{
    if (h->on_ready || h->closed)
        return;
    h->on_ready = 1;
    h->ready_next = NULL;
    nc_handle_ref(h);
    if (q->ready_tail)
        q->ready_tail->ready_next = h;
    else
        q->ready_head = h;
    q->ready_tail = h;
    q->nready++;
    if (!for_holder_only(q, h))
        nc_wake_one(q);
}

/* --------------------------------------------------------------- waiters */

/* This thread's waiter on q, made on its first wait. */
static nc_waiter *waiter_for_thread(nc_queue *q)
{
    nc_waiter *w = nc_thread_waiter(q, 1);
    if (!w || w->arena)
        return w;
    w->arena = malloc(ARENA_SIZE);
    if (!w->arena) {
        nc_thread_forget(w);
        free(w);
        return NULL;
    }
    w->arena_len = ARENA_SIZE;
    w->next = q->waiters;
    q->waiters = w;
    q->nwaiters++;
    return w;
}

int nc_hold(nc_queue *q, nc_waiter *w, nc_handle *h)
{
    (void)q;
    if (h->holder == w)
        return 0;
    if (w->nheld == w->held_cap) {
        int cap = w->held_cap ? w->held_cap * 2 : 64;
        nc_handle **held = realloc(w->held, (size_t)cap * sizeof *held);
        if (!held)
            return -1;
        w->held = held;
        w->held_cap = cap;
    }
    h->holder = w;
    nc_handle_ref(h);
    w->held[w->nheld++] = h;
    return 0;
}

void nc_unhold(nc_queue *q, nc_waiter *w, nc_handle *h)
{
    for (int i = w->nheld - 1; i >= 0; i--)
        if (w->held[i] == h) {
            w->held[i] = w->held[--w->nheld];
            h->holder = NULL;
            nc_handle_unref(q, h);
            return;
        }
}

static void release_held(nc_queue *q, nc_waiter *w)
{
    if (w->nloans) {
        q->be->recycle(q, w->loans, w->nloans);
        w->nloans = 0;
    }
    for (int i = 0; i < w->nheld; i++) {
        w->held[i]->holder = NULL;
        nc_handle_unref(q, w->held[i]);
    }
    w->nheld = 0;
}

/* Another waiter's batch holds h: leave its completions alone.  With w
 * NULL: any batch holds h. */
static int held_by_other(const nc_handle *h, const nc_waiter *w)
{
    return h && h->holder && h->holder != w;
}

/* ... or h's home waiter is polling and will take them. */
static int for_other(nc_queue *q, const nc_handle *h, const nc_waiter *w)
{
    return held_by_other(h, w) || home_polling(q, h, w);
}

char *nc_arena_take(nc_waiter *w, size_t want, size_t *len)
{
    size_t room = w->arena_len - w->arena_used;
    size_t floor = want < MIN_RECV_CHUNK ? want : MIN_RECV_CHUNK;
    if (room < floor || room == 0)
        return NULL;
    *len = want < room ? want : room;
    return w->arena + w->arena_used;
}

static void emit(nc_queue *q, nc_waiter *w, nc_op *op, const char *data, size_t n)
{
    nc_event *ev = &w->out[w->nout++];
    ev->op = op->kind;
    ev->more = op->more;
    ev->status = op->status;
    ev->ctx = op->ctx;
    ev->nbytes = n;
    ev->data = data;
    ev->handle = op->result;
    /* Closed or not: a closed connection's other cancellations must not
     * reach another thread while this batch handles the first.  A listener
     * is never held: its accepts are for whichever waiter is free. */
    if (op->owner && op->owner->kind != NC_LISTENER)
        nc_hold(q, w, op->owner);
    if (op->kind == NC_OP_ACCEPT && op->status == 0) {
        /* The new connection is this batch's too, until its next wait. */
        nc_handle *conn = nc_lookup(q, op->result);
        if (conn)
            nc_hold(q, w, conn);
    }
    nc_op_free(q, op);
}

void nc_complete_recv(nc_queue *q, nc_waiter *w, nc_op *op, int status,
                      const char *data, size_t n)
{
    op->status = status;
    emit(q, w, op, data, n);
}

/* w's batch takes the loan; out of memory it goes straight back. */
static int take_loan(nc_queue *q, nc_waiter *w, uintptr_t loan)
{
    if (w->nloans == w->loans_cap) {
        int cap = w->loans_cap ? w->loans_cap * 2 : 64;
        uintptr_t *loans = realloc(w->loans, (size_t)cap * sizeof *loans);
        if (!loans) {
            q->be->recycle(q, &loan, 1);
            return -1;
        }
        w->loans = loans;
        w->loans_cap = cap;
    }
    w->loans[w->nloans++] = loan;
    return 0;
}

void nc_complete_recv_lent(nc_queue *q, nc_waiter *w, nc_op *op, const char *data,
                           size_t n, uintptr_t loan)
{
    op->status = take_loan(q, w, loan) < 0 ? NC_E_NOMEM : 0;
    emit(q, w, op, op->status ? NULL : data, op->status ? 0 : n);
}

/* Moves deliverable completions from the FIFO into w's batch. */
static void deliver(nc_queue *q, nc_waiter *w)
{
    nc_op *prev = NULL, *op = q->done.head;
    while (op && w->nout < w->max_out) {
        nc_op *next = op->next;
        if (for_other(q, op->owner, w)) {
            prev = op;
        } else {
            if (prev)
                prev->next = next;
            else
                q->done.head = next;
            if (q->done.tail == op)
                q->done.tail = prev;
            if (op->lent)
                nc_complete_recv_lent(q, w, op, op->data, op->nbytes, op->loan);
            else
                emit(q, w, op, NULL, op->nbytes);
        }
        op = next;
    }
}

static nc_handle *pop_ready(nc_queue *q)
{
    nc_handle *h = q->ready_head;
    if (h) {
        q->ready_head = h->ready_next;
        if (!q->ready_head)
            q->ready_tail = NULL;
        h->ready_next = NULL;
        h->on_ready = 0;
        q->nready--;
    }
    return h;
}

int nc_take_ready(nc_queue *q, nc_waiter *w, nc_handle **out, int max, long *budget)
{
    int n = 0;
    nc_handle *h;
    while (n < max && *budget > 0 && (h = pop_ready(q))) {
        (*budget)--;
        if (h->closed) {
            nc_handle_unref(q, h);
        } else if (for_other(q, h, w) || w->nout >= w->max_out) {
            nc_mark_ready(q, h); /* its holder's, or a later batch's */
            nc_handle_unref(q, h);
        } else {
            out[n++] = h;
        }
    }
    return n;
}

/* Work w may take (w NULL: any waiter may). */
static int has_work(nc_queue *q, nc_waiter *w)
{
    for (nc_op *op = q->done.head; op; op = op->next)
        if (w ? !for_other(q, op->owner, w) : !held_by_other(op->owner, NULL))
            return 1;
    for (nc_handle *h = q->ready_head; h; h = h->ready_next)
        if (w ? !for_other(q, h, w) : !held_by_other(h, NULL))
            return 1;
    return 0;
}

static void fire_timers(nc_queue *q, uint64_t now)
{
    void *ctx;
    while (nc_timers_next_ms(&q->timers, now) == 0) {
        /* Record first, pop second: out of memory leaves the timer armed. */
        nc_op *op = nc_op_new(q, NC_OP_TIMER, NULL);
        if (!op)
            break;
        nc_timers_pop_due(&q->timers, now, &ctx);
        op->ctx = ctx;
        nc_complete(q, op, 0);
    }
}

/* The next timer or starved listener's retry, in ms from now (-1: none). */
static int64_t next_deadline(nc_queue *q, uint64_t now)
{
    int64_t tn = nc_timers_next_ms(&q->timers, now);
    int64_t ts = nc_starve_timeout(q, now);
    return ts >= 0 && (tn < 0 || ts < tn) ? ts : tn;
}

/* How long w's poll() may block: up to the caller's deadline, the next
 * timer or a starved listener's retry; 0 with work in hand.  A waiter that
 * will be back by the next of the last two is the one to serve it (it
 * hands that on as it leaves: nc_wait). */
static int poll_timeout(nc_queue *q, nc_waiter *w, int work, int timeout_ms, uint64_t deadline)
{
    if (work)
        return 0;
    uint64_t now = nc_now_ms();
    int64_t t = -1;
    if (timeout_ms >= 0)
        t = deadline > now ? (int64_t)(deadline - now) : 0;
    int64_t tn = next_deadline(q, now);
    if (tn >= 0 && (t < 0 || tn < t))
        t = tn;
    if (tn >= 0)
        q->deadline_waiter = w;
    return t > 0x7fffffff ? 0x7fffffff : (int)t;
}

int nc_wait(nc_queue *q, nc_event *events, int max_events, int timeout_ms)
{
    if (max_events <= 0)
        return NC_E_INVAL;
    nc_lock(&q->lock);
    if (q->closing) {
        nc_unlock_q(q);
        return NC_E_CLOSED;
    }
    nc_waiter *w = waiter_for_thread(q);
    if (!w) {
        nc_unlock_q(q);
        return NC_E_NOMEM;
    }
    release_held(q, w);
    w->polling = 1;
    if (q->be->wait_begin)
        q->be->wait_begin(q, w);
    w->arena_used = 0;
    w->out = events;
    w->nout = 0;
    w->max_out = max_events;
    uint64_t deadline = timeout_ms < 0 ? 0 : nc_now_ms() + (uint64_t)timeout_ms;
    int rc = 0;
    for (;;) {
        /* With completions in hand, skip the OS every other batch: it saves
         * a syscall per round trip, and looking at least every second
         * batch keeps a stream of ready completions from starving others. */
        int work = has_work(q, w);
        if (work && !w->skipped_poll) {
            w->skipped_poll = 1;
        } else {
            w->skipped_poll = 0;
            int t = poll_timeout(q, w, work, timeout_ms, deadline);
            w->until = t < 0 ? UINT64_MAX : nc_now_ms() + (uint64_t)t;
            rc = q->be->poll(q, w, t);
            w->until = 0;
        }
        if (rc < 0)
            break;
        uint64_t now = nc_now_ms();
        nc_starve_tick(q, now);
        fire_timers(q, now);
        deliver(q, w);
        q->be->perform(q, w);
        deliver(q, w);
        if (w->nout > 0 || q->closing)
            break;
        if (timeout_ms >= 0 && nc_now_ms() >= deadline)
            break;
    }
    w->polling = 0;
    if (q->be->wait_end)
        q->be->wait_end(q, w);
    /* It was to serve the next timer or retry, and leaves before it: a
     * sleeper takes over (it may sleep past it otherwise). */
    if (q->deadline_waiter == w) {
        q->deadline_waiter = NULL;
        uint64_t now = nc_now_ms();
        int64_t next = next_deadline(q, now);
        int served = next < 0;
        for (nc_waiter *x = q->waiters; x && !served; x = x->next)
            served = x->until && x->until <= now + (uint64_t)next;
        if (!served)
            nc_wake_one(q);
    }
    /* A full batch may leave work nobody holds: hand it to a sleeper, or
     * it waits for this thread's next call. */
    if (has_work(q, NULL))
        nc_wake_one(q);
    int n = w->nout;
    w->out = NULL;
    nc_unlock_q(q);
    return n > 0 ? n : rc;
}

int nc_waiter_drop(nc_queue *q, nc_waiter *w)
{
    release_held(q, w);
    if (q->deadline_waiter == w)
        q->deadline_waiter = NULL;
    if (q->be->leave)
        q->be->leave(q, w);
    for (nc_waiter **pw = &q->waiters; *pw; pw = &(*pw)->next)
        if (*pw == w) {
            *pw = w->next;
            q->nwaiters--;
            break;
        }
    nc_waiter_free_batch(w); /* the record itself is its thread's */
    return has_work(q, NULL);
}

void nc_leave(nc_queue *q)
{
    nc_lock(&q->lock);
    nc_waiter *w = nc_thread_waiter(q, 0);
    if (w && w->arena) {
        if (nc_waiter_drop(q, w))
            nc_wake_one(q); /* what it held may be someone else's now */
        nc_thread_forget(w);
        free(w);
    }
    nc_unlock_q(q);
}

/* -------------------------------------------------------- queue lifetime */

static int probe(const nc_backend *be, char *why, size_t whylen)
{
    if (whylen)
        why[0] = 0;
    return be->probe ? be->probe(why, whylen) : 0;
}

const char *nc_backend_name(int i)
{
    char why[8];
    for (int j = 0; backends[j]; j++)
        if (probe(backends[j], why, sizeof why) == 0 && i-- == 0)
            return backends[j]->name;
    return NULL;
}

static const nc_backend *find_backend(const char *name)
{
    for (int i = 0; backends[i]; i++)
        if (!strcmp(name, backends[i]->name))
            return backends[i];
    return NULL;
}

int nc_backend_check(const char *name, char *why, size_t whylen)
{
    const nc_backend *be = find_backend(name);
    if (!be) {
        snprintf(why, whylen, "not built for this platform");
        return NC_E_NOBACKEND;
    }
    return probe(be, why, whylen);
}

int nc_queue_new(const char *name, nc_queue **out)
{
    const nc_backend *be = NULL;
    char why[8];
    if (!name || !strcmp(name, "auto")) {
        for (int i = 0; backends[i] && !be; i++)
            if (probe(backends[i], why, sizeof why) == 0)
                be = backends[i];
    } else if ((be = find_backend(name)) && probe(be, why, sizeof why) < 0) {
        be = NULL;
    }
    if (!be)
        return NC_E_NOBACKEND;
    nc_queue *q = calloc(1, sizeof *q);
    if (!q)
        return NC_E_NOMEM;
    q->be = be;
    nc_mutex_init(&q->lock);
    nc_timers_init(&q->timers);
    int rc = be->init(q);
    if (rc < 0) {
        nc_timers_free(&q->timers);
        nc_mutex_destroy(&q->lock);
        free(q);
        return rc;
    }
    *out = q;
    return 0;
}

const char *nc_queue_backend(const nc_queue *q)
{
    return q->be->name;
}

void nc_handle_close(nc_queue *q, nc_handle *h)
{
    detach(q, h);
    q->be->close(q, h);
    release_if_unused(q, h);
    nc_handle_unref(q, h);
    if (!q->closing)
        nc_starve_wake(q); /* a descriptor is free again */
}

void nc_queue_free(nc_queue *q, void (*release)(void *ctx, void *arg), void *arg)
{
    nc_lock(&q->lock);
    q->closing = 1;
    for (nc_waiter *w = q->waiters; w; w = w->next)
        release_held(q, w);
    for (uint32_t i = 1; i < q->nslots; i++)
        if (q->slots[i].h)
            nc_handle_close(q, q->slots[i].h);
    for (nc_op *op = q->done.head; op; op = op->next)
        if (op->lent) { /* back to the backend while it still exists */
            q->be->recycle(q, &op->loan, 1);
            op->lent = 0;
        }
    nc_unlock_q(q); /* the sockets are released here */
    /* Threads that waited here keep their waiter records and free them
     * themselves (thread.c). */
    nc_thread_detach(q);
    q->be->destroy(q);
    nc_lock(&q->lock);
    /* Ops still queued get their ctx handed back, not delivered. */
    nc_handle *h;
    while ((h = pop_ready(q)))
        nc_handle_unref(q, h);
    nc_op *op;
    while ((op = nc_opq_pop(&q->done))) {
        if (release)
            release(op->ctx, arg);
        nc_op_free(q, op);
    }
    void *ctx;
    while (nc_timers_pop_due(&q->timers, UINT64_MAX, &ctx))
        if (release)
            release(ctx, arg);
    nc_timers_free(&q->timers);
    while ((op = q->op_cache)) {
        q->op_cache = op->next;
        free(op);
    }
    free(q->slots);
    nc_unlock(&q->lock);
    nc_mutex_destroy(&q->lock);
    free(q);
}

/* ------------------------------------------------------------ operations */

/* Makes a handle of a listening socket; on failure the socket is closed. */
static int add_listener(nc_queue *q, nc_sock_t s, int adopted, nc_id *out)
{
    nc_lock(&q->lock);
    int closing = q->closing;
    nc_handle *h = closing ? NULL : nc_handle_new(q, s, NC_LISTENER);
    if (!h) {
        nc_unlock_q(q);
        nc_sock_close(s);
        return closing ? NC_E_CLOSED : NC_E_NOMEM;
    }
    h->adopted = adopted != 0;
    nc_pin(h); /* nobody knows h yet; attach works on its socket unlocked */
    nc_unlock_q(q);
    int rc = q->be->attach(q, h);
    nc_lock(&q->lock);
    nc_unpin(q, h);
    if (rc < 0)
        nc_handle_close(q, h);
    else
        *out = h->id;
    nc_unlock_q(q);
    return rc;
}

int nc_listen(nc_queue *q, const struct sockaddr *addr, int addrlen,
              int backlog, int reuse_port, nc_id *out)
{
    nc_sock_t s;
    int rc = nc_sock_listen(addr, addrlen, backlog, reuse_port, &s);
    return rc < 0 ? rc : add_listener(q, s, 0, out);
}

int nc_adopt_listener(nc_queue *q, nc_sock_t s, nc_id *out)
{
    int rc = nc_sock_adopt(s);
    if (rc < 0) {
        nc_sock_close(s);
        return rc;
    }
    return add_listener(q, s, 1, out);
}

/* Looks up h, checks its kind and queues a new op on it. */
static int submit(nc_queue *q, nc_id id, int need_kind, int kind, void *ctx,
                  nc_op **opp, nc_handle **hp)
{
    nc_handle *h = nc_lookup(q, id);
    if (!h)
        return NC_E_BADHANDLE;
    if (h->kind != need_kind)
        return NC_E_WRONGKIND;
    if (kind == NC_OP_RECV && h->rxq.head)
        return NC_E_BUSY;
    nc_op *op = nc_op_new(q, kind, ctx);
    if (!op)
        return NC_E_NOMEM;
    *opp = op;
    *hp = h;
    return 0;
}

int nc_accept(nc_queue *q, nc_id listener, void *ctx)
{
    nc_op *op;
    nc_handle *h;
    nc_lock(&q->lock);
    int rc = submit(q, listener, NC_LISTENER, NC_OP_ACCEPT, ctx, &op, &h);
    if (rc == 0) {
        nc_op_attach(h, &h->rxq, op);
        q->be->start(q, h, op);
    }
    nc_unlock_q(q);
    return rc;
}

int nc_recv(nc_queue *q, nc_id conn, size_t max_bytes, void *ctx)
{
    return nc_recv_ex(q, conn, max_bytes, ctx, 0);
}

int nc_recv_ex(nc_queue *q, nc_id conn, size_t max_bytes, void *ctx, unsigned flags)
{
    if (max_bytes == 0 || (flags & ~NC_RECV_MULTISHOT))
        return NC_E_INVAL;
    nc_op *op;
    nc_handle *h;
    nc_lock(&q->lock);
    int rc = submit(q, conn, NC_CONN, NC_OP_RECV, ctx, &op, &h);
    if (rc == 0) {
        op->multi = (flags & NC_RECV_MULTISHOT) != 0;
        op->nbytes = max_bytes;
        op->result = conn;
        nc_op_attach(h, &h->rxq, op);
        q->be->start(q, h, op);
    }
    nc_unlock_q(q);
    return rc;
}

int nc_recv_stop(nc_queue *q, nc_id conn)
{
    nc_lock(&q->lock);
    nc_handle *h = nc_lookup(q, conn);
    nc_op *op = h ? h->rxq.head : NULL;
    int rc = !h ? NC_E_BADHANDLE : op && op->multi && !op->stop ? 0 : NC_E_INVAL;
    if (rc == 0) {
        /* A thread reading for it now ends it with what it reads
         * (nc_recv_take, nc_recv_settle); else it ends here. */
        op->stop = 1;
        if (!(h->busy & NC_BUSY_RX))
            nc_complete(q, nc_opq_pop(&h->rxq), NC_CANCELLED);
    }
    nc_unlock_q(q);
    return rc;
}

int nc_send(nc_queue *q, nc_id conn, const nc_buf *bufs, int nbufs, void *ctx)
{
    return nc_send_ex(q, conn, bufs, nbufs, ctx, 0);
}

int nc_send_ex(nc_queue *q, nc_id conn, const nc_buf *bufs, int nbufs, void *ctx,
               unsigned flags)
{
    if (nbufs < 0 || (nbufs > 0 && !bufs) || (flags & ~NC_SEND_QUIET))
        return NC_E_INVAL;
    nc_buf *copy = NULL;
    if (nbufs > NC_INLINE_BUFS) { /* allocated before the lock is taken */
        copy = malloc((size_t)nbufs * sizeof *bufs);
        if (!copy)
            return NC_E_NOMEM;
        memcpy(copy, bufs, (size_t)nbufs * sizeof *bufs);
    }
    nc_op *op;
    nc_handle *h;
    nc_lock(&q->lock);
    int rc = submit(q, conn, NC_CONN, NC_OP_SEND, ctx, &op, &h);
    if (rc == 0) {
        if (copy) {
            op->bufs = copy;
            copy = NULL;
        } else {
            op->bufs = op->inline_bufs;
            if (nbufs)
                memcpy(op->bufs, bufs, (size_t)nbufs * sizeof *bufs);
        }
        op->nbufs = nbufs;
        op->result = conn;
        if (flags & NC_SEND_QUIET) {
            op->quiet = 1;
            nc_thread_quiet_begin(op);
        }
        nc_op_attach(h, &h->txq, op);
        q->be->start(q, h, op);
    }
    int quiet = rc == 0 && (flags & NC_SEND_QUIET);
    nc_unlock_q(q); /* runs the kick that sends at once, if any */
    free(copy);
    if (quiet && nc_thread_quiet_end())
        return 1;
    return rc;
}

int nc_shutdown(nc_queue *q, nc_id conn, void *ctx)
{
    nc_op *op;
    nc_handle *h;
    nc_lock(&q->lock);
    int rc = submit(q, conn, NC_CONN, NC_OP_SHUTDOWN, ctx, &op, &h);
    if (rc == 0) {
        op->result = conn;
        nc_op_attach(h, &h->txq, op); /* behind the sends already queued */
        q->be->start(q, h, op);
    }
    nc_unlock_q(q);
    return rc;
}

int nc_connect(nc_queue *q, const struct sockaddr *addr, int addrlen, void *ctx)
{
    nc_lock(&q->lock);
    nc_op *op = q->closing ? NULL : nc_op_new(q, NC_OP_CONNECT, ctx);
    int rc = q->closing ? NC_E_CLOSED : op ? 0 : NC_E_NOMEM;
    nc_unlock_q(q);
    if (rc < 0)
        return rc;
    rc = q->be->connect(q, addr, addrlen, op); /* makes its socket unlocked */
    if (rc < 0) {
        nc_lock(&q->lock);
        nc_op_free(q, op);
        nc_unlock_q(q);
    }
    return rc;
}

int nc_close(nc_queue *q, nc_id id)
{
    nc_lock(&q->lock);
    nc_handle *h = nc_lookup(q, id);
    if (h)
        nc_handle_close(q, h);
    nc_unlock_q(q);
    return h ? 0 : NC_E_BADHANDLE;
}

int nc_post(nc_queue *q, void *ctx)
{
    nc_lock(&q->lock);
    int rc = NC_E_CLOSED;
    if (!q->closing) {
        nc_op *op = nc_op_new(q, NC_OP_POST, ctx);
        rc = op ? 0 : NC_E_NOMEM;
        if (op)
            nc_complete(q, op, 0);
    }
    nc_unlock_q(q);
    return rc;
}

int nc_can_sendfile(const nc_queue *q)
{
    return q->be->sendfile;
}

int nc_sendfile(nc_queue *q, nc_id conn, int fd, uint64_t offset, uint64_t count, void *ctx)
{
    if (!q->be->sendfile)
        return NC_E_NOTSUP;
    if (fd < 0)
        return NC_E_INVAL;
    nc_op *op;
    nc_handle *h;
    nc_lock(&q->lock);
    int rc = submit(q, conn, NC_CONN, NC_OP_SENDFILE, ctx, &op, &h);
    if (rc == 0) {
        op->result = conn;
        op->file = fd;
        op->file_off = offset;
        op->file_left = count;
        nc_op_attach(h, &h->txq, op); /* in order with the sends around it */
        q->be->start(q, h, op);
    }
    nc_unlock_q(q);
    return rc;
}

int nc_post_to(nc_queue *q, nc_id conn, void *ctx)
{
    nc_op *op;
    nc_handle *h;
    nc_lock(&q->lock);
    int rc = q->closing ? NC_E_CLOSED : submit(q, conn, NC_CONN, NC_OP_POST, ctx, &op, &h);
    if (rc == 0) {
        /* Owned by the connection (not queued on it): delivered under the
         * same one-thread-at-a-time rule as the connection's own events. */
        op->owner = h;
        nc_handle_ref(h);
        nc_complete(q, op, 0);
    }
    nc_unlock_q(q);
    return rc;
}

int nc_timer_start(nc_queue *q, double seconds, void *ctx, uint64_t *timer_id)
{
    if (!(seconds >= 0) || seconds > 1e9)
        return NC_E_INVAL;
    nc_lock(&q->lock);
    int rc = NC_E_CLOSED;
    if (!q->closing) {
        uint64_t deadline = nc_now_ms() + (uint64_t)(seconds * 1000.0 + 0.999);
        rc = nc_timers_add(&q->timers, deadline, ctx, timer_id) < 0 ? NC_E_NOMEM : 0;
        if (rc == 0)
            nc_wake_one(q); /* a sleeper may need a shorter timeout */
    }
    nc_unlock_q(q);
    return rc;
}

int nc_timer_cancel(nc_queue *q, uint64_t timer_id, void **ctx_out)
{
    nc_lock(&q->lock);
    int rc = nc_timers_cancel(&q->timers, timer_id, ctx_out);
    nc_unlock_q(q);
    return rc;
}

/* --------------------------------------------------------------- queries */

int nc_fileno(nc_queue *q, nc_id id, nc_sock_t *out)
{
    nc_lock(&q->lock);
    nc_handle *h = nc_lookup(q, id);
    if (h)
        *out = h->sock;
    nc_unlock_q(q);
    return h ? 0 : NC_E_BADHANDLE;
}

/* Runs a socket call on h's socket with the lock dropped; a concurrent
 * close waits for it (the pin) before the socket is released. */
typedef int (*sock_call)(nc_sock_t s, void *arg);

static int on_socket(nc_queue *q, nc_id id, sock_call call, void *arg)
{
    nc_lock(&q->lock);
    nc_handle *h = nc_lookup(q, id);
    if (!h) {
        nc_unlock_q(q);
        return NC_E_BADHANDLE;
    }
    nc_pin(h);
    nc_handle_ref(h);
    nc_unlock_q(q);
    int rc = call(h->sock, arg);
    nc_lock(&q->lock);
    nc_unpin(q, h);
    nc_handle_unref(q, h);
    nc_unlock_q(q);
    return rc;
}

typedef struct name_args {
    int peer;
    struct sockaddr_storage *out;
    int *len;
} name_args;

static int name_call(nc_sock_t s, void *arg)
{
    name_args *a = arg;
    return nc_sock_name(s, a->peer, a->out, a->len);
}

int nc_sockname(nc_queue *q, nc_id id, struct sockaddr_storage *out, int *len)
{
    name_args a = {0, out, len};
    return on_socket(q, id, name_call, &a);
}

int nc_peername(nc_queue *q, nc_id id, struct sockaddr_storage *out, int *len)
{
    name_args a = {1, out, len};
    return on_socket(q, id, name_call, &a);
}

typedef struct opt_args {
    int level, name, value;
    int *out;
} opt_args;

static int setopt_call(nc_sock_t s, void *arg)
{
    opt_args *a = arg;
    return nc_sock_setopt(s, a->level, a->name, a->value);
}

static int getopt_call(nc_sock_t s, void *arg)
{
    opt_args *a = arg;
    return nc_sock_getopt(s, a->level, a->name, a->out);
}

int nc_setsockopt(nc_queue *q, nc_id id, int level, int name, int value)
{
    opt_args a = {level, name, value, NULL};
    return on_socket(q, id, setopt_call, &a);
}

int nc_getsockopt(nc_queue *q, nc_id id, int level, int name, int *value)
{
    opt_args a = {level, name, 0, value};
    return on_socket(q, id, getopt_call, &a);
}

int nc_is_listener(nc_queue *q, nc_id id)
{
    nc_lock(&q->lock);
    nc_handle *h = nc_lookup(q, id);
    int rc = h ? h->kind == NC_LISTENER : NC_E_BADHANDLE;
    nc_unlock_q(q);
    return rc;
}

void nc_get_stats(nc_queue *q, nc_stats *out)
{
    memset(out, 0, sizeof *out);
    nc_lock(&q->lock);
    out->live_handles = q->live_handles;
    out->pending_ops = q->pending_ops;
    out->timers = (long)q->timers.nheap;
    out->waiters = q->nwaiters;
    if (q->be->stats)
        q->be->stats(q, out);
    nc_unlock_q(q);
}
