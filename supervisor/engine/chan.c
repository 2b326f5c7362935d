#include "config.h"

#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "supervisor/engine/jobint.h"

/* The jail's channel and output pipes: reading them within the job's
 * read and CPU budgets, acting on its messages (ctx calls through the
 * broker), and relaying its output to the sink. */

/* A worker's channel closed: the jail gets this long to exit before the
 * job ends as a ProtocolError (closing it is part of exiting). */
#define CHAN_CLOSE_GRACE_MS 1000

/* What of a tick's error is printed, as the jail's runtime cuts it (a
 * forged report is not): the message's head, the traceback's tail. */
#define PRINT_MAX_MESSAGE 4000
#define PRINT_MAX_TRACEBACK 16000

/* A message that spent the job's supervisor CPU budget is looked at again
 * at most this much later (cpu_throttle). */
#define CPU_RECHECK_S 0.25

static void http_replies(struct job *j);
static void state_replies(struct job *j);
static void send_reply(struct job *j, json_int_t id, json_t *result);

/* Stops watching a descriptor of the jail's and closes it. */
static void close_watched(struct watch *w)
{
        int fd = w->fd;
        loop_unwatch(w);
        closep(&fd);
}

int send_json(struct job *j, json_t *m)
{
        _cleanup_free_ char *s = json_dumps(m, JSON_COMPACT);
        json_decref(m);
        if (!s)
                return -ENOMEM;
        if (strlen(s) > CHAN_MAX_MSG)  /* the jail reads no more: never sent */
                return -EMSGSIZE;
        if (send(j->run->chan.fd, s, strlen(s), MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
                return -errno;
        return 0;
}

void sent_or_end(struct job *j, int r)
{
        if (r < 0 && r != -EPIPE && r != -ECONNRESET)
                end_job(j, JOB_PROTOCOL, "ProtocolError", "worker does not read its channel (%s)",
                        strerror(-r));
}

/* A reloaded script that did not load: the job goes on with the one
 * before, so its error is not the job's. */
static int rejected_reload(const struct job *j)
{
        return j->run->phase != PH_READY && j->good && j->cur != j->good;
}

/* Charges `cost` bytes of what the jail has printed to the policy's log
 * total (log.max_bytes): 1 to print it; 0 past the total, where it is
 * counted and dropped, said once now and once at the end. */
int log_charge(struct job *j, uint64_t cost)
{
        uint64_t max = j->o->log_max_bytes;
        if (max && j->log_bytes + cost > max) {
                if (!j->log_dropped++)
                        job_note(j, "log messages beyond %llu bytes dropped",
                                 (unsigned long long)max);
                return 0;
        }
        j->log_bytes += cost;
        return 1;
}

/* A failed tick's report in text mode (traceback, then Type: message),
 * charged to the log budget like the messages it stands among. */
static void print_error_report(struct job *j, const struct msg *m)
{
        const char *tb = m->result.traceback;
        size_t tlen = strlen(tb), mlen = strlen(m->result.emsg);
        if (tlen > PRINT_MAX_TRACEBACK)
                tb += tlen - PRINT_MAX_TRACEBACK, tlen = PRINT_MAX_TRACEBACK;
        if (mlen > PRINT_MAX_MESSAGE)
                mlen = PRINT_MAX_MESSAGE;
        if (!log_charge(j, tlen + mlen + strlen(m->result.etype) + LOG_ENTRY_COST))
                return;
        if (tlen) {
                outq_puts(&j->sink->err, "Traceback (most recent call last):\n");
                log_block(&j->sink->err, tb);
        }
        if (!log_plain_type(m->result.etype))  /* a type of the jail's naming must not pass for our note */
                outq_puts(&j->sink->err, "  ");
        log_escaped(&j->sink->err, m->result.etype);
        outq_puts(&j->sink->err, ": ");
        log_escapedn(&j->sink->err, m->result.emsg, mlen);
        outq_put(&j->sink->err, "\n", 1);
}

void on_error_result(struct job *j, const struct msg *m)
{
        /* In profile exec the script's own stderr already carried it. */
        if (!j->o->json && j->o->entry != JAIL_ENTRY_SCRIPT)
                print_error_report(j, m);
        if (rejected_reload(j)) {  /* said when the next jail starts */
                char line[32] = "";
                if (m->result.line > 0)
                        snprintf(line, sizeof line, "line %lld", (long long)m->result.line);
                if (line[0] && !strstr(m->result.emsg, line))  /* the message may say it already */
                        snprintf(line, sizeof line, " (line %lld)", (long long)m->result.line);
                else
                        line[0] = '\0';
                size_t room = sizeof j->run->reload_error - strlen(line);
                snprintf(j->run->reload_error, room, "%s: %s", m->result.etype, m->result.emsg);
                jr_utf8_clean(j->run->reload_error);
                strcat(j->run->reload_error, line);
        } else if (!j->have_error) {  /* report the first failure */
                j->have_error = 1;
                jr_utf8_copy(j->res->etype, sizeof j->res->etype, m->result.etype);
                jr_utf8_copy(j->res->emsg, sizeof j->res->emsg, m->result.emsg);
                jr_utf8_copy(j->res->traceback, sizeof j->res->traceback, m->result.traceback);
                j->res->line = (long)m->result.line;
        }
}

/* The jail's log messages, up to the policy's total (log_charge). */
void on_log(struct job *j, const struct msg *m)
{
        size_t i;
        json_t *e;
        json_array_foreach(m->log.entries, i, e) {
                json_t *text = json_object_get(e, "msg");
                if (!log_charge(j, json_string_length(text) + LOG_ENTRY_COST))
                        continue;
                log_jail(&j->sink->err, j->o->json,
                         (enum log_level)msg_log_level(json_string_value(json_object_get(e, "level"))),
                         json_string_value(text), json_string_length(text));
        }
}

/* The broker's http client and Redis store on the loop while this jail
 * runs, once a call of it is under way; a state call may have ended
 * already (its connection refused at once). */
static void watch_pending(struct job *j)
{
        struct run *run = j->run;
        int e = 0;
        if (run->http.fd < 0 && j->broker.http) {
                e = loop_watch(j->loop, &run->http, http_epoll_fd(j->broker.http), EPOLLIN, 0, on_http, j);
                if (e == 0)
                        e = loop_watch(j->loop, &run->http_timer, http_timer_fd(j->broker.http), EPOLLIN, 0, on_http, j);
        }
        if (e == 0 && run->state.fd < 0 && j->broker.redis) {
                e = loop_watch(j->loop, &run->state, redis_store_epoll_fd(j->broker.redis), EPOLLIN, 0, on_state, j);
                if (e == 0)
                        e = loop_watch(j->loop, &run->state_timer, redis_store_timer_fd(j->broker.redis), EPOLLIN, 0,
                                       on_state, j);
        }
        if (e < 0)
                return end_job(j, JOB_INTERNAL, "InternalError", "epoll_ctl: %s", strerror(-e));
        state_replies(j);
}

static void on_call(struct job *j, const struct msg *m)
{
        struct jr_err err = { 0 };
        json_t *result = NULL;
        int r = broker_call(&j->broker, m->call.op, m->call.id, m->call.args, &result, &err);
        if (r == -EPROTO)
                return end_job(j, JOB_PROTOCOL, "ProtocolError", "%s", err.msg);
        if (r < 0)  /* the supervisor's own failure (out of memory): never left unanswered */
                return end_job(j, JOB_INTERNAL, "InternalError", "%s", err.msg[0] ? err.msg : "ctx call failed");
        if (r == BROKER_PENDING)  /* under way: answered from http_replies or state_replies */
                return watch_pending(j);
        send_reply(j, m->call.id, result);
}

/* Finished http requests: their replies, body after each. */
static void http_replies(struct job *j)
{
        int64_t id;
        json_t *result;
        int r;
        while ((r = broker_http_done(&j->broker, &id, &result)) != BROKER_PENDING) {
                if (r == BROKER_DONE && !j->run->ended) {
                        send_reply(j, id, result);
                        continue;
                }
                json_decref(result);
                broker_payload_done(&j->broker);
                if (r < 0 && !j->run->ended)  /* no answer could be made: never a call left unanswered */
                        end_job(j, JOB_INTERNAL, "InternalError", "http reply: %s", strerror(-r));
        }
}

/* Finished state calls (Redis): their replies. */
static void state_replies(struct job *j)
{
        int64_t id;
        json_t *result;
        int r;
        while ((r = broker_state_done(&j->broker, &id, &result)) != BROKER_PENDING) {
                if (r == BROKER_DONE && !j->run->ended) {
                        send_reply(j, id, result);
                        continue;
                }
                json_decref(result);
                if (r < 0 && !j->run->ended)  /* no answer could be made: never a call left unanswered */
                        end_job(j, JOB_INTERNAL, "InternalError", "state reply: %s", strerror(-r));
        }
}

static void send_reply(struct job *j, json_int_t id, json_t *result)
{
        if (j->run->chan.fd < 0) {  /* the jail closed its channel: an answer nobody can read */
                json_decref(result);
                return broker_payload_done(&j->broker);
        }
        _cleanup_free_ char *reply = NULL;
        int r = broker_reply(&j->broker, id, result, &reply);  /* one too long is its error */
        if (r == 0 && send(j->run->chan.fd, reply, strlen(reply), MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
                r = -errno;
        /* The payload (a file's bytes) follows as raw datagrams. */
        const char *p = j->broker.payload;
        for (size_t left = r == 0 && p ? j->broker.payload_len : 0; r == 0 && left;) {
                size_t n = left < CHAN_MAX_MSG ? left : CHAN_MAX_MSG;
                if (send(j->run->chan.fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
                        r = -errno;
                p += n;
                left -= n;
        }
        broker_payload_done(&j->broker);
        if (r < 0 && r != -EPIPE && r != -ECONNRESET)
                end_job(j, JOB_PROTOCOL, "ProtocolError", "worker does not read its channel (%s)", strerror(-r));
}

static void on_message(struct job *j, struct msg *m)
{
        /* Until the jail says it is jailed only a set-up report may come;
         * after it, user code runs and nothing can be one. */
        if (j->run->phase == PH_FATAL)
                return end_job(j, JOB_PROTOCOL, "ProtocolError", "message after a set-up failure");
        if (j->run->phase < PH_JAILED && m->type != MSG_JAILED && m->type != MSG_FATAL)
                return end_job(j, JOB_PROTOCOL, "ProtocolError", "message before the jail was set up");
        switch (m->type) {
        case MSG_JAILED:
                if (j->run->phase >= PH_JAILED)
                        return end_job(j, JOB_PROTOCOL, "ProtocolError", "unexpected jailed");
                j->run->phase = PH_JAILED;
                j->res->setup_us = us_since(&j->run->cloned);
                if (j->o->on_jailed)
                        j->o->on_jailed(j->o->tick_data, j->res->setup_us);
                return;
        case MSG_FATAL:
                if (j->run->phase >= PH_JAILED)
                        return end_job(j, JOB_PROTOCOL, "ProtocolError", "set-up report after set-up");
                j->run->phase = PH_FATAL;
                j->res->status = JOB_SETUP;
                snprintf(j->res->etype, sizeof j->res->etype, "SetupError");
                snprintf(j->res->emsg, sizeof j->res->emsg, "jail set-up failed at %s: %s",
                         m->fatal.step, m->fatal.message);
                return;
        case MSG_READY: {
                int bt = j->o->entry == JAIL_ENTRY_BACKTEST;
                struct jr_err err = { 0 };
                if (j->run->phase == PH_READY || j->run->final_result || j->o->entry == JAIL_ENTRY_SCRIPT ||
                    j->o->entry == JAIL_ENTRY_CHECK || bt != (m->ready.bars > 0))
                        return end_job(j, JOB_PROTOCOL, "ProtocolError", "unexpected ready");
                if (bt && bt_start(&j->bt, (uint64_t)m->ready.bars, &err) < 0)
                        return end_job(j, JOB_PROTOCOL, "ProtocolError", "%s", err.msg);
                j->run->phase = PH_READY;
                if (j->good != j->cur) {  /* this text loads: the one to go back to */
                        if (j->cur->reload) {
                                j->res->reloads++;
                                job_note(j, "reloaded %s", j->o->script_path);
                        }
                        script_unref(&j->good);
                        j->good = script_ref(j->cur);
                }
                if (bt)
                        arm_bar_watch(j);
                if (j->o->on_ready)
                        j->o->on_ready(j->o->tick_data);
                return next_tick_or_stop(j);
        }
        case MSG_BARS:
                return on_bars(j, m);
        case MSG_LOG:
                return on_log(j, m);
        case MSG_RESULT:
                return on_result(j, m);
        case MSG_CALL:
                if (j->o->entry == JAIL_ENTRY_CHECK || j->o->entry == JAIL_ENTRY_SCRIPT ||
                    j->o->entry == JAIL_ENTRY_SESSION)
                        return end_job(j, JOB_PROTOCOL, "ProtocolError", "unexpected call");
                return on_call(j, m);
        case MSG_CHECK:
                if (j->o->entry != JAIL_ENTRY_CHECK || j->res->violations || j->run->final_result)
                        return end_job(j, JOB_PROTOCOL, "ProtocolError", "unexpected check report");
                j->res->violations = json_incref(m->check.violations);
                return;
        case MSG__MAX:
                break;
        }
}

/* recv() returns 0 both for an empty datagram and at the end of the
 * channel; only a hang-up tells them apart. The events in hand may predate
 * the child's exit, so ask the socket now. */
static int peer_closed(int fd)
{
        struct pollfd p = { .fd = fd, .events = POLLIN | POLLRDHUP };
        int n;
        while ((n = poll(&p, 1, 0)) < 0 && errno == EINTR)
                ;
        return n > 0 && (p.revents & (POLLHUP | POLLRDHUP));
}

static void arm_grace(struct job *j)
{
        if (j->run->grace_armed)
                return;
        j->run->grace_armed = 1;
        if (timer_arm(&j->grace, CHAN_CLOSE_GRACE_MS / 1000.0, 0) < 0)
                end_job(j, JOB_PROTOCOL, "ProtocolError", "worker closed its channel");
}

/* Stops or resumes reading the jail while our own output is backed up:
 * the jail then blocks on its writes, and the loop still serves timers
 * and signals. */
void set_paused(struct job *j, int pause)
{
        if (pause == j->run->paused)
                return;
        j->run->paused = pause;
        struct watch *ws[] = { &j->run->chan, &j->run->out, &j->run->err };
        for (size_t i = 0; i < ELEMENTSOF(ws); i++)
                (void)loop_rewatch(ws[i], pause ? 0 : EPOLLIN);  /* fails only for a closed fd */
}

/* Takes n bytes from the read budget; when it runs out, stops reading the
 * jail until it has refilled (the jail then blocks on its writes). */
static void charge(struct job *j, size_t n)
{
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        double dt = (double)(now.tv_sec - j->run->refilled.tv_sec) + (now.tv_nsec - j->run->refilled.tv_nsec) / 1e9;
        j->run->refilled = now;
        double rate = j->o->entry == JAIL_ENTRY_BACKTEST ? BT_READ_RATE : READ_RATE;
        j->run->tokens += dt * rate;
        if (j->run->tokens > READ_BURST)
                j->run->tokens = READ_BURST;
        j->run->tokens -= (double)n;
        if (j->run->tokens >= 0 || j->run->throttled || j->run->exited)
                return;
        /* On failure the jail stays unthrottled rather than stuck. */
        if (timer_arm(&j->throttle, -j->run->tokens / rate, 0) == 0) {
                j->run->throttled = 1;
                set_paused(j, 1);
        }
}

/* One datagram of n bytes in j->buf: decoded and acted on. */
static void handle_datagram(struct job *j, size_t n)
{
        struct msg m;
        struct jr_err e = { 0 };
        if (msg_decode(j->buf, n, &m, &e) < 0) {
                end_job(j, JOB_PROTOCOL, "ProtocolError", "%s", e.msg);
                return;
        }
        if (!j->run->ended && !j->run->restarting)  /* a jail we killed has had its say */
                on_message(j, &m);
        else if (m.type == MSG_LOG)  /* ... but its log still shows */
                on_log(j, &m);
        msg_free(&m);
}

static void cpu_throttle(struct job *j)
{
        if (j->run->throttled || j->run->exited)
                return;
        double left = broker_cpu_left(&j->broker);
        if (left >= 0)
                return;
        double wait = -left / BROKER_CPU_TRICKLE;
        if (timer_arm(&j->throttle, wait < CPU_RECHECK_S ? wait : CPU_RECHECK_S, 0) == 0) {
                j->run->throttled = 1;
                j->run->cpu_waiting = 1;
                set_paused(j, 1);
                if (!j->cpu_noted++)
                        job_note(j, "the jail's messages wait: the supervisor CPU it may use "
                                 "(as much as it used itself, plus %.0f ms a second and %g s in reserve) is spent",
                                 BROKER_CPU_TRICKLE * 1000, BROKER_CPU_RESERVE);
        }
}

/* Reads the datagrams waiting on the channel, at most `max`. */
void drain_chan(struct job *j, uint32_t events, int max)
{
        for (int k = 0; j->run->chan.fd >= 0 && k < max && (!j->run->throttled || j->run->exited); k++) {
                ssize_t n = recv(j->run->chan.fd, j->buf, CHAN_MAX_MSG, MSG_DONTWAIT | MSG_TRUNC);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return;
                if (n == 0 && !(events & (EPOLLHUP | EPOLLRDHUP)) && !peer_closed(j->run->chan.fd)) {
                        end_job(j, JOB_PROTOCOL, "ProtocolError", "empty message");
                        n = -1;
                }
                if (n <= 0) {  /* end of channel, or an error: stop reading it */
                        close_watched(&j->run->chan);
                        /* A worker without its channel can never report
                         * again: unless it is on its way out, end it. An
                         * exec script may close its fds. */
                        if (j->o->profile == JAIL_PROFILE_WORKER && !j->run->exited)
                                arm_grace(j);
                        return;
                }
                charge(j, (size_t)n);
                struct timespec t0;
                broker_cpu_mark(&t0);
                handle_datagram(j, (size_t)n);
                broker_cpu_charge(&j->broker, &t0);
                cpu_throttle(j);
        }
}

/* A worker's native output, one escaped line at a time (a line longer
 * than the log limit is cut there), up to WORKER_RAW_OUTPUT_MAX bytes. */
static void worker_output(struct job *j, int fd, const char *buf, size_t n)
{
        struct line_buf *lb = &j->run->raw[fd - 1];
        for (size_t i = 0; i < n; i++) {
                /* Each byte counts, and each line printed its frame too. */
                if (j->raw_bytes >= WORKER_RAW_OUTPUT_MAX) {
                        if (!j->dropped_noted)
                                job_note(j, "worker output beyond %d bytes dropped",
                                         WORKER_RAW_OUTPUT_MAX);
                        j->dropped_noted = 1;
                        return;
                }
                j->raw_bytes++;
                if (buf[i] == '\n') {
                        if (!lb->cut) {
                                log_output(&j->sink->err, j->o->json, fd, lb->text, lb->len);
                                j->raw_bytes += LOG_ENTRY_COST;
                        }
                        lb->len = 0;
                        lb->cut = 0;
                } else if (lb->len < sizeof lb->text) {
                        lb->text[lb->len++] = buf[i];
                } else if (!lb->cut) {
                        log_output(&j->sink->err, j->o->json, fd, lb->text, lb->len);
                        j->raw_bytes += LOG_ENTRY_COST;
                        lb->cut = 1;
                }
        }
}

/* Relays one of the jail's output pipes, at most `max` reads: exec output
 * passes through as it is; a worker's goes to stderr (see worker_output),
 * leaving stdout to the --json result. */
void drain_pipe(struct job *j, struct watch *w, int which, int max)
{
        char buf[65536];
        for (int k = 0; w->fd >= 0 && k < max && (!j->run->throttled || j->run->exited); k++) {
                ssize_t n = read(w->fd, buf, sizeof buf);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return;
                if (n <= 0) {
                        close_watched(w);
                        struct line_buf *lb = &j->run->raw[which - 1];
                        if (j->o->profile == JAIL_PROFILE_WORKER && lb->len && !lb->cut)
                                log_output(&j->sink->err, j->o->json, which, lb->text, lb->len);
                        return;
                }
                charge(j, (size_t)n);
                if (j->o->profile == JAIL_PROFILE_WORKER) {
                        worker_output(j, which, buf, (size_t)n);
                } else {
                        outq_put(which == 1 ? &j->sink->out : &j->sink->err, buf, (size_t)n);
                        if (which == 1)
                                j->res->stdout_mid_line = buf[n - 1] != '\n';
                }
        }
}

/* A session's cell ended: what it printed is in the pipes (it flushed
 * before it answered) and belongs to it, so it is read now, whatever the
 * read budget (charged all the same): at most the pipes' capacity, as the
 * jail blocks on a full pipe before it can answer. */
void drain_pipes_now(struct job *j)
{
        int throttled = j->run->throttled;
        j->run->throttled = 0;
        drain_pipe(j, &j->run->out, 1, BATCH);
        drain_pipe(j, &j->run->err, 2, BATCH);
        j->run->throttled |= throttled;
        outq_flush_some(&j->sink->out);  /* to the front-end now, before the answer */
        outq_flush_some(&j->sink->err);
}

/* 1 when the channel holds messages not read yet. */
int chan_unread(int fd)
{
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int n;
        while ((n = poll(&p, 1, 0)) < 0 && errno == EINTR)
                ;
        return n > 0 && (p.revents & POLLIN);
}

/* Writes what our stdout and stderr take now; 1 while something waits. */
int flush_sink(struct hook *h)
{
        struct job *j = h->data;
        size_t left = outq_flush_some(&j->sink->out) + outq_flush_some(&j->sink->err);
        if (!j->run)
                return left ? 10 : -1;
        int full = outq_full(&j->sink->out) || outq_full(&j->sink->err);
        j->run->tick_held |= full && j->run->inflight;
        set_paused(j, full || j->run->throttled);
        /* With output waiting on a slow reader, look again soon. */
        return left ? 10 : -1;
}

void on_chan(struct watch *w, uint32_t events)
{
        drain_chan(w->data, events, BATCH);
}

void on_out(struct watch *w, uint32_t events)
{
        (void)events;
        struct job *j = w->data;
        drain_pipe(j, &j->run->out, 1, BATCH / 4);
}

void on_err(struct watch *w, uint32_t events)
{
        (void)events;
        struct job *j = w->data;
        drain_pipe(j, &j->run->err, 2, BATCH / 4);
}

void on_throttle(struct timer *t)
{
        struct job *j = t->data;
        j->run->throttled = 0;  /* flush_sink resumes reading ... */
        if (j->run->cpu_waiting) {
                j->run->cpu_waiting = 0;
                cpu_throttle(j);  /* ... unless the CPU budget it waits for is still spent */
        }
}

/* The job's Redis store: its CPU is charged to the job's budget. */
void on_state(struct watch *w, uint32_t events)
{
        (void)events;
        struct job *j = w->data;
        struct timespec t0;
        broker_cpu_mark(&t0);
        if (w == &j->run->state)
                redis_store_on_ready(j->broker.redis);
        else
                redis_store_on_timer(j->broker.redis);
        state_replies(j);
        broker_cpu_charge(&j->broker, &t0);
}

/* The job's transfers: their CPU is charged to its budget. */
void on_http(struct watch *w, uint32_t events)
{
        (void)events;
        struct job *j = w->data;
        struct timespec t0;
        broker_cpu_mark(&t0);
        if (w == &j->run->http)
                http_on_ready(j->broker.http);
        else
                http_on_timer(j->broker.http);
        http_replies(j);
        broker_cpu_charge(&j->broker, &t0);  /* the next call is refused if it is spent */
}
