/* thread.c: per-thread state (see thread.h): the waiters a thread has on
 * its queues, the exit hook that gives their batches back, and the work a
 * thread deferred until it drops a queue's lock.  Also the queue lock. */
#define _GNU_SOURCE /* PTHREAD_MUTEX_ADAPTIVE_NP */
#include "thread.h"

#include <stdlib.h>

#ifndef _WIN32
void nc_mutex_init(nc_mutex *m)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
#ifdef PTHREAD_MUTEX_ADAPTIVE_NP
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ADAPTIVE_NP);
#endif
    pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
}
#endif

enum { DEFER_KICK = 1, DEFER_RELEASE, DEFER_WAKE };

typedef struct deferred {
    int kind;
    unsigned what;
    nc_handle *h;
    nc_sock_t s;
} deferred;

typedef struct nc_thread {
    nc_waiter *waiters;    /* linked by tnext */
    deferred *d;
    int nd, cap;
    nc_queue *dq;          /* the queue the deferred work is for */
    int running;           /* run_deferred is on the stack */
    const nc_op *quiet;    /* the quiet send of the nc_send_ex call running here */
    int quiet_done;        /* ... which completed at once */
} nc_thread;

/* Guards waiter->q between a thread's exit hook and nc_queue_free on
 * another thread; taken only there, before any queue lock. */
static nc_mutex orphan_lock = NC_MUTEX_INITIALIZER;

static void on_thread_exit(void *arg);

/* ------------------------------------------------ the thread's record */

#ifdef _WIN32
/* Fiber-local storage: its callback runs when the thread ends. */
static DWORD fls_index = FLS_OUT_OF_INDEXES;
static INIT_ONCE fls_once = INIT_ONCE_STATIC_INIT;

static VOID WINAPI fls_callback(PVOID p)
{
    if (p)
        on_thread_exit(p);
}

static BOOL CALLBACK fls_setup(PINIT_ONCE once, PVOID param, PVOID *ctx)
{
    (void)once, (void)param, (void)ctx;
    fls_index = FlsAlloc(fls_callback);
    return TRUE;
}

static nc_thread *current(int create)
{
    InitOnceExecuteOnce(&fls_once, fls_setup, NULL, NULL);
    if (fls_index == FLS_OUT_OF_INDEXES)
        return NULL;
    nc_thread *t = FlsGetValue(fls_index);
    if (!t && create && (t = calloc(1, sizeof *t)) && !FlsSetValue(fls_index, t)) {
        free(t);
        t = NULL;
    }
    return t;
}

static void forget_current(void)
{
    FlsSetValue(fls_index, NULL);
}
#else
/* The key only gets the exit hook called; lookups go through the
 * thread-local pointer. */
static pthread_key_t exit_key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static int key_ok;
static __thread nc_thread *cur;

static void key_setup(void)
{
    key_ok = pthread_key_create(&exit_key, on_thread_exit) == 0;
}

static nc_thread *current(int create)
{
    if (cur || !create)
        return cur;
    pthread_once(&key_once, key_setup);
    nc_thread *t = key_ok ? calloc(1, sizeof *t) : NULL;
    if (t && pthread_setspecific(exit_key, t) != 0) {
        free(t);
        t = NULL;
    }
    return cur = t;
}

static void forget_current(void)
{
    cur = NULL;
}
#endif

/* ---------------------------------------------------------- waiters */

nc_waiter *nc_thread_waiter(nc_queue *q, int create)
{
    nc_thread *t = current(create);
    if (!t)
        return NULL;
    for (nc_waiter **pw = &t->waiters; *pw;) {
        nc_waiter *w = *pw;
        nc_queue *wq = __atomic_load_n(&w->q, __ATOMIC_ACQUIRE);
        if (wq == q)
            return w;
        if (!wq && create) { /* its queue was freed: drop what is left */
            *pw = w->tnext;
            free(w);
            continue;
        }
        pw = &w->tnext;
    }
    if (!create)
        return NULL;
    nc_waiter *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->q = q;
    w->tnext = t->waiters;
    t->waiters = w;
    return w;
}

void nc_thread_forget(nc_waiter *w)
{
    nc_thread *t = current(0);
    if (!t)
        return;
    for (nc_waiter **pw = &t->waiters; *pw; pw = &(*pw)->tnext)
        if (*pw == w) {
            *pw = w->tnext;
            return;
        }
}

void nc_waiter_free_batch(nc_waiter *w)
{
    free(w->arena);
    free(w->loans);
    free(w->held);
    w->arena = NULL;
    w->loans = NULL;
    w->held = NULL;
}

void nc_thread_detach(nc_queue *q)
{
    nc_lock(&orphan_lock);
    nc_lock(&q->lock);
    /* Unlinked before orphaned: a thread frees an orphaned record at any
     * time, so nothing of the queue may point at it by then. */
    nc_waiter *w = q->waiters;
    q->waiters = NULL;
    q->nwaiters = 0;
    while (w) {
        nc_waiter *next = w->next;
        nc_waiter_free_batch(w);
        __atomic_store_n(&w->q, NULL, __ATOMIC_RELEASE);
        w = next;
    }
    nc_unlock(&q->lock);
    nc_unlock(&orphan_lock);
}

/* The thread ends: each queue it waited on gets its batch back.  Runs
 * with the orphan lock so no queue is freed meanwhile. */
static void on_thread_exit(void *arg)
{
    nc_thread *t = arg;
    nc_lock(&orphan_lock);
    while (t->waiters) {
        nc_waiter *w = t->waiters;
        t->waiters = w->tnext;
        nc_queue *q = __atomic_load_n(&w->q, __ATOMIC_ACQUIRE);
        if (q) {
            nc_lock(&q->lock);
            /* What it held may be another waiter's now.  The wake is not
             * deferred: where the thread record is already gone (an FLS
             * callback), deferring would make a new one. */
            int wake = nc_waiter_drop(q, w) && q->sleepers > 0 && !q->wake_pending;
            if (wake)
                q->wake_pending = 1;
            nc_unlock_q(q); /* runs what dropping it deferred (a backend's kick) */
            if (wake)
                q->be->wake(q);
        }
        free(w);
    }
    nc_unlock(&orphan_lock);
    free(t->d);
    free(t);
    forget_current();
}

/* ------------------------------------------------------- quiet sends */

void nc_thread_quiet_begin(nc_op *op)
{
    nc_thread *t = current(1);
    if (!t) {
        op->quiet = 0; /* out of memory: it completes as any send */
        return;
    }
    t->quiet = op;
    t->quiet_done = 0;
}

int nc_thread_quiet_take(const nc_op *op)
{
    nc_thread *t = current(0);
    if (!t || t->quiet != op)
        return 0;
    t->quiet = NULL;
    t->quiet_done = 1;
    return 1;
}

int nc_thread_quiet_end(void)
{
    nc_thread *t = current(0);
    if (!t)
        return 0;
    int done = t->quiet_done;
    t->quiet = NULL;
    t->quiet_done = 0;
    return done;
}

/* ------------------------------------------------------ deferred work */

int nc_thread_defer(nc_queue *q, nc_handle *h, unsigned what, nc_sock_t s, int kind)
{
    nc_thread *t = current(1);
    if (!t)
        return -1;
    if (t->nd == t->cap) {
        int cap = t->cap ? t->cap * 2 : 32;
        deferred *d = realloc(t->d, (size_t)cap * sizeof *d);
        if (!d)
            return -1;
        t->d = d;
        t->cap = cap;
    }
    t->dq = q;
    t->d[t->nd++] = (deferred){kind, what, h, s};
    return 0;
}

int nc_thread_has_deferred(void)
{
    nc_thread *t = current(0);
    return t && t->nd > 0 && !t->running;
}

void nc_thread_run_deferred(nc_queue *q)
{
    nc_thread *t = current(0);
    if (!t || t->running)
        return; /* an outer call on the stack takes whatever was added */
    t->running = 1;
    while (t->nd > 0) {
        deferred e = t->d[--t->nd];
        switch (e.kind) {
        case DEFER_KICK:
            q->be->kick(q, e.h, e.what);
            break;
        case DEFER_RELEASE:
            q->be->release(q, e.s);
            break;
        case DEFER_WAKE:
            q->be->wake(q);
            break;
        }
    }
    t->running = 0;
}

int nc_defer_kick(nc_queue *q, nc_handle *h, unsigned what)
{
    if (nc_thread_defer(q, h, what, NC_NO_SOCK, DEFER_KICK) < 0)
        return -1;
    if (h)
        nc_handle_ref(h);
    return 0;
}

void nc_defer_release(nc_queue *q, nc_sock_t s)
{
    if (nc_thread_defer(q, NULL, 0, s, DEFER_RELEASE) < 0)
        q->be->release(q, s); /* out of memory: the one system call made locked */
}

void nc_wake_one(nc_queue *q)
{
    if (q->sleepers > 0 && !q->wake_pending) {
        q->wake_pending = 1;
        if (nc_thread_defer(q, NULL, 0, NC_NO_SOCK, DEFER_WAKE) < 0)
            q->be->wake(q); /* out of memory: the one system call made locked */
    }
}

void nc_unlock_q(nc_queue *q)
{
    nc_unlock(&q->lock);
    if (nc_thread_has_deferred())
        nc_thread_run_deferred(q);
}
