#include "config.h"

#include <errno.h>
#include <net/if.h>
#include <netlink/netlink.h>
#include <netlink/route/link.h>
#include <string.h>

#include "jail/net.h"

#include "common/cleanup.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(struct nl_sock *, nl_socket_free)
DEFINE_TRIVIAL_CLEANUP_FUNC(struct rtnl_link *, rtnl_link_put)
DEFINE_TRIVIAL_CLEANUP_FUNC(struct nl_cache *, nl_cache_free)

static int nl_fail(struct jr_err *err, int nlerr, const char *what)
{
        return jr_fail(err, EIO, "%s: %s", what, nl_geterror(nlerr));
}

/* Counts links and finds lo's flags in a fresh dump. */
static int check_links(struct nl_sock *sk, struct jr_err *err)
{
        _cleanup_(nl_cache_freep) struct nl_cache *cache = NULL;
        int r = rtnl_link_alloc_cache(sk, AF_UNSPEC, &cache);
        if (r < 0)
                return nl_fail(err, r, "dump links");
        int n = nl_cache_nitems(cache);
        struct rtnl_link *lo = rtnl_link_get_by_name(cache, "lo");
        if (!lo)
                return jr_fail(err, ENODEV, "no lo in the network namespace");
        unsigned flags = rtnl_link_get_flags(lo);
        rtnl_link_put(lo);
        if (!(flags & IFF_UP))
                return jr_fail(err, ENETDOWN, "lo is still down");
        if (n != 1)
                return jr_fail(err, EEXIST, "%d links in the network namespace, want only lo", n);
        return 0;
}

int net_setup_lo(struct jr_err *err)
{
        _cleanup_(nl_socket_freep) struct nl_sock *sk = nl_socket_alloc();
        if (!sk)
                return jr_fail(err, ENOMEM, "netlink socket");
        int r = nl_connect(sk, NETLINK_ROUTE);
        if (r < 0)
                return nl_fail(err, r, "connect rtnetlink");
        _cleanup_(rtnl_link_putp) struct rtnl_link *lo = NULL;
        r = rtnl_link_get_kernel(sk, 0, "lo", &lo);
        if (r < 0)
                return nl_fail(err, r, "get lo");
        _cleanup_(rtnl_link_putp) struct rtnl_link *change = rtnl_link_alloc();
        if (!change)
                return jr_fail(err, ENOMEM, "link change");
        rtnl_link_set_flags(change, IFF_UP);
        r = rtnl_link_change(sk, lo, change, 0);
        if (r < 0)
                return nl_fail(err, r, "bring lo up");
        return check_links(sk, err);
}
