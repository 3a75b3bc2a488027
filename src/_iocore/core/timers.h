/* timers.h: a binary min-heap of deadlines whose entries live in a slot
 * table, so a timer id (slot + generation) can be cancelled in O(log n)
 * and a stale id never matches a reused slot. */
#ifndef NC_CORE_TIMERS_H
#define NC_CORE_TIMERS_H

#include <stdint.h>

typedef struct nc_timer_slot {
    uint64_t deadline_ms;
    void *ctx;
    uint32_t gen;
    uint32_t heap_pos;   /* position in heap, or UINT32_MAX when free */
} nc_timer_slot;

typedef struct nc_timers {
    nc_timer_slot *slots;
    uint32_t nslots;
    uint32_t *heap;      /* slot indexes ordered by deadline */
    uint32_t nheap;
    uint32_t *free_list;
    uint32_t nfree;
} nc_timers;

void nc_timers_init(nc_timers *t);
void nc_timers_free(nc_timers *t);
/* Returns 0 and the id, or -1 when out of memory. */
int nc_timers_add(nc_timers *t, uint64_t deadline_ms, void *ctx, uint64_t *id);
/* 1 and the ctx if id was armed, else 0. */
int nc_timers_cancel(nc_timers *t, uint64_t id, void **ctx);
/* Pops one timer due at now_ms: 1 and its ctx, else 0. */
int nc_timers_pop_due(nc_timers *t, uint64_t now_ms, void **ctx);
/* Milliseconds until the next deadline (0 if due), or -1 if none. */
int64_t nc_timers_next_ms(const nc_timers *t, uint64_t now_ms);

#endif
