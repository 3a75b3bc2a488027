# C declarations of iocore.h, the backend-neutral completion interface.
from libc.stdint cimport uint64_t

cdef extern from "iocore.h" nogil:
    struct sockaddr:
        pass
    struct sockaddr_storage:
        pass
    ctypedef uint64_t nc_id
    ctypedef struct nc_queue:
        pass
    ctypedef struct nc_buf:
        const char *base
        size_t len
    ctypedef struct nc_event:
        int op
        int status
        void *ctx
        nc_id handle
        size_t nbytes
        const char *data
        int more
    ctypedef struct nc_stats:
        long live_handles
        long pending_ops
        long timers
        long waiters
        long cq_overflow
        long rings

    enum:
        NC_OP_ACCEPT
        NC_OP_CONNECT
        NC_OP_RECV
        NC_OP_SEND
        NC_OP_POST
        NC_OP_TIMER
        NC_OP_SHUTDOWN
        NC_OP_SENDFILE
        NC_CANCELLED
        NC_E_BADHANDLE
        NC_E_WRONGKIND
        NC_E_BUSY
        NC_E_INVAL
        NC_E_NOMEM
        NC_E_NOBACKEND
        NC_E_CLOSED
        NC_E_INTR
        NC_E_NOTSUP
        NC_SEND_QUIET
        NC_RECV_MULTISHOT

    const char *nc_backend_name(int i)
    int nc_backend_check(const char *name, char *why, size_t whylen)
    int nc_queue_new(const char *backend, nc_queue **out)
    const char *nc_queue_backend(const nc_queue *q)
    void nc_queue_free(nc_queue *q, void (*release)(void *ctx, void *arg) noexcept, void *arg)
    int nc_listen(nc_queue *q, const sockaddr *addr, int addrlen, int backlog, int reuse_port, nc_id *out)
    int nc_accept(nc_queue *q, nc_id listener, void *ctx)
    int nc_connect(nc_queue *q, const sockaddr *addr, int addrlen, void *ctx)
    int nc_recv(nc_queue *q, nc_id conn, size_t max_bytes, void *ctx)
    int nc_send(nc_queue *q, nc_id conn, const nc_buf *bufs, int nbufs, void *ctx)
    int nc_send_ex(nc_queue *q, nc_id conn, const nc_buf *bufs, int nbufs, void *ctx,
                   unsigned flags)
    int nc_recv_ex(nc_queue *q, nc_id conn, size_t max_bytes, void *ctx, unsigned flags)
    int nc_recv_stop(nc_queue *q, nc_id conn)
    int nc_shutdown(nc_queue *q, nc_id conn, void *ctx)
    int nc_sendfile(nc_queue *q, nc_id conn, int fd, uint64_t offset, uint64_t count, void *ctx)
    int nc_can_sendfile(const nc_queue *q)
    int nc_close(nc_queue *q, nc_id h)
    int nc_post(nc_queue *q, void *ctx)
    int nc_post_to(nc_queue *q, nc_id conn, void *ctx)
    int nc_timer_start(nc_queue *q, double seconds, void *ctx, uint64_t *timer_id)
    int nc_timer_cancel(nc_queue *q, uint64_t timer_id, void **ctx_out)
    int nc_wait(nc_queue *q, nc_event *events, int max_events, int timeout_ms)
    void nc_leave(nc_queue *q)
    int nc_sockname(nc_queue *q, nc_id h, sockaddr_storage *out, int *len)
    int nc_peername(nc_queue *q, nc_id h, sockaddr_storage *out, int *len)
    int nc_is_listener(nc_queue *q, nc_id h)
    void nc_get_stats(nc_queue *q, nc_stats *out)
    int nc_setsockopt(nc_queue *q, nc_id h, int level, int name, int value)
    int nc_getsockopt(nc_queue *q, nc_id h, int level, int name, int *value)
    const char *nc_status_name(int status)

cdef extern from "compat.h" nogil:
    # fileno as a Python int on every platform (SOCKET is unsigned on Windows)
    long long nc_fileno_ll(nc_queue *q, nc_id h, int *rc)
    # nc_adopt_listener with the socket number as a Python int
    int nc_adopt_ll(nc_queue *q, long long s, nc_id *out)
    # getaddrinfo into a caller buffer: 0 or a negative status / EAI code
    int nc_resolve(const char *host, const char *port, int passive,
                   void *out, int *outlen, int *gai_error)
    const char *nc_gai_strerror(int code)
    # gives the CPU to another thread for a moment
    void nc_yield()
    int nc_addr_to_text(const void *addr, int addrlen, char *host, int hostlen, int *port)
