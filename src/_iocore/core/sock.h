/* sock.h: socket calls the core makes, one implementation per platform
 * (unix/sock.c, win/sock.c). */
#ifndef NC_CORE_SOCK_H
#define NC_CORE_SOCK_H

#include "../iocore.h"

/* A non-blocking listening socket bound to addr.  0 or a negative status. */
int nc_sock_listen(const struct sockaddr *addr, int addrlen, int backlog,
                   int reuse_port, nc_sock_t *out);
void nc_sock_close(nc_sock_t s);
/* Checks that s is a listening socket and makes it non-blocking. */
int nc_sock_adopt(nc_sock_t s);
int nc_sock_name(nc_sock_t s, int peer, struct sockaddr_storage *out, int *len);
int nc_sock_setopt(nc_sock_t s, int level, int name, int value);
int nc_sock_getopt(nc_sock_t s, int level, int name, int *value);
/* Shuts down the sending direction: 0 or a negative status. */
int nc_sock_shutdown_write(nc_sock_t s);
/* The calling thread's last socket error as a negative status. */
int nc_sock_error(void);

#endif
