/* libFuzzer target for the channel codec: every datagram the jail can send
 * goes through msg_decode. Build and run: tests/fuzz/run (needs clang). */
#include "config.h"

#include <stddef.h>
#include <stdint.h>

#include "supervisor/engine/msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct msg m;
        struct jr_err err;
        if (msg_decode((const char *)data, size, &m, &err) == 0) {
                /* what the supervisor then reads of a valid message */
                if (m.type == MSG_LOG)
                        (void)json_array_size(m.log.entries);
                msg_free(&m);
        }
        return 0;
}
