/* starve.c: EMFILE back-off for listeners (see starve.h). */
#include "starve.h"
#include "queue.h"

void nc_starve(nc_queue *q, nc_handle *lst)
{
    nc_starved *st = &q->starved;
    if (!lst->starved) {
        lst->starved = 1;
        if (st->n < NC_STARVED_MAX)
            st->ids[st->n++] = lst->id;
        else
            st->overflow = 1;
    }
    st->retry_at = nc_now_ms() + NC_STARVED_RETRY_MS;
}

static void resume(nc_queue *q, nc_handle *h)
{
    h->starved = 0;
    q->be->resume_accept(q, h);
}

void nc_starve_wake(nc_queue *q)
{
    nc_starved *st = &q->starved;
    if (!st->retry_at)
        return;
    for (int i = 0; i < st->n; i++) {
        nc_handle *h = nc_lookup(q, st->ids[i]);
        if (h && h->starved)
            resume(q, h);
    }
    if (st->overflow)
        for (uint32_t i = 1; i < q->nslots; i++)
            if (q->slots[i].h && q->slots[i].h->starved)
                resume(q, q->slots[i].h);
    st->n = 0;
    st->overflow = 0;
    st->retry_at = 0;
}

int64_t nc_starve_timeout(const nc_queue *q, uint64_t now_ms)
{
    uint64_t at = q->starved.retry_at;
    if (!at)
        return -1;
    return at > now_ms ? (int64_t)(at - now_ms) : 0;
}

void nc_starve_tick(nc_queue *q, uint64_t now_ms)
{
    if (q->starved.retry_at && now_ms >= q->starved.retry_at)
        nc_starve_wake(q);
}
