/* cursor.c: the send cursor shared by every backend (see cursor.h). */
#include "cursor.h"

int nc_send_slices(const nc_op *op, nc_buf *out, int max)
{
    int n = 0;
    size_t skip = op->off;
    for (int i = op->cur; i < op->nbufs && n < max; i++, skip = 0) {
        if (op->bufs[i].len == skip)
            continue;
        out[n].base = op->bufs[i].base + skip;
        out[n].len = op->bufs[i].len - skip;
        n++;
    }
    return n;
}

int nc_send_advance(nc_op *op, size_t sent)
{
    op->nbytes += sent;
    while (op->cur < op->nbufs) {
        size_t left = op->bufs[op->cur].len - op->off;
        if (sent < left) {
            op->off += sent;
            return 0;
        }
        sent -= left;
        op->cur++;
        op->off = 0;
    }
    return 1;
}
