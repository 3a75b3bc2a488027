/* waiters.c: do several waiter threads on one queue scale?  No Python.
 *
 * CONNS loopback connections, both ends on one queue, each with one
 * MSG_BYTES message in flight: the client end sends it, the server end
 * reads it whole and echoes it, the client end reads the echo, checks it
 * byte for byte and sends the next.  THREADS threads run nc_wait() on the
 * queue and handle whatever completions they get, so all the work (system
 * calls, the kernel's loopback path, the core) is spread over them; on a
 * machine with K free cores, K threads can at best do K times one's rate.
 *
 * A buffer is reused only once its send has completed, as the contract of
 * nc_send says; the server re-arms its recv after its echo's completion.
 *
 * Usage: waiters BACKEND THREADS CONNS MSG_BYTES WARMUP_S DURATION_S
 *        waiters --backends      (the backends usable here, one a line)
 * Prints one JSON object; exit status 0 only if every echo was right.
 * benchmarks/waiters/run.py builds it and runs the comparison.
 */
#include "iocore.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#include <windows.h>
#else
#include <netinet/in.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#endif

#define MAX_THREADS 64
#define BATCH 256 /* events per nc_wait; a server takes large batches */

typedef struct end {
    struct pair *pair;
    int client;
    nc_id id;
    size_t got;            /* bytes of the current message read */
    int send_done;         /* client: the current message's send completed */
    char *buf;
} end;

typedef struct pair {
    int index;
    uint64_t seq;          /* messages completed */
    end c, s;
} pair;

static nc_queue *q;
static pair *pairs;
static int nconns, nthreads;
static size_t msg_bytes;
static volatile int stop;
static long errors;

typedef struct worker {
    int index;              /* set by main */
    uint64_t done;         /* round trips finished by this thread */
    uint64_t events;
    char pad[64];          /* keep the counters of two threads apart */
} worker;

static worker workers[MAX_THREADS];

/* ------------------------------------------------------------ platform */

static double now_s(void)
{
#ifdef _WIN32
    LARGE_INTEGER f, c;
    QueryPerformanceFrequency(&f);
    QueryPerformanceCounter(&c);
    return (double)c.QuadPart / (double)f.QuadPart;
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
#endif
}

static double cpu_s(void)
{
#ifdef _WIN32
    FILETIME c, e, k, u;
    GetProcessTimes(GetCurrentProcess(), &c, &e, &k, &u);
    uint64_t kt = ((uint64_t)k.dwHighDateTime << 32) | k.dwLowDateTime;
    uint64_t ut = ((uint64_t)u.dwHighDateTime << 32) | u.dwLowDateTime;
    return (kt + ut) / 1e7;
#else
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
#endif
}

static void sleep_s(double s)
{
#ifdef _WIN32
    Sleep((DWORD)(s * 1000));
#else
    struct timespec ts = {(time_t)s, (long)((s - (time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0) {
    }
#endif
}

/* ---------------------------------------------------------------- echo */

static void fill(pair *p)
{
    for (size_t i = 0; i < msg_bytes; i++)
        p->c.buf[i] = (char)(p->index * 131u + p->seq * 7u + i);
}

static void fail(const char *what, int status)
{
    if (__atomic_fetch_add(&errors, 1, __ATOMIC_SEQ_CST) < 5)
        fprintf(stderr, "%s: %s\n", what, nc_status_name(status));
}

static void send_message(pair *p)
{
    nc_buf b = {p->c.buf, msg_bytes};
    p->c.send_done = 0;
    p->c.got = 0;
    int rc = nc_send(q, p->c.id, &b, 1, &p->c);
    if (rc < 0)
        fail("client send", rc);
}

static void on_event(worker *wk, const nc_event *ev)
{
    end *e = ev->ctx;
    if (!e) /* a post: time to look at the stop flag */
        return;
    pair *p = e->pair;
    if (ev->status != 0) {
        if (!stop)
            fail(ev->op == NC_OP_SEND ? "send" : "recv", ev->status);
        return;
    }
    if (ev->op == NC_OP_RECV && ev->nbytes == 0) {
        if (!stop)
            fail("unexpected EOF", 0);
        return;
    }
    if (e->client) {
        if (ev->op == NC_OP_SEND) {
            e->send_done = 1;
        } else {
            /* The echo must be exactly what was sent. */
            if (e->got + ev->nbytes > msg_bytes || memcmp(e->buf + e->got, ev->data, ev->nbytes))
                fail("echo corrupted", 0);
            e->got += ev->nbytes;
            if (e->got < msg_bytes)
                nc_recv(q, e->id, msg_bytes - e->got, e);
        }
        if (e->send_done && e->got == msg_bytes) {
            p->seq++;
            wk->done++;
            fill(p);
            nc_recv(q, e->id, msg_bytes, e);
            send_message(p);
        }
    } else if (ev->op == NC_OP_RECV) {
        memcpy(e->buf + e->got, ev->data, ev->nbytes);
        e->got += ev->nbytes;
        if (e->got < msg_bytes) {
            nc_recv(q, e->id, msg_bytes - e->got, e);
        } else {
            nc_buf b = {e->buf, msg_bytes};
            int rc = nc_send(q, e->id, &b, 1, e);
            if (rc < 0)
                fail("echo send", rc);
        }
    } else { /* the echo is out: its buffer is free, read the next */
        e->got = 0;
        nc_recv(q, e->id, msg_bytes, e);
    }
}

#ifdef _WIN32
static DWORD WINAPI run(LPVOID arg)
#else
static void *run(void *arg)
#endif
{
    worker *wk = arg;
    nc_event evs[BATCH];
    /* Each thread starts its share of the connections: on io_uring a
     * request's kernel work runs in the thread that submitted it, so a
     * setup thread that started them all would do every receive.  It waits
     * once first: on io_uring that gives it its own ring, and connections
     * go to the ring of the thread that starts them. */
    int n0 = nc_wait(q, evs, BATCH, 0);
    for (int i = 0; i < n0; i++)
        on_event(wk, &evs[i]);
    for (int i = wk->index; i < nconns; i += nthreads) {
        if (nc_recv(q, pairs[i].s.id, msg_bytes, &pairs[i].s) < 0 ||
            nc_recv(q, pairs[i].c.id, msg_bytes, &pairs[i].c) < 0)
            fail("recv", 0);
        send_message(&pairs[i]);
    }
    while (!stop) {
        int n = nc_wait(q, evs, BATCH, 200);
        if (n < 0 && n != NC_E_INTR) {
            fail("nc_wait", n);
            break;
        }
        for (int i = 0; i < n; i++)
            on_event(wk, &evs[i]);
        if (n > 0)
            wk->events += (uint64_t)n;
    }
    nc_leave(q);
    return 0;
}

/* --------------------------------------------------------------- setup */

static int must(int rc, const char *what)
{
    if (rc < 0) {
        fprintf(stderr, "%s: %s\n", what, nc_status_name(rc));
        exit(2);
    }
    return rc;
}

static void connect_pairs(void)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(0x7f000001);
    nc_id lst;
    must(nc_listen(q, (struct sockaddr *)&a, sizeof a, 4096, 0, &lst), "listen");
    struct sockaddr_storage ss;
    int len = 0;
    must(nc_sockname(q, lst, &ss, &len), "sockname");
    a.sin_port = ((struct sockaddr_in *)&ss)->sin_port;
    for (int i = 0; i < nconns; i++) {
        /* Both ends' ctx say which pair; the accept and connect tell apart by op. */
        must(nc_accept(q, lst, &pairs[i].s), "accept");
        must(nc_connect(q, (struct sockaddr *)&a, sizeof a, &pairs[i].c), "connect");
        for (int got = 0; got < 2;) {
            nc_event ev;
            int n = nc_wait(q, &ev, 1, 10000);
            must(n, "setup wait");
            if (n == 0) {
                fprintf(stderr, "setup timed out\n");
                exit(2);
            }
            must(ev.status, "accept/connect");
            ((end *)ev.ctx)->id = ev.handle;
            got++;
        }
    }
    nc_close(q, lst);
    nc_leave(q); /* setup's batch held the last pair */
}

int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "--backends")) {
        for (int i = 0; nc_backend_name(i); i++)
            printf("%s\n", nc_backend_name(i));
        return 0;
    }
    if (argc != 7) {
        fprintf(stderr, "usage: %s BACKEND THREADS CONNS MSG_BYTES WARMUP_S DURATION_S\n", argv[0]);
        return 2;
    }
    const char *backend = argv[1];
    int threads = atoi(argv[2]), conns = atoi(argv[3]);
    msg_bytes = (size_t)atol(argv[4]);
    double warmup = atof(argv[5]), duration = atof(argv[6]);
    if (threads < 1 || threads > MAX_THREADS || conns < 1 || msg_bytes < 1) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }
    must(nc_queue_new(backend, &q), backend);
    nconns = conns;
    nthreads = threads;
    pairs = calloc((size_t)conns, sizeof *pairs);
    for (int i = 0; i < conns; i++) {
        pairs[i].index = i;
        pairs[i].c = (end){&pairs[i], 1, 0, 0, 0, malloc(msg_bytes)};
        pairs[i].s = (end){&pairs[i], 0, 0, 0, 0, malloc(msg_bytes)};
    }
    connect_pairs();
    for (int i = 0; i < conns; i++)
        fill(&pairs[i]);
#ifdef _WIN32
    HANDLE th[MAX_THREADS];
    for (int i = 0; i < threads; i++) {
        workers[i].index = i;
        th[i] = CreateThread(NULL, 0, run, &workers[i], 0, NULL);
    }
#else
    pthread_t th[MAX_THREADS];
    for (int i = 0; i < threads; i++) {
        workers[i].index = i;
        pthread_create(&th[i], NULL, run, &workers[i]);
    }
#endif
    sleep_s(warmup);
    uint64_t done0 = 0, done1 = 0;
    for (int i = 0; i < threads; i++)
        done0 += __atomic_load_n(&workers[i].done, __ATOMIC_RELAXED);
    double t0 = now_s(), c0 = cpu_s();
    sleep_s(duration);
    for (int i = 0; i < threads; i++)
        done1 += __atomic_load_n(&workers[i].done, __ATOMIC_RELAXED);
    double t1 = now_s(), c1 = cpu_s();
    stop = 1;
    for (int i = 0; i < threads; i++)
        nc_post(q, NULL);
    for (int i = 0; i < threads; i++) {
#ifdef _WIN32
        WaitForSingleObject(th[i], INFINITE);
        CloseHandle(th[i]);
#else
        pthread_join(th[i], NULL);
#endif
    }
    uint64_t min_seq = UINT64_MAX;
    for (int i = 0; i < conns; i++)
        if (pairs[i].seq < min_seq)
            min_seq = pairs[i].seq;
    printf("{\"backend\": \"%s\", \"threads\": %d, \"conns\": %d, \"msg_bytes\": %zu, "
           "\"messages\": %llu, \"seconds\": %.4f, \"msgs_per_s\": %.1f, \"cpu_s\": %.4f, "
           "\"min_per_conn\": %llu, \"errors\": %ld, \"events\": [",
           nc_queue_backend(q), threads, conns, msg_bytes, (unsigned long long)(done1 - done0),
           t1 - t0, (done1 - done0) / (t1 - t0), c1 - c0, (unsigned long long)min_seq, errors);
    for (int i = 0; i < threads; i++)
        printf("%s%llu", i ? ", " : "", (unsigned long long)workers[i].events);
    printf("]}\n");
    nc_queue_free(q, NULL, NULL);
    for (int i = 0; i < conns; i++) {
        free(pairs[i].c.buf);
        free(pairs[i].s.buf);
    }
    free(pairs);
    return errors ? 1 : 0;
}
