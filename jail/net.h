/* The jail's network namespace: only `lo`, brought up over rtnetlink. */
#ifndef JR_NET_H
#define JR_NET_H

#include "common/err.h"

/* Brings lo up and checks it is the only link. Returns 0 or -errno. */
int net_setup_lo(struct jr_err *err);

#endif
