#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/netaddr.h"

int jr_net_parse(const char *s, struct jr_net *out)
{
        char buf[64];
        if (snprintf(buf, sizeof buf, "%s", s) >= (int)sizeof buf)
                return -EINVAL;
        char *slash = strchr(buf, '/');
        unsigned long bits = 0;
        if (slash) {
                char *end;
                *slash = '\0';
                bits = strtoul(slash + 1, &end, 10);
                if (!slash[1] || *end)
                        return -EINVAL;
        }
        *out = (struct jr_net){ 0 };
        if (inet_pton(AF_INET, buf, out->addr) == 1) {
                out->family = AF_INET;
                out->bits = slash ? (unsigned)bits : 32;
                return out->bits <= 32 ? 0 : -EINVAL;
        }
        if (inet_pton(AF_INET6, buf, out->addr) == 1) {
                out->family = AF_INET6;
                out->bits = slash ? (unsigned)bits : 128;
                return out->bits <= 128 ? 0 : -EINVAL;
        }
        return -EINVAL;
}

bool jr_net_contains(const struct jr_net *net, int family, const unsigned char *addr)
{
        if (net->family != family)
                return false;
        unsigned full = net->bits / 8, rest = net->bits % 8;
        if (memcmp(net->addr, addr, full) != 0)
                return false;
        if (!rest)
                return true;
        unsigned char mask = (unsigned char)(0xff << (8 - rest));
        return (net->addr[full] & mask) == (addr[full] & mask);
}
