/* timers.c: deadline heap for nc_timer_start(). */
#include "timers.h"

#include <stdlib.h>

#define NO_POS UINT32_MAX

void nc_timers_init(nc_timers *t)
{
    t->slots = NULL;
    t->nslots = 0;
    t->heap = NULL;
    t->nheap = 0;
    t->free_list = NULL;
    t->nfree = 0;
}

void nc_timers_free(nc_timers *t)
{
    free(t->slots);
    free(t->heap);
    free(t->free_list);
    nc_timers_init(t);
}

static int earlier(const nc_timers *t, uint32_t a, uint32_t b)
{
    return t->slots[t->heap[a]].deadline_ms < t->slots[t->heap[b]].deadline_ms;
}

static void place(nc_timers *t, uint32_t pos, uint32_t slot)
{
    t->heap[pos] = slot;
    t->slots[slot].heap_pos = pos;
}

static void swap(nc_timers *t, uint32_t a, uint32_t b)
{
    uint32_t sa = t->heap[a], sb = t->heap[b];
    place(t, a, sb);
    place(t, b, sa);
}

static void sift_up(nc_timers *t, uint32_t pos)
{
    while (pos > 0) {
        uint32_t parent = (pos - 1) / 2;
        if (!earlier(t, pos, parent))
            break;
        swap(t, pos, parent);
        pos = parent;
    }
}

static void sift_down(nc_timers *t, uint32_t pos)
{
    for (;;) {
        uint32_t l = 2 * pos + 1, r = l + 1, best = pos;
        if (l < t->nheap && earlier(t, l, best))
            best = l;
        if (r < t->nheap && earlier(t, r, best))
            best = r;
        if (best == pos)
            return;
        swap(t, pos, best);
        pos = best;
    }
}

static int grow(nc_timers *t)
{
    uint32_t n = t->nslots ? t->nslots * 2 : 64;
    nc_timer_slot *slots = realloc(t->slots, n * sizeof *slots);
    if (!slots)
        return -1;
    t->slots = slots;
    uint32_t *heap = realloc(t->heap, n * sizeof *heap);
    if (!heap)
        return -1;
    t->heap = heap;
    uint32_t *fl = realloc(t->free_list, n * sizeof *fl);
    if (!fl)
        return -1;
    t->free_list = fl;
    for (uint32_t i = n; i > t->nslots; i--) {
        slots[i - 1].gen = 1;
        slots[i - 1].heap_pos = NO_POS;
        slots[i - 1].ctx = NULL;
        fl[t->nfree++] = i - 1;
    }
    t->nslots = n;
    return 0;
}

int nc_timers_add(nc_timers *t, uint64_t deadline_ms, void *ctx, uint64_t *id)
{
    if (t->nfree == 0 && grow(t) < 0)
        return -1;
    uint32_t slot = t->free_list[--t->nfree];
    nc_timer_slot *s = &t->slots[slot];
    s->deadline_ms = deadline_ms;
    s->ctx = ctx;
    place(t, t->nheap++, slot);
    sift_up(t, t->nheap - 1);
    *id = ((uint64_t)s->gen << 32) | slot;
    return 0;
}

/* Takes the heap entry at pos out and frees its slot. */
static void *remove_at(nc_timers *t, uint32_t pos)
{
    uint32_t slot = t->heap[pos];
    nc_timer_slot *s = &t->slots[slot];
    void *ctx = s->ctx;
    uint32_t last = --t->nheap;
    if (pos != last) {
        place(t, pos, t->heap[last]);
        sift_down(t, pos);
        sift_up(t, pos);
    }
    s->heap_pos = NO_POS;
    s->ctx = NULL;
    s->gen++;
    t->free_list[t->nfree++] = slot;
    return ctx;
}

int nc_timers_cancel(nc_timers *t, uint64_t id, void **ctx)
{
    uint32_t slot = (uint32_t)id;
    if (slot >= t->nslots)
        return 0;
    nc_timer_slot *s = &t->slots[slot];
    if (s->gen != (uint32_t)(id >> 32) || s->heap_pos == NO_POS)
        return 0;
    *ctx = remove_at(t, s->heap_pos);
    return 1;
}

int nc_timers_pop_due(nc_timers *t, uint64_t now_ms, void **ctx)
{
    if (t->nheap == 0 || t->slots[t->heap[0]].deadline_ms > now_ms)
        return 0;
    *ctx = remove_at(t, 0);
    return 1;
}

int64_t nc_timers_next_ms(const nc_timers *t, uint64_t now_ms)
{
    if (t->nheap == 0)
        return -1;
    uint64_t d = t->slots[t->heap[0]].deadline_ms;
    return d <= now_ms ? 0 : (int64_t)(d - now_ms);
}
