/* unix/poll.c: readiness from poll(2), for stream.c: the portable backend.
 *
 * Every POSIX system has poll(), so this is the backend where no native
 * event model is built (macOS and the BSDs until kqueue), and it can be
 * chosen on Linux too (backend="poll").  poll() is level-triggered and
 * stateless, so the poller keeps the interest itself: a socket is watched
 * for input (and output) when added, an event is reported once, and that
 * kind is watched again only when stream.c runs dry on it (arm).  Each
 * wait() polls a snapshot of the interest without the lock; a wake pipe
 * makes a blocked poll() return, to see new sockets and new interest.
 *
 * A snapshot may outlive a socket (closed, even reused, while another
 * thread is in poll()): each entry of a snapshot carries the id it was
 * taken for, and an event whose socket has since changed is dropped.
 */
#include "posix.h"
#include "stream.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct pl_entry {
    int fd;
    nc_id id;
    short want;          /* POLLIN / POLLOUT still to report */
} pl_entry;

typedef struct pl_state {
    pthread_mutex_t mu;
    pl_entry *ents;
    int n, cap;
    int *slot;           /* fd -> index in ents + 1 (0: not watched) */
    int nslot;
    int wake_r, wake_w;  /* the wake pipe */
    int polling;         /* threads inside poll() */
} pl_state;

static int pl_init(void **out)
{
    pl_state *st = calloc(1, sizeof *st);
    if (!st)
        return NC_E_NOMEM;
    int p[2];
    if (pipe(p) < 0) {
        int err = -errno;
        free(st);
        return err;
    }
    for (int i = 0; i < 2; i++) {
        fcntl(p[i], F_SETFL, fcntl(p[i], F_GETFL) | O_NONBLOCK);
        fcntl(p[i], F_SETFD, FD_CLOEXEC);
    }
    st->wake_r = p[0];
    st->wake_w = p[1];
    pthread_mutex_init(&st->mu, NULL);
    *out = st;
    return 0;
}

static void pl_destroy(void *state)
{
    pl_state *st = state;
    close(st->wake_r);
    close(st->wake_w);
    pthread_mutex_destroy(&st->mu);
    free(st->ents);
    free(st->slot);
    free(st);
}

static void pl_kick(pl_state *st)
{
    char one = 1;
    if (write(st->wake_w, &one, 1) < 0) {
        /* EAGAIN: the pipe is full, a wake is pending anyway */
    }
}

/* The entry of fd, or NULL (mu held). */
static pl_entry *find(pl_state *st, int fd)
{
    return fd >= 0 && fd < st->nslot && st->slot[fd] ? &st->ents[st->slot[fd] - 1] : NULL;
}

static int pl_add(void *state, int fd, nc_id id, int listener)
{
    pl_state *st = state;
    int rc = 0;
    pthread_mutex_lock(&st->mu);
    if (fd >= st->nslot) {
        int n = st->nslot ? st->nslot : 64;
        while (n <= fd)
            n *= 2;
        int *slot = realloc(st->slot, (size_t)n * sizeof *slot);
        if (!slot) {
            rc = NC_E_NOMEM;
            goto out;
        }
        memset(slot + st->nslot, 0, (size_t)(n - st->nslot) * sizeof *slot);
        st->slot = slot;
        st->nslot = n;
    }
    if (st->n == st->cap) {
        int cap = st->cap ? st->cap * 2 : 64;
        pl_entry *ents = realloc(st->ents, (size_t)cap * sizeof *ents);
        if (!ents) {
            rc = NC_E_NOMEM;
            goto out;
        }
        st->ents = ents;
        st->cap = cap;
    }
    pl_entry *e = find(st, fd);
    if (!e) {
        e = &st->ents[st->n++];
        st->slot[fd] = st->n;
    }
    e->fd = fd;
    e->id = id;
    e->want = (short)(POLLIN | (listener ? 0 : POLLOUT));
out:;
    int kick = rc == 0 && st->polling;
    pthread_mutex_unlock(&st->mu);
    if (kick)
        pl_kick(st); /* a poll() in progress does not watch it yet */
    return rc;
}

static void pl_del(void *state, int fd)
{
    pl_state *st = state;
    pthread_mutex_lock(&st->mu);
    pl_entry *e = find(st, fd);
    if (e) {
        int i = st->slot[fd] - 1;
        st->slot[fd] = 0;
        if (i != st->n - 1) {
            *e = st->ents[st->n - 1];
            st->slot[e->fd] = i + 1;
        }
        st->n--;
    }
    pthread_mutex_unlock(&st->mu);
}

/* Called with the queue lock held: record the wish only (no system call);
 * 1 if a poll() in progress must be woken to see it. */
static int pl_arm(void *state, int fd, nc_id id, unsigned flags)
{
    pl_state *st = state;
    pthread_mutex_lock(&st->mu);
    pl_entry *e = find(st, fd);
    int kick = 0;
    if (e && e->id == id) {
        short want = (short)(((flags & NC_POLL_IN) ? POLLIN : 0) | ((flags & NC_POLL_OUT) ? POLLOUT : 0));
        kick = (want & ~e->want) && st->polling;
        e->want |= want;
    }
    pthread_mutex_unlock(&st->mu);
    return kick;
}

static int pl_wait(void *state, nc_poll_event *out, int max, int timeout_ms)
{
    pl_state *st = state;
    pthread_mutex_lock(&st->mu);
    int cap = st->n + 1;
    struct pollfd *fds = malloc((size_t)cap * sizeof *fds);
    nc_id *ids = malloc((size_t)cap * sizeof *ids);
    if (!fds || !ids) {
        pthread_mutex_unlock(&st->mu);
        free(fds);
        free(ids);
        return NC_E_NOMEM;
    }
    int nfds = 0;
    fds[nfds].fd = st->wake_r;
    fds[nfds].events = POLLIN;
    ids[nfds++] = NC_POLL_WAKE_ID;
    for (int i = 0; i < st->n; i++) {
        if (!st->ents[i].want)
            continue;
        fds[nfds].fd = st->ents[i].fd;
        fds[nfds].events = st->ents[i].want;
        ids[nfds++] = st->ents[i].id;
    }
    st->polling++;
    pthread_mutex_unlock(&st->mu);

    int r = poll(fds, (nfds_t)nfds, timeout_ms);
    int err = errno;

    pthread_mutex_lock(&st->mu);
    st->polling--;
    int n = 0;
    for (int i = 0; r > 0 && i < nfds && n < max; i++) {
        short rev = fds[i].revents;
        if (!rev || (rev & POLLNVAL))
            continue;
        if (i == 0) {
            char buf[64];
            while (read(st->wake_r, buf, sizeof buf) > 0) {
            }
            out[n].id = NC_POLL_WAKE_ID;
            out[n++].flags = 0;
            continue;
        }
        pl_entry *e = find(st, fds[i].fd);
        if (!e || e->id != ids[i])
            continue; /* closed (or reused) while we polled */
        /* Only what is still wanted: another thread may have reported it. */
        unsigned flags = 0;
        short took = 0;
        if ((rev & (POLLIN | POLLHUP | POLLERR)) && (e->want & POLLIN)) {
            flags |= NC_POLL_IN;
            took |= POLLIN;
        }
        if ((rev & (POLLOUT | POLLHUP | POLLERR)) && (e->want & POLLOUT)) {
            flags |= NC_POLL_OUT;
            took |= POLLOUT;
        }
        if (!flags)
            continue;
        if (rev & (POLLHUP | POLLERR))
            flags |= NC_POLL_HUP;
        e->want &= (short)~took;
        out[n].id = e->id;
        out[n++].flags = flags;
    }
    pthread_mutex_unlock(&st->mu);
    free(fds);
    free(ids);
    if (r < 0)
        return err == EINTR ? NC_E_INTR : -err;
    return n;
}

static void pl_wake(void *state)
{
    pl_kick(state);
}

static const nc_poller poll_poller = {
    .init = pl_init,
    .destroy = pl_destroy,
    .add = pl_add,
    .del = pl_del,
    .arm = pl_arm,
    .wait = pl_wait,
    .wake = pl_wake,
};

const nc_backend nc_backend_poll = NC_STREAM_BACKEND("poll", &poll_poller);
