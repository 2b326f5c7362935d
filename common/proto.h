/* The channel between supervisor and jail: one JSON object per
 * SOCK_SEQPACKET datagram. Limits, message types and the error categories
 * users see. Shared by both sides; nothing else crosses. */
#ifndef JR_PROTO_H
#define JR_PROTO_H

/* The child's end of the channel, fixed so the runtime can find it. */
#define CHAN_FD 3
/* A read-only file the supervisor hands the jail (a backtest's bars, in a
 * sealed memfd), or closed. */
#define DATA_FD 4

/* Hard cap on one datagram; larger is a protocol violation. */
#define CHAN_MAX_MSG (1024 * 1024)
/* Deepest JSON nesting accepted from the child (arrays and objects). */
#define CHAN_MAX_DEPTH 16
/* Most memory one message may take once decoded, estimated before it is
 * (CHAN_DECODED_CONTAINER bytes an object or array, CHAN_DECODED_VALUE a
 * comma-separated value): a megabyte of "[{},{},..." would otherwise take
 * ~90 MB of the supervisor's memory, outside the job's limits. A megabyte
 * of small numbers ("[0,0,...") takes ~17 MB, within it. */
#define CHAN_MAX_DECODED (32 * 1024 * 1024)
#define CHAN_DECODED_CONTAINER 256
#define CHAN_DECODED_VALUE 32
/* Log contract (design.md §4): per message, per batch. */
#define LOG_MAX_CHARS 4000
#define LOG_MAX_BATCH 20
/* A batch is also flushed once it holds this many encoded bytes, so one
 * datagram always fits the default socket send buffer. */
#define LOG_MAX_BATCH_BYTES (64 * 1024)

/* A backtest's jail names itself this and the bar it is in (PR_SET_NAME),
 * so a bar stuck in native code can still be named. */
#define BAR_COMM_PREFIX "jr-bar "

/* Most bars one "bars" message may report. */
#define BARS_MAX_BATCH 4096

/* Most violations one check message may list (the validator's 200 and a
 * line saying how many more). */
#define CHECK_MAX_VIOLATIONS 201

/* child -> supervisor */
enum msg_type {
        MSG_JAILED,     /* sent by the jail's C code once every check holds,
                           before any user code: nothing after it can be a
                           set-up report */
        MSG_FATAL,      /* set-up failed: step, errno, message (before JAILED only) */
        MSG_READY,      /* worker: module loaded, ready for ticks */
        MSG_LOG,        /* {"entries": [{"level", "msg"}, ...]} */
        MSG_RESULT,     /* {"id", "ok": true} or {"id", "error": {type, message, line}} */
        MSG_CHECK,      /* --check: {"violations": [{line, col, type, reason}, ...]} */
        MSG_CALL,       /* {"id": N >= 1, "op": "state.get", "args": {...}}: a ctx call */
        MSG_BARS,       /* backtest: {"first", "us": [...], "signals": [...], "errors": [...]} */
        MSG__MAX,
};

/* supervisor -> child: {"type":"run","id":N,"op":"tick"}, {"type":"shutdown"}
 * and {"type":"reply","id":N,"result":...}, the answer to call N. */

/* Bytes of socket buffer on each end of the channel: a reply and the
 * payload after it (up to 8 MiB: an HTTP body) must fit at once. */
#define CHAN_SOCKBUF (16 * CHAN_MAX_MSG)

enum log_level {
        LOG_LEVEL_DEBUG,
        LOG_LEVEL_INFO,
        LOG_LEVEL_WARN,
        LOG_LEVEL_ERROR,
        LOG_LEVEL__MAX,
};

/* How a job ended; the words users see in --json "status". */
enum job_status {
        JOB_OK,
        JOB_ERROR,      /* user code raised */
        JOB_TIMEOUT,    /* wall clock */
        JOB_CPU_TIME,   /* CPU-time limit */
        JOB_MEMORY,     /* the kernel killed at the memory limit */
        JOB_PIDS,       /* failed after forks were refused at the task limit */
        JOB_SIGNAL,     /* killed by a signal */
        JOB_PROTOCOL,   /* ProtocolError: the child broke the channel contract */
        JOB_SETUP,      /* the jail could not be set up */
        JOB_INTERNAL,
};

/* Exit statuses of jailrun (man/jailrun.1). */
#define EXIT_USER_ERROR 1
#define EXIT_USAGE 2
#define EXIT_SETUP 3
#define EXIT_TIMEOUT 124
#define EXIT_OOM 137    /* 128 + SIGKILL, as the OOM killer's own */

#endif
