/* Numbers, sizes and durations as people write them. */
#ifndef JR_PARSE_H
#define JR_PARSE_H

/* A decimal number from 0 to max: 0, or -EINVAL. */
int jr_parse_uint(const char *s, unsigned long max, unsigned long *out);
/* A finite decimal number in [lo, hi]: 0, or -EINVAL. */
int jr_parse_real(const char *s, double lo, double hi, double *out);
/* SIZE: bytes with an optional K, M or G suffix (powers of 1024): 0, or -EINVAL. */
int jr_parse_size(const char *s, unsigned long *out);
/* DURATION: seconds, or with a unit (800ms, 1.5s, 2m, 1h), in [lo, hi]:
 * 0, -EINVAL (not a duration) or -ERANGE (out of range). */
int jr_parse_duration(const char *s, double lo, double hi, double *out);

#endif
