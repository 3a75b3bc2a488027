/* errors.c: names for the statuses completions carry, for messages. */
#include "../iocore.h"

#ifndef _WIN32
#include <errno.h>
#endif

/* Spelled out, not via a helper macro: an extra macro layer would expand
 * ECONNRESET to its number before NC_ERR pastes WSA onto it. */
static const struct {
    int status;
    const char *name;
} names[] = {
    {0, "OK"},
    {NC_CANCELLED, "CANCELLED"},
    {NC_E_BADHANDLE, "BADHANDLE"},
    {NC_E_WRONGKIND, "WRONGKIND"},
    {NC_E_BUSY, "BUSY"},
    {NC_E_INVAL, "INVAL"},
    {NC_E_NOMEM, "NOMEM"},
    {NC_E_NOBACKEND, "NOBACKEND"},
    {NC_E_CLOSED, "CLOSED"},
    {NC_E_INTR, "INTR"},
    {NC_E_NOTSUP, "NOTSUP"},
    {NC_ERR(ECONNRESET), "ECONNRESET"},
    {NC_ERR(ECONNREFUSED), "ECONNREFUSED"},
    {NC_ERR(ECONNABORTED), "ECONNABORTED"},
    {NC_ERR(ETIMEDOUT), "ETIMEDOUT"},
    {NC_ERR(EADDRINUSE), "EADDRINUSE"},
    {NC_ERR(EADDRNOTAVAIL), "EADDRNOTAVAIL"},
    {NC_ERR(ENETUNREACH), "ENETUNREACH"},
    {NC_ERR(EHOSTUNREACH), "EHOSTUNREACH"},
    {NC_ERR(EMFILE), "EMFILE"},
    {NC_ERR(ENOBUFS), "ENOBUFS"},
    {NC_ERR(ENOTCONN), "ENOTCONN"},
    {NC_ERR(EAFNOSUPPORT), "EAFNOSUPPORT"},
};

const char *nc_status_name(int status)
{
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].status == status)
            return names[i].name;
    return "UNKNOWN";
}
