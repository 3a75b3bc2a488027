/* stream.h: sockets driven by readiness, shared by the poller backends.
 *
 * stream.c turns "this socket is readable/writable" into completions: it
 * accepts until EAGAIN (backing off on EMFILE), reads into the waiter's
 * arena, and sends through the shared send cursor.  What differs between
 * epoll(7), poll(2) and friends is only how readiness is learned, and that
 * is an nc_poller.  A new poller backend is one small file defining an
 * nc_poller and its backend with NC_STREAM_BACKEND, one line in the backend
 * table (core/queue.c) and one in the source list (src/_iocore/sources.py).
 */
#ifndef NC_UNIX_STREAM_H
#define NC_UNIX_STREAM_H

#include "../core/queue.h"

/* What a poller reports about one socket. */
#define NC_POLL_IN  1u  /* readable, or a connection to accept */
#define NC_POLL_OUT 2u  /* writable, or a connect finished */
#define NC_POLL_HUP 4u  /* peer shut down or reset: reads never block again */

typedef struct nc_poll_event {
    nc_id id;           /* as given to add(); NC_POLL_WAKE_ID for a wake() */
    unsigned flags;
} nc_poll_event;

#define NC_POLL_WAKE_ID ((nc_id)0)

typedef struct nc_poller {
    int (*init)(void **state);
    void (*destroy)(void *state);
    /* Watch fd (for input, and for output unless it is a listener);
     * its events carry id.  0 or a negative status. */
    int (*add)(void *state, int fd, nc_id id, int listener);
    /* add, del, wait and wake run with the queue lock dropped, possibly
     * in several threads at once (one thread may be blocked in wait()). */
    /* Stop watching fd; called before it is closed. */
    void (*del)(void *state, int fd);
    /* Edge-triggered pollers leave this NULL.  Level-triggered ones are
     * told each time stream.c runs dry on fd (EAGAIN) and so wants one
     * more event of that kind; until then they must not report it.  Called
     * with the queue lock held, so it only records the wish (no system
     * call); it returns 1 if a wait() already blocked must be woken to
     * see it. */
    int (*arm)(void *state, int fd, nc_id id, unsigned flags);
    /* Up to max events within timeout_ms (-1: no limit): their count, or
     * a negative status (NC_E_INTR for a signal). */
    int (*wait)(void *state, nc_poll_event *evs, int max, int timeout_ms);
    /* Make one wait() in progress (or the next) return; must not block. */
    void (*wake)(void *state);
} nc_poller;

int nc_stream_probe(char *why, size_t whylen);
int nc_stream_init(nc_queue *q);
void nc_stream_destroy(nc_queue *q);
int nc_stream_attach(nc_queue *q, nc_handle *h);
void nc_stream_start(nc_queue *q, nc_handle *h, nc_op *op);
void nc_stream_close(nc_queue *q, nc_handle *h);
void nc_stream_release(nc_queue *q, nc_sock_t s);
int nc_stream_poll(nc_queue *q, nc_waiter *w, int timeout_ms);
void nc_stream_perform(nc_queue *q, nc_waiter *w);
void nc_stream_kick(nc_queue *q, nc_handle *h, unsigned what);
void nc_stream_wake(nc_queue *q);
int nc_stream_connect(nc_queue *q, const struct sockaddr *addr, int addrlen, nc_op *op);
void nc_stream_resume_accept(nc_queue *q, nc_handle *lst);

/* sendfile(2) as Linux has it (the BSDs' and macOS's take other arguments:
 * not yet used there, so their sends of files go through user space). */
#ifdef __linux__
#define NC_STREAM_SENDFILE 1
#else
#define NC_STREAM_SENDFILE 0
#endif

/* The nc_backend of a poller: every hook is stream.c's, the poller only
 * says where readiness comes from. */
#define NC_STREAM_BACKEND(NAME, POLLER)                                      \
    {                                                                        \
        .name = NAME, .impl = POLLER, .probe = nc_stream_probe,              \
        .init = nc_stream_init, .destroy = nc_stream_destroy,                \
        .attach = nc_stream_attach, .start = nc_stream_start,                \
        .close = nc_stream_close, .release = nc_stream_release,              \
        .free_handle = NULL, .poll = nc_stream_poll,                         \
        .perform = nc_stream_perform, .kick = nc_stream_kick,                \
        .wake = nc_stream_wake, .connect = nc_stream_connect,                \
        .resume_accept = nc_stream_resume_accept, .recycle = NULL,           \
        .stats = NULL, .sendfile = NC_STREAM_SENDFILE,                       \
    }

#endif
