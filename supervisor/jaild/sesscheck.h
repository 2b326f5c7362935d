/* What a session's requests ask for, checked before anything is made or
 * sent: the limits of POST /v1/sessions, the code and timeout of
 * POST /v1/sessions/{id}/execute, the names of .../packages (docs/api.md).
 * No daemon state: the handlers in sessions.c and packages.c answer with
 * what these say, and tests/fuzz/fuzz-session.c drives them with any body. */
#ifndef JR_JAILD_SESSCHECK_H
#define JR_JAILD_SESSCHECK_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* A session's limits: the defaults and maxima in, what it runs with out. */
struct session_limits {
        uint64_t memory, mem_max;   /* bytes */
        double cpus, cpus_max;      /* cores */
        double timeout;             /* seconds a cell may take */
        double idle_s, idle_max;    /* seconds idle before it is ended */
};

/* memory_limit: "512M", "1G", "1GB", "1GiB" or a positive number of
 * bytes (an integer or a string). 0, or -EINVAL. */
int session_parse_memory(const json_t *v, uint64_t *out);

/* The limits spec asks for (memory_limit, cpu_limit, timeout,
 * idle_timeout; each optional, of the types the route checked) laid over
 * l's defaults, within its maxima. 0, or -EINVAL with the reason in msg
 * (to be answered 400 ValueError). */
int session_take_limits(const json_t *spec, struct session_limits *l, char *msg, size_t size);

/* An execute body ({code, timeout?}, of the types the route checked) for
 * a session whose cells may take max_timeout seconds: 0 with *timeout,
 * -EINVAL (400: a timeout out of range, code holding a NUL) or -EMSGSIZE
 * (413: code over JOB_MAX_CELL bytes), with the reason in msg. */
int session_execute_check(const json_t *body, double max_timeout, double *timeout, char *msg, size_t size);

/* The names of POST /v1/sessions/{id}/packages (and of a new session's
 * packages): 1 to SESSION_MAX_PACKAGES requirements in the plain form of
 * PEP 508 alone (a project name, optional [extras], optional version
 * constraints; never an option, a path, a URL or an archive's name). 0,
 * or -EINVAL with the reason in msg (to be answered 400 ValueError). */
int session_package_names_check(const json_t *names, char *msg, size_t size);

#endif
