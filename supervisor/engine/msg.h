/* Decoding what the jail sends. Every datagram is hostile: length-capped
 * before parsing, duplicate keys rejected, depth-capped, unpacked strictly
 * (unknown fields are errors). */
#ifndef JR_MSG_H
#define JR_MSG_H

#include <jansson.h>
#include <stddef.h>

#include "common/err.h"
#include "common/proto.h"

struct msg {
        enum msg_type type;
        json_t *root;                   /* owns every pointer below */
        union {
                struct {
                        const char *step;
                        int errnum;
                        const char *message;
                } fatal;
                struct {
                        json_t *entries;  /* array of {level, msg}, validated */
                } log;
                struct {
                        json_int_t id;
                        int ok;
                        const char *etype;
                        const char *emsg;
                        json_int_t line;  /* 0 when unknown */
                        const char *traceback;  /* may be "" */
                        int on_error;     /* a tick's error: on_error runs now, a second result ends it */
                        const char *value;  /* a session's cell: repr of its final expression, or NULL */
                } result;
                struct {
                        json_int_t bars;  /* backtest: bars in the file; -1 otherwise */
                } ready;
                struct {
                        json_int_t first;  /* index of the first bar in the batch */
                        json_t *us;        /* array of 1..BARS_MAX_BATCH integers >= 0 */
                        json_t *signals;   /* arrays; backtest.c checks their entries */
                        json_t *errors;
                } bars;
                struct {
                        json_t *violations;  /* array of {line, col, type, reason}, validated */
                } check;
                struct {
                        json_int_t id;
                        const char *op;
                        json_t *args;        /* an object; the broker checks its fields */
                } call;
        };
};

/* Decodes one datagram of `len` bytes. Returns 0 and fills m (free with
 * msg_free), or -EPROTO / -EMSGSIZE / -ENOMEM with the reason in err. */
int msg_decode(const char *buf, size_t len, struct msg *m, struct jr_err *err);
void msg_free(struct msg *m);

/* The entry's level, or -1. */
int msg_log_level(const char *name);
extern const char *const msg_log_level_names[LOG_LEVEL__MAX];

#endif
