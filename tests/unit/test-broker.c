/* How a ctx call ends (broker.h): BROKER_DONE with its answer, BROKER_PENDING
 * while an http transfer is under way, -EPROTO for a call that breaks the
 * protocol, -ENOMEM when the supervisor cannot answer, never a NULL read
 * one way or another. Out of memory is made by failing jansson's
 * allocations from the Nth on, for every N a call makes. */
#include "config.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/proto.h"
#include "supervisor/broker/broker.h"
#include "tests/unit/unit.h"

/* Jansson's allocations fail once `allowed` reaches 0 (-1: never). */
static long allowed = -1;

static void *counted_malloc(size_t n)
{
        if (allowed == 0)
                return NULL;
        if (allowed > 0)
                allowed--;
        return malloc(n);
}

struct fixture {
        char dir[64];
        char state[96];
        struct broker_cfg cfg;
        struct broker b;
};

static void setup(struct fixture *f, const char *allow)
{
        memset(f, 0, sizeof *f);
        snprintf(f->dir, sizeof f->dir, "/tmp/test-broker-XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(f->dir));
        snprintf(f->state, sizeof f->state, "%s/state.db", f->dir);
        f->cfg = (struct broker_cfg){
                .ns = "test", .state_url = f->state, .state_max_value = 1024,
                .files = { .root = f->dir, .quota = 1 << 20, .max_read = 1 << 20 },
                .http = { .timeout_max = 30, .max_response = 1 << 20, .max_in_flight = 4, .max_redirects = 2 },
        };
        snprintf(f->cfg.http.deny_hosts[0], sizeof f->cfg.http.deny_hosts[0], "denied.example");
        f->cfg.http.ndeny_hosts = 1;
        if (allow) {
                ck_assert_int_eq(jr_net_parse(allow, &f->cfg.http.allow[0]), 0);
                f->cfg.http.nallow = 1;
        }
        broker_init(&f->b, &f->cfg, NULL, NULL);
}

static void teardown(struct fixture *f)
{
        broker_close(&f->b);
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
        ck_assert_int_eq(system(cmd), 0);
}

/* One call, args given as JSON text. */
static int call(struct fixture *f, const char *op, const char *args, json_t **result, struct jr_err *err)
{
        json_t *a = json_loads(args, 0, NULL);
        ck_assert_ptr_nonnull(a);
        *err = (struct jr_err){ 0 };
        int r = broker_call(&f->b, op, 7, a, result, err);
        json_decref(a);
        return r;
}

static const char *error_of(json_t *result)
{
        return json_string_value(json_object_get(result, "error"));
}

START_TEST(protocol_errors)
{
        struct fixture f;
        json_t *result = (json_t *)1;
        struct jr_err err;
        setup(&f, NULL);
        ck_assert_int_eq(call(&f, "state.get", "{\"key\": 5}", &result, &err), -EPROTO);
        ck_assert_ptr_null(result);
        ck_assert_int_eq(err.errnum, EPROTO);
        ck_assert_int_eq(call(&f, "files.write", "{\"path\": \"a\"}", &result, &err), -EPROTO);
        ck_assert_int_eq(call(&f, "http.request", "{\"url\": \"http://x/\"}", &result, &err), -EPROTO);
        ck_assert_int_eq(call(&f, "no.such", "{}", &result, &err), -EPROTO);
        ck_assert_ptr_nonnull(strstr(err.msg, "unknown call"));
        teardown(&f);
}
END_TEST

START_TEST(user_errors_are_answers)
{
        struct fixture f;
        json_t *result = NULL;
        struct jr_err err;
        setup(&f, NULL);
        ck_assert_int_eq(call(&f, "state.get", "{\"key\": \"\"}", &result, &err), BROKER_DONE);
        ck_assert_ptr_nonnull(strstr(error_of(result), "key must be"));
        json_decref(result);
        ck_assert_int_eq(call(&f, "files.read", "{\"path\": \"../x\"}", &result, &err), BROKER_DONE);
        ck_assert_ptr_nonnull(strstr(error_of(result), "'..' is not allowed"));
        json_decref(result);
        ck_assert_int_eq(call(&f, "files.write", "{\"path\": \".jailrun-usage\", \"text\": \"0\"}", &result, &err),
                         BROKER_DONE);
        ck_assert_ptr_nonnull(strstr(error_of(result), "jailrun's own"));
        json_decref(result);
        ck_assert_int_eq(call(&f, "http.request", "{\"method\": \"GET\", \"url\": \"http://denied.example/\", "
                              "\"headers\": {}, \"params\": {}, \"timeout\": 1.0}", &result, &err), BROKER_DONE);
        ck_assert_str_eq(error_of(result), "refused by the egress policy: host denied.example is denied by the policy");
        json_decref(result);
        ck_assert_int_eq(call(&f, "http.request", "{\"method\": \"GET\", \"url\": \"ftp://h/\", \"headers\": {}, "
                              "\"params\": {}, \"timeout\": 1.0}", &result, &err), BROKER_DONE);
        ck_assert_ptr_nonnull(strstr(error_of(result), "only http and https"));
        json_decref(result);
        teardown(&f);
}
END_TEST

/* Each call, with jansson's allocations failing from the Nth on for
 * every N up to where it no longer fails: -ENOMEM with err said and no
 * result, or its answer; never BROKER_PENDING for a request the policy
 * refuses, never a refused path let through. (Jansson's strict unpacking
 * reports a failed allocation of its own as keys left unprocessed: a
 * protocol error, which ends the job all the same.) */
static const struct {
        const char *op, *args, *error;
} refusals[] = {
        { "state.get", "{\"key\": \"\"}", "key must be" },
        { "state.set", "{\"key\": \"k\", \"value\": [1, 2, 3]}", NULL },
        { "files.write", "{\"path\": \".jailrun-usage\", \"text\": \"0\"}", "jailrun's own" },
        { "files.write", "{\"path\": \"a/b\", \"text\": \"hello\"}", NULL },
        { "files.list", "{\"path\": \".\"}", NULL },
        { "http.request", "{\"method\": \"GET\", \"url\": \"http://denied.example/\", \"headers\": {\"A\": \"b\"}, "
                          "\"params\": {\"q\": \"1\"}, \"timeout\": 1.0}", "refused by the egress policy" },
        { "http.request", "{\"method\": \"GET\", \"url\": \"http://h/\", \"headers\": {\"Host\": \"b\"}, "
                          "\"params\": {}, \"timeout\": 1.0}", "not a valid header" },
};

START_TEST(out_of_memory_is_never_ambiguous)
{
        struct fixture f;
        setup(&f, NULL);
        json_set_alloc_funcs(counted_malloc, free);
        int answered = 0, enomem = 0;
        for (long n = 0; n < 500 && !answered; n++) {
                json_t *a = json_loads(refusals[_i].args, 0, NULL);
                ck_assert_ptr_nonnull(a);
                json_t *result = (json_t *)1;
                struct jr_err err = { 0 };
                allowed = n;
                int r = broker_call(&f.b, refusals[_i].op, 7, a, &result, &err);
                allowed = -1;
                json_decref(a);
                if (r == -ENOMEM || r == -EPROTO) {  /* the job ends: InternalError, ProtocolError */
                        ck_assert_ptr_null(result);
                        ck_assert_int_eq(err.errnum, -r);
                        ck_assert_msg(err.msg[0], "no message");
                        enomem += r == -ENOMEM;
                        continue;
                }
                ck_assert_msg(r == BROKER_DONE, "%s with %ld allocations: %d", refusals[_i].op, n, r);
                ck_assert_ptr_nonnull(result);
                if (refusals[_i].error)
                        ck_assert_msg(error_of(result) && strstr(error_of(result), refusals[_i].error),
                                      "%s with %ld allocations: %s", refusals[_i].op, n, json_dumps(result, 0));
                else
                        ck_assert_msg(!error_of(result), "%s: %s", refusals[_i].op, error_of(result));
                json_decref(result);
                answered = 1;
        }
        ck_assert_msg(answered, "never answered");
        ck_assert_msg(enomem, "no allocation failure was seen as one");
        teardown(&f);
}
END_TEST

/* A server on 127.0.0.1 that answers one request: its port. */
static int serve_once(pid_t *pid)
{
        int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof a;
        ck_assert_int_ge(s, 0);
        ck_assert_int_eq(bind(s, (struct sockaddr *)&a, sizeof a), 0);
        ck_assert_int_eq(listen(s, 4), 0);
        ck_assert_int_eq(getsockname(s, (struct sockaddr *)&a, &len), 0);
        *pid = fork();
        ck_assert_int_ge(*pid, 0);
        if (*pid == 0) {
                static const char reply[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
                                            "Connection: close\r\n\r\nhello";
                char buf[4096];
                int c = accept(s, NULL, NULL);
                if (c < 0 || read(c, buf, sizeof buf) <= 0 || write(c, reply, sizeof reply - 1) < 0)
                        _exit(1);
                close(c);
                _exit(0);
        }
        close(s);
        return ntohs(a.sin_port);
}

/* Drives the transfers until one finishes: broker_http_done's end. */
static int wait_done(struct fixture *f, int64_t *id, json_t **result)
{
        for (int i = 0; i < 1000; i++) {
                int r = broker_http_done(&f->b, id, result);
                if (r != BROKER_PENDING)
                        return r;
                struct pollfd p[2] = { { .fd = http_epoll_fd(f->b.http), .events = POLLIN },
                                       { .fd = http_timer_fd(f->b.http), .events = POLLIN } };
                ck_assert_int_ge(poll(p, 2, 100), 0);
                if (p[0].revents)
                        http_on_ready(f->b.http);
                if (p[1].revents)
                        http_on_timer(f->b.http);
        }
        return BROKER_PENDING;
}

static char *request(int port)
{
        char *args = NULL;
        ck_assert_int_ge(asprintf(&args, "{\"method\": \"GET\", \"url\": \"http://127.0.0.1:%d/\", \"headers\": {}, "
                                  "\"params\": {}, \"timeout\": 10.0}", port), 0);
        return args;
}

START_TEST(transfer_is_pending_then_done)
{
        struct fixture f;
        json_t *result = NULL;
        struct jr_err err;
        int64_t id = 0;
        pid_t pid;
        setup(&f, "127.0.0.1/32");
        ck_assert_int_eq(broker_http_done(&f.b, &id, &result), BROKER_PENDING);  /* no client yet */
        char *args = request(serve_once(&pid));
        ck_assert_int_eq(call(&f, "http.request", args, &result, &err), BROKER_PENDING);
        ck_assert_ptr_null(result);
        ck_assert_int_eq(wait_done(&f, &id, &result), BROKER_DONE);
        ck_assert_int_eq(id, 7);
        ck_assert_int_eq(json_integer_value(json_object_get(result, "status")), 200);
        ck_assert_uint_eq(f.b.payload_len, 5);
        ck_assert_mem_eq(f.b.payload, "hello", 5);
        char *text = NULL;
        ck_assert_int_eq(broker_reply(&f.b, id, result, &text), 0);
        ck_assert_ptr_nonnull(strstr(text, "\"payload\":5"));
        free(text);
        broker_payload_done(&f.b);
        int status;
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_int_eq(status, 0);
        free(args);
        teardown(&f);
}
END_TEST

START_TEST(refused_address_is_answered)
{
        struct fixture f;
        json_t *result = NULL;
        struct jr_err err;
        int64_t id = 0;
        pid_t pid;
        setup(&f, NULL);  /* loopback not allowed: refused at the connect, after resolution */
        int port = serve_once(&pid);
        char *args = request(port);
        ck_assert_int_eq(call(&f, "http.request", args, &result, &err), BROKER_PENDING);
        ck_assert_int_eq(wait_done(&f, &id, &result), BROKER_DONE);
        ck_assert_int_eq(id, 7);
        ck_assert_str_eq(error_of(result), "refused by the egress policy: 127.0.0.1 is a loopback address");
        ck_assert_ptr_null(f.b.payload);
        json_decref(result);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        free(args);
        teardown(&f);
}
END_TEST

START_TEST(long_reply_is_its_error)
{
        struct fixture f;
        char *text = NULL;
        setup(&f, NULL);
        size_t n = CHAN_MAX_MSG + 1;
        char *big = malloc(n + 1);
        ck_assert_ptr_nonnull(big);
        memset(big, 'x', n);
        big[n] = '\0';
        ck_assert_int_eq(broker_reply(&f.b, 3, json_pack("{s:s}", "text", big), &text), 0);
        ck_assert_str_eq(text, "{\"type\":\"reply\",\"id\":3,\"result\":{\"error\":\"the result is larger than one "
                               "reply carries (1 MiB); ask for less\"}}");
        free(text);
        free(big);
        teardown(&f);
}
END_TEST

int main(void)
{
        signal(SIGPIPE, SIG_IGN);
        Suite *s = suite_create("broker");
        TCase *tc = tcase_create("broker");
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, protocol_errors);
        tcase_add_test(tc, user_errors_are_answers);
        tcase_add_loop_test(tc, out_of_memory_is_never_ambiguous, 0, (int)(sizeof refusals / sizeof refusals[0]));
        tcase_add_test(tc, transfer_is_pending_then_done);
        tcase_add_test(tc, refused_address_is_answered);
        tcase_add_test(tc, long_reply_is_its_error);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
