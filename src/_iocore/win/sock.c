/* win/sock.c: Winsock calls behind core/sock.h, and the error table. */
#include "../core/sock.h"
#include "wsa.h"

#include <ws2tcpip.h>

#ifndef WSA_FLAG_NO_HANDLE_INHERIT
#define WSA_FLAG_NO_HANDLE_INHERIT 0x80
#endif

/* ------------------------------------------------------------ error table */

int nc_win_status(DWORD err)
{
    switch (err) {
    case 0:
        return 0;
    /* The peer reset or aborted the connection.  Writing after our own
     * shutdown is EPIPE on Linux, which epoll.c also reports as a reset. */
    case WSAECONNRESET:
    case WSAECONNABORTED:
    case WSAENETRESET:
    case WSAESHUTDOWN:
    case ERROR_NETNAME_DELETED:
    case ERROR_CONNECTION_ABORTED:
        return NC_ECONNRESET;
    case WSAECONNREFUSED:
    case ERROR_CONNECTION_REFUSED:
    case ERROR_PORT_UNREACHABLE:
        return NC_ECONNREFUSED;
    /* CancelIoEx or closesocket took the operation back. */
    case ERROR_OPERATION_ABORTED:
        return NC_CANCELLED;
    case WSAETIMEDOUT:
    case ERROR_SEM_TIMEOUT:
        return NC_ETIMEDOUT;
    case ERROR_NETWORK_UNREACHABLE:
        return NC_ERR(ENETUNREACH);
    case ERROR_HOST_UNREACHABLE:
        return NC_ERR(EHOSTUNREACH);
    case ERROR_ADDRESS_ALREADY_ASSOCIATED:
        return NC_EADDRINUSE;
    case ERROR_TOO_MANY_OPEN_FILES:
        return NC_EMFILE;
    case ERROR_NOT_ENOUGH_MEMORY: /* also WSA_NOT_ENOUGH_MEMORY */
    case ERROR_NO_SYSTEM_RESOURCES:
    case ERROR_WORKING_SET_QUOTA:
        return NC_ERR(ENOBUFS);
    default:
        /* WSAE* numbers are already what Python's errno uses on Windows. */
        return -(int)err;
    }
}

int nc_sock_error(void)
{
    return nc_win_status((DWORD)WSAGetLastError());
}

/* ------------------------------------------------------------- sockets */

static INIT_ONCE startup_once = INIT_ONCE_STATIC_INIT;
static int startup_status;

static BOOL CALLBACK do_startup(PINIT_ONCE once, PVOID param, PVOID *ctx)
{
    WSADATA wsa;
    int rc = WSAStartup(MAKEWORD(2, 2), &wsa);
    startup_status = rc ? nc_win_status((DWORD)rc) : 0;
    (void)once, (void)param, (void)ctx;
    return TRUE;
}

int nc_win_startup(void)
{
    InitOnceExecuteOnce(&startup_once, do_startup, NULL, NULL);
    return startup_status;
}

SOCKET nc_win_socket(int family, int *status)
{
    *status = nc_win_startup();
    if (*status < 0)
        return INVALID_SOCKET;
    SOCKET s = WSASocketW(family, SOCK_STREAM, IPPROTO_TCP, NULL, 0,
                          WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
    if (s == INVALID_SOCKET) {
        *status = nc_sock_error();
        return s;
    }
    /* Direct reads must say WSAEWOULDBLOCK rather than block: readiness
     * comes from zero-byte overlapped reads (see iocp.c). */
    u_long one = 1;
    if (ioctlsocket(s, FIONBIO, &one) != 0) {
        *status = nc_sock_error();
        closesocket(s);
        return INVALID_SOCKET;
    }
    *status = 0;
    return s;
}

int nc_sock_listen(const struct sockaddr *addr, int addrlen, int backlog,
                   int reuse_port, nc_sock_t *out)
{
    if (reuse_port)
        return NC_ERR(EOPNOTSUPP); /* no SO_REUSEPORT load balancing here */
    int rc;
    SOCKET s = nc_win_socket(addr->sa_family, &rc);
    if (s == INVALID_SOCKET)
        return rc;
    /* Windows' SO_REUSEADDR would let another process steal the port;
     * exclusive use is the closest match to Linux semantics. */
    BOOL one = TRUE;
    setsockopt(s, SOL_SOCKET, SO_EXCLUSIVEADDRUSE, (const char *)&one, sizeof one);
    if (addr->sa_family == AF_INET6) {
        DWORD v6only = 1;
        setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, (const char *)&v6only, sizeof v6only);
    }
    if (bind(s, addr, addrlen) != 0 || listen(s, backlog) != 0) {
        rc = nc_sock_error();
        closesocket(s);
        return rc;
    }
    *out = s;
    return 0;
}

int nc_sock_adopt(nc_sock_t s)
{
    BOOL listening = FALSE;
    int len = sizeof listening;
    if (getsockopt(s, SOL_SOCKET, SO_ACCEPTCONN, (char *)&listening, &len) != 0)
        return nc_sock_error();
    if (!listening)
        return NC_E_INVAL;
    u_long nonblocking = 1;
    return ioctlsocket(s, FIONBIO, &nonblocking) == 0 ? 0 : nc_sock_error();
}

int nc_sock_shutdown_write(nc_sock_t s)
{
    return shutdown(s, SD_SEND) != 0 ? nc_sock_error() : 0;
}

void nc_sock_close(nc_sock_t s)
{
    closesocket(s);
}

int nc_sock_name(nc_sock_t s, int peer, struct sockaddr_storage *out, int *len)
{
    int l = (int)sizeof *out;
    int r = peer ? getpeername(s, (struct sockaddr *)out, &l)
                 : getsockname(s, (struct sockaddr *)out, &l);
    if (r != 0)
        return nc_sock_error();
    *len = l;
    return 0;
}

int nc_sock_setopt(nc_sock_t s, int level, int name, int value)
{
    return setsockopt(s, level, name, (const char *)&value, sizeof value) != 0 ? nc_sock_error() : 0;
}

int nc_sock_getopt(nc_sock_t s, int level, int name, int *value)
{
    int l = (int)sizeof *value;
    *value = 0;
    return getsockopt(s, level, name, (char *)value, &l) != 0 ? nc_sock_error() : 0;
}
