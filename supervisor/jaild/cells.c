/* The cells of jaild's sessions: execute requests queued in order, run one
 * at a time in the session's interpreter (job_execute), what each prints
 * kept (and streamed, ?stream=1), and the answer
 * {success, data: {output, stderr, result?, error?}, stats}. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "supervisor/jaild/session.h"

/* Bytes printed between cells kept for the next one. */
#define IDLE_OUTPUT_MAX (64 * 1024)

static void cell_free(struct cell *cl)
{
        json_decref(cl->install);
        free(cl->code);
        free(cl);
}

/* Text as a JSON string: as it is when it is UTF-8 (NULs and all), else
 * cleaned (a byte that is not UTF-8 becomes '?', and a NUL a space). */
static json_t *text_json(const char *p, size_t n)
{
        json_t *s = json_stringn(p ? p : "", n);
        if (s || !p)
                return s;
        char *c = malloc(n + 1);
        if (!c)
                return NULL;
        for (size_t i = 0; i < n; i++)
                c[i] = p[i] ? p[i] : ' ';
        c[n] = '\0';
        s = jr_json_text(c);
        free(c);
        return s;
}

/* Trailing bytes of buf that begin a UTF-8 character not complete yet. */
static size_t utf8_open_tail(const char *buf, size_t n)
{
        for (size_t k = 1; k <= 3 && k <= n; k++) {
                unsigned char ch = (unsigned char)buf[n - k];
                if ((ch & 0xC0) == 0x80)
                        continue;  /* a continuation byte: look further back */
                size_t need = ch >= 0xF0 ? 4 : ch >= 0xE0 ? 3 : ch >= 0xC0 ? 2 : 1;
                return need > k ? k : 0;
        }
        return 0;
}

/* One streamed chunk, whole characters only (the rest waits for more). */
static void stream_chunk(struct cell *cl, int fd, const char *buf, size_t len)
{
        size_t held = cl->carry[fd - 1];
        char *tmp = malloc(held + len);
        if (!tmp)
                return;
        memcpy(tmp, cl->held[fd - 1], held);
        memcpy(tmp + held, buf, len);
        size_t n = held + len, tail = utf8_open_tail(tmp, n);
        memcpy(cl->held[fd - 1], tmp + n - tail, tail);
        cl->carry[fd - 1] = tail;
        n -= tail;
        json_t *t = n ? text_json(tmp, n) : NULL;
        free(tmp);
        if (t && api_stream_line(cl->call, json_pack("{s:s, s:s, s:o}", "type", "output", "stream",
                                                      fd == 1 ? "stdout" : "stderr", "text", t)) == -ENOBUFS)
                jlog_msg(cl->s->d, LOG_DEBUG, NULL, "session %s: a slow reader missed output", cl->s->id);
}

void cell_output(void *data, const char *buf, size_t len)
{
        struct out_ctx *x = data;
        struct session *s = x->s;
        struct cell *cl = s->cells;
        if (!cl || !cl->sent) {
                outbuf_add(&s->idle_out[x->fd - 1], buf, len, IDLE_OUTPUT_MAX);
                return;
        }
        outbuf_add(x->fd == 1 ? &s->out : &s->err, buf, len, CELL_OUTPUT_MAX);
        if (cl->call && cl->streaming)
                stream_chunk(cl, x->fd, buf, len);
}

static void cell_cancel(void *data)
{
        struct cell *cl = data;
        struct session *s = cl->s;
        cl->call = NULL;
        if (cl->sent)  /* it runs on; its answer goes nowhere */
                return;
        for (struct cell **p = &s->cells; *p; p = &(*p)->next)
                if (*p == cl) {
                        *p = cl->next;
                        if (s->tail == &cl->next)
                                s->tail = p;
                        break;
                }
        s->queued--;
        cell_free(cl);
}

struct cell *cell_queue(struct session *s, struct api_call *c, const char *code, size_t len, double timeout,
                        int stream)
{
        if (s->queued >= SESSION_MAX_QUEUED) {
                api_reply_error(c, 429, "QueueFull", "session %s has %d executions waiting already", s->id,
                                SESSION_MAX_QUEUED);
                return NULL;
        }
        struct cell *cl = calloc(1, sizeof *cl);
        if (!cl || !(cl->code = malloc(len + 1))) {
                free(cl);
                api_reply_error(c, 500, "InternalError", "out of memory");
                return NULL;
        }
        memcpy(cl->code, code, len + 1);
        *cl = (struct cell){ .s = s, .call = c, .code = cl->code, .len = len, .timeout = timeout, .stream = stream };
        *s->tail = cl;
        s->tail = &cl->next;
        s->queued++;
        if (c)
                api_call_on_cancel(c, cell_cancel, cl);
        return cl;
}

/* What was printed between cells begins this one's output. */
static void take_idle(struct session *s)
{
        for (int i = 0; i < 2; i++) {
                outbuf_reset(i ? &s->err : &s->out);
                if (s->idle_out[i].len) {
                        outbuf_add(i ? &s->err : &s->out, s->idle_out[i].p, s->idle_out[i].len, CELL_OUTPUT_MAX);
                        outbuf_reset(&s->idle_out[i]);
                }
        }
}

static void pop_cell(struct session *s)
{
        struct cell *cl = s->cells;
        s->cells = cl->next;
        if (!s->cells)
                s->tail = &s->cells;
        s->queued--;
        cell_free(cl);
}

void cells_next(struct session *s)
{
        struct cell *cl = s->cells;
        if (!s->ready || s->dead || !s->job || !cl || cl->sent)
                return;
        take_idle(s);
        struct cg_stats st;
        job_usage(s->job, &st);
        cl->cpu0_us = st.cpu_us;
        cl->peak_reset = job_reset_peak(s->job) == 1;
        clock_gettime(CLOCK_MONOTONIC, &cl->t0);
        int r = cl->install ? packages_bind(s, cl) : 0;
        if (r < 0) {
                pop_cell(s);
                return cells_next(s);
        }
        r = job_execute(s->job, cl->code, cl->len, cl->timeout);
        if (r < 0)
                packages_unbind(s, cl);
        if (r < 0) {
                if (cl->call)
                        api_reply_error(cl->call, r == -EMSGSIZE ? 413 : 500, r == -EMSGSIZE ? "ValueError" : "InternalError",
                                        "the code could not be sent to the session: %s", strerror(-r));
                pop_cell(s);
                return cells_next(s);
        }
        cl->sent = 1;
        s->executions++;
        s->d->cells_run++;
        if (cl->stream && cl->call && api_stream_begin(cl->call, 200) == 0)
                cl->streaming = 1;
        if (cl->streaming && s->out.len)
                stream_chunk(cl, 1, s->out.p, s->out.len);
        if (cl->streaming && s->err.len)
                stream_chunk(cl, 2, s->err.p, s->err.len);
}

static json_t *cell_data(const struct session *s, const struct job_exec_result *r)
{
        json_t *data = json_pack("{s:o, s:o, s:b}", "output", text_json(s->out.p, s->out.len), "stderr",
                                 text_json(s->err.p, s->err.len), "output_truncated", s->out.cut || s->err.cut);
        if (!data)
                return NULL;
        if (r->ok && r->value)
                json_object_set_new(data, "result", jr_json_text(r->value));
        if (r->ok && s->cells->install)
                json_object_set_new(data, "installed", json_incref(s->cells->install));
        if (r->ok)
                return data;
        const char *type = r->jail_gone && s->dead ? s->dead_type : r->etype;
        const char *msg = r->jail_gone && s->dead ? s->dead_msg : r->emsg;
        char *e = NULL;
        if (asprintf(&e, "%s: %s", type, msg) >= 0)
                json_object_set_new(data, "error", jr_json_text(e));
        free(e);
        json_object_set_new(data, "error_type", jr_json_text(type));
        if (r->line > 0)
                json_object_set_new(data, "line", json_integer(r->line));
        if (r->traceback && r->traceback[0])
                json_object_set_new(data, "traceback", jr_json_text(r->traceback));
        if (r->jail_gone)
                json_object_set_new(data, "session_ended", json_true());
        return data;
}

static json_t *cell_stats(struct session *s, const struct cell *cl)
{
        struct cg_stats st = { .cpu_us = -1, .peak_memory_bytes = -1 };
        if (s->job)
                job_usage(s->job, &st);
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        double wall = (double)(now.tv_sec - cl->t0.tv_sec) * 1e3 + (now.tv_nsec - cl->t0.tv_nsec) / 1e6;
        int64_t cpu = st.cpu_us >= 0 && cl->cpu0_us >= 0 ? (st.cpu_us - cl->cpu0_us) / 1000 : -1;
        return json_pack("{s:f, s:I, s:I, s:s}", "wall_ms", wall, "cpu_ms", (json_int_t)cpu, "peak_memory_bytes",
                         (json_int_t)st.peak_memory_bytes, "peak_memory_scope", cl->peak_reset ? "execution" : "session");
}

void cell_done(void *data, const struct job_exec_result *r)
{
        struct session *s = data;
        struct cell *cl = s->cells;
        if (!cl || !cl->sent)
                return;  /* the engine answers only what was sent */
        /* What the jail printed last may still wait in the queues (read as
         * it died, not handed over yet): it is this cell's. */
        outq_flush_some(&s->sink.out);
        outq_flush_some(&s->sink.err);
        if (!r->jail_gone)
                packages_unbind(s, cl);
        if (cl->for_create && r->ok && s->dead)  /* unbinding failed: the session ends */
                session_created(s, NULL, r);
        if (r->jail_gone && !s->dead) {  /* it took the session with it: later calls say so */
                s->dead = 1;
                jr_utf8_copy(s->dead_type, sizeof s->dead_type, r->etype);
                jr_utf8_copy(s->dead_msg, sizeof s->dead_msg, r->emsg);
        }
        json_t *resp = json_pack("{s:b, s:o, s:o}", "success", r->ok, "data", cell_data(s, r), "stats",
                                 cell_stats(s, cl));
        if (cl->for_create)
                session_created(s, resp, r);
        if (cl->call && !resp) {
                api_reply_error(cl->call, 500, "InternalError", "the answer could not be encoded");
        } else if (cl->call && cl->streaming) {
                for (int fd = 1; fd <= 2; fd++)  /* a last unfinished character */
                        if (cl->carry[fd - 1])
                                api_stream_line(cl->call, json_pack("{s:s, s:s, s:o}", "type", "output", "stream",
                                                                    fd == 1 ? "stdout" : "stderr", "text",
                                                                    text_json(cl->held[fd - 1], cl->carry[fd - 1])));
                json_object_set_new(resp, "type", json_string("result"));
                api_stream_line(cl->call, resp);
                api_stream_end(cl->call);
                resp = NULL;
        } else if (cl->call) {
                api_reply(cl->call, 200, resp);
                resp = NULL;
        }
        json_decref(resp);
        outbuf_reset(&s->out);
        outbuf_reset(&s->err);
        pop_cell(s);
        if (s->dead)
                return;
        session_touch(s);
        cells_next(s);
}

/* The session ended: every cell still waiting is told why. */
void cells_fail(struct session *s, const char *type, const char *msg)
{
        while (s->cells) {
                struct cell *cl = s->cells;
                if (cl->call && cl->streaming) {
                        api_stream_line(cl->call, json_pack("{s:s, s:b, s:{s:s, s:s, s:s, s:s, s:b}}", "type", "result",
                                                            "success", 0, "data", "output", "", "stderr", "",
                                                            "error", msg, "error_type", type, "session_ended", 1));
                        api_stream_end(cl->call);
                } else if (cl->call) {
                        api_reply_error(cl->call, 410, "SessionDied", "session %s has ended: %s: %s", s->id, type, msg);
                }
                pop_cell(s);
        }
}

void cells_free(struct session *s)
{
        while (s->cells)
                pop_cell(s);
}
