/* unix/sock.c: POSIX socket calls behind core/sock.h. */
#define _GNU_SOURCE /* accept4 */
#include "../core/sock.h"
#include "posix.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

int nc_sock_error(void)
{
    return -errno;
}

/* Non-blocking, close-on-exec, and no SIGPIPE where only an option can
 * say so: what SOCK_NONBLOCK | SOCK_CLOEXEC give at once where they exist. */
static int finish_socket(int fd)
{
    if (fd < 0)
        return fd;
#if !defined(SOCK_NONBLOCK) || !defined(SOCK_CLOEXEC)
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
        int err = errno;
        close(fd);
        errno = err;
        return -1;
    }
#endif
#ifdef SO_NOSIGPIPE
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
    return fd;
}

int nc_posix_socket(int family)
{
#if defined(SOCK_NONBLOCK) && defined(SOCK_CLOEXEC)
    return finish_socket(socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
#else
    return finish_socket(socket(family, SOCK_STREAM, 0));
#endif
}

int nc_posix_accept(int listener)
{
#if defined(SOCK_NONBLOCK) && defined(SOCK_CLOEXEC) && !defined(__APPLE__)
    return finish_socket(accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC));
#else
    return finish_socket(accept(listener, NULL, NULL));
#endif
}

int nc_sock_listen(const struct sockaddr *addr, int addrlen, int backlog,
                   int reuse_port, nc_sock_t *out)
{
    int fd = nc_posix_socket(addr->sa_family);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (addr->sa_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (reuse_port) {
#ifdef SO_REUSEPORT
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
            goto fail;
#else
        errno = ENOPROTOOPT;
        goto fail;
#endif
    }
    if (bind(fd, addr, (socklen_t)addrlen) < 0 || listen(fd, backlog) < 0)
        goto fail;
    *out = fd;
    return 0;
fail:;
    int err = errno;
    close(fd);
    return -err;
}

int nc_sock_adopt(nc_sock_t s)
{
    int listening = 0;
    socklen_t len = sizeof listening;
    if (getsockopt(s, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0)
        return -errno;
    if (!listening)
        return NC_E_INVAL;
    int flags = fcntl(s, F_GETFL);
    if (flags < 0 || fcntl(s, F_SETFL, flags | O_NONBLOCK) < 0)
        return -errno;
    return 0;
}

int nc_sock_shutdown_write(nc_sock_t s)
{
    return shutdown(s, SHUT_WR) < 0 ? -errno : 0;
}

void nc_sock_close(nc_sock_t s)
{
    close(s);
}

int nc_sock_name(nc_sock_t s, int peer, struct sockaddr_storage *out, int *len)
{
    socklen_t l = sizeof *out;
    int r = peer ? getpeername(s, (struct sockaddr *)out, &l)
                 : getsockname(s, (struct sockaddr *)out, &l);
    if (r < 0)
        return -errno;
    *len = (int)l;
    return 0;
}

int nc_sock_setopt(nc_sock_t s, int level, int name, int value)
{
    return setsockopt(s, level, name, &value, sizeof value) < 0 ? -errno : 0;
}

int nc_sock_getopt(nc_sock_t s, int level, int name, int *value)
{
    socklen_t l = sizeof *value;
    return getsockopt(s, level, name, value, &l) < 0 ? -errno : 0;
}
