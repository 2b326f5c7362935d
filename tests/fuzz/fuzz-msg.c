/* libFuzzer target for the channel: every datagram the jail sends goes
 * through msg_decode, and a backtest's batches then through bt_add, which
 * checks them against the run so far (supervisor/engine/backtest.c). An
 * input is up to 8 datagrams separated by 0xFF bytes (never in valid
 * UTF-8 JSON): a "ready" starts the run, "bars" batches follow. Build:
 * make fuzz; run: tests/fuzz/run SECONDS msg. */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "supervisor/engine/backtest.h"
#include "supervisor/engine/msg.h"

static void use(struct backtest *b, const struct msg *m)
{
        struct jr_err err = { 0 };
        switch (m->type) {
        case MSG_READY:
                if (m->ready.bars > 0 && bt_start(b, (uint64_t)m->ready.bars, &err) < 0 && !err.msg[0])
                        __builtin_trap();  /* every refusal says why */
                break;
        case MSG_BARS:
                if (bt_add(b, m, &err) < 0 && !err.msg[0])
                        __builtin_trap();
                break;
        case MSG_LOG:
                for (size_t i = 0; i < json_array_size(m->log.entries); i++) {
                        json_t *e = json_array_get(m->log.entries, i);
                        if (msg_log_level(json_string_value(json_object_get(e, "level"))) < 0)
                                __builtin_trap();  /* decode let an unknown level through */
                }
                break;
        default:
                break;
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct backtest b;
        bt_init(&b, 5.0, 10);
        b.max_total = 100000;  /* the bars file's lines, as bt_bars_memfd counts them */
        const char *p = (const char *)data, *e = p + size;
        for (int k = 0; k < 8 && p <= e; k++) {
                const char *sep = memchr(p, 0xFF, (size_t)(e - p));
                size_t len = (size_t)((sep ? sep : e) - p);
                struct msg m;
                struct jr_err err = { 0 };
                if (msg_decode(p, len, &m, &err) == 0) {
                        use(&b, &m);
                        msg_free(&m);
                } else if (!err.msg[0]) {
                        __builtin_trap();
                }
                if (!sep)
                        break;
                p = sep + 1;
        }
        if (b.started) {
                json_t *rep = bt_report(&b, bt_over(&b) ? "aborted" : "completed", NULL);
                uint32_t p50, p99, max;
                bt_times(&b, &p50, &p99, &max);
                if (p50 > p99 || p99 > max)
                        __builtin_trap();
                json_decref(rep);
        }
        bt_free(&b);
        return 0;
}
