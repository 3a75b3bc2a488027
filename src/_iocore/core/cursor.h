/* cursor.h: how far a send has got through its caller's buffers.
 *
 * A SEND op carries the caller's nc_buf array and a cursor (op->cur,
 * op->off).  Every backend sends the same way: take the slices left from
 * the cursor, hand them to the kernel, advance by what it took, repeat
 * until done.  stream.c, iocp.c and uring.c share this one copy.
 */
#ifndef NC_CORE_CURSOR_H
#define NC_CORE_CURSOR_H

#include "queue.h"

/* Up to max slices of what is left to send, empty buffers skipped; 0 when
 * every byte is out. */
int nc_send_slices(const nc_op *op, nc_buf *out, int max);
/* Moves the cursor past `sent` bytes; 1 when every byte is out. */
int nc_send_advance(nc_op *op, size_t sent);

#endif
