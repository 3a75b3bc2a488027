/* c_epoll_server.c: the floor for the HTTP benchmarks.
 *
 * A minimal single-threaded epoll server that answers every request with a
 * precomputed response.  It counts requests by their terminating blank line
 * ("\r\n\r\n"), handles pipelining (one write per read, carrying every
 * response that read completed) and keep-alive, and does nothing else: no
 * parsing, no validation.  Usage: c_epoll_server PORT [json]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAXEV 256
#define BUFSZ 65536

static const char PLAIN[] =
    "HTTP/1.1 200 OK\r\nServer: c\r\nDate: Thu, 01 Jan 2026 00:00:00 GMT\r\n"
    "Content-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";
static const char JSON[] =
    "HTTP/1.1 200 OK\r\nServer: c\r\nDate: Thu, 01 Jan 2026 00:00:00 GMT\r\n"
    "Content-Type: application/json\r\nContent-Length: 27\r\n\r\n{\"message\":\"Hello, World!\"}";

struct conn { int fd; int match; };  /* match: bytes of "\r\n\r\n" seen so far */

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 8080;
    const char *resp = (argc > 2 && !strcmp(argv[2], "json")) ? JSON : PLAIN;
    size_t rlen = strlen(resp);
    signal(SIGPIPE, SIG_IGN);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 1024) < 0) {
        perror("listen");
        return 1;
    }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    static char in[BUFSZ];
    static char out[BUFSZ * 2];
    struct epoll_event evs[MAXEV];
    for (;;) {
        int n = epoll_wait(ep, evs, MAXEV, -1);
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (!c) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    c = calloc(1, sizeof *c);
                    c->fd = fd;
                    struct epoll_event cev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
                }
                continue;
            }
            ssize_t r = read(c->fd, in, sizeof in);
            if (r <= 0) {
                if (r < 0 && errno == EAGAIN)
                    continue;
                close(c->fd);
                free(c);
                continue;
            }
            size_t nout = 0;
            for (ssize_t k = 0; k < r; k++) {
                char ch = in[k];
                int m = c->match;
                if ((ch == '\r' && (m == 0 || m == 2)) || (ch == '\n' && (m == 1 || m == 3)))
                    m++;
                else
                    m = ch == '\r' ? 1 : 0;
                if (m == 4) {
                    m = 0;
                    if (nout + rlen <= sizeof out) {
                        memcpy(out + nout, resp, rlen);
                        nout += rlen;
                    }
                }
                c->match = m;
            }
            if (nout && write(c->fd, out, nout) < 0) {
                close(c->fd);
                free(c);
            }
        }
    }
}
