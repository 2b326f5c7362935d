#include "config.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "policy/policy.h"
#include "supervisor/engine/job.h"

/* A job's options where both front-ends take them alike: from a decoded
 * policy, and the names a job is known by (its worker name, the parent of
 * its cgroup). */

/* The supervisor's side of the decoded policy, into the job's options.
 * o->broker.adapters is borrowed: the policy document holds it too and
 * lives as long as the job. */
void job_use_policy(struct job_opts *o, const struct policy *p)
{
        o->memory = p->limits.memory;
        o->cpus = p->limits.cpus;
        o->pids = p->limits.pids;
        o->timeout_s = p->limits.timeout;
        o->cpu_time_s = p->limits.cpu_time;
        o->log_max_bytes = p->log.max_bytes;
        o->cold = p->exec.nprograms > 0;
        o->bar_timeout_s = p->backtest.bar_timeout;
        o->tick_timeout_s = p->limits.tick_timeout;
        o->tick_grace_s = p->limits.tick_grace;
        o->bar_grace_s = p->backtest.grace;
        o->abort_percent = p->backtest.abort_percent;
        o->abort_min = p->backtest.abort_min;
        o->broker.state_max_value = p->state.max_value_bytes;
        o->broker.state_max_total = p->state.max_total_bytes;
        o->broker.files.quota = p->files.quota_bytes;
        o->broker.files.max_read = p->files.max_read_bytes;
        struct http_cfg *hc = &o->broker.http;
        hc->timeout_max = p->http.timeout_max;
        hc->max_response = p->http.max_response_bytes;
        hc->max_in_flight = p->http.max_in_flight;
        hc->max_redirects = p->http.max_redirects;
        hc->rate = p->http.rate_per_second;
        for (size_t i = 0; i < p->http.allow_addresses.n && hc->nallow < HTTP_MAX_ALLOW; i++)
                hc->allow[hc->nallow++] = p->http.allow_addresses.net[i];
        snprintf(hc->proxy, sizeof hc->proxy, "%s", p->http.proxy);
        o->broker.adapters = p->adapters;
        for (size_t i = 0; i < p->http.allow_hosts.n && i < HTTP_MAX_HOSTS; i++)
                snprintf(hc->allow_hosts[hc->nallow_hosts++], sizeof hc->allow_hosts[0], "%s",
                         p->http.allow_hosts.host[i]);
        for (size_t i = 0; i < p->http.deny_hosts.n && i < HTTP_MAX_HOSTS; i++)
                snprintf(hc->deny_hosts[hc->ndeny_hosts++], sizeof hc->deny_hosts[0], "%s",
                         p->http.deny_hosts.host[i]);
}

/* A parent for job groups: one or more plain names below the root (never
 * the root itself, whose other groups are not ours), none of them a
 * job-N name the stale-group sweep would take for a job's. */
int job_programs_check(const json_t *policy, const char *what, struct jr_err *err)
{
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(json_object_get(policy, "exec"), "programs"), i, v) {
                const char *path = json_string_value(v);
                struct stat st;
                if (!path || stat(path, &st) < 0)
                        return jr_fail(err, path ? errno : EINVAL, "%s: exec.programs[%zu]: %s", what, i, path ? path : "?");
                if (!S_ISREG(st.st_mode) || !(st.st_mode & S_IXOTH))
                        return jr_fail(err, 0, "%s: exec.programs[%zu]: %s is not a program everyone may run", what, i,
                                       path);
                if (st.st_uid != 0 || (st.st_mode & (S_IWGRP | S_IWOTH)))
                        return jr_fail(err, 0, "%s: exec.programs[%zu]: %s must be root's and writable by root alone",
                                       what, i, path);
        }
        return 0;
}

int job_valid_cgroup_parent(const char *p)
{
        p += strspn(p, "/");
        if (!*p || strlen(p) > 256)
                return 0;
        for (const char *c = p; *c;) {
                size_t n = strcspn(c, "/");
                unsigned digits;
                char tail;
                if (n == 0 || strspn(c, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") < n ||
                    (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
                        return 0;
                char name[257];
                snprintf(name, sizeof name, "%.*s", (int)n, c);
                if (sscanf(name, "job-%u%c", &digits, &tail) == 1 || sscanf(name, "pool-%u%c", &digits, &tail) == 1)
                        return 0;
                c += n;
                if (*c == '/' && !*++c)
                        return 1;  /* one trailing slash */
        }
        return 1;
}

/* A worker name: 1 to 64 of [A-Za-z0-9._-], not starting with '.'. */
int job_valid_name(const char *s)
{
        size_t n = strlen(s);
        return n > 0 && n <= 64 && s[0] != '.' &&
               strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

/* The worker's default name: its script's, less ".py". A name that had
 * to be changed to be valid (characters outside [A-Za-z0-9._-], too long,
 * a leading '.') gets a digest of the original after it, so "a b.py" and
 * "a+b.py" do not share one namespace. */
void job_default_name(const char *script, char *out, size_t size)
{
        static const char ok[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-";
        const char *base = strrchr(script, '/');
        base = base ? base + 1 : script;
        size_t n = strlen(base);
        if (n > 3 && strcmp(base + n - 3, ".py") == 0)
                n -= 3;
        size_t o = 0;
        int changed = n == 0 || n > 50 || base[0] == '.';
        for (size_t i = 0; i < n && o < 50 && o + 1 < size; i++) {
                int good = strchr(ok, base[i]) != NULL;
                changed |= !good;
                out[o++] = good ? base[i] : '_';
        }
        if (o && out[0] == '.')
                out[0] = '_';
        /* A name that looks like a digested one is digested too, so no
         * script can be named into another's namespace. */
        size_t dash = o > 13 ? o - 13 : 0;
        if (!changed && o > 13 && out[dash] == '-' && strspn(out + dash + 1, "0123456789abcdef") == 12)
                changed = 1;
        if (changed) {
                unsigned char md[EVP_MAX_MD_SIZE];
                unsigned mdlen = 0;
                EVP_Digest(base, n, md, &mdlen, EVP_sha256(), NULL);
                o += (size_t)snprintf(out + o, size - o, "%s%02x%02x%02x%02x%02x%02x", o ? "-" : "", md[0], md[1], md[2],
                                      md[3], md[4], md[5]);
        }
        out[o < size ? o : size - 1] = '\0';
}
