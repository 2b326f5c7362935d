#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/sqlerr.h"
#include "supervisor/broker/state.h"

/* How long a statement waits for another process's write lock (jailruns
 * sharing one file) before it reports the store busy. */
#define STATE_BUSY_MS 5000

enum { ST_GET, ST_SET, ST_DELETE, ST_KEYS_FROM, ST_KEYS_AFTER, ST_OLD, ST_USED, ST_SUM, ST_ADD, ST_BEGIN, ST_COMMIT, ST_ROLLBACK,
       ST__MAX };

static const char *const sql[ST__MAX] = {
        [ST_GET] = "SELECT value FROM kv WHERE ns = ?1 AND key = ?2",
        [ST_SET] = "INSERT INTO kv (ns, key, value) VALUES (?1, ?2, ?3) "
                   "ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value",
        [ST_DELETE] = "DELETE FROM kv WHERE ns = ?1 AND key = ?2",
        /* Ranges of the primary key's index, ?3 the first text past the
         * prefix: a page reads its own rows, whatever the namespace holds. */
        [ST_KEYS_FROM] = "SELECT key FROM kv WHERE ns = ?1 AND key >= ?2 AND key < ?3 ORDER BY key LIMIT ?4",
        [ST_KEYS_AFTER] = "SELECT key FROM kv WHERE ns = ?1 AND key > ?2 AND key < ?3 ORDER BY key LIMIT ?4",
        /* Each namespace's bytes of keys and values, kept in step in the same
         * transaction as every change (lengths in bytes, not characters). */
        [ST_OLD] = "SELECT length(CAST(key AS BLOB)) + length(CAST(value AS BLOB)) FROM kv WHERE ns = ?1 AND key = ?2",
        [ST_USED] = "SELECT bytes FROM usage WHERE ns = ?1",
        [ST_SUM] = "SELECT coalesce(sum(length(CAST(key AS BLOB)) + length(CAST(value AS BLOB))), 0) FROM kv "
                   "WHERE ns = ?1",
        [ST_ADD] = "INSERT INTO usage (ns, bytes) VALUES (?1, ?2) "
                   "ON CONFLICT (ns) DO UPDATE SET bytes = bytes + excluded.bytes",
        [ST_BEGIN] = "BEGIN IMMEDIATE",
        [ST_COMMIT] = "COMMIT",
        [ST_ROLLBACK] = "ROLLBACK",
};

struct sqlite_store {
        sqlite3 *db;
        sqlite3_stmt *stmt[ST__MAX];
        uint64_t max_total;  /* bytes of values per namespace; 0 = none */
};

static int db_fail(struct sqlite_store *s, struct jr_err *err, const char *what)
{
        int errnum = jr_sqlite_errnum(s->db);
        /* A write the file system refused for want of space (common/sqlerr.h):
         * SQLite's words ("database or disk is full") name no cause. */
        if (errnum == ENOSPC)
                jr_fail(err, 0, "state %s: the host's disk is full (ENOSPC); nothing was changed", what);
        else if (errnum == EDQUOT)
                jr_fail(err, 0, "state %s: the host's disk quota is used up (EDQUOT); nothing was changed", what);
        else
                jr_fail(err, 0, "state %s: %s", what, sqlite3_errmsg(s->db));
        err->errnum = errnum;
        return -errnum;
}

/* The directory of `path`, created (mode 0700) when missing. */
static int make_parent(const char *path, struct jr_err *err)
{
        char dir[PATH_MAX];
        if (jr_snprintf(dir, sizeof dir, "%s", path) < 0)
                return jr_fail(err, ENAMETOOLONG, "state path");
        char *slash = strrchr(dir, '/');
        if (!slash || slash == dir)
                return 0;
        *slash = '\0';
        for (char *p = dir + 1; *p; p++) {
                if (*p != '/')
                        continue;
                *p = '\0';
                if (mkdir(dir, 0700) < 0 && errno != EEXIST)
                        return jr_fail(err, errno, "mkdir %s", dir);
                *p = '/';
        }
        if (mkdir(dir, 0700) < 0 && errno != EEXIST)
                return jr_fail(err, errno, "mkdir %s", dir);
        return 0;
}

static int exec_sql(struct sqlite_store *s, const char *text, struct jr_err *err)
{
        char *msg = NULL;
        int rc;
        /* Two jailruns opening a new file at once: switching to WAL can be
         * refused as busy without the busy handler's wait; try again a
         * little later, within a second. */
        for (int tries = 0; (rc = sqlite3_exec(s->db, text, NULL, NULL, &msg)) == SQLITE_BUSY && tries < 100;
             tries++) {
                sqlite3_free(msg);
                msg = NULL;
                nanosleep(&(struct timespec){ 0, 10 * 1000 * 1000 }, NULL);
        }
        if (rc != SQLITE_OK) {
                jr_fail(err, 0, "state: %s: %s", text, msg ? msg : sqlite3_errmsg(s->db));
                sqlite3_free(msg);
                err->errnum = EIO;
                return -EIO;
        }
        return 0;
}

static void sqlite_close(void *impl);

static int sqlite_open(void **out, const char *url, uint64_t max_total, struct jr_err *err)
{
        int r = make_parent(url, err);
        if (r < 0)
                return r;
        /* The file exists, 0600, before SQLite opens it: SQLite gives its
         * -wal and -shm files the database file's mode. */
        int fd = open(url, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return jr_fail(err, errno, "state %s", url);
        int mode_ok = fchmod(fd, 0600) == 0;
        close(fd);
        if (!mode_ok)
                return jr_fail(err, errno, "chmod %s", url);
        for (const char *suffix = "-wal"; suffix; suffix = strcmp(suffix, "-wal") == 0 ? "-shm" : NULL) {
                char side[PATH_MAX];
                if (jr_snprintf(side, sizeof side, "%s%s", url, suffix) == 0 && chmod(side, 0600) < 0 && errno != ENOENT)
                        return jr_fail(err, errno, "chmod %s", side);
        }
        _cleanup_free_ struct sqlite_store *s = calloc(1, sizeof *s);
        if (!s)
                return jr_fail(err, ENOMEM, "state");
        /* One connection, used from the event loop only: no mutexes. */
        int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE;
        if (sqlite3_open_v2(url, &s->db, flags, NULL) != SQLITE_OK) {
                r = s->db ? db_fail(s, err, "open") : jr_fail(err, ENOMEM, "state open");
                sqlite3_close(s->db);
                return r;
        }
        sqlite3_busy_timeout(s->db, STATE_BUSY_MS);
        /* WAL with synchronous=FULL: every commit is on disk (the WAL
         * fsync'd) before it returns, so an acknowledged set survives a
         * crash of the process or the machine. */
        r = exec_sql(s, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; "
                        "CREATE TABLE IF NOT EXISTS kv (ns TEXT NOT NULL, key TEXT NOT NULL, "
                        "value TEXT NOT NULL, PRIMARY KEY (ns, key)) WITHOUT ROWID; "
                        "CREATE TABLE IF NOT EXISTS usage (ns TEXT PRIMARY KEY, bytes INTEGER NOT NULL) WITHOUT ROWID",
                     err);
        for (int i = 0; r == 0 && i < ST__MAX; i++)
                if (sqlite3_prepare_v3(s->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->stmt[i], NULL) != SQLITE_OK)
                        r = db_fail(s, err, "prepare");
        if (r < 0) {
                sqlite_close(TAKE_PTR(s));
                return r;
        }
        s->max_total = max_total;
        *out = TAKE_PTR(s);
        return 0;
}

static void sqlite_close(void *impl)
{
        struct sqlite_store *s = impl;
        if (!s)
                return;
        for (int i = 0; i < ST__MAX; i++)
                sqlite3_finalize(s->stmt[i]);
        sqlite3_close(s->db);
        free(s);
}

/* Binds ns and key as ?1, ?2. */
static sqlite3_stmt *start(struct sqlite_store *s, int which, const char *ns, const char *key)
{
        sqlite3_stmt *st = s->stmt[which];
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        if (sqlite3_bind_text(st, 1, ns, -1, SQLITE_STATIC) != SQLITE_OK ||
            (sqlite3_bind_parameter_count(st) >= 2 && sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC) != SQLITE_OK))
                return NULL;
        return st;
}

static int sqlite_get(void *impl, const char *ns, const char *key, char **json, struct jr_err *err)
{
        struct sqlite_store *s = impl;
        sqlite3_stmt *st = start(s, ST_GET, ns, key);
        *json = NULL;
        if (!st)
                return db_fail(s, err, "get");
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
                const char *v = (const char *)sqlite3_column_text(st, 0);
                if (!v || !(*json = strdup(v))) {
                        sqlite3_reset(st);
                        return jr_fail(err, ENOMEM, "state get");
                }
                rc = SQLITE_DONE;
        }
        int r = rc == SQLITE_DONE ? 0 : db_fail(s, err, "get");
        sqlite3_reset(st);
        return r;
}

/* Runs a statement that returns at most one integer: it in *v (0 when no
 * row). 0, or -1 with the database's error. */
static int one_int(struct sqlite_store *s, int which, const char *ns, const char *key, int64_t *v)
{
        sqlite3_stmt *st = start(s, which, ns, key ? key : "");
        int rc = st ? sqlite3_step(st) : SQLITE_ERROR;
        *v = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
        if (st)
                sqlite3_reset(st);
        return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

static int run_stmt(struct sqlite_store *s, int which)
{
        sqlite3_stmt *st = s->stmt[which];
        int rc = sqlite3_step(st);
        sqlite3_reset(st);
        return rc == SQLITE_DONE ? 0 : -1;
}

/* The namespace's bytes, counted from the values the first time (then
 * *counted = 1: the usage row is to be made with the whole count). */
static int used_bytes(struct sqlite_store *s, const char *ns, int64_t *used, int *counted)
{
        sqlite3_stmt *st = start(s, ST_USED, ns, "");
        int rc = st ? sqlite3_step(st) : SQLITE_ERROR;
        *counted = 0;
        if (rc == SQLITE_ROW) {
                *used = sqlite3_column_int64(st, 0);
                sqlite3_reset(st);
                return 0;
        }
        *counted = 1;
        if (st)
                sqlite3_reset(st);
        if (rc != SQLITE_DONE || one_int(s, ST_SUM, ns, NULL, used) < 0)
                return -1;
        return 0;
}

static int add_bytes(struct sqlite_store *s, const char *ns, int64_t delta)
{
        sqlite3_stmt *st = s->stmt[ST_ADD];
        sqlite3_reset(st);
        if (sqlite3_bind_text(st, 1, ns, -1, SQLITE_STATIC) != SQLITE_OK || sqlite3_bind_int64(st, 2, delta) != SQLITE_OK)
                return -1;
        return run_stmt(s, ST_ADD);
}

static int sqlite_set(void *impl, const char *ns, const char *key, const char *json, struct jr_err *err)
{
        struct sqlite_store *s = impl;
        int64_t old = 0, used = 0, len = (int64_t)(strlen(key) + strlen(json));  /* a key costs its bytes too */
        int counted = 0;
        if (run_stmt(s, ST_BEGIN) < 0)
                return db_fail(s, err, "set");
        int r = one_int(s, ST_OLD, ns, key, &old) < 0 || used_bytes(s, ns, &used, &counted) < 0 ? db_fail(s, err, "set")
                                                                                                  : 0;
        if (r == 0 && s->max_total && (uint64_t)(used - old + len) > s->max_total)
                r = jr_fail(err, EDQUOT, "the worker's state would hold more than %llu bytes",
                            (unsigned long long)s->max_total);
        if (r == 0) {
                sqlite3_stmt *st = start(s, ST_SET, ns, key);
                if (!st || sqlite3_bind_text(st, 3, json, -1, SQLITE_STATIC) != SQLITE_OK ||
                    sqlite3_step(st) != SQLITE_DONE)
                        r = db_fail(s, err, "set");
                if (st)
                        sqlite3_reset(st);
        }
        if (r == 0 && add_bytes(s, ns, (counted ? used : 0) + len - old) < 0)
                r = db_fail(s, err, "set");
        if (r == 0 && run_stmt(s, ST_COMMIT) < 0)
                r = db_fail(s, err, "set");
        if (r < 0)
                run_stmt(s, ST_ROLLBACK);
        return r;
}

static int sqlite_delete(void *impl, const char *ns, const char *key, int *deleted, struct jr_err *err)
{
        struct sqlite_store *s = impl;
        int64_t old = 0, used = 0;
        int counted = 0;
        *deleted = 0;
        if (run_stmt(s, ST_BEGIN) < 0)
                return db_fail(s, err, "delete");
        sqlite3_stmt *st = one_int(s, ST_OLD, ns, key, &old) == 0 && used_bytes(s, ns, &used, &counted) == 0
                                   ? start(s, ST_DELETE, ns, key)
                                   : NULL;
        int r = st && sqlite3_step(st) == SQLITE_DONE ? 0 : db_fail(s, err, "delete");
        if (st) {
                *deleted = r == 0 && sqlite3_changes(s->db) > 0;
                sqlite3_reset(st);
        }
        if (r == 0 && *deleted && add_bytes(s, ns, (counted ? used : 0) - old) < 0)
                r = db_fail(s, err, "delete");
        if (r == 0 && run_stmt(s, ST_COMMIT) < 0)
                r = db_fail(s, err, "delete");
        if (r < 0) {
                run_stmt(s, ST_ROLLBACK);
                *deleted = 0;
        }
        return r;
}

/* Whether a page of `len` keys holding `bytes` of text has room for one of
 * `add` bytes more. */
static int state_page_fits(const struct state_page *page, size_t len, size_t bytes, size_t add)
{
        return len < page->limit && bytes + add + 1 <= STATE_PAGE_BYTES;
}

static int sqlite_keys(void *impl, const char *ns, const struct state_page *pg, json_t **keys, int *more,
                       struct jr_err *err)
{
        struct sqlite_store *s = impl;
        /* The prefix and the byte 0xff, which UTF-8 never holds: past every
         * key that starts with the prefix, before every other after it. */
        char end[STATE_MAX_KEY + 2];
        size_t plen = strlen(pg->prefix);
        if (plen > STATE_MAX_KEY)
                return jr_fail(err, EINVAL, "state keys: prefix");
        memcpy(end, pg->prefix, plen);
        end[plen] = (char)0xff;
        sqlite3_stmt *st = start(s, pg->after ? ST_KEYS_AFTER : ST_KEYS_FROM, ns, pg->after ? pg->after : pg->prefix);
        if (!st || sqlite3_bind_text(st, 3, end, (int)plen + 1, SQLITE_STATIC) != SQLITE_OK ||
            sqlite3_bind_int(st, 4, (int)pg->limit + 1) != SQLITE_OK)
                return db_fail(s, err, "keys");
        _cleanup_(json_decrefp) json_t *out = json_array();
        size_t bytes = 0;
        int rc = SQLITE_DONE;
        *more = 0;
        while (out && (rc = sqlite3_step(st)) == SQLITE_ROW) {
                const char *k = (const char *)sqlite3_column_text(st, 0);
                size_t n = (size_t)sqlite3_column_bytes(st, 0);
                if (!state_page_fits(pg, json_array_size(out), bytes, n)) {
                        *more = 1;
                        rc = SQLITE_DONE;
                        break;
                }
                if (!k || json_array_append_new(out, json_stringn(k, n)) < 0) {
                        sqlite3_reset(st);
                        return jr_fail(err, ENOMEM, "state keys");
                }
                bytes += n + 1;
        }
        int r = !out ? jr_fail(err, ENOMEM, "state keys") : rc == SQLITE_DONE ? 0 : db_fail(s, err, "keys");
        sqlite3_reset(st);
        if (r < 0)
                return r;
        *keys = TAKE_PTR(out);
        return 0;
}

static const struct state_backend sqlite_backend = {
        .name = "sqlite",
        .open = sqlite_open,
        .close = sqlite_close,
        .get = sqlite_get,
        .set = sqlite_set,
        .del = sqlite_delete,
        .keys = sqlite_keys,
};

struct state_store {
        const struct state_backend *b;
        void *impl;
};

int state_open(struct state_store **out, const char *url, uint64_t max_total, struct jr_err *err)
{
        if (state_is_redis(url))  /* state_redis.h's */
                return jr_fail(err, EINVAL, "state: a Redis URL is not a SQLite file");
        const struct state_backend *b = &sqlite_backend;
        struct state_store *s = calloc(1, sizeof *s);
        if (!s)
                return jr_fail(err, ENOMEM, "state");
        s->b = b;
        int r = b->open(&s->impl, url, max_total, err);
        if (r < 0) {
                free(s);
                return r;
        }
        *out = s;
        return 0;
}

void state_close(struct state_store *s)
{
        if (!s)
                return;
        s->b->close(s->impl);
        free(s);
}

int state_get(struct state_store *s, const char *ns, const char *key, char **json, struct jr_err *err)
{
        return s->b->get(s->impl, ns, key, json, err);
}

int state_set(struct state_store *s, const char *ns, const char *key, const char *json, struct jr_err *err)
{
        return s->b->set(s->impl, ns, key, json, err);
}

int state_delete(struct state_store *s, const char *ns, const char *key, int *deleted, struct jr_err *err)
{
        return s->b->del(s->impl, ns, key, deleted, err);
}

int state_keys(struct state_store *s, const char *ns, const struct state_page *page, json_t **keys, int *more,
               struct jr_err *err)
{
        return s->b->keys(s->impl, ns, page, keys, more, err);
}

void state_out_clear(struct state_out *out)
{
        free(out->json);
        json_decref(out->keys);
        *out = (struct state_out){ 0 };
}

void state_do(struct state_store *s, const struct state_req *q, struct state_out *out)
{
        *out = (struct state_out){ 0 };
        switch (q->op) {
        case STATE_GET: out->rc = state_get(s, q->ns, q->key, &out->json, &out->err); break;
        case STATE_SET: out->rc = state_set(s, q->ns, q->key, q->json, &out->err); break;
        case STATE_DELETE: out->rc = state_delete(s, q->ns, q->key, &out->deleted, &out->err); break;
        case STATE_KEYS: out->rc = state_keys(s, q->ns, &q->page, &out->keys, &out->more, &out->err); break;
        }
}
