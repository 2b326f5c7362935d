/* libFuzzer target for policy files: any bytes, parsed as JSON and laid
 * over each built-in profile, must give a policy or a clean error. Build
 * and run: tests/fuzz/run (needs clang). */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const char *const profiles[] = { NULL, "worker", "strategy", "exec" };
        json_error_t je;
        json_t *over = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &je);
        if (!over)
                return 0;
        /* the document itself, decoded as if complete: a policy or a clean error */
        struct policy whole;
        struct jr_err werr = { 0 };
        if (policy_decode(over, "fuzz", &whole, &werr) == 0)
                policy_release(&whole);
        else if (strlen(werr.msg) == 0)
                __builtin_trap();
        for (size_t i = 0; i < sizeof profiles / sizeof profiles[0]; i++) {
                json_t *p = NULL;
                struct jr_err err;
                if (policy_apply(profiles[i], over, "fuzz", &p, &err) == 0) {
                        /* what jailrun then reads of a valid policy: a
                         * policy that passed the checks always decodes */
                        struct policy d;
                        if (policy_decode(p, "fuzz", &d, &err) != 0)
                                __builtin_trap();
                        policy_release(&d);
                        err.msg[0] = '\0';
                        if (policy_check_python_layer(p, "fuzz", &err) < 0 && strlen(err.msg) == 0)
                                __builtin_trap();
                        char *s = json_dumps(p, JSON_COMPACT);
                        free(s);
                        json_decref(p);
                } else if (strlen(err.msg) == 0) {
                        __builtin_trap();  /* every refusal says why */
                }
        }
        json_decref(over);
        return 0;
}
