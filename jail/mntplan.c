#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "jail/mntplan.h"

/* Symlink hops followed on one path before giving up, as the kernel does. */
#define MAX_HOPS 40

int path_within(const char *path, const char *dir)
{
        size_t n = strlen(dir);
        if (n == 1 && dir[0] == '/')
                return path[0] == '/';
        return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

int mntplan_init(struct mnt_plan *p, const char *root, struct jr_err *err)
{
        *p = (struct mnt_plan){ 0 };
        if (jr_snprintf(p->root, sizeof p->root, "%s", root) < 0)
                return jr_fail(err, ENAMETOOLONG, "mount plan root '%s'", root);
        return 0;
}

void mntplan_free(struct mnt_plan *p)
{
        for (size_t i = 0; i < MNTPLAN_DIRCACHE; i++) {
                free(p->dirs[i]);
                p->dirs[i] = NULL;
        }
        free(p->v);
        p->v = NULL;
        p->n = p->cap = 0;
}

/* The slot holding `path`, or the empty slot where it would go; NULL when
 * the set is full (then nothing is cached, only walks get slower). */
static char **dircache_slot(struct mnt_plan *p, const char *path)
{
        uint32_t h = 2166136261u;  /* FNV-1a */
        for (const char *c = path; *c; c++)
                h = (h ^ (unsigned char)*c) * 16777619u;
        for (size_t i = 0; i < MNTPLAN_DIRCACHE; i++) {
                char **slot = &p->dirs[(h + i) % MNTPLAN_DIRCACHE];
                if (!*slot || strcmp(*slot, path) == 0)
                        return slot;
        }
        return NULL;
}

static struct mnt_entry *plan_find(struct mnt_plan *p, const char *path)
{
        for (size_t i = 0; i < p->n; i++)
                if (strcmp(p->v[i].path, path) == 0)
                        return &p->v[i];
        return NULL;
}

/* Records an entry; a later BIND upgrades an earlier DIR at the same path. */
static int plan_put(struct mnt_plan *p, enum mnt_op op, int is_dir, const char *path,
                    const char *target, struct jr_err *err)
{
        struct mnt_entry *e = plan_find(p, path);
        if (e) {
                if (e->op == MNT_OP_DIR && op == MNT_OP_BIND) {
                        e->op = MNT_OP_BIND;
                        e->is_dir = is_dir;
                }
                return 0;
        }
        if (p->n == p->cap) {
                size_t cap = p->cap ? p->cap * 2 : 32;
                struct mnt_entry *v = realloc(p->v, cap * sizeof *v);
                if (!v)
                        return jr_fail(err, ENOMEM, "mount plan");
                p->v = v;
                p->cap = cap;
        }
        e = &p->v[p->n];
        *e = (struct mnt_entry){ .op = op, .is_dir = is_dir };
        if (jr_snprintf(e->path, sizeof e->path, "%s", path) < 0 ||
            jr_snprintf(e->target, sizeof e->target, "%s", target ? target : "") < 0)
                return jr_fail(err, ENAMETOOLONG, "mount plan entry '%s'", path);
        p->n++;
        return 0;
}

/* Drops the last component of an absolute path in place ("/a/b" -> "/a",
 * "/a" -> ""). */
static void path_pop(char *path)
{
        char *slash = strrchr(path, '/');
        if (slash)
                *slash = '\0';
}

struct walk {
        struct mnt_plan *p;
        int record;            /* add entries (1) or only resolve (0) */
        int bind_last;         /* record: bind the final object (else only the way there) */
        char resolved[PATH_MAX];
        int found;             /* the path exists */
};

static int walk(struct walk *w, const char *path, int hops, struct jr_err *err);

/* Handles a symlink met at `cur` with `rest` still to walk. */
static int walk_link(struct walk *w, const char *cur, const char *rest, int hops,
                     struct jr_err *err)
{
        char host[PATH_MAX], target[PATH_MAX], next[PATH_MAX * 2];
        if (jr_snprintf(host, sizeof host, "%s%s", w->p->root, cur) < 0)
                return jr_fail(err, ENAMETOOLONG, "path '%s'", cur);
        ssize_t n = readlink(host, target, sizeof target - 1);
        if (n < 0)
                return jr_fail(err, errno, "readlink '%s'", host);
        target[n] = '\0';
        if (w->record) {
                int r = plan_put(w->p, MNT_OP_SYMLINK, 0, cur, target, err);
                if (r < 0)
                        return r;
        }
        char base[PATH_MAX];
        if (jr_snprintf(base, sizeof base, "%s", cur) < 0)
                return jr_fail(err, ENAMETOOLONG, "path '%s'", cur);
        path_pop(base);
        int r = target[0] == '/'
                        ? jr_snprintf(next, sizeof next, "%s/%s", target, rest)
                        : jr_snprintf(next, sizeof next, "%s/%s/%s", base, target, rest);
        if (r < 0)
                return jr_fail(err, ENAMETOOLONG, "symlink chain at '%s'", cur);
        return walk(w, next, hops + 1, err);
}

static int walk(struct walk *w, const char *path, int hops, struct jr_err *err)
{
        if (hops > MAX_HOPS)
                return jr_fail(err, ELOOP, "symlink loop resolving '%s'", path);
        char cur[PATH_MAX] = "";
        const char *s = path;
        for (;;) {
                while (*s == '/')
                        s++;
                if (!*s)
                        break;
                size_t len = strcspn(s, "/");
                const char *rest = s + len;
                int last = rest[strspn(rest, "/")] == '\0';
                if (len == 1 && s[0] == '.') {
                        s = rest;
                        continue;
                }
                if (len == 2 && s[0] == '.' && s[1] == '.') {
                        path_pop(cur);
                        s = rest;
                        continue;
                }
                size_t used = strlen(cur);
                if (used + 1 + len >= sizeof cur)
                        return jr_fail(err, ENAMETOOLONG, "path '%s'", path);
                cur[used] = '/';
                memcpy(cur + used + 1, s, len);
                cur[used + 1 + len] = '\0';
                s = rest;

                char **cached = last ? NULL : dircache_slot(w->p, cur);
                if (cached && *cached) {  /* a directory on the way, seen before */
                        if (w->record) {
                                int r = plan_put(w->p, MNT_OP_DIR, 1, cur, NULL, err);
                                if (r < 0)
                                        return r;
                        }
                        continue;
                }
                char host[PATH_MAX];
                struct stat st;
                if (jr_snprintf(host, sizeof host, "%s%s", w->p->root, cur) < 0)
                        return jr_fail(err, ENAMETOOLONG, "path '%s'", cur);
                if (lstat(host, &st) < 0) {
                        if (errno == ENOENT || errno == ENOTDIR || errno == EACCES) {
                                w->found = 0;  /* a candidate that is not there */
                                return 0;
                        }
                        return jr_fail(err, errno, "lstat '%s'", host);
                }
                if (S_ISLNK(st.st_mode))
                        return walk_link(w, cur, s, hops, err);
                if (!last && !S_ISDIR(st.st_mode)) {
                        w->found = 0;
                        return 0;
                }
                if (cached && S_ISDIR(st.st_mode) && !(*cached = strdup(cur)))
                        return jr_fail(err, ENOMEM, "mount plan");
                if (w->record && (!last || w->bind_last)) {
                        int r = plan_put(w->p, last ? MNT_OP_BIND : MNT_OP_DIR,
                                         S_ISDIR(st.st_mode), cur, NULL, err);
                        if (r < 0)
                                return r;
                }
                if (last)
                        break;
        }
        w->found = cur[0] != '\0';
        memcpy(w->resolved, cur, sizeof cur);
        return 0;
}

int mntplan_add(struct mnt_plan *p, const char *path, struct jr_err *err)
{
        if (path[0] != '/')
                return jr_fail(err, EINVAL, "mount plan path '%s' is not absolute", path);
        struct walk w = { .p = p, .record = 1, .bind_last = 1 };
        size_t before = p->n;
        int r = walk(&w, path, 0, err);
        if (r < 0 || !w.found)
                p->n = before;  /* nothing on the way to a missing path */
        return r;
}

/* 1 when the plan makes `path` visible: it lies in a bind, or it is a
 * directory the plan creates. */
static int plan_shows(const struct mnt_plan *p, const char *path)
{
        for (size_t i = 0; i < p->n; i++) {
                const struct mnt_entry *e = &p->v[i];
                if (e->op == MNT_OP_BIND && path_within(path, e->path))
                        return 1;
                if (e->op == MNT_OP_DIR && strcmp(path, e->path) == 0)
                        return 1;
        }
        return 0;
}

/* 1 when `path` lies in a bind of the plan. */
static int plan_in_bind(const struct mnt_plan *p, const char *path)
{
        for (size_t i = 0; i < p->n; i++)
                if (p->v[i].op == MNT_OP_BIND && path_within(path, p->v[i].path))
                        return 1;
        return 0;
}

/* Where `path` leads in the jail's own tree, without touching the host:
 * the symlinks the plan recreates are followed, and a path that leaves
 * what the plan shows goes nowhere (returns 0). Inside a bind the rest is
 * taken as written. Returns 1 with the result in out. */
static int plan_resolve(const struct mnt_plan *p, const char *path, char *out, int hops)
{
        char cur[PATH_MAX] = "";
        const char *s = path;
        if (hops > MAX_HOPS)
                return 0;
        while (*(s += strspn(s, "/"))) {
                size_t len = strcspn(s, "/");
                const char *rest = s + len;
                if (len == 2 && s[0] == '.' && s[1] == '.')
                        path_pop(cur);
                else if (!(len == 1 && s[0] == '.')) {
                        size_t used = strlen(cur);
                        if (used + 1 + len >= sizeof cur)
                                return 0;
                        cur[used] = '/';
                        memcpy(cur + used + 1, s, len);
                        cur[used + 1 + len] = '\0';
                        const struct mnt_entry *e = plan_in_bind(p, cur) ? NULL : plan_find((struct mnt_plan *)p, cur);
                        if (e && e->op == MNT_OP_SYMLINK) {
                                char next[PATH_MAX * 2];
                                path_pop(cur);
                                int r = e->target[0] == '/'
                                                ? jr_snprintf(next, sizeof next, "%s/%s", e->target, rest)
                                                : jr_snprintf(next, sizeof next, "%s/%s/%s", cur, e->target, rest);
                                return r == 0 && plan_resolve(p, next, out, hops + 1);
                        }
                        if (!e && !plan_in_bind(p, cur))
                                return 0;  /* not in the jail's tree */
                }
                s = rest;
        }
        memcpy(out, cur[0] ? cur : "/", strlen(cur[0] ? cur : "/") + 1);
        return 1;
}

int mntplan_add_links_into(struct mnt_plan *p, const char *dir, const char *name_has,
                           struct jr_err *err)
{
        char host[PATH_MAX];
        if (jr_snprintf(host, sizeof host, "%s%s", p->root, dir) < 0)
                return jr_fail(err, ENAMETOOLONG, "path '%s'", dir);
        DIR *d = opendir(host);
        if (!d)
                return errno == ENOENT ? 0 : jr_fail(err, errno, "opendir '%s'", host);
        int r = 0;
        struct dirent *de;
        while (r == 0 && (de = readdir(d))) {
                if (de->d_type != DT_LNK && de->d_type != DT_UNKNOWN)
                        continue;
                if (name_has && !strstr(de->d_name, name_has))
                        continue;
                /* One readlink per entry (hundreds in /etc/alternatives);
                 * where it leads is worked out on the plan, not the host:
                 * only a link whose target the jail will show is kept. */
                char target[PATH_MAX], lexical[PATH_MAX * 2], shown[PATH_MAX];
                ssize_t n = readlinkat(dirfd(d), de->d_name, target, sizeof target - 1);
                if (n < 0)
                        continue;  /* not a link (DT_UNKNOWN), or gone */
                target[n] = '\0';
                const char *base = strcmp(dir, "/") ? dir : "";
                if (target[0] == '/' ? jr_snprintf(lexical, sizeof lexical, "%s", target) < 0
                                     : jr_snprintf(lexical, sizeof lexical, "%s/%s", base, target) < 0)
                        continue;
                if (!plan_resolve(p, lexical, shown, 0) || !plan_shows(p, shown))
                        continue;
                char link[PATH_MAX];
                if (jr_snprintf(link, sizeof link, "%s/%s", base, de->d_name) < 0)
                        continue;
                /* Only the link and the way to it: its target is in the plan. */
                struct walk add = { .p = p, .record = 1 };
                r = walk(&add, link, 0, err);
                if (r == -ELOOP)
                        r = 0;  /* a loop on the host is not ours to fix */
        }
        closedir(d);
        return r;
}

int mntplan_add_maps(struct mnt_plan *p, const char *maps, const char *exclude,
                     struct jr_err *err)
{
        char prev[PATH_MAX] = "";
        for (const char *line = maps; line && *line;) {
                const char *eol = strchr(line, '\n');
                size_t len = eol ? (size_t)(eol - line) : strlen(line);
                const char *slash = memchr(line, '/', len);
                /* Only code: the loader's objects are mapped executable
                 * (their other segments lie beside them). A file the
                 * supervisor maps as data (a database's shared memory, its
                 * registry) is none of the jail's business. */
                const char *sp = memchr(line, ' ', len);
                if (!sp || (size_t)(sp - line) + 4 >= len || sp[3] != 'x')
                        slash = NULL;
                if (slash) {
                        char path[PATH_MAX];
                        size_t plen = len - (size_t)(slash - line);
                        static const char deleted[] = " (deleted)";
                        if (plen < sizeof path) {
                                memcpy(path, slash, plen);
                                path[plen] = '\0';
                                size_t dl = sizeof deleted - 1;
                                int gone = plen > dl && strcmp(path + plen - dl, deleted) == 0;
                                if (!gone && (!exclude || strcmp(path, exclude) != 0)) {
                                        path_pop(path);  /* the loader's directory */
                                        /* mappings of one object come in a row */
                                        if (path[0] && strcmp(path, prev) != 0) {
                                                memcpy(prev, path, sizeof prev);
                                                int r = mntplan_add(p, path, err);
                                                if (r < 0)
                                                        return r;
                                        }
                                }
                        }
                }
                line = eol ? eol + 1 : NULL;
        }
        return 0;
}

static int entry_cmp(const void *a, const void *b)
{
        return strcmp(((const struct mnt_entry *)a)->path, ((const struct mnt_entry *)b)->path);
}

void mntplan_finish(struct mnt_plan *p)
{
        qsort(p->v, p->n, sizeof *p->v, entry_cmp);
        size_t out = 0;
        for (size_t i = 0; i < p->n; i++) {
                int covered = 0;
                for (size_t j = 0; j < out && !covered; j++)
                        covered = p->v[j].op == MNT_OP_BIND && path_within(p->v[i].path, p->v[j].path);
                if (!covered)
                        p->v[out++] = p->v[i];
        }
        p->n = out;
}

int mntplan_add_bound(struct mnt_plan *p, const char *path, struct jr_err *err)
{
        if (path[0] != '/' || strlen(path) >= PATH_MAX)
                return jr_fail(err, EINVAL, "bound path '%s'", path);
        return plan_put(p, MNT_OP_BIND, 1, path, NULL, err);
}
