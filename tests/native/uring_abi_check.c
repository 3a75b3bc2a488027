/* uring_abi_check.c: src/_iocore/unix/uring_abi.h against the kernel's own
 * <linux/io_uring.h>: every layout and number netcore uses must agree.
 * Compiled (not run) by tests/test_native.py where the header exists. */
#include <stddef.h>
#include <linux/io_uring.h>

#include "unix/uring_abi.h"

#define SAME_SIZE(a, b) _Static_assert(sizeof(a) == sizeof(b), #a " vs " #b)
#define SAME_AT(a, b, fa, fb) _Static_assert(offsetof(a, fa) == offsetof(b, fb), #a "." #fa)
#define SAME(x, y) _Static_assert((x) == (y), #x " vs " #y)

SAME_SIZE(nc_sqe, struct io_uring_sqe);
SAME_AT(nc_sqe, struct io_uring_sqe, opcode, opcode);
SAME_AT(nc_sqe, struct io_uring_sqe, flags, flags);
SAME_AT(nc_sqe, struct io_uring_sqe, ioprio, ioprio);
SAME_AT(nc_sqe, struct io_uring_sqe, fd, fd);
SAME_AT(nc_sqe, struct io_uring_sqe, off, off);
SAME_AT(nc_sqe, struct io_uring_sqe, addr, addr);
SAME_AT(nc_sqe, struct io_uring_sqe, len, len);
SAME_AT(nc_sqe, struct io_uring_sqe, op_flags, msg_flags);
SAME_AT(nc_sqe, struct io_uring_sqe, user_data, user_data);
SAME_AT(nc_sqe, struct io_uring_sqe, buf_group, buf_group);
SAME_AT(nc_sqe, struct io_uring_sqe, file_index, file_index);
SAME_SIZE(nc_cqe, struct io_uring_cqe);
SAME_AT(nc_cqe, struct io_uring_cqe, res, res);
SAME_AT(nc_cqe, struct io_uring_cqe, flags, flags);
SAME_SIZE(nc_uring_params, struct io_uring_params);
SAME_AT(nc_uring_params, struct io_uring_params, features, features);
SAME_AT(nc_uring_params, struct io_uring_params, sq_off, sq_off);
SAME_AT(nc_uring_params, struct io_uring_params, cq_off, cq_off);
SAME_AT(nc_sqring_offsets, struct io_sqring_offsets, array, array);
SAME_AT(nc_cqring_offsets, struct io_cqring_offsets, overflow, overflow);
SAME_AT(nc_cqring_offsets, struct io_cqring_offsets, cqes, cqes);
SAME_SIZE(nc_ring_buf, struct io_uring_buf);
SAME_AT(nc_ring_buf, struct io_uring_buf, bid, bid);
SAME_SIZE(nc_buf_reg, struct io_uring_buf_reg);
SAME_SIZE(nc_probe_op, struct io_uring_probe_op);
SAME_SIZE(nc_probe, struct io_uring_probe);
SAME_SIZE(nc_getevents_arg, struct io_uring_getevents_arg);
SAME_AT(nc_getevents_arg, struct io_uring_getevents_arg, ts, ts);

SAME(NC_OP_U_NOP, IORING_OP_NOP);
SAME(NC_OP_U_SENDMSG, IORING_OP_SENDMSG);
SAME(NC_OP_U_ACCEPT, IORING_OP_ACCEPT);
SAME(NC_OP_U_ASYNC_CANCEL, IORING_OP_ASYNC_CANCEL);
SAME(NC_OP_U_CONNECT, IORING_OP_CONNECT);
SAME(NC_OP_U_SEND, IORING_OP_SEND);
SAME(NC_OP_U_RECV, IORING_OP_RECV);
SAME(NC_OP_U_SHUTDOWN, IORING_OP_SHUTDOWN);
SAME(NC_SETUP_CQSIZE, IORING_SETUP_CQSIZE);
SAME(NC_SETUP_SUBMIT_ALL, IORING_SETUP_SUBMIT_ALL);
SAME(NC_SETUP_COOP_TASKRUN, IORING_SETUP_COOP_TASKRUN);
SAME(NC_SETUP_TASKRUN_FLAG, IORING_SETUP_TASKRUN_FLAG);
SAME(NC_SETUP_SINGLE_ISSUER, IORING_SETUP_SINGLE_ISSUER);
SAME(NC_SETUP_DEFER_TASKRUN, IORING_SETUP_DEFER_TASKRUN);
SAME(NC_FEAT_SINGLE_MMAP, IORING_FEAT_SINGLE_MMAP);
SAME(NC_FEAT_NODROP, IORING_FEAT_NODROP);
SAME(NC_FEAT_FAST_POLL, IORING_FEAT_FAST_POLL);
SAME(NC_FEAT_EXT_ARG, IORING_FEAT_EXT_ARG);
SAME(NC_ENTER_GETEVENTS, IORING_ENTER_GETEVENTS);
SAME(NC_ENTER_EXT_ARG, IORING_ENTER_EXT_ARG);
SAME(NC_REGISTER_PROBE, IORING_REGISTER_PROBE);
SAME(NC_REGISTER_PBUF_RING, IORING_REGISTER_PBUF_RING);
SAME(NC_UNREGISTER_PBUF_RING, IORING_UNREGISTER_PBUF_RING);
SAME(NC_OFF_SQ_RING, IORING_OFF_SQ_RING);
SAME(NC_OFF_CQ_RING, IORING_OFF_CQ_RING);
SAME(NC_OFF_SQES, IORING_OFF_SQES);
SAME(NC_SQE_BUFFER_SELECT, IOSQE_BUFFER_SELECT);
SAME(NC_ACCEPT_MULTISHOT, IORING_ACCEPT_MULTISHOT);
SAME(NC_URING_RECV_MULTISHOT, IORING_RECV_MULTISHOT);
SAME(NC_CANCEL_ALL, IORING_ASYNC_CANCEL_ALL);
SAME(NC_CANCEL_ANY, IORING_ASYNC_CANCEL_ANY);
SAME(NC_CQE_F_BUFFER, IORING_CQE_F_BUFFER);
SAME(NC_CQE_F_MORE, IORING_CQE_F_MORE);
SAME(NC_CQE_BUFFER_SHIFT, IORING_CQE_BUFFER_SHIFT);
SAME(NC_SQ_CQ_OVERFLOW, IORING_SQ_CQ_OVERFLOW);
SAME(NC_SQ_TASKRUN, IORING_SQ_TASKRUN);
SAME(NC_PROBE_OP_SUPPORTED, IO_URING_OP_SUPPORTED);
/* The provided-buffer ring's tail overlays the first entry's resv. */
_Static_assert(offsetof(nc_ring_buf, resv) == offsetof(struct io_uring_buf_ring, tail), "ring tail");

#ifdef __NR_io_uring_setup
SAME(NC_NR_io_uring_setup, __NR_io_uring_setup);
SAME(NC_NR_io_uring_enter, __NR_io_uring_enter);
SAME(NC_NR_io_uring_register, __NR_io_uring_register);
#endif
