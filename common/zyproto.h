/* A warm zygote (jailrun-zygote, jail/zygote.c) and the supervisor that
 * started it (supervisor/engine/warm.c) speak over a SOCK_SEQPACKET pair:
 * one fixed struct per datagram, descriptors attached. */
#ifndef JR_ZYPROTO_H
#define JR_ZYPROTO_H

#include <stdint.h>

#define ZY_MAGIC 0x776a727aU  /* "zrjw" */

/* The zygote's end of the pair. */
#define ZY_CTL_FD 3

/* zygote -> supervisor, once: ready (errnum 0; msg names modules that
 * failed to load, if any) or why it could not be made. */
struct zy_hello {
        uint32_t magic;
        int32_t errnum;
        char msg[1024];
};

/* supervisor -> zygote: clone a jail. The descriptors come in this
 * order: ZY_FD_CGROUP only with has_cgroup (a v2 group to be born in),
 * then n_join v1 "tasks" files the child writes "0" to (moving itself
 * into the job's groups: engine/cgroup.h cg_job_join_fds). */
enum zy_fd { ZY_FD_STDIN, ZY_FD_STDOUT, ZY_FD_STDERR, ZY_FD_CHAN, ZY_FD_SYNC, ZY_FD_CONFIG, ZY_FD_CGROUP, ZY_FD__MAX };
#define ZY_MAX_JOIN 5
#define ZY_MAX_FDS (ZY_FD__MAX + ZY_MAX_JOIN)

struct zy_req {
        uint32_t magic;
        uint32_t has_cgroup;
        uint32_t n_join;
};

/* zygote -> supervisor: the child (the supervisor's own: CLONE_PARENT)
 * with its pidfd attached, or why not. late: it was not born in its
 * group and waits to be moved there (jail.h: JAIL_GO_CGROUPNS). */
struct zy_rep {
        uint32_t magic;
        int32_t errnum;
        int32_t pid;
        int32_t late;
        char msg[256];
};

#endif
