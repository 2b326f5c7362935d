/* libcurl, loaded when a job first makes an HTTP request rather than when
 * jailrun starts. Debian's libcurl brings about thirty libraries (TLS,
 * SSH, LDAP, Kerberos, IDN, ...): loading them cost every job ~5 ms, and
 * every jail cloned from us mapped them too, for nothing, in the many jobs
 * that never call ctx.http. Each function below is the library's own,
 * reached through dlopen(3) of its stable soname on first use; if it
 * cannot be loaded, the calls fail the way libcurl's do when it cannot
 * initialise, and ctx.http answers with that error. */
#include "config.h"

/* The type-checking macros would rename the definitions below. */
#define CURL_DISABLE_TYPECHECK 1
#include <curl/curl.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>

#define CURL_SONAME "libcurl.so.4"

/* Every entry point jailrun uses, by name. */
#define CURL_FUNCS(X)                                                                                           \
        X(CURLcode, curl_global_init, (long))                                                                \
        X(CURL *, curl_easy_init, (void))                                                                    \
        X(CURLcode, curl_easy_setopt, (CURL *, CURLoption, ...))                                             \
        X(CURLcode, curl_easy_getinfo, (CURL *, CURLINFO, ...))                                              \
        X(void, curl_easy_cleanup, (CURL *))                                                                 \
        X(const char *, curl_easy_strerror, (CURLcode))                                                      \
        X(char *, curl_easy_escape, (CURL *, const char *, int))                                             \
        X(void, curl_free, (void *))                                                                         \
        X(struct curl_slist *, curl_slist_append, (struct curl_slist *, const char *))                       \
        X(void, curl_slist_free_all, (struct curl_slist *))                                                  \
        X(CURLU *, curl_url, (void))                                                                         \
        X(void, curl_url_cleanup, (CURLU *))                                                                 \
        X(CURLUcode, curl_url_get, (CURLU *, CURLUPart, char **, unsigned int))                        \
        X(CURLUcode, curl_url_set, (CURLU *, CURLUPart, const char *, unsigned int))                         \
        X(CURLM *, curl_multi_init, (void))                                                                  \
        X(CURLMcode, curl_multi_setopt, (CURLM *, CURLMoption, ...))                                         \
        X(CURLMcode, curl_multi_add_handle, (CURLM *, CURL *))                                               \
        X(CURLMcode, curl_multi_remove_handle, (CURLM *, CURL *))                                            \
        X(CURLMcode, curl_multi_socket_action, (CURLM *, curl_socket_t, int, int *))                         \
        X(CURLMcode, curl_multi_assign, (CURLM *, curl_socket_t, void *))                                    \
        X(CURLMsg *, curl_multi_info_read, (CURLM *, int *))                                                 \
        X(CURLMcode, curl_multi_cleanup, (CURLM *))

static struct {
#define FIELD(ret, name, args) ret(*name) args;
        CURL_FUNCS(FIELD)
#undef FIELD
} lib;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int loaded;

static void load(void)
{
        void *h = dlopen(CURL_SONAME, RTLD_NOW | RTLD_LOCAL);
        if (!h)
                return;
        int ok = 1;
#define RESOLVE(ret, name, args)                                          \
        if (!(*(void **)&lib.name = dlsym(h, #name)))                     \
                ok = 0;
        CURL_FUNCS(RESOLVE)
#undef RESOLVE
        loaded = ok;
}

/* 1 once libcurl is loaded with every function jailrun calls. */
static int have_curl(void)
{
        pthread_once(&once, load);
        return loaded;
}

CURLcode curl_global_init(long flags)
{
        return have_curl() ? lib.curl_global_init(flags) : CURLE_FAILED_INIT;
}

CURL *curl_easy_init(void)
{
        return have_curl() ? lib.curl_easy_init() : NULL;
}

/* The option's one argument is a long, a curl_off_t, an object or a
 * function pointer: each travels as one 64-bit word, which is how libcurl
 * itself reads it back with va_arg. */
CURLcode curl_easy_setopt(CURL *h, CURLoption option, ...)
{
        va_list ap;
        va_start(ap, option);
        void *arg = va_arg(ap, void *);
        va_end(ap);
        return have_curl() ? lib.curl_easy_setopt(h, option, arg) : CURLE_FAILED_INIT;
}

CURLcode curl_easy_getinfo(CURL *h, CURLINFO info, ...)
{
        va_list ap;
        va_start(ap, info);
        void *arg = va_arg(ap, void *);
        va_end(ap);
        return have_curl() ? lib.curl_easy_getinfo(h, info, arg) : CURLE_FAILED_INIT;
}

void curl_easy_cleanup(CURL *h)
{
        if (have_curl())
                lib.curl_easy_cleanup(h);
}

const char *curl_easy_strerror(CURLcode code)
{
        return have_curl() ? lib.curl_easy_strerror(code) : "libcurl (" CURL_SONAME ") could not be loaded";
}

char *curl_easy_escape(CURL *h, const char *s, int len)
{
        return have_curl() ? lib.curl_easy_escape(h, s, len) : NULL;
}

void curl_free(void *p)
{
        if (p && have_curl())
                lib.curl_free(p);
}

struct curl_slist *curl_slist_append(struct curl_slist *list, const char *data)
{
        return have_curl() ? lib.curl_slist_append(list, data) : NULL;
}

void curl_slist_free_all(struct curl_slist *list)
{
        if (list && have_curl())
                lib.curl_slist_free_all(list);
}

CURLU *curl_url(void)
{
        return have_curl() ? lib.curl_url() : NULL;
}

void curl_url_cleanup(CURLU *u)
{
        if (u && have_curl())
                lib.curl_url_cleanup(u);
}

CURLUcode curl_url_get(CURLU *u, CURLUPart what, char **part, unsigned int flags)
{
        return have_curl() ? lib.curl_url_get(u, what, part, flags) : CURLUE_OUT_OF_MEMORY;
}

CURLUcode curl_url_set(CURLU *u, CURLUPart what, const char *part, unsigned int flags)
{
        return have_curl() ? lib.curl_url_set(u, what, part, flags) : CURLUE_OUT_OF_MEMORY;
}

CURLM *curl_multi_init(void)
{
        return have_curl() ? lib.curl_multi_init() : NULL;
}

CURLMcode curl_multi_setopt(CURLM *m, CURLMoption option, ...)
{
        va_list ap;
        va_start(ap, option);
        void *arg = va_arg(ap, void *);
        va_end(ap);
        return have_curl() ? lib.curl_multi_setopt(m, option, arg) : CURLM_INTERNAL_ERROR;
}

CURLMcode curl_multi_add_handle(CURLM *m, CURL *e)
{
        return have_curl() ? lib.curl_multi_add_handle(m, e) : CURLM_INTERNAL_ERROR;
}

CURLMcode curl_multi_remove_handle(CURLM *m, CURL *e)
{
        return have_curl() ? lib.curl_multi_remove_handle(m, e) : CURLM_INTERNAL_ERROR;
}

CURLMcode curl_multi_socket_action(CURLM *m, curl_socket_t s, int mask, int *running)
{
        return have_curl() ? lib.curl_multi_socket_action(m, s, mask, running) : CURLM_INTERNAL_ERROR;
}

CURLMcode curl_multi_assign(CURLM *m, curl_socket_t s, void *p)
{
        return have_curl() ? lib.curl_multi_assign(m, s, p) : CURLM_INTERNAL_ERROR;
}

CURLMsg *curl_multi_info_read(CURLM *m, int *left)
{
        return have_curl() ? lib.curl_multi_info_read(m, left) : NULL;
}

CURLMcode curl_multi_cleanup(CURLM *m)
{
        return have_curl() ? lib.curl_multi_cleanup(m) : CURLM_INTERNAL_ERROR;
}
