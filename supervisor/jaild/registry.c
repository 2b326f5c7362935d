/* The worker registry (registry.h) in SQLite: one table, one prepared
 * statement per operation, every value bound, never spliced into SQL.
 *
 * Durability: WAL with synchronous=FULL. In WAL mode NORMAL already keeps
 * a commit through a crash of the process (kill -9: the WAL's pages are in
 * the kernel's cache), but not through a crash of the machine, which can
 * roll back the last commits before a checkpoint. A worker the daemon
 * acknowledged to its orchestrator must not vanish on a power cut, and the
 * registry changes only on API calls (a fsync of the WAL each, well under
 * what the call costs anyway), so FULL it is. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/sqlerr.h"
#include "supervisor/jaild/registry.h"

/* How long a statement waits for another connection's lock (an operator's
 * sqlite3 shell reading the file) before it reports the registry busy. */
#define REGISTRY_BUSY_MS 5000

#define COLS "id, name, profile, source, policy, schedule, paused, created_ms, updated_ms, generation"

enum { R_INSERT, R_BY_ID, R_BY_NAME, R_LIST, R_SET_SOURCE, R_SET_POLICY, R_SET_SCHEDULE, R_SET_PAUSED, R_DELETE,
       R_SESS_ADD, R_SESS_DELETE, R_SESS_LOST, R_SESS_EXPIRE, R_SESS_IS_LOST, R_BEGIN, R_COMMIT, R_ROLLBACK, R__MAX };

static const char *const sql[R__MAX] = {
        [R_INSERT] = "INSERT INTO workers (" COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, 1)",
        [R_BY_ID] = "SELECT " COLS " FROM workers WHERE id = ?1",
        [R_BY_NAME] = "SELECT " COLS " FROM workers WHERE name = ?1",
        [R_LIST] = "SELECT " COLS " FROM workers ORDER BY name",
        [R_SET_SOURCE] = "UPDATE workers SET source = ?2, updated_ms = ?3, generation = generation + 1 "
                         "WHERE id = ?1 RETURNING generation",
        [R_SET_POLICY] = "UPDATE workers SET policy = ?2, updated_ms = ?3 WHERE id = ?1",
        [R_SET_SCHEDULE] = "UPDATE workers SET schedule = ?2, updated_ms = ?3 WHERE id = ?1",
        [R_SET_PAUSED] = "UPDATE workers SET paused = ?2, updated_ms = ?3 WHERE id = ?1",
        [R_DELETE] = "DELETE FROM workers WHERE id = ?1",
        [R_SESS_ADD] = "INSERT OR REPLACE INTO sessions (id, created_ms, lost_ms) VALUES (?1, ?2, NULL)",
        [R_SESS_DELETE] = "DELETE FROM sessions WHERE id = ?1",
        [R_SESS_LOST] = "UPDATE sessions SET lost_ms = ?1 WHERE lost_ms IS NULL",
        [R_SESS_EXPIRE] = "DELETE FROM sessions WHERE lost_ms < ?1",
        [R_SESS_IS_LOST] = "SELECT 1 FROM sessions WHERE id = ?1 AND lost_ms IS NOT NULL",
        [R_BEGIN] = "BEGIN IMMEDIATE",
        [R_COMMIT] = "COMMIT",
        [R_ROLLBACK] = "ROLLBACK",
};

/* migrations[v] takes the schema from user_version v to v + 1. */
static const char *const migrations[REGISTRY_SCHEMA] = {
        "CREATE TABLE workers ("
        " id TEXT PRIMARY KEY NOT NULL,"
        " name TEXT NOT NULL UNIQUE,"
        " profile TEXT NOT NULL,"
        " source TEXT NOT NULL,"
        " policy TEXT NOT NULL,"
        " schedule TEXT NOT NULL,"
        " paused INTEGER NOT NULL CHECK (paused IN (0, 1)),"
        " created_ms INTEGER NOT NULL,"
        " updated_ms INTEGER NOT NULL,"
        " generation INTEGER NOT NULL CHECK (generation >= 1))",
        "CREATE TABLE sessions ("
        " id TEXT PRIMARY KEY NOT NULL,"
        " created_ms INTEGER NOT NULL,"
        " lost_ms INTEGER)",
};

struct registry {
        sqlite3 *db;
        char path[PATH_MAX];
        sqlite3_stmt *stmt[R__MAX];
};

/* -errnum with err's message, as jr_fail, but without strerror's words:
 * for what the registry decides (no such worker, a name taken). */
__attribute__((format(printf, 3, 4)))
static int plain(struct jr_err *err, int errnum, const char *fmt, ...)
{
        if (err) {
                va_list ap;
                va_start(ap, fmt);
                vsnprintf(err->msg, sizeof err->msg, fmt, ap);
                va_end(ap);
                err->errnum = errnum;
        }
        return -errnum;
}

/* The connection's last error as -errno (common/sqlerr.h), with what
 * failed and SQLite's words (its extended code too: "database is locked"
 * has several); a full disk in the operator's words, and where: SQLite's
 * ("database or disk is full", "disk I/O error") name no cause. Each
 * change is one transaction (or the caller's, which it rolls back on
 * error): a refused one changed nothing. */
static int db_fail(sqlite3 *db, struct jr_err *err, const char *what, const char *subject)
{
        int code = sqlite3_extended_errcode(db), errnum = jr_sqlite_errnum(db);
        int full = errnum == ENOSPC || errnum == EDQUOT;
        const char *file = sqlite3_db_filename(db, "main");
        if (!subject && !full)
                subject = file;  /* what failed names the file (a full disk's words do too) */
        char head[256];
        snprintf(head, sizeof head, "registry %s%s%.200s%s", what, subject ? " '" : "", subject ? subject : "",
                 subject ? "'" : "");
        if (full)
                jr_fail(err, 0, "%s: the disk under %s is %s; nothing was changed", head, file ? file : "the registry",
                        errnum == ENOSPC ? "full (ENOSPC)" : "over its quota (EDQUOT)");
        else
                jr_fail(err, 0, "%s: %s (%s, code %d)", head, sqlite3_errmsg(db), sqlite3_errstr(code), code);
        if (err)
                err->errnum = errnum;
        return -errnum;
}

static int64_t now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The directory of `path`, created (mode 0700) when missing. */
static int make_parent(const char *path, struct jr_err *err)
{
        char dir[PATH_MAX];
        if (jr_snprintf(dir, sizeof dir, "%s", path) < 0)
                return jr_fail(err, ENAMETOOLONG, "registry path");
        char *slash = strrchr(dir, '/');
        if (!slash || slash == dir)
                return 0;
        *slash = '\0';
        for (char *p = dir + 1;; p++) {
                if (*p && *p != '/')
                        continue;
                char was = *p;
                *p = '\0';
                if (mkdir(dir, 0700) < 0 && errno != EEXIST)
                        return jr_fail(err, errno, "registry: mkdir %s", dir);
                if (!was)
                        return 0;
                *p = '/';
        }
}

/* The file exists, 0600, before SQLite opens it: SQLite gives its -wal
 * and -shm files the database file's mode, and the file holds every
 * worker's code. */
static int make_file(const char *path, struct jr_err *err)
{
        _cleanup_close_ int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
        if (fd < 0)
                return jr_fail(err, errno, "registry %s", path);
        struct stat st;
        if (fstat(fd, &st) < 0)
                return jr_fail(err, errno, "registry %s", path);
        if (!S_ISREG(st.st_mode))
                return plain(err, EINVAL, "registry %s: not a regular file", path);
        if ((st.st_mode & 077) && fchmod(fd, 0600) < 0)
                return jr_fail(err, errno, "registry: chmod %s", path);
        return 0;
}

static int exec_sql(struct registry *r, const char *text, struct jr_err *err)
{
        char *msg = NULL;
        if (sqlite3_exec(r->db, text, NULL, NULL, &msg) == SQLITE_OK)
                return 0;
        int ret = db_fail(r->db, err, "setup", NULL);
        if (msg && err) {
                size_t n = strlen(err->msg);
                snprintf(err->msg + n, sizeof err->msg - n, " [%.200s]", text);
        }
        sqlite3_free(msg);
        return ret;
}

/* An integer a one-row pragma answers. */
static int pragma_int(struct registry *r, const char *text, int64_t *out, struct jr_err *err)
{
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(r->db, text, -1, &st, NULL) != SQLITE_OK)
                return db_fail(r->db, err, "setup", NULL);
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
                *out = sqlite3_column_int64(st, 0);
        int ret = rc == SQLITE_ROW ? 0 : db_fail(r->db, err, "setup", NULL);
        sqlite3_finalize(st);
        return ret;
}

/* Brings the schema to REGISTRY_SCHEMA, in one transaction taken before
 * the version is read: two daemons opening one new file do not both
 * create it. */
static int migrate(struct registry *r, struct jr_err *err)
{
        int64_t v = 0;
        int ret = exec_sql(r, "BEGIN IMMEDIATE", err);
        if (ret < 0)
                return ret;
        if ((ret = pragma_int(r, "PRAGMA user_version", &v, err)) < 0)
                goto rollback;
        if (v < 0 || v > REGISTRY_SCHEMA) {
                ret = plain(err, EPROTO, "registry %s: schema version %lld, this jaild knows up to %d", r->path,
                              (long long)v, REGISTRY_SCHEMA);
                goto rollback;
        }
        if (v == REGISTRY_SCHEMA)  /* nothing written: a registry on a full disk opens */
                return exec_sql(r, "COMMIT", err);
        for (; v < REGISTRY_SCHEMA; v++)
                if ((ret = exec_sql(r, migrations[v], err)) < 0)
                        goto rollback;
        char set[64];  /* a pragma's value cannot be bound; this one is ours */
        snprintf(set, sizeof set, "PRAGMA user_version = %d", REGISTRY_SCHEMA);
        if ((ret = exec_sql(r, set, err)) < 0 || (ret = exec_sql(r, "COMMIT", err)) < 0)
                goto rollback;
        return 0;
rollback:
        sqlite3_exec(r->db, "ROLLBACK", NULL, NULL, NULL);
        return ret;
}

/* exclusive: the WAL's index in this process's memory, not in the -shm
 * file SQLite shares between processes (set before the first access, no
 * -shm is made): for a disk too full for one. */
static int setup(struct registry *r, int exclusive, struct jr_err *err)
{
        int64_t wal = 0;
        sqlite3_busy_timeout(r->db, REGISTRY_BUSY_MS);
        /* Ordinary SQL cannot write the schema or corrupt the file. */
        sqlite3_db_config(r->db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
        int ret = exclusive ? exec_sql(r, "PRAGMA locking_mode = EXCLUSIVE", err) : 0;
        if (ret == 0)
                ret = exec_sql(r, "PRAGMA journal_mode = WAL", err);
        if (ret < 0 || (ret = exec_sql(r, "PRAGMA synchronous = FULL", err)) < 0 ||
            (ret = pragma_int(r, "SELECT journal_mode = 'wal' FROM pragma_journal_mode", &wal, err)) < 0)
                return ret;
        if (!wal)
                return plain(err, EIO, "registry %s: the file system refused WAL mode", r->path);
        if ((ret = migrate(r, err)) < 0)
                return ret;
        for (int i = 0; i < R__MAX; i++)
                if (sqlite3_prepare_v3(r->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &r->stmt[i], NULL) != SQLITE_OK)
                        return db_fail(r->db, err, "prepare", NULL);
        return 0;
}

static int open_as(struct registry **out, const char *path, int exclusive, struct jr_err *err)
{
        struct registry *r = calloc(1, sizeof *r);
        if (!r)
                return jr_fail(err, ENOMEM, "registry");
        snprintf(r->path, sizeof r->path, "%s", path);  /* fits: make_parent checked */
        /* One connection, used from the event loop only: no mutexes. */
        int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW |
                    SQLITE_OPEN_EXRESCODE;
        int ret = sqlite3_open_v2(path, &r->db, flags, NULL) != SQLITE_OK
                  ? (r->db ? db_fail(r->db, err, "open", path) : jr_fail(err, ENOMEM, "registry open"))
                  : setup(r, exclusive, err);
        if (ret < 0) {
                registry_close(r);
                return ret;
        }
        *out = r;
        return 0;
}

int registry_open(struct registry **out, const char *path, struct jr_err *err)
{
        *out = NULL;
        int ret = make_parent(path, err);
        if (ret < 0 || (ret = make_file(path, err)) < 0)
                return ret;
        if ((ret = open_as(out, path, 0, err)) != -ENOSPC && ret != -EDQUOT)
                return ret;
        /* No room for the -shm index (the registry's last connection, a
         * jaild stopped with room, removed it): the registry serves this
         * process alone. What it holds is read; changes wait for room. */
        struct jr_err first = *err;
        if (open_as(out, path, 1, err) < 0) {
                *err = first;
                return ret;
        }
        jr_fail(err, 0, "%.300s; opened for jaild alone (no other process can read it until a jaild opens it "
                "with room)", first.msg);
        err->errnum = first.errnum;
        return 1;
}

void registry_close(struct registry *r)
{
        if (!r)
                return;
        for (int i = 0; i < R__MAX; i++)
                sqlite3_finalize(r->stmt[i]);
        sqlite3_close(r->db);
        free(r);
}

void registry_worker_clear(struct registry_worker *w)
{
        free(w->source);
        free(w->policy);
        free(w->schedule);
        *w = (struct registry_worker){ 0 };
}

/* --- checks -------------------------------------------------------- */

static int name_ok(const char *s)
{
        size_t n = s ? strlen(s) : 0;
        return n > 0 && n <= REGISTRY_MAX_NAME && s[0] != '.' &&
               strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

static int profile_ok(const char *s)
{
        size_t n = s ? strlen(s) : 0;
        return n > 0 && n <= REGISTRY_MAX_PROFILE && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_-") == n;
}

static int source_check(const char *src, size_t len, struct jr_err *err)
{
        if (!src)
                return plain(err, EINVAL, "registry: no source");
        if (len > REGISTRY_MAX_SOURCE)
                return plain(err, EINVAL, "registry: source of %zu bytes is over the limit of %d", len,
                               REGISTRY_MAX_SOURCE);
        if (memchr(src, '\0', len))
                return plain(err, EINVAL, "registry: source holds a NUL byte");
        return 0;
}

/* The compact, key-sorted text of a JSON object (NULL: "{}"), malloc'd. */
static int json_object_text(const char *text, const char *field, char **out, struct jr_err *err)
{
        json_error_t je;
        size_t n = text ? strlen(text) : 2;
        if (n > REGISTRY_MAX_JSON)
                return plain(err, EINVAL, "registry: %s of %zu bytes is over the limit of %d", field, n,
                               REGISTRY_MAX_JSON);
        json_t *v = json_loadb(text ? text : "{}", n, JSON_REJECT_DUPLICATES, &je);
        if (!json_is_object(v)) {
                json_decref(v);
                return v ? plain(err, EINVAL, "registry: %s is not a JSON object", field)
                         : plain(err, EINVAL, "registry: %s: JSON at line %d column %d: %s", field, je.line,
                                   je.column, je.text);
        }
        *out = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(v);
        return *out ? 0 : jr_fail(err, ENOMEM, "registry: %s", field);
}

/* "w-" and 16 hex digits of getrandom(2). */
static int new_id(char id[REGISTRY_ID_LEN + 1], struct jr_err *err)
{
        unsigned char b[8];
        size_t got = 0;
        while (got < sizeof b) {
                ssize_t n = getrandom(b + got, sizeof b - got, 0);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return jr_fail(err, errno, "registry: getrandom");
                got += (size_t)n;
        }
        id[0] = 'w';
        id[1] = '-';
        for (size_t i = 0; i < sizeof b; i++)
                snprintf(id + 2 + 2 * i, 3, "%02x", b[i]);
        return 0;
}

/* --- rows ---------------------------------------------------------- */

/* The statement, reset, its bindings cleared. */
static sqlite3_stmt *stmt(struct registry *r, int which)
{
        sqlite3_stmt *st = r->stmt[which];
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        return st;
}

static int bind_text(sqlite3_stmt *st, int i, const char *s, size_t len)
{
        return sqlite3_bind_text64(st, i, s, len, SQLITE_STATIC, SQLITE_UTF8) == SQLITE_OK ? 0 : -1;
}

/* Column `col` into a fixed buffer; -1 when it does not fit (a file
 * written by something else than this code). */
static int column_copy(sqlite3_stmt *st, int col, char *dst, size_t size)
{
        const unsigned char *t = sqlite3_column_text(st, col);
        size_t n = (size_t)sqlite3_column_bytes(st, col);
        if (!t || n >= size)
                return -1;
        memcpy(dst, t, n);
        dst[n] = '\0';
        return 0;
}

/* Column `col` as a malloc'd string (*len its bytes). */
static char *column_dup(sqlite3_stmt *st, int col, size_t *len)
{
        const unsigned char *t = sqlite3_column_text(st, col);
        size_t n = (size_t)sqlite3_column_bytes(st, col);
        char *s = t ? malloc(n + 1) : NULL;
        if (s) {
                memcpy(s, t, n);
                s[n] = '\0';
        }
        if (len)
                *len = n;
        return s;
}

/* The current row (in the order of COLS) into w. */
static int read_row(struct registry *r, sqlite3_stmt *st, struct registry_worker *w, struct jr_err *err)
{
        *w = (struct registry_worker){ 0 };
        if (column_copy(st, 0, w->id, sizeof w->id) < 0 || column_copy(st, 1, w->name, sizeof w->name) < 0 ||
            column_copy(st, 2, w->profile, sizeof w->profile) < 0)
                return plain(err, EIO, "registry %s: a row with a malformed id, name or profile", r->path);
        w->source = column_dup(st, 3, &w->source_len);
        w->policy = column_dup(st, 4, NULL);
        w->schedule = column_dup(st, 5, NULL);
        if (!w->source || !w->policy || !w->schedule) {
                registry_worker_clear(w);
                return jr_fail(err, ENOMEM, "registry: reading worker");
        }
        w->paused = sqlite3_column_int(st, 6) != 0;
        w->created_ms = sqlite3_column_int64(st, 7);
        w->updated_ms = sqlite3_column_int64(st, 8);
        w->generation = sqlite3_column_int64(st, 9);
        return 0;
}

/* The one row R_BY_ID or R_BY_NAME finds for key. */
static int get_one(struct registry *r, int which, const char *key, struct registry_worker *out, struct jr_err *err)
{
        const char *what = which == R_BY_ID ? "get" : "get by name";
        sqlite3_stmt *st = stmt(r, which);
        if (!key || bind_text(st, 1, key, strlen(key)) < 0)
                return key ? db_fail(r->db, err, what, key) : plain(err, EINVAL, "registry %s: no key", what);
        int rc = sqlite3_step(st), ret;
        if (rc == SQLITE_ROW)
                ret = read_row(r, st, out, err);
        else if (rc == SQLITE_DONE)
                ret = plain(err, ENOENT, "registry: no worker %s '%.80s'", which == R_BY_ID ? "with id" : "named",
                              key);
        else
                ret = db_fail(r->db, err, what, key);
        sqlite3_reset(st);
        return ret;
}

int registry_get(struct registry *r, const char *id, struct registry_worker *out, struct jr_err *err)
{
        return get_one(r, R_BY_ID, id, out, err);
}

int registry_get_by_name(struct registry *r, const char *name, struct registry_worker *out, struct jr_err *err)
{
        return get_one(r, R_BY_NAME, name, out, err);
}

int registry_list(struct registry *r, int (*fn)(const struct registry_worker *w, void *ctx), void *ctx,
                  struct jr_err *err)
{
        sqlite3_stmt *st = stmt(r, R_LIST);
        int rc = SQLITE_DONE, ret = 0;
        while (ret == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
                struct registry_worker w;
                if ((ret = read_row(r, st, &w, err)) < 0)
                        break;
                ret = fn(&w, ctx);
                registry_worker_clear(&w);
        }
        if (ret == 0 && rc != SQLITE_DONE)
                ret = db_fail(r->db, err, "list", NULL);
        sqlite3_reset(st);
        return ret;
}

/* --- changes ------------------------------------------------------- */

/* Binds the fields of a new worker (id ?1 aside). */
static int bind_new(sqlite3_stmt *st, const struct registry_new *w, const char *policy, const char *schedule,
                    int64_t now)
{
        if (bind_text(st, 2, w->name, strlen(w->name)) < 0 || bind_text(st, 3, w->profile, strlen(w->profile)) < 0 ||
            bind_text(st, 4, w->source, w->source_len) < 0 || bind_text(st, 5, policy, strlen(policy)) < 0 ||
            bind_text(st, 6, schedule, strlen(schedule)) < 0 || sqlite3_bind_int(st, 7, w->paused) != SQLITE_OK ||
            sqlite3_bind_int64(st, 8, now) != SQLITE_OK)
                return -1;
        return 0;
}

static int check_new(const struct registry_new *w, struct jr_err *err)
{
        if (!name_ok(w->name))
                return plain(err, EINVAL, "registry: name '%.80s' must be 1 to %d of [A-Za-z0-9._-], not starting "
                               "with '.'", w->name ? w->name : "", REGISTRY_MAX_NAME);
        if (!profile_ok(w->profile))
                return plain(err, EINVAL, "registry: profile '%.40s' must be 1 to %d of [a-z0-9_-]",
                               w->profile ? w->profile : "", REGISTRY_MAX_PROFILE);
        if (w->paused != 0 && w->paused != 1)
                return plain(err, EINVAL, "registry: paused must be 0 or 1");
        return source_check(w->source, w->source_len, err);
}

int registry_add(struct registry *r, const struct registry_new *w, struct registry_worker *out, struct jr_err *err)
{
        _cleanup_free_ char *policy = NULL, *schedule = NULL;
        char id[REGISTRY_ID_LEN + 1];
        int ret = check_new(w, err);
        if (ret < 0 || (ret = json_object_text(w->policy, "policy", &policy, err)) < 0 ||
            (ret = json_object_text(w->schedule, "schedule", &schedule, err)) < 0)
                return ret;
        /* A fresh id that is taken (one chance in 2^64 per worker) gets
         * another; the name's uniqueness is the caller's error. */
        for (int tries = 0;; tries++) {
                if ((ret = new_id(id, err)) < 0)
                        return ret;
                sqlite3_stmt *st = stmt(r, R_INSERT);
                if (bind_text(st, 1, id, strlen(id)) < 0 || bind_new(st, w, policy, schedule, now_ms()) < 0)
                        return db_fail(r->db, err, "add", w->name);
                int rc = sqlite3_step(st);
                sqlite3_reset(st);
                if (rc == SQLITE_DONE)
                        break;
                if (rc == SQLITE_CONSTRAINT_UNIQUE)
                        return plain(err, EEXIST, "registry add: a worker named '%s' exists", w->name);
                if (rc != SQLITE_CONSTRAINT_PRIMARYKEY || tries == 3)
                        return db_fail(r->db, err, "add", w->name);
        }
        return out ? registry_get(r, id, out, err) : 0;
}

/* Steps an UPDATE or DELETE of the worker ?1 = id to its end (a RETURNING
 * row's value into *returned): 0, or -ENOENT when no row changed. */
static int run_change(struct registry *r, sqlite3_stmt *st, const char *what, const char *id, int64_t *returned,
                      struct jr_err *err)
{
        int rc, rows = 0;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                if (returned)
                        *returned = sqlite3_column_int64(st, 0);
                rows++;
        }
        int ret = rc == SQLITE_DONE ? 0 : db_fail(r->db, err, what, id);
        if (ret == 0 && !(returned ? rows : sqlite3_changes(r->db)))
                ret = plain(err, ENOENT, "registry %s: no worker with id '%.80s'", what, id);
        sqlite3_reset(st);
        return ret;
}

/* ?1 = id, ?3 = now: what every change binds. */
static sqlite3_stmt *change(struct registry *r, int which, const char *id)
{
        sqlite3_stmt *st = stmt(r, which);
        if (!id || bind_text(st, 1, id, strlen(id)) < 0 ||
            (sqlite3_bind_parameter_count(st) >= 3 && sqlite3_bind_int64(st, 3, now_ms()) != SQLITE_OK))
                return NULL;
        return st;
}

int registry_set_source(struct registry *r, const char *id, const char *source, size_t len, int64_t *generation,
                        struct jr_err *err)
{
        int64_t gen = 0;
        int ret = source_check(source, len, err);
        if (ret < 0)
                return ret;
        sqlite3_stmt *st = change(r, R_SET_SOURCE, id);
        if (!st || bind_text(st, 2, source, len) < 0)
                return id ? db_fail(r->db, err, "set source", id) : plain(err, EINVAL, "registry: no id");
        if ((ret = run_change(r, st, "set source", id, &gen, err)) == 0 && generation)
                *generation = gen;
        return ret;
}

static int set_json(struct registry *r, int which, const char *what, const char *id, const char *text,
                    struct jr_err *err)
{
        _cleanup_free_ char *norm = NULL;
        int ret = json_object_text(text, what + 4, &norm, err);  /* "set policy" -> "policy" */
        if (ret < 0)
                return ret;
        sqlite3_stmt *st = change(r, which, id);
        if (!st || bind_text(st, 2, norm, strlen(norm)) < 0)
                return id ? db_fail(r->db, err, what, id) : plain(err, EINVAL, "registry: no id");
        return run_change(r, st, what, id, NULL, err);
}

int registry_set_policy(struct registry *r, const char *id, const char *policy, struct jr_err *err)
{
        return set_json(r, R_SET_POLICY, "set policy", id, policy, err);
}

int registry_set_schedule(struct registry *r, const char *id, const char *schedule, struct jr_err *err)
{
        return set_json(r, R_SET_SCHEDULE, "set schedule", id, schedule, err);
}

int registry_set_paused(struct registry *r, const char *id, int paused, struct jr_err *err)
{
        if (paused != 0 && paused != 1)
                return plain(err, EINVAL, "registry: paused must be 0 or 1");
        sqlite3_stmt *st = change(r, R_SET_PAUSED, id);
        if (!st || sqlite3_bind_int(st, 2, paused) != SQLITE_OK)
                return id ? db_fail(r->db, err, "set paused", id) : plain(err, EINVAL, "registry: no id");
        return run_change(r, st, "set paused", id, NULL, err);
}

int registry_delete(struct registry *r, const char *id, struct jr_err *err)
{
        sqlite3_stmt *st = change(r, R_DELETE, id);
        if (!st)
                return id ? db_fail(r->db, err, "delete", id) : plain(err, EINVAL, "registry: no id");
        return run_change(r, st, "delete", id, NULL, err);
}

/* --- sessions ------------------------------------------------------ */

static int step_done(struct registry *r, sqlite3_stmt *st, const char *what, const char *id, struct jr_err *err)
{
        int rc = sqlite3_step(st);
        sqlite3_reset(st);
        return rc == SQLITE_DONE ? 0 : db_fail(r->db, err, what, id);
}

int registry_session_add(struct registry *r, const char *id, struct jr_err *err)
{
        sqlite3_stmt *st = stmt(r, R_SESS_ADD);
        if (bind_text(st, 1, id, strlen(id)) < 0 || sqlite3_bind_int64(st, 2, now_ms()) != SQLITE_OK)
                return db_fail(r->db, err, "session add", id);
        return step_done(r, st, "session add", id, err);
}

int registry_session_delete(struct registry *r, const char *id, struct jr_err *err)
{
        sqlite3_stmt *st = stmt(r, R_SESS_DELETE);
        if (bind_text(st, 1, id, strlen(id)) < 0)
                return db_fail(r->db, err, "session delete", id);
        return step_done(r, st, "session delete", id, err);
}

int registry_sessions_lost(struct registry *r, struct jr_err *err)
{
        sqlite3_stmt *st = stmt(r, R_SESS_LOST);
        if (sqlite3_bind_int64(st, 1, now_ms()) != SQLITE_OK)
                return db_fail(r->db, err, "sessions lost", NULL);
        int ret = step_done(r, st, "sessions lost", NULL, err);
        if (ret < 0)
                return ret;
        st = stmt(r, R_SESS_EXPIRE);
        if (sqlite3_bind_int64(st, 1, now_ms() - REGISTRY_SESSION_KEEP_MS) != SQLITE_OK)
                return db_fail(r->db, err, "sessions expire", NULL);
        return step_done(r, st, "sessions expire", NULL, err);
}

int registry_session_lost(struct registry *r, const char *id, struct jr_err *err)
{
        sqlite3_stmt *st = stmt(r, R_SESS_IS_LOST);
        if (bind_text(st, 1, id, strlen(id)) < 0)
                return db_fail(r->db, err, "session lookup", id);
        int rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc == SQLITE_ROW)
                return 1;
        return rc == SQLITE_DONE ? 0 : db_fail(r->db, err, "session lookup", id);
}

/* --- transactions -------------------------------------------------- */

static int step_plain(struct registry *r, int which)
{
        sqlite3_stmt *st = stmt(r, which);
        int rc = sqlite3_step(st);
        sqlite3_reset(st);
        return rc;
}

int registry_begin(struct registry *r, struct jr_err *err)
{
        return step_plain(r, R_BEGIN) == SQLITE_DONE ? 0 : db_fail(r->db, err, "begin", NULL);
}

/* A COMMIT that fails for want of space may leave the transaction open
 * (SQLite rolls back by itself on some errors only): it is rolled back,
 * so that nothing of it is kept and the next change starts its own. */
int registry_commit(struct registry *r, struct jr_err *err)
{
        if (step_plain(r, R_COMMIT) == SQLITE_DONE)
                return 0;
        int ret = db_fail(r->db, err, "commit", NULL);
        registry_rollback(r);
        return ret;
}

void registry_rollback(struct registry *r)
{
        if (!sqlite3_get_autocommit(r->db))
                step_plain(r, R_ROLLBACK);
}
