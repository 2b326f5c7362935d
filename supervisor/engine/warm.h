/* Warm zygotes (jail.h: jail_zygote_main), owned by a front-end: one per
 * profile, each a process with the jail's root built and the interpreter
 * initialised with the heavy modules imported, which clones jails on
 * request. A zygote is made in the background (it takes as long as the
 * imports) and replaced after max_forks children (its hash secret and
 * address-space layout are shared by every child it makes) or when it
 * dies (after a back-off); while none is ready, jails start cold. */
#ifndef JR_WARM_H
#define JR_WARM_H

#include <stddef.h>
#include <sys/types.h>

#include "common/err.h"
#include "jail/jail.h"
#include "supervisor/engine/cgroup.h"
#include "supervisor/engine/loop.h"
#include "supervisor/engine/spawn.h"

/* What a zygote imports unless told otherwise (jaild's zygote.preload,
 * jailrun --warm), and how many jails it clones before it is replaced. */
#define WARM_PRELOAD_DEFAULT "numpy,pandas"
#define WARM_FORKS_DEFAULT 256

struct warm_proc {
        pid_t pid;               /* 0: none */
        int pidfd, sock;
        int ready;
        unsigned forks;
        unsigned gen;
        struct watch wpid, wsock;
        struct warm *owner;
};

/* A lost child (warm_lost), watched until it has ended. */
struct warm_stray {
        struct watch wpid;
        pid_t pid;
        struct warm *owner;
        struct warm_stray *next;
};

struct warm {
        struct loop *loop;
        enum jail_profile profile;
        char *preload;           /* JSON array of module names */
        unsigned max_forks;
        char program[4096];
        struct warm_proc cur;    /* serving (once ready) */
        struct warm_proc next;   /* being made to replace it */
        struct timer retry;      /* after a zygote failed or died */
        double backoff_s;
        unsigned gen;            /* zygotes made so far */
        /* Counters for metrics. */
        unsigned long long spawned, fallbacks, crashes, replaced, lost;
        struct warm_stray *strays;  /* killed, not yet reaped */
        int maybe_lost;             /* a request's answer was lost: a jail may be ours unseen */
        char last_error[512];
        /* What the front-end is told (the zygote failed, died, was
         * replaced); log_msg on stderr when NULL. */
        void (*note)(void *data, const char *msg);
        void *note_data;
};

/* Sets w up and starts making its first zygote. preload_json: a JSON array
 * of module names (copied); max_forks >= 1. 0 or -errno with err set
 * (the zygote program is missing, the loop refused a watch). */
int warm_init(struct warm *w, struct loop *l, enum jail_profile profile, const char *preload_json, unsigned max_forks,
              struct jr_err *err);

/* 1 when a zygote is ready to clone cfg's jail (its profile, an entry a
 * warm jail can run: ticks, script, load). */
int warm_can(const struct warm *w, const struct jail_cfg *cfg);

/* The first half of spawn_jail (spawn_clone), from the ready zygote: the
 * jail gets cfg's descriptors and its configuration as a memfd the
 * zygote passes on unread; born in cg's v2 group, or to be moved there
 * (*late). The caller then releases it with spawn_release. 0, or -errno
 * with no child made (the caller may start the jail cold). */
int warm_ask(struct warm *w, const struct jail_cfg *cfg, struct cg_job *cg, struct spawn *s, int *late,
             struct jr_err *err);

/* After warm_ask failed: when the zygote may have cloned a jail whose
 * pidfd never reached us (its answer lost or garbled), that jail is ours
 * (CLONE_PARENT) unseen. Our children that still bear the zygote's name
 * (JAIL_ZYGOTE_NAME; a jail renames itself once set up, which needs our
 * go-ahead) and whose pidfd we do not hold are such jails: each is
 * killed, counted in lost, and reaped once it has ended, from the loop.
 * When our pidfds cannot all be read, nothing is taken for a stray (the
 * failure is noted). Cheap otherwise: it scans /proc only after such a
 * loss. */
void warm_lost(struct warm *w);

/* Ends the zygotes (their children, siblings of ours, live on) and frees. */
void warm_free(struct warm *w);

#endif
