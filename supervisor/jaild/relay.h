/* A session's way to its package index during an install (relay.c). */
#ifndef JR_JAILD_RELAY_H
#define JR_JAILD_RELAY_H

#include "common/err.h"
#include "supervisor/engine/loop.h"

struct relay;

/* Listens on 127.0.0.1:*port inside the network namespace of the process
 * pidfd names, on l, and relays each connection to index_url's host and
 * port (resolved now; CONNECT only to them). 0 or -errno (err says why). */
int relay_open(struct relay **out, struct loop *l, int pidfd, const char *index_url, unsigned *port,
               struct jr_err *err);
/* Closes the listener and every connection; NULL is accepted. */
void relay_close(struct relay *r);

#endif
