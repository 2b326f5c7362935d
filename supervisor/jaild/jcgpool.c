/* jaild's pool of job cgroups (engine/cgpool.h): made at start from the
 * cgroup_pool keys, handed to every job and worker, shown in /metrics. */
#include "config.h"

#include <stdio.h>
#include <syslog.h>

#include "supervisor/engine/cgpool.h"
#include "supervisor/jaild/daemon.h"

static void cgpool_log(void *data, const char *msg)
{
        jlog_msg(data, LOG_WARNING, NULL, "%s", msg);
}

/* Job groups made ahead (cgroup_pool; size 0: one made per job). */
int jcgpool_open(struct jaild *d, struct jr_err *err)
{
        if (!d->cfg->cgroup_pool_size)
                return 0;
        struct cg_pool_cfg c = { .parent = d->cfg->cgroup_parent, .size = d->cfg->cgroup_pool_size,
                                 .max = d->cfg->cgroup_pool_max, .log = cgpool_log, .log_data = d };
        return cg_pool_new(&d->loop, &c, &d->cgpool, err);
}

/* The pool of job cgroups: where groups were made and removed. */
void jcgpool_metrics(struct jaild *d, FILE *f)
{
        struct cg_pool_stats s;
        if (!d->cgpool)
                return;
        cg_pool_stats(d->cgpool, &s);
        fprintf(f, "# HELP jaild_cgroup_pool_groups Job cgroups of the pool, by state.\n"
                "# TYPE jaild_cgroup_pool_groups gauge\njaild_cgroup_pool_groups{state=\"ready\"} %u\n"
                "jaild_cgroup_pool_groups{state=\"in_use\"} %u\n"
                "# HELP jaild_cgroup_pool_taken_total Groups jobs took from the pool.\n"
                "# TYPE jaild_cgroup_pool_taken_total counter\njaild_cgroup_pool_taken_total %llu\n"
                "# HELP jaild_cgroup_pool_reused_total Of them, groups an earlier job had used.\n"
                "# TYPE jaild_cgroup_pool_reused_total counter\njaild_cgroup_pool_reused_total %llu\n"
                "# HELP jaild_cgroup_pool_made_total Groups made (mkdir): ahead of jobs, or on a start that found none ready.\n"
                "# TYPE jaild_cgroup_pool_made_total counter\njaild_cgroup_pool_made_total{when=\"ahead\"} %llu\n"
                "jaild_cgroup_pool_made_total{when=\"start\"} %llu\n"
                "# HELP jaild_cgroup_pool_removed_total Groups removed (rmdir), never on a job's path.\n"
                "# TYPE jaild_cgroup_pool_removed_total counter\njaild_cgroup_pool_removed_total %llu\n"
                "# HELP jaild_cgroup_pool_retired_total Groups that could not be reused with exact accounting.\n"
                "# TYPE jaild_cgroup_pool_retired_total counter\njaild_cgroup_pool_retired_total %llu\n",
                s.ready, s.in_use, (unsigned long long)s.taken, (unsigned long long)s.reused,
                (unsigned long long)s.made_ahead, (unsigned long long)s.made_on_start, (unsigned long long)s.removed,
                (unsigned long long)s.retired);
}
