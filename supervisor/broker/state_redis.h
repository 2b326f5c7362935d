/* ctx.state on Redis, driven from the job's event loop: a call is sent and
 * its answer comes when the server gives it, so a slow or silent server
 * holds up only the calls that wait on it, never the loop (the other
 * workers of a daemon, its API, this job's timers). Like the http client
 * (http.h) the store has an epoll set of its own, holding its connection,
 * and a timerfd for its deadline; the job's loop watches both. The
 * connection is a non-blocking hiredis context driven here (its buffers
 * and reply parser): an answer no call awaits drops the connection, where
 * hiredis's own asynchronous interface would abort the process. A host
 * name is resolved by the front-end as it starts (state_url_resolve).
 *
 * A connection is made by the first call and again after it was lost; it
 * is used once the server has answered that it makes every write durable
 * before answering (appendonly yes, appendfsync always) and has selected
 * the database. Calls made meanwhile wait for that. A server that gives no
 * answer for REDIS_TIMEOUT_S while a call waits on it is given up: the
 * calls under way get an error, the next call connects again. */
#ifndef JR_STATE_REDIS_H
#define JR_STATE_REDIS_H

#include <stdint.h>

#include "common/err.h"
#include "supervisor/broker/state.h"

#define REDIS_TIMEOUT_S 5
/* Calls of one job under way at once; past it a call is refused at once
 * (a jail that sends calls without waiting for their answers cannot make
 * the supervisor hold its values without bound). */
#define REDIS_MAX_PENDING 8

struct redis_store;

/* A store for url (redis://HOST[:PORT][/DB] or unix:///PATH[?db=N]; see
 * state_url_ok); it connects at its first call. 0, or -errno with err. */
int redis_store_new(struct redis_store **out, const char *url, uint64_t max_total, struct jr_err *err);
/* Ends the connection; the calls under way are dropped unanswered. */
void redis_store_free(struct redis_store *s);

/* For the job's loop: the epoll set (readable when the connection is
 * ready) and the timerfd. */
int redis_store_epoll_fd(const struct redis_store *s);
int redis_store_timer_fd(const struct redis_store *s);

/* Starts req as call `id`: 1 when under way (its outcome comes out of
 * redis_store_done), 0 with *out filled when it ends at once (too many
 * under way, or no connection could be started). */
int redis_store_start(struct redis_store *s, int64_t id, const struct state_req *req, struct state_out *out);

/* The loop's work, after the epoll set or the timer was readable. */
void redis_store_on_ready(struct redis_store *s);
void redis_store_on_timer(struct redis_store *s);

/* A finished call: 1 with its id, operation and outcome (the caller's to
 * clear: state_out_clear), 0 when none is finished. */
int redis_store_done(struct redis_store *s, int64_t *id, enum state_op *op, struct state_out *out);

/* The calls under way were a jail's that has ended: each is carried out
 * if already sent (it cannot be taken back), not sent if still waiting for
 * the connection, and its outcome dropped. */
void redis_store_orphan(struct redis_store *s);

#endif
