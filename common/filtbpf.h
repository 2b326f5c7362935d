/* The jail's seccomp filters as classic BPF: the one thing about seccomp
 * both sides share. policy/filtgen writes them at build time (into the
 * generated policy/seccomp_bpf.c); the jail only loads them
 * (jail/filt.h). */
#ifndef JR_FILTBPF_H
#define JR_FILTBPF_H

#include <linux/filter.h>

/* Profile worker and strategy, and profile exec (also execve and fork). */
extern const struct sock_filter filt_bpf_worker[], filt_bpf_exec[];
extern const unsigned short filt_bpf_worker_len, filt_bpf_exec_len;

#endif
