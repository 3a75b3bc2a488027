/* starve.h: listeners out of descriptors.
 *
 * accept() failing with EMFILE/ENFILE (or ENOBUFS/ENOMEM) leaves the
 * connection in the backlog, so retrying at once would spin.  A starved
 * listener sleeps until some handle of the queue is closed, or until
 * NC_STARVED_RETRY_MS pass (a descriptor freed elsewhere in the process
 * is invisible to us).  Shared by every backend that accepts itself.
 */
#ifndef NC_CORE_STARVE_H
#define NC_CORE_STARVE_H

#include "../iocore.h"

#define NC_STARVED_MAX 64
#define NC_STARVED_RETRY_MS 200

typedef struct nc_starved {
    nc_id ids[NC_STARVED_MAX];
    int n;
    int overflow;          /* more than ids[] holds: scan the slots */
    uint64_t retry_at;     /* 0: nobody starved */
} nc_starved;

typedef struct nc_queue nc_queue;
typedef struct nc_handle nc_handle;

/* lst hit descriptor exhaustion: park it (lock held). */
void nc_starve(nc_queue *q, nc_handle *lst);
/* A descriptor was freed: every starved listener tries again through
 * the backend's resume_accept (lock held). */
void nc_starve_wake(nc_queue *q);
/* Milliseconds until the retry deadline, or -1 when nobody starves. */
int64_t nc_starve_timeout(const nc_queue *q, uint64_t now_ms);
/* Wakes the starved once their deadline has passed (lock held). */
void nc_starve_tick(nc_queue *q, uint64_t now_ms);

#endif
