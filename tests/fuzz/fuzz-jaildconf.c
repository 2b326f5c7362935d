/* libFuzzer target for jaild's configuration file (jaild --config FILE):
 * jaild_config_parse gives a config with every default filled in, or an
 * error naming the key. Build: make fuzz; run: tests/fuzz/run SECONDS jaildconf. */
#include "config.h"

#include <stddef.h>
#include <stdint.h>

#include "supervisor/jaild/jaildconf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct jaild_config *c = NULL;
        struct jr_err err = { 0 };
        if (jaild_config_parse((const char *)data, size, "fuzz", &c, &err) == 0) {
                char url[4096];
                if (c->uid_lo > c->uid_hi || !c->socket_path || !c->registry)
                        __builtin_trap();  /* what jaild relies on after a load */
                (void)jaild_config_state_url(c, url, sizeof url);
                (void)jaild_log_level_name(c->log_level);
                jaild_config_free(c);
        } else if (c || !err.msg[0]) {
                __builtin_trap();
        }
        return 0;
}
