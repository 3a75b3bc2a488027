/* unix/posix.h: the socket calls whose spelling differs between POSIX
 * systems (Linux and the BSDs have accept4 and SOCK_NONBLOCK, macOS has
 * neither; MSG_NOSIGNAL versus SO_NOSIGPIPE), so the rest of unix/ is
 * written once. */
#ifndef NC_UNIX_POSIX_H
#define NC_UNIX_POSIX_H

#include <sys/socket.h>

/* A non-blocking, close-on-exec TCP socket of this family; -1 and errno. */
int nc_posix_socket(int family);
/* The next connection of a listener, non-blocking and close-on-exec; -1
 * and errno (EAGAIN when there is none). */
int nc_posix_accept(int listener);

/* Flags for every send: no SIGPIPE (where a flag can say so; elsewhere
 * SO_NOSIGPIPE is set on the socket when it is made). */
#ifdef MSG_NOSIGNAL
#define NC_SEND_FLAGS MSG_NOSIGNAL
#else
#define NC_SEND_FLAGS 0
#endif

#endif
