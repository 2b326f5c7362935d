/* The jail's seccomp filters as classic BPF: the one thing about seccomp
 * both sides share. policy/filtgen writes them at build time (into the
 * generated policy/seccomp_bpf.c); the jail only loads them
 * (jail/filt.h). */
#ifndef JR_FILTBPF_H
#define JR_FILTBPF_H

#include <linux/filter.h>

/* The filters by kind: profile worker and strategy; profile exec (also
 * execve and fork); profile exec that may also open TCP sockets (a
 * session whose package installs reach an index through jaild's relay,
 * its network namespace holding only lo). */
enum filt_kind { FILT_WORKER, FILT_EXEC, FILT_EXEC_INET };
extern const struct sock_filter filt_bpf_worker[], filt_bpf_exec[], filt_bpf_exec_inet[];
extern const unsigned short filt_bpf_worker_len, filt_bpf_exec_len, filt_bpf_exec_inet_len;

#endif
