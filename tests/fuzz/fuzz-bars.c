/* libFuzzer target for the fast reader of bars files (jail/barsparse.c,
 * CSV and JSON lines): any bytes give bars that are all valid (times
 * strictly rising, every value finite) or a refusal, which leaves the
 * file to the full reader. Build: make fuzz; run: tests/fuzz/run SECONDS bars. */
#include "config.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "jail/bars.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct bar *v = NULL;
        size_t n = 0;
        if (!bars_parse((const char *)data, size, &v, &n))
                return 0;
        if (n == 0)
                __builtin_trap();
        for (size_t i = 0; i < n; i++) {
                if (i && v[i].time <= v[i - 1].time)
                        __builtin_trap();
                if (!isfinite(v[i].open) || !isfinite(v[i].high) || !isfinite(v[i].low) || !isfinite(v[i].close) ||
                    !isfinite(v[i].volume))
                        __builtin_trap();
        }
        free(v);
        return 0;
}
