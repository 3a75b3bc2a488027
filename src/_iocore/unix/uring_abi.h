/* uring_abi.h: the part of the io_uring kernel ABI that uring.c uses,
 * declared here from the documented layouts (io_uring_setup(2),
 * io_uring_enter(2), io_uring_register(2)), so netcore needs neither
 * liburing nor recent kernel headers to build.  Names carry an nc_ prefix;
 * tests/native/uring_abi_check.c compares every layout and number with
 * <linux/io_uring.h> where that header exists.
 */
#ifndef NC_UNIX_URING_ABI_H
#define NC_UNIX_URING_ABI_H

#include <stdint.h>

/* System call numbers: one table for every architecture since Linux 5.1. */
#define NC_NR_io_uring_setup 425
#define NC_NR_io_uring_enter 426
#define NC_NR_io_uring_register 427

/* io_uring_setup(2) flags */
#define NC_SETUP_CQSIZE (1u << 3)
#define NC_SETUP_SUBMIT_ALL (1u << 7)
#define NC_SETUP_COOP_TASKRUN (1u << 8)
#define NC_SETUP_TASKRUN_FLAG (1u << 9)
#define NC_SETUP_SINGLE_ISSUER (1u << 12)
#define NC_SETUP_DEFER_TASKRUN (1u << 13)

/* io_uring_params.features */
#define NC_FEAT_SINGLE_MMAP (1u << 0)
#define NC_FEAT_NODROP (1u << 1)
#define NC_FEAT_FAST_POLL (1u << 5)
#define NC_POLL_ADD_MULTI 1u /* POLL_ADD's len: multishot */
#define NC_FEAT_EXT_ARG (1u << 8)

/* io_uring_enter(2) flags */
#define NC_ENTER_GETEVENTS (1u << 0)
#define NC_ENTER_EXT_ARG (1u << 3)

/* io_uring_register(2) opcodes */
#define NC_REGISTER_PROBE 8
#define NC_REGISTER_PBUF_RING 22
#define NC_UNREGISTER_PBUF_RING 23

/* mmap(2) offsets of the rings */
#define NC_OFF_SQ_RING 0ULL
#define NC_OFF_CQ_RING 0x8000000ULL
#define NC_OFF_SQES 0x10000000ULL

/* Opcodes (io_uring_sqe.opcode) */
enum {
    NC_OP_U_NOP = 0,
    NC_OP_U_POLL_ADD = 6,
    NC_OP_U_SENDMSG = 9,
    NC_OP_U_ACCEPT = 13,
    NC_OP_U_ASYNC_CANCEL = 14,
    NC_OP_U_CONNECT = 16,
    NC_OP_U_SEND = 26,
    NC_OP_U_RECV = 27,
    NC_OP_U_SHUTDOWN = 34,
};

/* io_uring_sqe.flags */
#define NC_SQE_BUFFER_SELECT (1u << 5)

/* io_uring_sqe.ioprio for accept, recv and send */
#define NC_ACCEPT_MULTISHOT (1u << 0)
#define NC_URING_RECV_MULTISHOT (1u << 1)

/* io_uring_sqe.cancel_flags */
#define NC_CANCEL_ALL (1u << 0)
#define NC_CANCEL_ANY (1u << 2)

/* io_uring_cqe.flags */
#define NC_CQE_F_BUFFER (1u << 0)
#define NC_CQE_F_MORE (1u << 1)
#define NC_CQE_BUFFER_SHIFT 16

/* sq_ring flags */
#define NC_SQ_CQ_OVERFLOW (1u << 1)
#define NC_SQ_TASKRUN (1u << 2)

/* io_uring_probe_op.flags */
#define NC_PROBE_OP_SUPPORTED (1u << 0)

typedef struct nc_sqring_offsets {
    uint32_t head, tail, ring_mask, ring_entries, flags, dropped, array, resv1;
    uint64_t resv2;
} nc_sqring_offsets;

typedef struct nc_cqring_offsets {
    uint32_t head, tail, ring_mask, ring_entries, overflow, cqes, flags, resv1;
    uint64_t resv2;
} nc_cqring_offsets;

typedef struct nc_uring_params {
    uint32_t sq_entries, cq_entries, flags, sq_thread_cpu, sq_thread_idle, features, wq_fd;
    uint32_t resv[3];
    nc_sqring_offsets sq_off;
    nc_cqring_offsets cq_off;
} nc_uring_params;

/* A submission queue entry: 64 bytes.  Unions of the kernel's struct are
 * flattened to the one member each opcode here uses. */
typedef struct nc_sqe {
    uint8_t opcode;
    uint8_t flags;
    uint16_t ioprio;
    int32_t fd;
    uint64_t off;          /* ACCEPT: addrlen pointer */
    uint64_t addr;         /* buffer, msghdr, sockaddr, or the user_data to cancel */
    uint32_t len;          /* bytes; CONNECT: addrlen; SHUTDOWN: how */
    uint32_t op_flags;     /* msg_flags, accept_flags, cancel_flags */
    uint64_t user_data;
    uint16_t buf_group;
    uint16_t personality;
    uint32_t file_index;
    uint64_t addr3;
    uint64_t pad2;
} nc_sqe;

typedef struct nc_cqe {
    uint64_t user_data;
    int32_t res;
    uint32_t flags;
} nc_cqe;

typedef struct nc_probe_op {
    uint8_t op;
    uint8_t resv;
    uint16_t flags;
    uint32_t resv2;
} nc_probe_op;

typedef struct nc_probe {
    uint8_t last_op;
    uint8_t ops_len;
    uint16_t resv;
    uint32_t resv2[3];
    nc_probe_op ops[];
} nc_probe;

/* One entry of a ring of provided buffers; the ring's tail is the resv
 * field of its first entry (offset 14). */
typedef struct nc_ring_buf {
    uint64_t addr;
    uint32_t len;
    uint16_t bid;
    uint16_t resv;
} nc_ring_buf;

typedef struct nc_buf_reg {
    uint64_t ring_addr;
    uint32_t ring_entries;
    uint16_t bgid;
    uint16_t flags;
    uint64_t resv[3];
} nc_buf_reg;

typedef struct nc_kernel_timespec {
    int64_t tv_sec;
    int64_t tv_nsec;
} nc_kernel_timespec;

typedef struct nc_getevents_arg {
    uint64_t sigmask;
    uint32_t sigmask_sz;
    uint32_t pad;
    uint64_t ts;
} nc_getevents_arg;

#endif
