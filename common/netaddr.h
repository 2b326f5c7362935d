/* Network addresses and prefixes: "10.0.0.0/8", "::1", "fd00::/8". */
#ifndef JR_NETADDR_H
#define JR_NETADDR_H

#include <stdbool.h>

struct jr_net {
        int family;              /* AF_INET or AF_INET6 */
        unsigned char addr[16];  /* network order; IPv4 in the first 4 */
        unsigned bits;           /* prefix length */
};

/* Parses ADDRESS[/BITS] (no BITS: the one address). 0 or -EINVAL. */
int jr_net_parse(const char *s, struct jr_net *out);

/* Whether addr (4 or 16 bytes of `family`) lies in net. */
bool jr_net_contains(const struct jr_net *net, int family, const unsigned char *addr);

#endif
