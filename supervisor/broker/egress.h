/* ctx.http's egress policy: what a request may reach.
 *
 * Every connection libcurl is about to open (the first, and each
 * redirect's) is judged on the address it is about to connect to, after
 * resolution, so neither a name that resolves inward nor an address
 * written in another form (2130706433, 0x7f000001, [::ffff:127.0.0.1])
 * nor DNS changing between a check and the connect gets past it:
 * loopback, private, link-local (cloud metadata included), CGNAT, ULA,
 * multicast and unspecified addresses are refused unless the policy lists
 * them. Only http and https, on the request and on every redirect, to the
 * hosts the policy's lists allow; through an egress proxy, only the
 * proxy's addresses are connected to. Nothing here allocates: a verdict
 * never depends on memory. */
#ifndef JR_EGRESS_H
#define JR_EGRESS_H

#include <curl/curl.h>
#include <stddef.h>

#include "common/err.h"
#include "common/netaddr.h"
#include "supervisor/broker/http.h"

#define EGRESS_MAX_WHY 300  /* bytes of a refusal's text */

/* Why the address may not be connected to (a static string), or NULL. */
const char *egress_refused(const struct http_cfg *cfg, int family, const unsigned char *addr);

/* Whether `url` may be asked for: http or https, a host the lists allow
 * and, through a proxy, no internal address written in it. Its host, in
 * lower case, goes to host[256] either way. 0, or 1 with the refusal's
 * text in why[EGRESS_MAX_WHY] (`shown`: the URL as the worker gave it). */
int egress_url(const struct http_cfg *cfg, CURLU *url, const char *shown, char *host, char *why);

/* The connection libcurl is about to open, to `addr`: 0, or 1 with why
 * in why[size]. With a proxy, only its addresses (proxy[0..nproxy)). */
int egress_connect(const struct http_cfg *cfg, const struct jr_net *proxy, size_t nproxy, int family,
                   const unsigned char *addr, char *why, size_t size);

/* A connection made, before the request goes: a peer that is this very
 * host (an address routed locally that no interface shows, AnyIP) is
 * refused unless listed. 0, or 1 with why in why[size]. */
int egress_peer(const struct http_cfg *cfg, const char *peer, const char *local, char *why, size_t size);

/* The proxy's addresses, resolved once (the operator's own host name):
 * at most `max` in out[], their count in *n. 0, or -errno with err. */
int egress_proxy_addresses(const struct http_cfg *cfg, struct jr_net *out, size_t max, size_t *n,
                           struct jr_err *err);

#endif
