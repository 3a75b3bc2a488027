/* uring_ring.h: one io_uring and its ring of provided buffers (uring_ring.c):
 * the system calls, the run-time probe, setup with the flags the kernel
 * takes, the mappings, SQE slots, and buffers going back to the kernel.
 * What the completions mean is unix/uring.c's business.
 */
#ifndef NC_UNIX_URING_RING_H
#define NC_UNIX_URING_RING_H

#include "uring_abi.h"
#include "../core/platform.h"

#include <stddef.h>
#include <stdint.h>

typedef struct nc_ring {
    int fd;
    unsigned features;
    /* submission queue: sq_tail is ours; SQE slot i is array entry i */
    unsigned *sq_khead, *sq_ktail, *sq_kflags, sq_mask, sq_entries;
    unsigned sq_tail;
    nc_sqe *sqes;
    nc_mutex sq_lock;       /* SQE slots and sq_tail */
    /* completion queue */
    unsigned *cq_khead, *cq_ktail, *cq_koverflow, cq_mask;
    nc_cqe *cqes;
    void *sq_map;
    size_t sq_map_len, sqes_len;
    /* provided buffers: nbufs of buf_size bytes, group 0 */
    nc_ring_buf *br;
    size_t br_len;
    unsigned nbufs;
    uint16_t br_tail;
    unsigned long given;    /* buffers given back, ever */
    char *bufs;
    size_t bufs_len, buf_size;
} nc_ring;

#define NC_RING_BUF_GROUP 0

/* 0 if io_uring can run here; else a negative errno and why.  Runs once. */
int nc_ring_probe(char *why, size_t whylen);
/* Sets up a ring of about `entries` SQEs (the CQ cq_factor times more) and
 * `nbufs` buffers (rounded up to a power of two) of buf_size bytes, all
 * given to the kernel.  0 or a negative errno; nc_ring_close either way. */
int nc_ring_open(nc_ring *r, unsigned entries, unsigned cq_factor, unsigned nbufs, size_t buf_size);
void nc_ring_close(nc_ring *r);

/* sq_lock held: a zeroed free SQE, or NULL when the SQ is full. */
nc_sqe *nc_ring_sqe(nc_ring *r);
/* sq_lock held: the SQE from nc_ring_sqe is the kernel's to read. */
void nc_ring_publish(nc_ring *r);
/* SQEs published and not yet consumed by the kernel. */
unsigned nc_ring_unsubmitted(const nc_ring *r);
/* The kernel has consumed every SQE before SQ position pos. */
int nc_ring_consumed(const nc_ring *r, uint32_t pos);
/* io_uring_enter: submits `submit`; with getevents also runs this
 * thread's pending completion work and flushes an overflowed CQ; waits for
 * min_complete completions (timeout_ms < 0: without a limit).  >= 0 or a
 * negative errno (-ETIME: the timeout passed). */
int nc_ring_enter(nc_ring *r, unsigned submit, int getevents, unsigned min_complete, int timeout_ms);
int nc_ring_cq_ready(const nc_ring *r);
unsigned nc_ring_sq_flags(const nc_ring *r);

/* Buffer bid goes back to the kernel (callers serialise). */
void nc_ring_give(nc_ring *r, uint16_t bid);
static inline char *nc_ring_buffer(const nc_ring *r, uint16_t bid)
{
    return r->bufs + (size_t)bid * r->buf_size;
}

/* A positive integer from the environment (test hooks), else dflt. */
int nc_ring_env(const char *name, int dflt);

#endif
