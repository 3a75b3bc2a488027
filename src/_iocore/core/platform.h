/* platform.h: the few OS primitives the shared core needs (lock, thread id,
 * monotonic clock), so the shared core stays free of #ifdefs. */
#ifndef NC_PLATFORM_H
#define NC_PLATFORM_H

#include <stdint.h>

#ifdef _WIN32
#include <windows.h>
typedef SRWLOCK nc_mutex;
typedef DWORD nc_tid;
#define NC_MUTEX_INITIALIZER SRWLOCK_INIT
static inline void nc_mutex_init(nc_mutex *m) { InitializeSRWLock(m); }
static inline void nc_mutex_destroy(nc_mutex *m) { (void)m; }
static inline void nc_lock(nc_mutex *m) { AcquireSRWLockExclusive(m); }
static inline void nc_unlock(nc_mutex *m) { ReleaseSRWLockExclusive(m); }
static inline nc_tid nc_thread_id(void) { return GetCurrentThreadId(); }
static inline int nc_tid_equal(nc_tid a, nc_tid b) { return a == b; }
static inline uint64_t nc_now_ms(void) { return (uint64_t)GetTickCount64(); }
#else
#include <pthread.h>
#include <time.h>
typedef pthread_mutex_t nc_mutex;
typedef pthread_t nc_tid;
#define NC_MUTEX_INITIALIZER PTHREAD_MUTEX_INITIALIZER
/* Spins briefly before sleeping where the C library can (thread.c):
 * critical sections here are short and make no system calls. */
void nc_mutex_init(nc_mutex *m);
static inline void nc_mutex_destroy(nc_mutex *m) { pthread_mutex_destroy(m); }
static inline void nc_lock(nc_mutex *m) { pthread_mutex_lock(m); }
static inline void nc_unlock(nc_mutex *m) { pthread_mutex_unlock(m); }
static inline nc_tid nc_thread_id(void) { return pthread_self(); }
static inline int nc_tid_equal(nc_tid a, nc_tid b) { return pthread_equal(a, b); }
static inline uint64_t nc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}
#endif

#endif
