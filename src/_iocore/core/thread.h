/* thread.h: per-thread state of the core (thread.c).
 *
 * Each thread that waits on a queue has an nc_waiter there; the thread
 * keeps a list of its own, so that when it ends without nc_leave() (it
 * returned, or its code crashed out) a thread-exit hook gives every batch
 * it still holds back to its queue.  The same per-thread record carries
 * the work a thread deferred until it drops a queue's lock.
 */
#ifndef NC_CORE_THREAD_H
#define NC_CORE_THREAD_H

#include "queue.h"

/* This thread's waiter on q, made on first use (lock held); NULL out of memory. */
nc_waiter *nc_thread_waiter(nc_queue *q, int create);
/* Unlinks w from its thread's list (the calling thread's; lock held). */
void nc_thread_forget(nc_waiter *w);
/* nc_queue_free: the queue's waiters are taken off it (their batch
 * memory freed) and belong to no queue from now on; their threads free
 * the records.  Their batches must have been given back already. */
void nc_thread_detach(nc_queue *q);
/* Frees what a waiter's batches need (arena, loans, held list). */
void nc_waiter_free_batch(nc_waiter *w);

/* The deferred-work list of the calling thread (see queue.h). */
int nc_thread_defer(nc_queue *q, nc_handle *h, unsigned what, nc_sock_t s, int kind);
/* Runs it; the caller has just dropped q's lock. */
void nc_thread_run_deferred(nc_queue *q);
int nc_thread_has_deferred(void);

/* Quiet sends (NC_SEND_QUIET): nc_send_ex marks its op as this thread's
 * while the call runs; a completion made meanwhile with status 0 (the send
 * went out at once, in the deferred kick the call runs itself) is taken by
 * nc_thread_quiet_take instead of being queued. */
void nc_thread_quiet_begin(nc_op *op);
int nc_thread_quiet_take(const nc_op *op);
/* Ends the call's mark: 1 if its op was taken. */
int nc_thread_quiet_end(void);

/* Gives w's batch back and takes w off q (lock held; queue.c); 1 if that
 * left work some sleeping waiter should be woken for. */
int nc_waiter_drop(nc_queue *q, nc_waiter *w);

#endif
