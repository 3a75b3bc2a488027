/* echo_client.c: ping-pong load generator for the echo benchmark.
 *
 * N connections, each with exactly one M-byte message in flight: send it,
 * read back M bytes, check them byte for byte, send the next.  After a
 * warmup the client counts round trips for D seconds.  It samples the
 * server's CPU time itself at the window edges (from /proc) so the
 * window is exact, not subject to the runner's scheduling.
 *
 * Output (stdout): one JSON object at the end.  Exit status 0 only if every
 * connection stayed up and every echoed byte matched.
 *
 * gcc -O2 -o echo_client echo_client.c
 * ./echo_client HOST PORT CONNS MSG_BYTES WARMUP_S DURATION_S [SERVER_PID]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct conn {
    int fd;
    int id;
    uint64_t seq;   /* messages completed on this connection */
    size_t sent;    /* bytes of the current message written */
    size_t got;     /* bytes of the current echo read */
    int want_out;   /* EPOLLOUT armed after a short write */
    unsigned char *msg;
} conn;

static size_t msg_bytes;
static uint64_t errors;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Content depends on connection and sequence number, so a stale, duplicated
 * or cross-connection echo fails the check. */
static void fill(conn *c)
{
    for (size_t i = 0; i < msg_bytes; i++)
        c->msg[i] = (unsigned char)(c->id * 131u + c->seq * 7u + i);
}

/* utime+stime of a whole process in clock ticks (fields 14, 15). */
static long long proc_ticks(int pid, long long *user)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* comm may contain spaces */
    if (!p)
        return -1;
    unsigned long long ut = 0, st = 0;
    /* after ')': state(3) ppid pgrp session tty tpgid flags minflt cminflt
     * majflt cmajflt utime(14) stime(15) */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    *user = (long long)ut;
    return (long long)(ut + st);
}

/* Nanoseconds on CPU summed over all threads: a finer cross-check of the
 * tick-granular figure above. */
static long long proc_sched_ns(int pid)
{
    char path[300];
    snprintf(path, sizeof path, "/proc/%d/task", pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    long long total = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "/proc/%d/task/%s/schedstat", pid, e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        long long ns = 0;
        if (fscanf(f, "%lld", &ns) == 1)
            total += ns;
        fclose(f);
    }
    closedir(d);
    return total;
}

static int send_some(int ep, conn *c)
{
    while (c->sent < msg_bytes) {
        ssize_t n = send(c->fd, c->msg + c->sent, msg_bytes - c->sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (!c->want_out) {
                    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                    c->want_out = 1;
                }
                return 0;
            }
            return -1;
        }
        c->sent += (size_t)n;
    }
    if (c->want_out) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = 0;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 7) {
        fprintf(stderr, "usage: %s HOST PORT CONNS MSG_BYTES WARMUP_S DURATION_S [SERVER_PID]\n", argv[0]);
        return 2;
    }
    const char *host = argv[1];
    int port = atoi(argv[2]);
    int nconn = atoi(argv[3]);
    msg_bytes = (size_t)atol(argv[4]);
    double warmup = atof(argv[5]);
    double duration = atof(argv[6]);
    int spid = argc > 7 ? atoi(argv[7]) : 0;
    if (nconn <= 0 || msg_bytes == 0 || duration <= 0) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)nconn + 64) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "bad IPv4 address %s\n", host);
        return 2;
    }
    int ep = epoll_create1(0);
    conn *cs = calloc((size_t)nconn, sizeof *cs);
    unsigned char *rbuf = malloc(msg_bytes + 1);
    for (int i = 0; i < nconn; i++) {
        conn *c = &cs[i];
        c->id = i;
        c->msg = malloc(msg_bytes);
        c->fd = socket(AF_INET, SOCK_STREAM, 0);
        if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
            perror("connect");
            return 1;
        }
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        /* RST on close: no TIME_WAIT pile-up across repeated runs. */
        struct linger lg = {1, 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        fcntl(c->fd, F_SETFL, O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    }

    double t0 = now_s();
    double t_start = t0 + warmup, t_end = t_start + duration;
    for (int i = 0; i < nconn; i++) {
        fill(&cs[i]);
        if (send_some(ep, &cs[i]) < 0) {
            perror("send");
            return 1;
        }
    }

    int measuring = warmup <= 0;
    uint64_t total = 0, at_start = 0;
    long long tk0 = -1, tk1 = -1, ns0 = -1, ns1 = -1, us0 = 0, us1 = 0;
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    double w0 = t0, w1 = 0;
    if (measuring && spid) {
        tk0 = proc_ticks(spid, &us0);
        ns0 = proc_sched_ns(spid);
    }
    int dead = 0;
    struct epoll_event evs[512];
    for (;;) {
        double t = now_s();
        if (!measuring && t >= t_start) {
            measuring = 1;
            at_start = total;
            if (spid) {
                tk0 = proc_ticks(spid, &us0);
                ns0 = proc_sched_ns(spid);
            }
            getrusage(RUSAGE_SELF, &ru0);
            w0 = t;
        }
        if (t >= t_end) {
            if (spid) {
                tk1 = proc_ticks(spid, &us1);
                ns1 = proc_sched_ns(spid);
            }
            getrusage(RUSAGE_SELF, &ru1);
            w1 = t;
            break;
        }
        int n = epoll_wait(ep, evs, 512, 50);
        if (n < 0 && errno != EINTR) {
            perror("epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            if (c->fd < 0)
                continue;
            if (evs[i].events & EPOLLOUT) {
                if (send_some(ep, c) < 0)
                    goto broken;
            }
            if (!(evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
                continue;
            /* Read one spare byte too: a server that echoes more than we
             * sent must be caught, not silently absorbed. */
            ssize_t r = recv(c->fd, rbuf, msg_bytes - c->got + 1, 0);
            if (r < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                    continue;
                goto broken;
            }
            if (r == 0 || c->got + (size_t)r > c->sent ||
                memcmp(rbuf, c->msg + c->got, (size_t)r) != 0)
                goto broken;
            c->got += (size_t)r;
            if (c->got < msg_bytes)
                continue;
            total++;
            c->seq++;
            c->got = c->sent = 0;
            fill(c);
            if (send_some(ep, c) < 0)
                goto broken;
            continue;
        broken:
            errors++;
            dead++;
            close(c->fd);
            c->fd = -1;
        }
        if (dead == nconn)
            break;
    }
    if (!w1) {
        w1 = now_s();
        getrusage(RUSAGE_SELF, &ru1);
    }

    uint64_t mn = UINT64_MAX, mx = 0;
    for (int i = 0; i < nconn; i++) {
        if (cs[i].seq < mn)
            mn = cs[i].seq;
        if (cs[i].seq > mx)
            mx = cs[i].seq;
        if (cs[i].fd >= 0)
            close(cs[i].fd);
    }
    double wall = w1 - w0;
    double client_cpu = (ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) + (ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6 +
                        (ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) + (ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
    long hz = sysconf(_SC_CLK_TCK);
    printf("{\"messages\": %llu, \"wall_s\": %.6f, \"errors\": %llu, \"conns\": %d, \"msg_bytes\": %zu, "
           "\"server_cpu_s\": %.4f, \"server_user_s\": %.4f, \"server_sched_cpu_s\": %.6f, \"client_cpu_s\": %.6f, "
           "\"min_per_conn\": %llu, \"max_per_conn\": %llu}\n",
           (unsigned long long)(total - at_start), wall, (unsigned long long)errors, nconn, msg_bytes,
           tk0 >= 0 && tk1 >= 0 ? (double)(tk1 - tk0) / (double)hz : -1.0,
           tk0 >= 0 && tk1 >= 0 ? (double)(us1 - us0) / (double)hz : -1.0,
           ns0 >= 0 && ns1 >= 0 ? (double)(ns1 - ns0) / 1e9 : -1.0, client_cpu,
           (unsigned long long)mn, (unsigned long long)mx);
    return errors ? 1 : 0;
}
