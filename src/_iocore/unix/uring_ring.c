/* unix/uring_ring.c: one io_uring and its provided buffers (see uring_ring.h). */
#define _GNU_SOURCE
#include "uring_ring.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* --------------------------------------------------------- system calls */

static int sys_setup(unsigned entries, nc_uring_params *p)
{
    long r = syscall(NC_NR_io_uring_setup, entries, p);
    return r < 0 ? -errno : (int)r;
}

static int sys_enter(int fd, unsigned submit, unsigned min_complete, unsigned flags, void *arg, size_t argsz)
{
    long r = syscall(NC_NR_io_uring_enter, fd, submit, min_complete, flags, arg, argsz);
    return r < 0 ? -errno : (int)r;
}

static int sys_register(int fd, unsigned op, void *arg, unsigned n)
{
    long r = syscall(NC_NR_io_uring_register, fd, op, arg, n);
    return r < 0 ? -errno : (int)r;
}

/* ---------------------------------------------------------------- probe */

static const struct {
    int op;
    const char *name;
} needed_ops[] = {
    {NC_OP_U_NOP, "NOP"},         {NC_OP_U_SENDMSG, "SENDMSG"}, {NC_OP_U_ACCEPT, "ACCEPT"},
    {NC_OP_U_ASYNC_CANCEL, "ASYNC_CANCEL"}, {NC_OP_U_CONNECT, "CONNECT"}, {NC_OP_U_SEND, "SEND"},
    {NC_OP_U_RECV, "RECV"},       {NC_OP_U_SHUTDOWN, "SHUTDOWN"}, {NC_OP_U_POLL_ADD, "POLL_ADD"},
};

static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static int probe_status;
static char probe_why[200];

/* Test hooks (environment; see README, "io_uring"):
 *   NETCORE_URING_FAKE_ERRNO=EPERM|ENOSYS|EINVAL|ENOMEM: io_uring_setup fails so
 *   NETCORE_URING_FAKE_MISSING_OP=RECV: the probe misses that opcode
 *   NETCORE_URING_ENTRIES=N, NETCORE_URING_BUFFERS=N: a small SQ (CQ 8x) or
 *     buffer ring, to make the CQ overflow or the buffers run out
 *   NETCORE_URING_NO_MULTISHOT_RECV=1: one-shot recvs, as before Linux 6.0
 *   NETCORE_URING_REFUSE_FLAGS=0x388: setup says EINVAL to those setup flags */
static int fake_errno(void)
{
    const char *e = getenv("NETCORE_URING_FAKE_ERRNO");
    if (!e || !*e)
        return 0;
    if (!strcmp(e, "EPERM"))
        return EPERM;
    if (!strcmp(e, "ENOSYS"))
        return ENOSYS;
    if (!strcmp(e, "EINVAL"))
        return EINVAL;
    if (!strcmp(e, "ENOMEM"))
        return ENOMEM;
    return EACCES;
}

static const char *setup_hint(int err)
{
    switch (err) {
    case EPERM:
        return " (blocked by a seccomp filter such as Docker's default, or by kernel.io_uring_disabled)";
    case ENOSYS:
        return " (this kernel has no io_uring)";
    case ENOMEM:
        return " (RLIMIT_MEMLOCK too low for the ring)";
    default:
        return "";
    }
}

/* Registers a small ring of provided buffers and takes it back: 0 if this
 * kernel has ring-mapped buffers (Linux 5.19, with multishot accept). */
static int try_buf_ring(int fd)
{
    size_t len = 4096;
    void *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        return -errno;
    nc_buf_reg reg = {.ring_addr = (uintptr_t)mem, .ring_entries = 8, .bgid = NC_RING_BUF_GROUP};
    int rc = sys_register(fd, NC_REGISTER_PBUF_RING, &reg, 1);
    if (rc == 0)
        sys_register(fd, NC_UNREGISTER_PBUF_RING, &reg, 1);
    munmap(mem, len);
    return rc;
}

static void run_probe(void)
{
    int err = fake_errno();
    int fd = -1;
    nc_uring_params p;
    memset(&p, 0, sizeof p);
    if (!err && (fd = sys_setup(4, &p)) < 0)
        err = -fd;
    if (err) {
        probe_status = -err;
        snprintf(probe_why, sizeof probe_why, "io_uring_setup failed: %s%s", strerror(err), setup_hint(err));
        return;
    }
    const unsigned feats = NC_FEAT_SINGLE_MMAP | NC_FEAT_NODROP | NC_FEAT_FAST_POLL | NC_FEAT_EXT_ARG;
    if ((p.features & feats) != feats) {
        probe_status = -EOPNOTSUPP;
        snprintf(probe_why, sizeof probe_why, "io_uring lacks features %#x (Linux 5.11+ needed)", feats & ~p.features);
        close(fd);
        return;
    }
    size_t plen = sizeof(nc_probe) + 256 * sizeof(nc_probe_op);
    nc_probe *pr = calloc(1, plen);
    int rc = pr ? sys_register(fd, NC_REGISTER_PROBE, pr, 256) : -ENOMEM;
    const char *hidden = getenv("NETCORE_URING_FAKE_MISSING_OP");
    for (size_t i = 0; rc == 0 && i < sizeof needed_ops / sizeof needed_ops[0]; i++) {
        int op = needed_ops[i].op;
        int have = op <= pr->last_op && op < pr->ops_len && (pr->ops[op].flags & NC_PROBE_OP_SUPPORTED);
        if (!have || (hidden && !strcmp(hidden, needed_ops[i].name))) {
            probe_status = -EOPNOTSUPP;
            snprintf(probe_why, sizeof probe_why,
                     "the kernel lacks IORING_OP_%s (IORING_REGISTER_PROBE)", needed_ops[i].name);
            free(pr);
            close(fd);
            return;
        }
    }
    free(pr);
    if (rc < 0) {
        probe_status = rc;
        snprintf(probe_why, sizeof probe_why, "IORING_REGISTER_PROBE failed: %s", strerror(-rc));
    } else if ((rc = try_buf_ring(fd)) < 0) {
        probe_status = rc;
        snprintf(probe_why, sizeof probe_why,
                 "the kernel lacks ring-mapped provided buffers (IORING_REGISTER_PBUF_RING, Linux 5.19): %s",
                 strerror(-rc));
    }
    close(fd);
}

int nc_ring_probe(char *why, size_t whylen)
{
    pthread_once(&probe_once, run_probe);
    if (probe_status < 0 && whylen)
        snprintf(why, whylen, "%s", probe_why);
    return probe_status;
}

/* ------------------------------------------------------------ the rings */

int nc_ring_env(const char *name, int dflt)
{
    const char *v = getenv(name);
    return v && atoi(v) > 0 ? atoi(v) : dflt;
}

/* io_uring_setup with the flags this kernel takes, dropping them one by
 * one, in order of least loss, while it answers EINVAL. */
static int setup_ring(unsigned entries, unsigned cq_factor, nc_uring_params *p)
{
    static const unsigned optional[] = {NC_SETUP_TASKRUN_FLAG, NC_SETUP_COOP_TASKRUN, NC_SETUP_SUBMIT_ALL,
                                        NC_SETUP_CQSIZE};
    unsigned flags = NC_SETUP_CQSIZE | NC_SETUP_SUBMIT_ALL | NC_SETUP_COOP_TASKRUN | NC_SETUP_TASKRUN_FLAG;
    const char *refuse_env = getenv("NETCORE_URING_REFUSE_FLAGS"); /* a test hook: act older */
    unsigned refuse = refuse_env ? (unsigned)strtoul(refuse_env, NULL, 0) : 0;
    for (size_t i = 0;; i++) {
        memset(p, 0, sizeof *p);
        p->flags = flags;
        p->cq_entries = entries * cq_factor;
        int fd = flags & refuse ? -EINVAL : sys_setup(entries, p);
        if (fd != -EINVAL || i == sizeof optional / sizeof optional[0])
            return fd;
        flags &= ~optional[i];
    }
}

static void unmap_rings(nc_ring *st)
{
    if (st->sqes)
        munmap(st->sqes, st->sqes_len);
    if (st->sq_map)
        munmap(st->sq_map, st->sq_map_len);
    if (st->bufs)
        munmap(st->bufs, st->bufs_len);
    if (st->br)
        munmap(st->br, st->br_len);
}

static int map_rings(nc_ring *st, const nc_uring_params *p)
{
    st->sq_map_len = p->sq_off.array + p->sq_entries * sizeof(unsigned);
    size_t cq_len = p->cq_off.cqes + p->cq_entries * sizeof(nc_cqe);
    if (cq_len > st->sq_map_len)
        st->sq_map_len = cq_len; /* SINGLE_MMAP (probed): one mapping holds both */
    st->sq_map = mmap(NULL, st->sq_map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, st->fd,
                      NC_OFF_SQ_RING);
    if (st->sq_map == MAP_FAILED) {
        st->sq_map = NULL;
        return -errno;
    }
    st->sqes_len = p->sq_entries * sizeof(nc_sqe);
    st->sqes = mmap(NULL, st->sqes_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, st->fd, NC_OFF_SQES);
    if (st->sqes == MAP_FAILED) {
        st->sqes = NULL;
        return -errno;
    }
    char *sq = st->sq_map, *cq = st->sq_map;
    st->sq_khead = (unsigned *)(sq + p->sq_off.head);
    st->sq_ktail = (unsigned *)(sq + p->sq_off.tail);
    st->sq_kflags = (unsigned *)(sq + p->sq_off.flags);
    st->sq_mask = *(unsigned *)(sq + p->sq_off.ring_mask);
    st->sq_entries = p->sq_entries;
    unsigned *array = (unsigned *)(sq + p->sq_off.array);
    for (unsigned i = 0; i < p->sq_entries; i++)
        array[i] = i; /* SQE i sits in slot i: only the tail moves */
    st->sq_tail = *st->sq_ktail;
    st->cq_khead = (unsigned *)(cq + p->cq_off.head);
    st->cq_ktail = (unsigned *)(cq + p->cq_off.tail);
    st->cq_koverflow = (unsigned *)(cq + p->cq_off.overflow);
    st->cq_mask = *(unsigned *)(cq + p->cq_off.ring_mask);
    st->cqes = (nc_cqe *)(cq + p->cq_off.cqes);
    return 0;
}

void nc_ring_give(nc_ring *st, uint16_t bid)
{
    nc_ring_buf *b = &st->br[st->br_tail & (st->nbufs - 1)];
    b->addr = (uintptr_t)nc_ring_buffer(st, bid);
    b->len = (uint32_t)st->buf_size;
    b->bid = bid;
    st->br_tail++;
    st->given++;
    /* The tail overlays the first entry's resv field. */
    __atomic_store_n(&st->br[0].resv, st->br_tail, __ATOMIC_RELEASE);
}

static int map_buffers(nc_ring *st, unsigned n, size_t buf_size)
{
    for (st->nbufs = 1; st->nbufs < n && st->nbufs < 32768; st->nbufs <<= 1) {
    }
    st->br_len = st->nbufs * sizeof(nc_ring_buf);
    st->br = mmap(NULL, st->br_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    st->buf_size = buf_size;
    st->bufs_len = (size_t)st->nbufs * buf_size;
    st->bufs = mmap(NULL, st->bufs_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (st->br == MAP_FAILED || st->bufs == MAP_FAILED) {
        int err = -errno;
        if (st->br == MAP_FAILED)
            st->br = NULL;
        if (st->bufs == MAP_FAILED)
            st->bufs = NULL;
        return err;
    }
    nc_buf_reg reg = {.ring_addr = (uintptr_t)st->br, .ring_entries = st->nbufs, .bgid = NC_RING_BUF_GROUP};
    int rc = sys_register(st->fd, NC_REGISTER_PBUF_RING, &reg, 1);
    if (rc < 0)
        return rc;
    for (unsigned i = 0; i < st->nbufs; i++)
        nc_ring_give(st, (uint16_t)i);
    return 0;
}

/* ------------------------------------------------------------- the SQ */

int nc_ring_consumed(const nc_ring *st, uint32_t pos)
{
    return (int32_t)(__atomic_load_n(st->sq_khead, __ATOMIC_ACQUIRE) - pos) >= 0;
}

nc_sqe *nc_ring_sqe(nc_ring *st)
{
    if (st->sq_tail - __atomic_load_n(st->sq_khead, __ATOMIC_ACQUIRE) >= st->sq_entries)
        return NULL;
    nc_sqe *e = &st->sqes[st->sq_tail & st->sq_mask];
    memset(e, 0, sizeof *e);
    return e;
}

void nc_ring_publish(nc_ring *st)
{
    st->sq_tail++;
    __atomic_store_n(st->sq_ktail, st->sq_tail, __ATOMIC_RELEASE);
}

unsigned nc_ring_unsubmitted(const nc_ring *st)
{
    return st->sq_tail - __atomic_load_n(st->sq_khead, __ATOMIC_ACQUIRE);
}


int nc_ring_enter(nc_ring *r, unsigned submit, int getevents, unsigned min_complete, int timeout_ms)
{
    unsigned flags = getevents || min_complete ? NC_ENTER_GETEVENTS : 0;
    nc_kernel_timespec ts = {timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000L};
    nc_getevents_arg arg = {0, 0, 0, (uintptr_t)&ts};
    if (min_complete && timeout_ms >= 0)
        return sys_enter(r->fd, submit, min_complete, flags | NC_ENTER_EXT_ARG, &arg, sizeof arg);
    return sys_enter(r->fd, submit, min_complete, flags, NULL, 0);
}

int nc_ring_cq_ready(const nc_ring *r)
{
    return __atomic_load_n(r->cq_ktail, __ATOMIC_ACQUIRE) != *r->cq_khead;
}

unsigned nc_ring_sq_flags(const nc_ring *r)
{
    return __atomic_load_n(r->sq_kflags, __ATOMIC_ACQUIRE);
}

/* ------------------------------------------------------ open and close */

int nc_ring_open(nc_ring *r, unsigned entries, unsigned cq_factor, unsigned nbufs, size_t buf_size)
{
    memset(r, 0, sizeof *r);
    nc_mutex_init(&r->sq_lock);
    nc_uring_params p;
    r->fd = setup_ring(entries, cq_factor, &p);
    if (r->fd < 0)
        return r->fd;
    r->features = p.features;
    int rc = map_rings(r, &p);
    return rc < 0 ? rc : map_buffers(r, nbufs, buf_size);
}

void nc_ring_close(nc_ring *r)
{
    if (r->fd >= 0)
        close(r->fd); /* the kernel lets go of the buffer ring with it */
    r->fd = -1;
    unmap_rings(r);
    nc_mutex_destroy(&r->sq_lock);
}
