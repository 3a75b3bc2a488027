/* harness.h: a tiny test runner for the native iocore tests.
 *
 * Tests are plain functions returning 0 (pass) or 1 (fail); CHECK prints
 * where and why and returns 1.  A watchdog thread kills the whole program
 * if one test runs past its deadline, so nothing can hang a CI job.
 * Threads, sleeping and the clock go through the shims below so the same
 * file builds with gcc (pthreads) and mingw-w64 (Win32 threads).
 */
#ifndef NC_TEST_HARNESS_H
#define NC_TEST_HARNESS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#include <winsock2.h>
#include <windows.h>
#else
#include <pthread.h>
#include <time.h>
#endif

/* ---------------------------------------------------------------- shims */

#ifdef _WIN32
typedef HANDLE t_thread;
#else
typedef pthread_t t_thread;
#endif

typedef struct t_start {
    void (*fn)(void *);
    void *arg;
} t_start;

#ifdef _WIN32
static DWORD WINAPI t_trampoline(LPVOID p)
#else
static void *t_trampoline(void *p)
#endif
{
    t_start s = *(t_start *)p;
    free(p);
    s.fn(s.arg);
    return 0;
}

static int t_thread_start(t_thread *t, void (*fn)(void *), void *arg)
{
    t_start *s = malloc(sizeof *s);
    if (!s)
        return -1;
    s->fn = fn;
    s->arg = arg;
#ifdef _WIN32
    *t = CreateThread(NULL, 0, t_trampoline, s, 0, NULL);
    return *t ? 0 : -1;
#else
    return pthread_create(t, NULL, t_trampoline, s) == 0 ? 0 : -1;
#endif
}

static void t_thread_join(t_thread t)
{
#ifdef _WIN32
    WaitForSingleObject(t, INFINITE);
    CloseHandle(t);
#else
    pthread_join(t, NULL);
#endif
}

static void t_sleep_ms(int ms)
{
#ifdef _WIN32
    Sleep((DWORD)ms);
#else
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
#endif
}

static uint64_t t_now_ms(void)
{
#ifdef _WIN32
    return (uint64_t)GetTickCount64();
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
#endif
}

/* ---------------------------------------------------------------- checks */

static const char *t_current = "?";
static const char *t_backend = NULL; /* --backend NAME; NULL: "auto" */

#define CHECK(cond, ...)                                                      \
    do {                                                                      \
        if (!(cond)) {                                                        \
            printf("  %s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
            printf(__VA_ARGS__);                                              \
            printf("\n");                                                     \
            fflush(stdout);                                                   \
            return 1;                                                         \
        }                                                                     \
    } while (0)

/* A status-returning call that must succeed. */
#define CHECK_OK(expr)                                                        \
    do {                                                                      \
        int rc_ = (expr);                                                     \
        CHECK(rc_ >= 0, "%s returned %d (%s)", #expr, rc_, nc_status_name(rc_)); \
    } while (0)

/* ---------------------------------------------------------------- runner */

typedef struct t_case {
    const char *name;
    int (*fn)(void);
    int timeout_s;
} t_case;

static volatile uint64_t t_deadline; /* 0: no test running */

static void t_watchdog(void *arg)
{
    (void)arg;
    for (;;) {
        t_sleep_ms(100);
        uint64_t d = t_deadline;
        if (d && t_now_ms() > d) {
            printf("FAIL %s (timed out)\n", t_current);
            fflush(stdout);
            _Exit(3);
        }
    }
}

/* Runs every case (or only the one named by --only NAME) on the backend
 * named by --backend NAME; --list prints the names. */
static int t_main(const t_case *cases, int argc, char **argv)
{
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--list")) {
            for (const t_case *c = cases; c->name; c++)
                printf("%s\n", c->name);
            return 0;
        }
        if (!strcmp(argv[i], "--only") && i + 1 < argc)
            only = argv[++i];
        if (!strcmp(argv[i], "--backend") && i + 1 < argc)
            t_backend = argv[++i];
    }
    setvbuf(stdout, NULL, _IONBF, 0);
    t_thread wd;
    if (t_thread_start(&wd, t_watchdog, NULL) < 0)
        return 4;
    int failed = 0, ran = 0;
    for (const t_case *c = cases; c->name; c++) {
        if (only && strcmp(only, c->name))
            continue;
        t_current = c->name;
        t_deadline = t_now_ms() + (uint64_t)c->timeout_s * 1000u;
        uint64_t t0 = t_now_ms();
        int rc = c->fn();
        t_deadline = 0;
        ran++;
        printf("%s %s (%u ms)\n", rc ? "FAIL" : "PASS", c->name, (unsigned)(t_now_ms() - t0));
        failed += rc != 0;
    }
    if (only && !ran) {
        printf("FAIL %s (no such test)\n", only);
        return 2;
    }
    printf("%d passed, %d failed\n", ran - failed, failed);
    return failed ? 1 : 0;
}

#endif
