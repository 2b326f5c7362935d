/* libFuzzer target for a backtest's params (jailrun --params FILE):
 * bt_params_parse takes the file's bytes and gives a JSON object of at
 * most 32 levels or a clean error. Build: make fuzz; run:
 * tests/fuzz/run SECONDS params. */
#include "config.h"

#include <stddef.h>
#include <stdint.h>

#include "supervisor/engine/backtest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        json_t *p = NULL;
        char msg[256] = "";
        if (bt_params_parse((const char *)data, size, &p, msg, sizeof msg) == 0) {
                if (!json_is_object(p))
                        __builtin_trap();
                json_decref(p);
        } else if (p || !msg[0]) {
                __builtin_trap();  /* a refusal leaves nothing and says why */
        }
        return 0;
}
