/* unix/epoll.c: readiness from epoll(7), for stream.c.
 *
 * Each socket is registered once, edge-triggered, for input and output, so
 * no epoll_ctl is needed per operation (arm is NULL); an eventfd makes a
 * blocked epoll_wait return.
 */
#include "stream.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define MAX_EVENTS 256

typedef struct ep_state {
    int epfd;
    int evfd;
} ep_state;

static int ep_init(void **out)
{
    ep_state *st = calloc(1, sizeof *st);
    if (!st)
        return NC_E_NOMEM;
    st->epfd = epoll_create1(EPOLL_CLOEXEC);
    st->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.u64 = NC_POLL_WAKE_ID};
    if (st->epfd < 0 || st->evfd < 0 || epoll_ctl(st->epfd, EPOLL_CTL_ADD, st->evfd, &ev) < 0) {
        int err = -errno;
        if (st->epfd >= 0)
            close(st->epfd);
        if (st->evfd >= 0)
            close(st->evfd);
        free(st);
        return err;
    }
    *out = st;
    return 0;
}

static void ep_destroy(void *state)
{
    ep_state *st = state;
    close(st->evfd);
    close(st->epfd);
    free(st);
}

static int ep_add(void *state, int fd, nc_id id, int listener)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.u64 = id};
    if (!listener)
        ev.events |= EPOLLOUT;
    return epoll_ctl(((ep_state *)state)->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

static void ep_del(void *state, int fd)
{
    epoll_ctl(((ep_state *)state)->epfd, EPOLL_CTL_DEL, fd, NULL);
}

static int ep_wait(void *state, nc_poll_event *out, int max, int timeout_ms)
{
    ep_state *st = state;
    struct epoll_event evs[MAX_EVENTS];
    int n = epoll_wait(st->epfd, evs, max < MAX_EVENTS ? max : MAX_EVENTS, timeout_ms);
    if (n < 0)
        return errno == EINTR ? NC_E_INTR : -errno;
    for (int i = 0; i < n; i++) {
        uint32_t e = evs[i].events;
        out[i].id = evs[i].data.u64;
        out[i].flags = 0;
        if (out[i].id == NC_POLL_WAKE_ID) {
            uint64_t v;
            if (read(st->evfd, &v, sizeof v) < 0) {
                /* EAGAIN: another waiter already drained it */
            }
            continue;
        }
        if (e & EPOLLIN)
            out[i].flags |= NC_POLL_IN;
        if (e & EPOLLOUT)
            out[i].flags |= NC_POLL_OUT;
        if (e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            out[i].flags |= NC_POLL_HUP;
    }
    return n;
}

static void ep_wake(void *state)
{
    uint64_t one = 1;
    if (write(((ep_state *)state)->evfd, &one, sizeof one) < 0) {
        /* EAGAIN: the counter is already non-zero, a wake is pending */
    }
}

static const nc_poller epoll_poller = {
    .init = ep_init,
    .destroy = ep_destroy,
    .add = ep_add,
    .del = ep_del,
    .arm = NULL,
    .wait = ep_wait,
    .wake = ep_wake,
};

const nc_backend nc_backend_epoll = NC_STREAM_BACKEND("epoll", &epoll_poller);
