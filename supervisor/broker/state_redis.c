/* ctx.state on Redis (hiredis's asynchronous interface on the job's loop;
 * state_redis.h), for many nodes sharing state. One hash per worker
 * namespace, "jailrun:state:NS", field = key, value = JSON text; beside it
 * the byte total ("...:bytes") and the keys in a sorted set of equal
 * scores ("...:keys"), read by lexical range: a page of keys costs the
 * server O(log n + page). All three change together, in scripts.
 * "Durable once set returns" is only true of a server that fsyncs its
 * append-only file on every write, so no call is sent on a connection
 * before the server has said it is configured so (appendonly yes,
 * appendfsync always). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <arpa/inet.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "supervisor/broker/state_redis.h"
#include "supervisor/engine/log.h"

#define REDIS_NO_ANSWER "no answer within 5 s (the server is stopped or overloaded)"
#define REDIS_UNAVAILABLE "the state store is unavailable (the operator's log says why)"
#define REDIS_LOG_EVERY_S 60

/* A call: waiting for the connection (cmd set), sent, or done (out set). */
struct pend {
        struct pend *next;
        struct redis_store *s;
        int64_t id;
        enum state_op op;
        unsigned limit;          /* keys: most keys the page may hold */
        unsigned gen;            /* the store's when asked: another is a gone jail's */
        char *cmd;               /* the formatted command, until sent */
        int len;
        struct state_out out;
};

/* An answer awaited, in the order asked: a call's, or the handshake's. */
struct wait {
        struct pend *p;               /* NULL: the handshake's step hs */
        const struct hs_step *hs;
};

#define REDIS_MAX_WAITS (REDIS_MAX_PENDING + 4)

struct redis_store {
        char host[PATH_MAX];
        int port, db, unix_sock;
        uint64_t max_total;      /* bytes of values per namespace; 0 = none */
        int epfd, tfd;
        redisContext *c;         /* non-blocking, driven here; NULL: no connection */
        int connected;           /* its connect(2) has completed */
        uint32_t events;         /* what its fd is in epfd for; 0: not there */
        int ready;               /* the server said it is durable; database selected */
        int ever;                /* a connection was ready once */
        int lost;                /* the server went away; said to the operator once */
        int timed_out;           /* the connection ended for want of an answer */
        char why[400];           /* why no connection is ready, for the calls that waited */
        char logged[400];        /* the last of those the operator's log was told */
        time_t logged_at;
        unsigned gen;
        unsigned pending;        /* calls not yet handed back */
        struct wait waits[REDIS_MAX_WAITS];
        unsigned whead, wcount;
        struct timespec progress;/* last answer, or first request of an idle connection */
        struct pend *queue, **qtail, *done, **dtail;
};

int state_is_redis(const char *url)
{
        return strncmp(url, "redis://", 8) == 0 || strncmp(url, "unix://", 7) == 0;
}

/* Parses redis://HOST[:PORT][/DB] or unix:///PATH[?db=N]. */
static int parse_url(const char *url, char *host, size_t hsize, int *port, int *db, int *unix_sock)
{
        char *end;
        *db = 0;
        *port = 6379;
        if (strncmp(url, "unix://", 7) == 0) {
                *unix_sock = 1;
                const char *path = url + 7, *q = strchr(path, '?');
                size_t n = q ? (size_t)(q - path) : strlen(path);
                if (path[0] != '/' || n == 0 || n >= hsize)
                        return -EINVAL;
                memcpy(host, path, n);
                host[n] = '\0';
                if (q) {
                        if (strncmp(q, "?db=", 4) != 0)
                                return -EINVAL;
                        long v = strtol(q + 4, &end, 10);
                        if (*end || end == q + 4 || v < 0 || v > 1000000)
                                return -EINVAL;
                        *db = (int)v;
                }
                return 0;
        }
        *unix_sock = 0;
        const char *h = url + 8;
        size_t n = strcspn(h, ":/");
        if (n == 0 || n >= hsize)
                return -EINVAL;
        memcpy(host, h, n);
        host[n] = '\0';
        const char *p = h + n;
        if (*p == ':') {
                long v = strtol(p + 1, &end, 10);
                if (end == p + 1 || v < 1 || v > 65535)
                        return -EINVAL;
                *port = (int)v;
                p = end;
        }
        if (*p == '/' && p[1]) {
                long v = strtol(p + 1, &end, 10);
                if (*end || v < 0 || v > 1000000)
                        return -EINVAL;
                *db = (int)v;
        } else if (*p && strcmp(p, "/") != 0) {
                return -EINVAL;
        }
        return 0;
}

int state_url_resolve(const char *url, char *out, size_t size)
{
        char host[PATH_MAX];
        int port, db, unix_sock;
        struct in_addr a;
        if (strlen(url) >= size)
                return -ENAMETOOLONG;
        strcpy(out, url);
        if (!state_is_redis(url) || parse_url(url, host, sizeof host, &port, &db, &unix_sock) < 0 || unix_sock ||
            inet_pton(AF_INET, host, &a) == 1)
                return 0;
        struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *res = NULL;
        int e = getaddrinfo(host, NULL, &hints, &res);
        if (e) {
                log_msg("ctx.state: redis: cannot resolve %s (%s): state calls fail until this program restarts",
                        host, e == EAI_SYSTEM ? strerror(errno) : gai_strerror(e));
                return 0;
        }
        char ip[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &((const struct sockaddr_in *)res->ai_addr)->sin_addr, ip, sizeof ip);
        freeaddrinfo(res);
        if (snprintf(out, size, "redis://%s:%d/%d", ip, port, db) >= (int)size)
                return -ENAMETOOLONG;
        return 0;
}

int state_url_ok(const char *url)
{
        char host[PATH_MAX];
        int port, db, unix_sock;
        return !state_is_redis(url) || parse_url(url, host, sizeof host, &port, &db, &unix_sock) == 0;
}

#define HASH_FMT "jailrun:state:%s"

/* HSET with the namespace's byte total kept beside it (HASH:bytes), in
 * one script so concurrent jailruns cannot race past the cap. */
static const char set_script[] =  /* a key costs its bytes too */
        "local old = 0 "
        "if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then "
        "  old = #ARGV[1] + redis.call('HSTRLEN', KEYS[1], ARGV[1]) end "
        "local new = #ARGV[1] + #ARGV[2] "
        "local used = tonumber(redis.call('GET', KEYS[2]) or '0') "
        "local max = tonumber(ARGV[3]) "
        "if max > 0 and used - old + new > max then return -1 end "
        "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) "
        "redis.call('ZADD', KEYS[3], 0, ARGV[1]) "
        "redis.call('INCRBY', KEYS[2], new - old) "
        "return 1";

static const char del_script[] =
        "local old = #ARGV[1] + redis.call('HSTRLEN', KEYS[1], ARGV[1]) "
        "local n = redis.call('HDEL', KEYS[1], ARGV[1]) "
        "if n > 0 then redis.call('DECRBY', KEYS[2], old) end "
        "redis.call('ZREM', KEYS[3], ARGV[1]) "
        "return n";

/* A page of keys from the index (KEYS[2]) by lexical range ARGV[1] to
 * ARGV[2], cut at ARGV[3] keys and ARGV[4] bytes of text (each key's
 * length plus one), in reply {more, key...}. An index that does not hold
 * as many keys as the hash (a namespace written before there was one, or
 * by a jailrun that did not keep it) is made again first, once. */
static const char keys_script[] =
        "if redis.call('ZCARD', KEYS[2]) ~= redis.call('HLEN', KEYS[1]) then "
        "  redis.call('DEL', KEYS[2]) "
        "  local all = redis.call('HKEYS', KEYS[1]) "
        "  for i = 1, #all, 1000 do "
        "    local args = {} "
        "    for j = i, math.min(i + 999, #all) do args[#args + 1] = 0; args[#args + 1] = all[j] end "
        "    redis.call('ZADD', KEYS[2], unpack(args)) "
        "  end "
        "end "
        "local limit, cap = tonumber(ARGV[3]), tonumber(ARGV[4]) "
        "local ks = redis.call('ZRANGEBYLEX', KEYS[2], ARGV[1], ARGV[2], 'LIMIT', 0, limit + 1) "
        "local out, bytes = {0}, 0 "
        "for i, k in ipairs(ks) do "
        "  bytes = bytes + #k + 1 "
        "  if i > limit or bytes > cap then out[1] = 1; return out end "
        "  out[#out + 1] = k "
        "end "
        "return out";

/* The range of a page: from the prefix (inclusive) or after the cursor,
 * up to the prefix and the byte 0xff, which UTF-8 keys never hold. */
static void page_range(const struct state_page *pg, char *min, char *max, size_t size)
{
        if (pg->after)
                snprintf(min, size, "(%s", pg->after);
        else if (pg->prefix[0])
                snprintf(min, size, "[%s", pg->prefix);
        else
                snprintf(min, size, "-");
        if (pg->prefix[0])
                snprintf(max, size, "(%s\xff", pg->prefix);
        else
                snprintf(max, size, "+");
}

/* --- the timer -------------------------------------------------------------- */

static void now(struct timespec *t)
{
        clock_gettime(CLOCK_MONOTONIC, t);
}

/* The timer at the last progress plus REDIS_TIMEOUT_S while an answer is
 * awaited, else disarmed. */
static void arm(struct redis_store *s)
{
        struct itimerspec it = { 0 };
        if (s->wcount) {
                it.it_value = s->progress;
                it.it_value.tv_sec += REDIS_TIMEOUT_S;
        }
        if (timerfd_settime(s->tfd, TFD_TIMER_ABSTIME, &it, NULL) < 0)
                log_msg("ctx.state: redis: timerfd_settime: %s", strerror(errno));
}

/* --- outcomes ---------------------------------------------------------- */

static const char *op_name(enum state_op op)
{
        static const char *const names[] = { "get", "set", "delete", "keys" };
        return names[op];
}

static void fail(struct state_out *out, int errnum, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(struct state_out *out, int errnum, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(out->err.msg, sizeof out->err.msg, fmt, ap);
        va_end(ap);
        out->err.errnum = errnum;
        out->rc = -errnum;
}

/* The server went away: said once to the operator, not at every call. */
static void redis_lost(struct redis_store *s, const char *why)
{
        if (!s->lost)
                log_msg("ctx.state: redis: lost the server (%s); each call connects again", why);
        s->lost = 1;
}

static void pend_free(struct pend *p)
{
        p->s->pending--;
        redisFreeCommand(p->cmd);
        state_out_clear(&p->out);
        free(p);
}

static void to_done(struct pend *p)
{
        struct redis_store *s = p->s;
        p->next = NULL;
        *s->dtail = p;
        s->dtail = &p->next;
}

/* Why no connection could be made, in the operator's log: once for each
 * new reason, and again at most every REDIS_LOG_EVERY_S (a jail calling
 * in a loop against a store that never answered must not flood it). */
static void log_why(struct redis_store *s)
{
        struct timespec t;
        now(&t);
        if (strcmp(s->logged, s->why) == 0 && t.tv_sec < s->logged_at + REDIS_LOG_EVERY_S)
                return;
        log_msg("ctx.state: %s", s->why);
        snprintf(s->logged, sizeof s->logged, "%s", s->why);
        s->logged_at = t.tv_sec;
}

/* A call that never got a ready connection: what the connection's failure
 * says, or, before any connection was ever ready, that the store is
 * unavailable (the details, a path or an address, are the operator's). */
static void fail_unconnected(struct redis_store *s, struct state_out *out)
{
        if (s->ever)
                fail(out, EIO, "%s", s->why);
        else
                fail(out, EIO, REDIS_UNAVAILABLE);
}

/* An answer that is not the one asked for: the server's error, a lost
 * connection (r NULL, why said), or a reply of the wrong shape. */
static void bad_reply(struct redis_store *s, struct pend *p, const redisReply *r, const char *why)
{
        if (r && r->type == REDIS_REPLY_ERROR) {
                fail(&p->out, EIO, "state %s: redis: %.300s", op_name(p->op), r->str);
        } else if (!r) {
                fail(&p->out, EIO, "state %s: redis: connection lost: %s", op_name(p->op), why);
                redis_lost(s, why);
        } else {
                fail(&p->out, EIO, "state %s: redis: unexpected reply", op_name(p->op));
        }
}

static int keys_out(struct pend *p, const redisReply *r)
{
        if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 || r->elements > p->limit + 1 ||
            r->element[0]->type != REDIS_REPLY_INTEGER)
                return -1;
        json_t *keys = json_array();
        if (!keys) {
                fail(&p->out, ENOMEM, "state keys: out of memory");
                return 0;
        }
        for (size_t i = 1; i < r->elements; i++) {
                const redisReply *e = r->element[i];
                if (e->type != REDIS_REPLY_STRING) {
                        json_decref(keys);
                        return -1;
                }
                if (json_array_append_new(keys, json_stringn(e->str, e->len)) < 0) {
                        json_decref(keys);
                        fail(&p->out, ENOMEM, "state keys: out of memory");
                        return 0;
                }
        }
        p->out.keys = keys;
        p->out.more = r->element[0]->integer != 0;
        return 0;
}

/* The reply as the call's outcome: 0, or -1 when it is not the one asked for. */
static int reply_out(struct redis_store *s, struct pend *p, const redisReply *r)
{
        switch (p->op) {
        case STATE_GET:
                if (r->type == REDIS_REPLY_NIL)
                        return 0;
                if (r->type != REDIS_REPLY_STRING)
                        return -1;
                if (!(p->out.json = strndup(r->str, r->len)))
                        fail(&p->out, ENOMEM, "state get: out of memory");
                return 0;
        case STATE_SET:
                if (r->type != REDIS_REPLY_INTEGER)
                        return -1;
                if (r->integer == -1)
                        fail(&p->out, EDQUOT, "the worker's state would hold more than %llu bytes",
                             (unsigned long long)s->max_total);
                return 0;
        case STATE_DELETE:
                if (r->type != REDIS_REPLY_INTEGER)
                        return -1;
                p->out.deleted = r->integer > 0;
                return 0;
        case STATE_KEYS:
                return keys_out(p, r);
        }
        return -1;
}

/* --- the connection: made by a call, ready once the server has answered ---- */

struct hs_step {
        const char *name, *want;  /* CONFIG GET name == want; NULL: SELECT */
};

static const struct hs_step hs_select = { NULL, NULL };
static const struct hs_step hs_steps[] = { { "appendonly", "yes" }, { "appendfsync", "always" } };

/* A call's answer, or NULL with why: its outcome, unless it was a gone
 * jail's (then dropped). */
static void answer(struct redis_store *s, struct pend *p, const redisReply *r, const char *why)
{
        if (p->gen != s->gen)
                return pend_free(p);
        if (!r || reply_out(s, p, r) < 0)
                bad_reply(s, p, r, why);
        to_done(p);
}

/* Ends the connection: every answer awaited is failed with why (the
 * calls' as lost, the handshake's as the reason no connection is ready). */
static void conn_close(struct redis_store *s, const char *reason)
{
        if (!s->c)
                return;
        char why[256];  /* reason may be the context's own text, freed below */
        snprintf(why, sizeof why, "%s", reason);
        if (s->events && epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->c->fd, NULL) < 0)
                log_msg("ctx.state: redis: epoll_ctl DEL: %s", strerror(errno));
        redisFree(s->c);
        s->c = NULL;
        s->events = 0;
        if (!s->ready && !s->why[0])
                snprintf(s->why, sizeof s->why, "state: redis: cannot connect: %s", why);
        s->ready = 0;
        for (; s->wcount; s->whead = (s->whead + 1) % REDIS_MAX_WAITS, s->wcount--)
                if (s->waits[s->whead].p)
                        answer(s, s->waits[s->whead].p, NULL, why);
}

/* The connection's fd in our epoll set, for reading, and for writing
 * while its connect is under way or it has output left. */
static void conn_events(struct redis_store *s)
{
        if (!s->c)
                return;
        uint32_t want = EPOLLIN | (!s->connected || sdslen(s->c->obuf) ? EPOLLOUT : 0);
        if (want == s->events)
                return;
        struct epoll_event e = { .events = want };
        if (epoll_ctl(s->epfd, s->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s->c->fd, &e) < 0) {
                char why[128];
                snprintf(why, sizeof why, "epoll_ctl: %s", strerror(errno));
                return conn_close(s, why);
        }
        s->events = want;
}

/* Sends what the context holds, as far as the socket takes it now. */
static void conn_write(struct redis_store *s)
{
        int done = 0;
        if (s->c && s->connected && sdslen(s->c->obuf) && redisBufferWrite(s->c, &done) != REDIS_OK)
                return conn_close(s, s->c->errstr);
        conn_events(s);
}

static int wait_push(struct redis_store *s, struct pend *p, const struct hs_step *hs)
{
        if (s->wcount == REDIS_MAX_WAITS)
                return -1;
        if (!s->wcount)
                now(&s->progress);
        s->waits[(s->whead + s->wcount++) % REDIS_MAX_WAITS] = (struct wait){ .p = p, .hs = hs };
        return 0;
}

/* A handshake answer: 0 when it does, else -1 with the connection ended. */
static int hs_answer(struct redis_store *s, const struct hs_step *st, const redisReply *r)
{
        if (!st->name && r->type == REDIS_REPLY_ERROR)
                snprintf(s->why, sizeof s->why, "state select: redis: %.300s", r->str);
        else if (st->name && !(r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                               r->element[1]->type == REDIS_REPLY_STRING && strcmp(r->element[1]->str, st->want) == 0))
                snprintf(s->why, sizeof s->why, "state: the redis server does not make a write durable before "
                                                "answering (it needs appendonly yes and appendfsync always)");
        else
                return 0;
        conn_close(s, s->why);
        return -1;
}

static void hs_done(struct redis_store *s)
{
        s->ready = 1;
        s->why[0] = '\0';
        if (s->lost)
                log_msg("ctx.state: redis: connected again");
        s->lost = 0;
        s->ever = 1;
}

/* The answers read so far, each to what awaited it. An answer nobody
 * asked for, or one the reader cannot parse, ends the connection. */
static void conn_replies(struct redis_store *s)
{
        void *reply;
        while (s->c) {
                if (redisReaderGetReply(s->c->reader, &reply) != REDIS_OK)
                        return conn_close(s, s->c->reader->errstr[0] ? s->c->reader->errstr : "a malformed answer");
                if (!reply)
                        return;
                now(&s->progress);
                if (!s->wcount) {  /* hiredis's own asynchronous interface aborts on this */
                        freeReplyObject(reply);
                        redis_lost(s, "the server sent an answer nobody asked for");
                        return conn_close(s, "the server sent an answer nobody asked for");
                }
                struct wait w = s->waits[s->whead];
                s->whead = (s->whead + 1) % REDIS_MAX_WAITS;
                s->wcount--;
                int more = 1;
                if (w.p)
                        answer(s, w.p, reply, "");
                else if ((more = hs_answer(s, w.hs, reply) == 0) && w.hs == &hs_steps[ELEMENTSOF(hs_steps) - 1])
                        hs_done(s);
                freeReplyObject(reply);
                if (!more)
                        return;
        }
}

static int hs_send(struct redis_store *s, const struct hs_step *st)
{
        int r = st->name ? redisAppendCommand(s->c, "CONFIG GET %s", st->name)
                         : redisAppendCommand(s->c, "SELECT %d", s->db);
        return r == REDIS_OK ? wait_push(s, NULL, st) : -1;
}

/* A new connection (non-blocking), its handshake queued (answered
 * later). 0, or -1 with s->why set (no connection). */
static int connect_start(struct redis_store *s)
{
        s->why[0] = '\0';
        s->timed_out = s->ready = s->connected = 0;
        struct in_addr a;
        if (!s->unix_sock && inet_pton(AF_INET, s->host, &a) != 1) {  /* never a DNS lookup on the loop */
                snprintf(s->why, sizeof s->why, "state: redis: the host name %.200s was not resolved when this "
                         "program started (state_url_resolve); it is not looked up again until it restarts", s->host);
                return -1;
        }
        s->c = s->unix_sock ? redisConnectUnixNonBlock(s->host) : redisConnectNonBlock(s->host, s->port);
        if (!s->c || s->c->err) {
                snprintf(s->why, sizeof s->why, "state: redis: cannot connect: %s",
                         s->c ? s->c->errstr : "out of memory");
                redisFree(s->c);
                s->c = NULL;
                return -1;
        }
        int fl = fcntl(s->c->fd, F_GETFD);
        if (fl < 0 || fcntl(s->c->fd, F_SETFD, fl | FD_CLOEXEC) < 0) {
                conn_close(s, strerror(errno));
                return -1;
        }
        int r = s->db ? hs_send(s, &hs_select) : 0;
        for (size_t i = 0; r == 0 && i < ELEMENTSOF(hs_steps); i++)
                r = hs_send(s, &hs_steps[i]);
        if (r < 0)
                conn_close(s, "out of memory");
        conn_events(s);
        return s->c ? 0 : -1;
}

/* The calls waiting for a connection: failed when none is left (none
 * could be made), sent once it is ready. */
static void queue_go(struct redis_store *s)
{
        if (!s->c && s->queue) {
                if (!s->why[0])
                        snprintf(s->why, sizeof s->why, "state: redis: cannot connect: the connection was closed");
                if (s->ever)
                        redis_lost(s, s->why);
                else
                        log_why(s);
                for (struct pend *p; (p = s->queue);) {
                        s->queue = p->next;
                        fail_unconnected(s, &p->out);
                        to_done(p);
                }
                s->qtail = &s->queue;
        }
        while (s->c && s->ready && s->queue) {
                struct pend *p = s->queue;
                s->queue = p->next;
                if (!s->queue)
                        s->qtail = &s->queue;
                if (redisAppendFormattedCommand(s->c, p->cmd, (size_t)p->len) != REDIS_OK || wait_push(s, p, NULL) < 0) {
                        conn_close(s, "out of memory");
                        answer(s, p, NULL, "out of memory");
                        continue;
                }
                redisFreeCommand(p->cmd);
                p->cmd = NULL;
        }
}

/* After any work on the connection: the queue moves on, what is
 * written goes out, the timer follows what is awaited. */
static void settle(struct redis_store *s)
{
        queue_go(s);
        conn_write(s);
        queue_go(s);  /* a write that ended the connection fails the queue */
        arm(s);
}

/* --- the store ------------------------------------------------------------ */

int redis_store_new(struct redis_store **out, const char *url, uint64_t max_total, struct jr_err *err)
{
        _cleanup_free_ struct redis_store *s = calloc(1, sizeof *s);
        if (!s)
                return jr_fail(err, ENOMEM, "state");
        if (parse_url(url, s->host, sizeof s->host, &s->port, &s->db, &s->unix_sock) < 0)
                return jr_fail(err, EINVAL, "state URL '%.200s' (redis://HOST[:PORT][/DB] or unix:///PATH[?db=N])",
                               url);
        s->max_total = max_total;
        s->qtail = &s->queue;
        s->dtail = &s->done;
        s->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (s->epfd < 0)
                return jr_fail(err, errno, "state: epoll_create1");
        s->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
        if (s->tfd < 0) {
                int e = errno;
                close(s->epfd);
                return jr_fail(err, e, "state: timerfd_create");
        }
        *out = TAKE_PTR(s);
        return 0;
}

static void free_list(struct pend **head)
{
        for (struct pend *p; (p = *head);) {
                *head = p->next;
                pend_free(p);
        }
}

void redis_store_free(struct redis_store *s)
{
        if (!s)
                return;
        s->gen++;  /* the calls awaited are dropped */
        conn_close(s, "the store was closed");
        free_list(&s->queue);
        free_list(&s->done);
        close(s->epfd);
        close(s->tfd);
        free(s);
}

int redis_store_epoll_fd(const struct redis_store *s)
{
        return s->epfd;
}

int redis_store_timer_fd(const struct redis_store *s)
{
        return s->tfd;
}

/* The command for req, formatted (hiredis's): its length, or -1. */
static int format(const struct redis_store *s, const struct state_req *q, char **cmd)
{
        char hash[128], total[140], index[140], max[32], min[STATE_MAX_KEY + 4], hi[STATE_MAX_KEY + 4], limit[16],
                cap[16];
        snprintf(hash, sizeof hash, HASH_FMT, q->ns);
        snprintf(total, sizeof total, "%s:bytes", hash);
        snprintf(index, sizeof index, "%s:keys", hash);
        switch (q->op) {
        case STATE_GET:
                return redisFormatCommand(cmd, "HGET %s %s", hash, q->key);
        case STATE_SET:
                snprintf(max, sizeof max, "%llu", (unsigned long long)s->max_total);
                return redisFormatCommand(cmd, "EVAL %s 3 %s %s %s %s %s %s", set_script, hash, total, index, q->key,
                                          q->json, max);
        case STATE_DELETE:
                return redisFormatCommand(cmd, "EVAL %s 3 %s %s %s %s", del_script, hash, total, index, q->key);
        case STATE_KEYS:
                page_range(&q->page, min, hi, sizeof min);
                snprintf(limit, sizeof limit, "%u", q->page.limit);
                snprintf(cap, sizeof cap, "%d", STATE_PAGE_BYTES);
                return redisFormatCommand(cmd, "EVAL %s 2 %s %s %s %s %s %s", keys_script, hash, index, min, hi, limit,
                                          cap);
        }
        return -1;
}

/* Whether the idle connection was closed by the server (it restarted, or
 * dropped us): readable with nothing awaited means EOF or a reset. */
static int closed_while_idle(const struct redis_store *s)
{
        struct pollfd p = { .fd = s->c->fd, .events = POLLIN | POLLRDHUP };
        int n;
        do
                n = poll(&p, 1, 0);
        while (n < 0 && errno == EINTR);
        return n != 0;
}

int redis_store_start(struct redis_store *s, int64_t id, const struct state_req *q, struct state_out *out)
{
        *out = (struct state_out){ 0 };
        if (s->pending >= REDIS_MAX_PENDING) {
                fail(out, EBUSY, "state %s: %d calls are under way; one must return first", op_name(q->op),
                     REDIS_MAX_PENDING);
                return 0;
        }
        struct pend *p = calloc(1, sizeof *p);
        if (!p) {
                fail(out, ENOMEM, "state %s: out of memory", op_name(q->op));
                return 0;
        }
        *p = (struct pend){ .s = s, .id = id, .op = q->op, .limit = q->page.limit, .gen = s->gen };
        p->len = format(s, q, &p->cmd);
        if (p->len < 0) {
                free(p);
                fail(out, ENOMEM, "state %s: out of memory", op_name(q->op));
                return 0;
        }
        s->pending++;
        /* A connection closed while idle is replaced before the call, at no
         * error. */
        if (s->c && s->connected && !s->wcount && closed_while_idle(s))
                conn_close(s, "closed while idle");  /* nothing awaited: no call fails */
        if (!s->c && connect_start(s) < 0) {
                if (s->ever)
                        redis_lost(s, s->why);
                else
                        log_why(s);
                fail_unconnected(s, out);
                pend_free(p);
                return 0;
        }
        *s->qtail = p;
        s->qtail = &p->next;
        settle(s);
        return 1;
}

/* The connect under way has ended: 0 when it succeeded. */
static int conn_connected(struct redis_store *s)
{
        int e = 0;
        socklen_t len = sizeof e;
        if (getsockopt(s->c->fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
                e = errno;
        if (e) {
                conn_close(s, strerror(e));
                return -1;
        }
        s->connected = 1;
        return 0;
}

void redis_store_on_ready(struct redis_store *s)
{
        struct epoll_event ev;
        int n;
        while ((n = epoll_wait(s->epfd, &ev, 1, 0)) < 0 && errno == EINTR)
                ;
        if (n < 0)
                log_msg("ctx.state: redis: epoll_wait: %s", strerror(errno));
        if (n == 1 && s->c) {
                if (!s->connected && (ev.events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
                        (void)conn_connected(s);
                if (s->c && s->connected && (ev.events & (EPOLLIN | EPOLLERR | EPOLLHUP))) {
                        int r = redisBufferRead(s->c);
                        conn_replies(s);  /* those that came whole before an error */
                        if (r != REDIS_OK && s->c)
                                conn_close(s, s->c->errstr);
                }
        }
        settle(s);
}

void redis_store_on_timer(struct redis_store *s)
{
        uint64_t ticks;
        if (read(s->tfd, &ticks, sizeof ticks) < 0 && errno != EAGAIN)
                log_msg("ctx.state: redis: read its timer: %s", strerror(errno));
        struct timespec t;
        now(&t);
        if (s->c && s->wcount && t.tv_sec >= s->progress.tv_sec + REDIS_TIMEOUT_S &&
            (t.tv_sec > s->progress.tv_sec + REDIS_TIMEOUT_S || t.tv_nsec >= s->progress.tv_nsec)) {
                s->timed_out = 1;
                conn_close(s, REDIS_NO_ANSWER);
        }
        settle(s);
}

int redis_store_done(struct redis_store *s, int64_t *id, enum state_op *op, struct state_out *out)
{
        struct pend *p = s->done;
        if (!p)
                return 0;
        s->done = p->next;
        if (!s->done)
                s->dtail = &s->done;
        *id = p->id;
        *op = p->op;
        *out = p->out;
        p->out = (struct state_out){ 0 };
        pend_free(p);
        return 1;
}

void redis_store_orphan(struct redis_store *s)
{
        s->gen++;
        free_list(&s->queue);
        s->qtail = &s->queue;
        free_list(&s->done);
        s->dtail = &s->done;
        /* Calls sent and not answered: the connection goes with them (its
         * answers would be read by no one until the next jail's first call,
         * and they count against that jail's calls under way). */
        for (unsigned i = 0; i < s->wcount; i++)
                if (s->waits[(s->whead + i) % REDIS_MAX_WAITS].p) {
                        conn_close(s, "the jail has ended");
                        break;
                }
        arm(s);
}
