/* compat.h: small helpers for the Cython wrapper that differ per platform
 * (name resolution, socket numbers), kept out of the .pyx. */
#ifndef NC_COMPAT_H
#define NC_COMPAT_H

#include "iocore.h"

#include <stdio.h>
#include <string.h>

#ifdef _WIN32
#include <ws2tcpip.h>
#else
#include <sched.h>
#include <netdb.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#endif

static long long nc_fileno_ll(nc_queue *q, nc_id h, int *rc)
{
    nc_sock_t s = 0;
    *rc = nc_fileno(q, h, &s);
    return (long long)s;
}

static int nc_adopt_ll(nc_queue *q, long long s, nc_id *out)
{
    return nc_adopt_listener(q, (nc_sock_t)s, out);
}

static int nc_resolve(const char *host, const char *port, int passive,
                      void *out, int *outlen, int *gai_error)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = passive ? AI_PASSIVE : 0;
    *gai_error = getaddrinfo(host, port, &hints, &res);
    if (*gai_error != 0 || !res)
        return -1;
    if ((int)res->ai_addrlen > *outlen) {
        freeaddrinfo(res);
        return -2;
    }
    memcpy(out, res->ai_addr, res->ai_addrlen);
    *outlen = (int)res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static void nc_yield(void)
{
#ifdef _WIN32
    SwitchToThread();
#else
    sched_yield();
#endif
}

static const char *nc_gai_strerror(int code)
{
#ifdef _WIN32
    return gai_strerrorA(code);
#else
    return gai_strerror(code);
#endif
}

static int nc_addr_to_text(const void *addr, int addrlen, char *host, int hostlen, int *port)
{
    const struct sockaddr *sa = (const struct sockaddr *)addr;
    (void)addrlen;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)addr;
        *port = ntohs(in->sin_port);
        return inet_ntop(AF_INET, &in->sin_addr, host, hostlen) ? 0 : -1;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)addr;
        *port = ntohs(in6->sin6_port);
        return inet_ntop(AF_INET6, &in6->sin6_addr, host, hostlen) ? 0 : -1;
    }
    return -1;
}

#endif
