#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/parse.h"

/* Numbers, sizes and durations as people write them on a command line or
 * in a file; each refuses trailing text, signs where none belong, and
 * values out of range. */

int jr_parse_uint(const char *s, unsigned long max, unsigned long *out)
{
        char *end;
        errno = 0;
        unsigned long v = strtoul(s, &end, 10);
        if (errno || end == s || *end || s[0] == '-' || v > max)
                return -EINVAL;
        *out = v;
        return 0;
}

/* A finite decimal number in [lo, hi]: 0, or -EINVAL. */
int jr_parse_real(const char *s, double lo, double hi, double *out)
{
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi)
                return -EINVAL;
        *out = v;
        return 0;
}

/* SIZE: bytes with an optional K, M or G suffix (powers of 1024). */
int jr_parse_size(const char *s, unsigned long *out)
{
        char *end;
        errno = 0;
        unsigned long v = strtoul(s, &end, 10);
        if (errno || end == s || s[0] == '-')
                return -EINVAL;
        unsigned shift = 0;
        if (*end == 'K' || *end == 'k')
                shift = 10;
        else if (*end == 'M' || *end == 'm')
                shift = 20;
        else if (*end == 'G' || *end == 'g')
                shift = 30;
        if (shift)
                end++;
        if (*end || v > (~0UL >> shift))
                return -EINVAL;
        *out = v << shift;
        return 0;
}

/* DURATION: a number of seconds, or with a unit: 800ms, 1.5s, 2m, 1h. */
int jr_parse_duration(const char *s, double lo, double hi, double *out)
{
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        if (errno || end == s || !isfinite(v))
                return -EINVAL;
        static const struct { const char *unit; double scale; } units[] = {
                { "", 1 }, { "s", 1 }, { "ms", 1e-3 }, { "m", 60 }, { "h", 3600 },
        };
        for (size_t i = 0; i < ELEMENTSOF(units); i++)
                if (strcmp(end, units[i].unit) == 0) {
                        v *= units[i].scale;
                        if (v < lo || v > hi)
                                return -ERANGE;
                        *out = v;
                        return 0;
                }
        return -EINVAL;
}
