# jaild(8) on every client node: a system job, one allocation a node, its
# API socket on the node (/run/jaild/jaild.sock) for the orchestrators that
# run there, ctx.state shared by all nodes through one Redis.
# docs/deploy.md explains each choice. Run it with: nomad job run jaild.nomad
#
# Driver raw_exec: jaild is the node's jail supervisor, installed on the
# node (make install: /usr/local/sbin/jaild) as under systemd, and runs as
# root on the node itself. It makes the isolation (namespaces, seccomp,
# cgroups, one host uid a jail); a container around it would have to be
# privileged to let it (docs/deploy.md, "Kubernetes": seccomp, masked
# /proc, read-only cgroupfs), so it would isolate nothing and add the
# cgroup placement work of the Kubernetes start script. raw_exec must be
# enabled on the clients:  plugin "raw_exec" { config { enabled = true } }
#
# What is not here: the Redis server (yours; appendonly yes and
# appendfsync always, or ctx.state refuses it).
job "jaild" {
  type        = "system"
  datacenters = ["*"]

  constraint {
    attribute = "${attr.kernel.name}"
    value     = "linux"
  }

  # Only where jails should run: set meta { jaild = "enabled" } on those
  # clients.
  constraint {
    attribute = "${meta.jaild}"
    value     = "enabled"
  }

  # One node at a time: its workers stop while its jaild restarts, and
  # come back from the registry (on the node) with their state (Redis).
  update {
    max_parallel = 1
    stagger      = "30s"
  }

  group "jaild" {
    restart {
      attempts = 5
      interval = "5m"
      delay    = "5s"
      mode     = "delay"
    }

    task "jaild" {
      driver = "raw_exec"

      config {
        command = "/usr/local/sbin/jaild"
        args    = ["--config", "${NOMAD_TASK_DIR}/jaild.json"]
      }

      # jaild's configuration (jaild(8) CONFIGURATION); check a change with
      # jaild --config FILE --check before it is run. Rendered by the
      # client (root) with mode 0600: jaild refuses a file others may
      # write. The socket is open to all (0666) so that allow decides:
      # root, and here the orchestrator tasks that run with group 2000, by
      # the kernel's peer credentials. Per node: the uid range no other
      # user of the node's uids has; the cgroup parent below the root of
      # each hierarchy, the node's own (docs/deploy.md).
      template {
        destination = "local/jaild.json"
        perms       = "0600"
        # SIGHUP: log_level, max_live_jobs and queue_wait change at once;
        # the other keys take a restart (a new version of this job).
        change_mode   = "signal"
        change_signal = "SIGHUP"
        data          = <<EOF
{
  "socket": {"path": "/run/jaild/jaild.sock", "mode": "0666"},
  "allow": {"gids": [2000]},
  "uid_range": {"lo": 200000, "hi": 265535},
  "cgroup_parent": "jaild",
  "state": {"backend": "redis",
            "redis": {"host": "10.0.0.5", "port": 6379, "db": 0}},
  "workspace_root": "/var/lib/jaild/workspaces",
  "registry": "/var/lib/jaild/registry.db",
  "max_live_jobs": 64,
  "queue_wait": 30,
  "log_level": "info"
}
EOF
      }

      # SIGTERM drains (ticks and jobs in flight finish, for at most 25 s);
      # what is left after kill_timeout is killed, and the jails die with
      # jaild (each has a parent-death signal). A client's max_kill_timeout
      # (30 s by default) caps this.
      kill_signal  = "SIGTERM"
      kill_timeout = "30s"

      # What Nomad reserves on the node for placement. The jails' cgroups
      # are jaild's (under cgroup_parent), not this task's: whatever limit
      # Nomad puts on the task's own cgroup binds jaild alone (~tens of
      # MiB); reserve here what the node's jails will use together, each
      # limited by its profile (limits.memory, .cpus, .pids).
      resources {
        cpu    = 500
        memory = 1024
      }
    }
  }
}
