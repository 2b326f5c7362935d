#include "config.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "common/cleanup.h"
#include "supervisor/broker/egress.h"

static const struct { const char *net; const char *why; } internal[] = {
        { "0.0.0.0/8", "an unspecified address" },
        { "10.0.0.0/8", "a private address" },
        { "100.64.0.0/10", "a carrier-grade NAT address" },
        { "127.0.0.0/8", "a loopback address" },
        { "169.254.0.0/16", "a link-local address (cloud metadata lives there)" },
        { "172.16.0.0/12", "a private address" },
        { "192.0.0.0/24", "a protocol-assignment address" },
        { "192.0.2.0/24", "a documentation address" },
        { "192.88.99.0/24", "a 6to4 relay address" },
        { "198.51.100.0/24", "a documentation address" },
        { "203.0.113.0/24", "a documentation address" },
        { "192.168.0.0/16", "a private address" },
        { "198.18.0.0/15", "a benchmarking address" },
        { "224.0.0.0/4", "a multicast address" },
        { "240.0.0.0/4", "a reserved address" },
        { "::1/128", "a loopback address" },
        { "::/96", "an IPv4-compatible or unspecified address" },
        { "100::/64", "a discard address" },
        { "2001::/32", "a Teredo tunnel address" },
        { "2001:10::/28", "an ORCHID address" },
        { "2001:20::/28", "an ORCHIDv2 address" },
        { "3fff::/20", "a documentation address" },
        { "5f00::/16", "a segment-routing address" },
        { "fec0::/10", "a site-local address" },
        { "fc00::/7", "a unique local address (cloud metadata lives there)" },
        { "fe80::/10", "a link-local address" },
        { "ff00::/8", "a multicast address" },
        { "2001:db8::/32", "a documentation address" },
};

/* Whether addr is one of this host's own interface addresses (read at
 * each judgement: interfaces come and go). */
static int own_address(int family, const unsigned char *addr)
{
        struct ifaddrs *ifs = NULL;
        int own = 0;
        if (getifaddrs(&ifs) < 0)
                return 1;  /* cannot tell: refuse */
        for (struct ifaddrs *i = ifs; i && !own; i = i->ifa_next) {
                if (!i->ifa_addr || i->ifa_addr->sa_family != family)
                        continue;
                const void *a = family == AF_INET ? (const void *)&((struct sockaddr_in *)i->ifa_addr)->sin_addr
                                                  : (const void *)&((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr;
                own = memcmp(a, addr, family == AF_INET ? 4 : 16) == 0;
        }
        freeifaddrs(ifs);
        return own;
}

const char *egress_refused(const struct http_cfg *cfg, int family, const unsigned char *addr)
{
        unsigned char v4[4];
        /* Addresses that carry an IPv4 address are judged as it: mapped
         * (::ffff:a.b.c.d), SIIT (::ffff:0:a.b.c.d), NAT64 (64:ff9b::/96 and
         * the local 64:ff9b:1::/48), 6to4 (2002:AABB:CCDD::/48). */
        static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
        static const unsigned char siit[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0 };
        static const unsigned char nat64[12] = { 0, 0x64, 0xff, 0x9b };
        static const unsigned char nat64l[6] = { 0, 0x64, 0xff, 0x9b, 0, 1 };
        if (family == AF_INET6) {
                const unsigned char *carried = memcmp(addr, mapped, 12) == 0 || memcmp(addr, siit, 12) == 0 ||
                                                               memcmp(addr, nat64, 12) == 0 || memcmp(addr, nat64l, 6) == 0
                                                       ? addr + 12
                                               : addr[0] == 0x20 && addr[1] == 0x02 ? addr + 2
                                                                                    : NULL;
                if (carried) {
                        memcpy(v4, carried, 4);
                        family = AF_INET;
                        addr = v4;
                }
        }
        for (size_t i = 0; i < cfg->nallow; i++)
                if (jr_net_contains(&cfg->allow[i], family, addr))
                        return NULL;
        for (size_t i = 0; i < ELEMENTSOF(internal); i++) {
                struct jr_net n;
                if (jr_net_parse(internal[i].net, &n) == 0 && jr_net_contains(&n, family, addr))
                        return internal[i].why;
        }
        return own_address(family, addr) ? "an address of this host" : NULL;
}

static int host_matches(const char *pattern, const char *host)
{
        if (strncmp(pattern, "*.", 2) == 0) {
                size_t p = strlen(pattern + 1), n = strlen(host);  /* ".example.com" */
                return n > p && strcmp(host + n - p, pattern + 1) == 0;
        }
        return strcmp(pattern, host) == 0;
}

/* Why the policy's host lists refuse `host`, or NULL. */
static const char *host_refused(const struct http_cfg *cfg, const char *host)
{
        for (size_t i = 0; i < cfg->ndeny_hosts; i++)
                if (host_matches(cfg->deny_hosts[i], host))
                        return "is denied by the policy";
        if (!cfg->nallow_hosts)
                return NULL;
        for (size_t i = 0; i < cfg->nallow_hosts; i++)
                if (host_matches(cfg->allow_hosts[i], host))
                        return NULL;
        return "is not among the allowed hosts";
}

/* The URL's host, lower case, in host[256]; whether its scheme is http
 * or https. */
static int url_parts(CURLU *url, char *host)
{
        char *scheme = NULL, *h = NULL;
        int web = curl_url_get(url, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
                  (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0);
        int has_host = curl_url_get(url, CURLUPART_HOST, &h, 0) == CURLUE_OK;
        snprintf(host, 256, "%s", has_host ? h : "");
        curl_free(scheme);
        curl_free(h);
        for (char *c = host; *c; c++)
                if (*c >= 'A' && *c <= 'Z')
                        *c = (char)(*c + 32);
        return web;
}

/* Why an address written as the host is refused, or NULL. Through a
 * proxy the target is connected to by the proxy: an address written in
 * the URL is judged here (libcurl has already turned 2130706433 and
 * 0x7f000001 into 127.0.0.1); `bare` gets it without brackets or a
 * trailing dot. */
static const char *literal_refused(const struct http_cfg *cfg, const char *host, char *bare)
{
        unsigned char lit[16];
        snprintf(bare, 256, "%s", host[0] == '[' ? host + 1 : host);
        bare[strcspn(bare, "]")] = '\0';
        size_t bl = strlen(bare);
        if (bl && bare[bl - 1] == '.')  /* "127.0.0.1." */
                bare[bl - 1] = '\0';
        /* inet_aton takes every IPv4 spelling (0177.1, 2130706433, 0x7f000001)
         * a proxy's URL parser may take. */
        struct in_addr v4;
        int fam = inet_aton(bare, &v4) ? (memcpy(lit, &v4, 4), AF_INET)
                : inet_pton(AF_INET6, bare, lit) == 1 ? AF_INET6 : 0;
        return fam && cfg->proxy[0] ? egress_refused(cfg, fam, lit) : NULL;
}

int egress_url(const struct http_cfg *cfg, CURLU *url, const char *shown, char *host, char *why)
{
        if (!url_parts(url, host))
                return snprintf(why, EGRESS_MAX_WHY, "only http and https URLs: %.200s", shown), 1;
        char bare[256];
        const char *inner = literal_refused(cfg, host, bare);
        if (inner)
                return snprintf(why, EGRESS_MAX_WHY, "refused by the egress policy: %.200s is %s", bare, inner), 1;
        const char *refused = host_refused(cfg, host);
        if (refused)
                return snprintf(why, EGRESS_MAX_WHY, "refused by the egress policy: host %.200s %s", host, refused), 1;
        return 0;
}

int egress_connect(const struct http_cfg *cfg, const struct jr_net *proxy, size_t nproxy, int family,
                   const unsigned char *addr, char *why, size_t size)
{
        char text[INET6_ADDRSTRLEN] = "?";
        inet_ntop(family, addr, text, sizeof text);
        const char *refused = NULL;
        if (cfg->proxy[0]) {  /* every connection goes to the proxy, and only there */
                refused = "not the egress proxy";
                for (size_t i = 0; i < nproxy; i++)
                        if (jr_net_contains(&proxy[i], family, addr))
                                refused = NULL;
        } else {
                refused = egress_refused(cfg, family, addr);
        }
        if (!refused)
                return 0;
        snprintf(why, size, "%s is %s", text, refused);
        return 1;
}

int egress_peer(const struct http_cfg *cfg, const char *peer, const char *local, char *why, size_t size)
{
        if (cfg->proxy[0] || !peer || !local || strcmp(peer, local) != 0)
                return 0;
        unsigned char a[16];
        int fam = inet_pton(AF_INET, peer, a) == 1 ? AF_INET : inet_pton(AF_INET6, peer, a) == 1 ? AF_INET6 : 0;
        for (size_t i = 0; fam && i < cfg->nallow; i++)
                if (jr_net_contains(&cfg->allow[i], fam, a))
                        return 0;  /* listed: allowed, this host or not */
        snprintf(why, size, "%.60s is an address of this host", peer);
        return 1;
}

/* One resolved address as a host-sized net; 0, or -1 for another family. */
static int host_net(const struct addrinfo *a, struct jr_net *n)
{
        *n = (struct jr_net){ .family = a->ai_family };
        if (a->ai_family == AF_INET) {
                memcpy(n->addr, &((struct sockaddr_in *)a->ai_addr)->sin_addr, 4);
                n->bits = 32;
        } else if (a->ai_family == AF_INET6) {
                memcpy(n->addr, &((struct sockaddr_in6 *)a->ai_addr)->sin6_addr, 16);
                n->bits = 128;
        } else {
                return -1;
        }
        return 0;
}

int egress_proxy_addresses(const struct http_cfg *cfg, struct jr_net *out, size_t max, size_t *n,
                           struct jr_err *err)
{
        CURLU *u = curl_url();
        char *host = NULL, *port = NULL;
        *n = 0;
        if (!u || curl_url_set(u, CURLUPART_URL, cfg->proxy, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
                curl_url_cleanup(u);
                return jr_fail(err, EINVAL, "proxy URL %.200s", cfg->proxy);
        }
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
        char bare[256];
        snprintf(bare, sizeof bare, "%s", host[0] == '[' ? host + 1 : host);
        bare[strcspn(bare, "]")] = '\0';
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL;
        int rc = getaddrinfo(bare, port, &hints, &res);
        curl_free(host);
        curl_free(port);
        curl_url_cleanup(u);
        if (rc != 0)
                return jr_fail(err, EHOSTUNREACH, "proxy %.200s: %s", cfg->proxy, gai_strerror(rc));
        for (struct addrinfo *a = res; a && *n < max; a = a->ai_next)
                *n += host_net(a, &out[*n]) == 0;
        freeaddrinfo(res);
        return *n ? 0 : jr_fail(err, EHOSTUNREACH, "proxy %.200s: no address", cfg->proxy);
}
