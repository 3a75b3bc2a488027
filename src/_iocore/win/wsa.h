/* wsa.h: Winsock pieces shared by win/iocp.c and win/sock.c. */
#ifndef NC_WIN_WSA_H
#define NC_WIN_WSA_H

#include "../iocore.h"

#include <windows.h>

/* WSAStartup once per process; 0 or a negative status. */
int nc_win_startup(void);
/* An overlapped, non-blocking, non-inheritable TCP socket, or INVALID_SOCKET
 * with *status set. */
SOCKET nc_win_socket(int family, int *status);
/* The one table from Windows/Winsock errors to the statuses Linux gives for
 * the same condition (a reset peer is NC_ECONNRESET everywhere). */
int nc_win_status(DWORD err);

#endif
