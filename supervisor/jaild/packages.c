/* Packages for a session (POST /v1/sessions/{id}/packages): pip, inside
 * the session's own jail and interpreter, installs wheels from the
 * operator's wheel directory (sessions.packages.wheel_dir) or package
 * index (sessions.packages.index_url) into the session's site directory.
 * The directory is bound into the jail read-only for the install alone
 * (nsbind.c); the index is reached through a relay that exists for the
 * install alone and goes to the index only (relay.c); only wheels are taken
 * (--only-binary :all:), so nothing a package ships is run to install it,
 * and only pure-Python ones (py-none-any): the directory is the session's
 * noexec /scratch, where compiled code could not load. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>

#include "common/cleanup.h"
#include "supervisor/jaild/nsbind.h"
#include "supervisor/jaild/relay.h"
#include "supervisor/jaild/sesscheck.h"
#include "supervisor/jaild/session.h"

/* Seconds an install may take (it downloads nothing: a local directory). */
#define INSTALL_TIMEOUT_S 300.0

int packages_check(struct api_call *c, const json_t *names)
{
        char msg[256];
        if (session_package_names_check(names, msg, sizeof msg) < 0) {
                api_reply_error(c, 400, "ValueError", "%s", msg);
                return -EINVAL;
        }
        return 0;
}

/* The code the session runs: pip in a namespace of its own (the user's
 * globals see nothing of it), its modules dropped after. */
static char *install_code(const json_t *names, const char *source)
{
        _cleanup_free_ char *list = json_dumps(names, JSON_COMPACT | JSON_ENSURE_ASCII);
        char *code = NULL;
        if (!list)
                return NULL;
        int n = asprintf(&code,
                "exec(r'''\n"
                "import importlib, os, sys\n"
                "site = %s\n"
                "os.makedirs(site, exist_ok=True)\n"
                "before = set(sys.modules)\n"
                "cwd = os.getcwd()\n"
                "argv = ['install', '--isolated', '--target', site] + %s + [\n"
                "        '--only-binary', ':all:', '--no-cache-dir', '--disable-pip-version-check',\n"
                "        '--implementation', 'py', '--abi', 'none', '--platform', 'any', '--python-version', '3.11',\n"
                "        '--root-user-action', 'ignore', '--no-warn-script-location', '--upgrade'] + %s\n"
                "try:\n"
                "    os.chdir('/')  # nothing of the session's is read as a local path or module\n"
                "    from pip._internal.cli.main import main as pip_main\n"
                "    status = pip_main(argv)\n"
                "finally:\n"
                "    os.chdir(cwd)\n"
                "    for m in set(sys.modules) - before:\n"
                "        if m == 'pip' or m.startswith('pip.'):\n"
                "            del sys.modules[m]\n"
                "if site not in sys.path:\n"
                "    sys.path.insert(0, site)\n"
                "paths = os.environ.get('PYTHONPATH', '').split(os.pathsep)\n"
                "if site not in paths:\n"
                "    os.environ['PYTHONPATH'] = os.pathsep.join([site] + [p for p in paths if p])\n"
                "importlib.invalidate_caches()\n"
                "if status:\n"
                "    raise RuntimeError('pip could not install the packages (status %%d); its output says why. Sessions '\n"
                "                       'install pure-Python wheels only: nothing a session writes can run, so compiled '\n"
                "                       'code cannot load from its directory' %% status)\n"
                "''', {'__name__': '__jailrun_packages__'})\n",
                "'" SESSION_SITE "'", source, list);
        return n < 0 ? NULL : code;
}

void api_session_packages(void *data, struct api_call *c, const char *id, json_t *body)
{
        struct jaild *d = data;  /* body: checked against the route's fields (api_routes.c) */
        struct session *s = session_live_or_answer(d, c, id);
        if (!s)
                return;
        if (!d->cfg->sessions.wheel_dir && !d->cfg->sessions.index_url)
                return api_reply_error(c, 409, "PackagesUnavailable", "%s", SESSION_NO_PACKAGES);
        json_t *names = json_object_get(body, "names");
        if (packages_check(c, names) < 0)
                return;
        if (packages_queue(s, c, names))
                cells_next(s);
}

struct cell *packages_queue(struct session *s, struct api_call *c, json_t *names)
{
        _cleanup_free_ char *code = install_code(names, "[]");  /* its source is filled in when it runs */
        if (!code) {
                if (c)
                        api_reply_error(c, 500, "InternalError", "out of memory");
                return NULL;
        }
        struct cell *cl = cell_queue(s, c, code, strlen(code), INSTALL_TIMEOUT_S > s->timeout ? INSTALL_TIMEOUT_S
                                                                                             : s->timeout, 0);
        if (!cl)
                return NULL;
        cl->install = json_incref(names);
        jlog_msg(s->d, LOG_INFO, NULL, "session %s: installing %zu package(s)", s->id, json_array_size(names));
        return cl;
}

/* The wheel directory bound in, or the relay to the index opened; the
 * cell's code told where its packages come from. */
static int open_source(struct session *s, struct cell *cl, int pidfd, struct jr_err *err)
{
        const struct jaild_sessions_cfg *cfg = &s->d->cfg->sessions;
        char source[2560];
        unsigned port = 0;
        if (cfg->wheel_dir) {
                if (ns_bind(pidfd, cfg->wheel_dir, SESSION_WHEELS, err) < 0)
                        return -EIO;
                snprintf(source, sizeof source, "['--no-index', '--find-links', '%s']", SESSION_WHEELS);
        } else {
                if (relay_open(&s->relay, &s->d->loop, pidfd, cfg->index_url, &port, err) < 0)
                        return -EIO;
                /* The URL was checked at load: no quote, backslash or space. */
                snprintf(source, sizeof source, "['--index-url', '%s', '--proxy', 'http://127.0.0.1:%u']",
                         cfg->index_url, port);
        }
        cl->bound = 1;
        char *code = install_code(cl->install, source);
        if (!code)
                return jr_fail(err, ENOMEM, "the install's code");
        free(cl->code);
        cl->code = code;
        cl->len = strlen(code);
        return 0;
}

int packages_bind(struct session *s, struct cell *cl)
{
        struct jr_err err = { 0 };
        int pidfd = -1;
        if (!s->job || job_pid(s->job, &pidfd) <= 0)
                err = (struct jr_err){ ESRCH, "the session's jail is gone" };
        else if (open_source(s, cl, pidfd, &err) == 0)
                return 0;
        packages_unbind(s, cl);
        jlog_msg(s->d, LOG_WARNING, NULL, "session %s: %s", s->id, err.msg);
        if (cl->call)
                api_reply_error(cl->call, 500, "InternalError", "the wheel directory could not be made visible to "
                                "the session: %s", err.msg);
        cl->call = NULL;
        return -EIO;
}

void packages_unbind(struct session *s, struct cell *cl)
{
        struct jr_err err = { 0 };
        int pidfd = -1;
        if (!cl->bound)
                return;
        cl->bound = 0;
        relay_close(s->relay);  /* the way out closes */
        s->relay = NULL;
        if (!s->d->cfg->sessions.wheel_dir)
                return;
        if (!s->job || job_pid(s->job, &pidfd) <= 0)
                return;  /* the jail went, and its mounts with it */
        if (ns_bind(pidfd, NULL, SESSION_WHEELS, &err) < 0) {
                /* A session that keeps the wheels in view: it ends rather. */
                jlog_msg(s->d, LOG_ERR, NULL, "session %s: %s; the session is ended", s->id, err.msg);
                session_end(s, NULL);
        }
}
