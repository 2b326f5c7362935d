/* jaild's configuration: a JSON file (jaild --config FILE, jaild(8)
 * CONFIGURATION) read once at start into a typed struct with every default
 * filled in. Unknown keys, wrong types and values out of range are
 * refused with the key's JSON path ("state.redis.port", "allow.uids[2]")
 * and the reason, so a bad file stops the daemon before it does anything. */
#ifndef JR_JAILD_CONFIG_H
#define JR_JAILD_CONFIG_H

#include <stddef.h>
#include <sys/types.h>

#include "common/err.h"

#define JAILD_SOCKET_DEFAULT "/run/jaild/jaild.sock"
#define JAILD_SOCKET_MODE_DEFAULT 0660
#define JAILD_UID_LO_DEFAULT 100000  /* as jailrun --uid-range */
#define JAILD_UID_HI_DEFAULT 165535
#define JAILD_UID_MIN 1000           /* below: the system's own users */
#define JAILD_CGROUP_PARENT_DEFAULT "jaild"
#define JAILD_CGROUP_POOL_SIZE_DEFAULT 4  /* groups made ahead of jobs */
#define JAILD_CGROUP_POOL_MAX_DEFAULT 64  /* idle groups kept */
#define JAILD_CGROUP_POOL_MAX 4096        /* as CG_POOL_MAX (engine/cgpool.h) */
#define JAILD_STATE_PATH_DEFAULT "/var/lib/jaild/state.sqlite"
#define JAILD_WORKSPACES_DEFAULT "/var/lib/jaild/workspaces"
#define JAILD_REGISTRY_DEFAULT "/var/lib/jaild/registry.db"
#define JAILD_MAX_LIVE_DEFAULT 64
#define JAILD_MAX_LIVE_MAX 65536
#define JAILD_QUEUE_WAIT_DEFAULT 30.0  /* seconds */
#define JAILD_QUEUE_WAIT_MAX 3600.0
#define JAILD_REDIS_PORT_DEFAULT 6379
#define JAILD_REDIS_DB_MAX 1000000     /* as jailrun --state's URLs */
#define JAILD_CONFIG_MAX_FILE (1024 * 1024)
#define JAILD_ALLOW_MAX 1024
#define JAILD_PRELOAD_DEFAULT "[\"numpy\",\"pandas\"]"  /* engine/warm.h WARM_PRELOAD_DEFAULT */
#define JAILD_PRELOAD_MAX 64
#define JAILD_ZYGOTE_FORKS_DEFAULT 256
#define JAILD_ZYGOTE_FORKS_MAX 1000000
#define JAILD_SESSIONS_MAX_DEFAULT 64        /* sessions at once */
#define JAILD_SESSIONS_IDLE_DEFAULT 600      /* seconds an idle session is kept */
#define JAILD_SESSIONS_IDLE_MAX 604800
#define JAILD_SESSIONS_DIR_DEFAULT (64LL << 20)   /* bytes of a session's directory */
#define JAILD_SESSIONS_DIR_MAX (16LL << 30)
#define JAILD_SESSIONS_FILE_DEFAULT (16LL << 20)  /* bytes one PUT or GET of a file moves */
#define JAILD_SESSIONS_FILE_MAX (1LL << 30)           /* entries in allow.uids, allow.gids */

enum jaild_state_backend {
        JAILD_STATE_SQLITE,
        JAILD_STATE_REDIS,
};

/* syslog(3) priorities, so the log module can hand them on. */
enum jaild_log_level {
        JAILD_LOG_ERROR = 3,
        JAILD_LOG_WARNING = 4,
        JAILD_LOG_NOTICE = 5,
        JAILD_LOG_INFO = 6,
        JAILD_LOG_DEBUG = 7,
};

struct jaild_state_cfg {
        enum jaild_state_backend backend;
        char *path;        /* sqlite: the file */
        char *host;        /* redis over TCP: host name or IPv4 address; else NULL */
        int port;          /* redis over TCP */
        char *unix_path;   /* redis over a unix socket; else NULL */
        int db;            /* redis database number */
};

/* Every string is malloc'd and owned by the struct (jaild_config_free). */
struct jaild_config {
        char *socket_path;           /* the API's unix socket */
        mode_t socket_mode;          /* its permission bits (at most 0777) */
        uid_t *allow_uids;           /* peers allowed besides root */
        size_t n_allow_uids;
        gid_t *allow_gids;           /* peers whose primary gid is one of these */
        size_t n_allow_gids;
        uid_t uid_lo, uid_hi;        /* host uids for jails, inclusive */
        char *cgroup_parent;         /* below each hierarchy's root */
        unsigned cgroup_pool_size;   /* groups kept ready for jobs; 0: one made per job */
        unsigned cgroup_pool_max;    /* most idle groups kept */
        struct jaild_state_cfg state;
        char *workspace_root;        /* a worker's ctx.files dir is beneath it */
        char *secrets;               /* adapters' credentials; NULL: none */
        char *registry;              /* the worker registry (SQLite) */
        unsigned max_live_jobs;      /* jobs running at once */
        double queue_wait;           /* seconds a request waits for a slot */
        enum jaild_log_level log_level;
        int zygote_enabled;          /* warm zygotes, one per profile */
        char *zygote_preload;        /* JSON array of module names they import */
        unsigned zygote_max_forks;   /* jails one zygote clones before it is replaced */
        struct jaild_sessions_cfg {
                unsigned max;            /* sessions at once */
                double idle_timeout;     /* seconds an idle session is kept */
                unsigned long long dir_bytes;   /* its directory (a tmpfs in its jail) */
                unsigned long long file_max;    /* one file moved in or out */
                char *wheel_dir;         /* packages: pip's --find-links; NULL: none */
                char *index_url;         /* packages: pip's --index-url; NULL: none */
        } sessions;
        char *policy;                /* the operator's policy over each profile: a JSON object of
                                        profile names to policies (jailrun-policy(5)); NULL: none */
};

/* Reads the configuration file at `path` (NULL: none, every default).
 * On success *out is a new config (jaild_config_free). On failure returns
 * -errno and err->msg says "FILE: KEY: reason" (or "FILE: reason" for the
 * file as a whole: unreadable, too large, JSON syntax at line L column C;
 * or owned by another user than root or the caller, or writable by group
 * or others, since the file decides who may drive a root daemon). */
int jaild_config_load(const char *path, struct jaild_config **out, struct jr_err *err);

/* The same for JSON text already in memory; `what` names it in errors. */
int jaild_config_parse(const char *text, size_t len, const char *what, struct jaild_config **out,
                       struct jr_err *err);

void jaild_config_free(struct jaild_config *c);

/* The state store as the broker takes it (struct broker_cfg.state_url,
 * jailrun --state): the SQLite path, redis://HOST:PORT/DB or
 * unix:///PATH?db=N. 0, or -ENAMETOOLONG when it does not fit. */
int jaild_config_state_url(const struct jaild_config *c, char *buf, size_t size);

/* "debug", "info", ... for a level. */
const char *jaild_log_level_name(enum jaild_log_level l);

#endif
