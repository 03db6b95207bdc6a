#!/bin/bash
# Entrypoint of the urgentflow Slurm container (deploy/slurm/Dockerfile).
#   run     start munged, slurmctld, slurmd c1 and c2, then sshd in the foreground (the default)
#   health  exit 0 when slurmctld answers and a node takes jobs, and sshd listens
# $URGENTFLOW_SSH_DIR must hold authorized_keys (the public keys allowed to log in as `urgent`); its
# ssh_host_ed25519_key is used when present (so clients can pin it), else one is made for this container.
set -euo pipefail

SSH_DIR=${URGENTFLOW_SSH_DIR:-/etc/urgentflow/ssh}
RUN_SSH=/run/urgentflow-ssh
MUNGE_KEY_KEPT=/var/spool/slurm/munge.key
NODES=(c1 c2)

die() { echo "urgentflow-slurm: $*" >&2; exit 1; }

wait_for() { # SECONDS WHAT COMMAND...
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || die "$what not ready within the time allowed"
    sleep 0.5
  done
}

start_munge() {
  # slurmctld and every slurmd run in this container: a key of its own is enough. It is kept with the
  # Slurm state (a volume in compose), so saved jobs stay valid across restarts.
  if [ ! -s "$MUNGE_KEY_KEPT" ]; then
    (umask 077 && dd if=/dev/urandom of="$MUNGE_KEY_KEPT" bs=1024 count=1 status=none)
  fi
  install -d -o munge -g munge -m 700 /etc/munge
  install -o munge -g munge -m 400 "$MUNGE_KEY_KEPT" /etc/munge/munge.key
  install -d -o munge -g munge -m 755 /run/munge
  runuser -u munge -- /usr/sbin/munged
  wait_for 15 munged sh -c 'munge -n | unmunge'
}

prepare_ssh() {
  [ -s "$SSH_DIR/authorized_keys" ] \
    || die "$SSH_DIR/authorized_keys is missing: mount a directory with the client public key (compose: airflow-init writes it)"
  # sshd wants root-owned files with strict modes, whoever owns the mounted ones
  install -o root -g root -m 644 "$SSH_DIR/authorized_keys" /etc/ssh/authorized/urgent
  install -d -m 700 "$RUN_SSH"
  if [ -s "$SSH_DIR/ssh_host_ed25519_key" ]; then
    install -o root -g root -m 600 "$SSH_DIR/ssh_host_ed25519_key" "$RUN_SSH/ssh_host_ed25519_key"
  else
    echo "urgentflow-slurm: no host key in $SSH_DIR: generating one for this container" >&2
    ssh-keygen -q -t ed25519 -N '' -C urgentflow-slurm -f "$RUN_SSH/ssh_host_ed25519_key"
  fi
  /usr/sbin/sshd -t -f /etc/ssh/sshd_config.urgentflow
}

nodes_up() { sinfo -h -N -o '%N %T' | grep -qE ' (idle|mixed|allocated)'; }

run() {
  prepare_ssh
  install -d -m 755 /var/spool/slurm /var/spool/slurm/ctld
  start_munge
  slurmctld
  wait_for 30 slurmctld scontrol ping
  local node
  for node in "${NODES[@]}"; do slurmd -N "$node"; done
  wait_for 60 "the nodes" nodes_up
  echo "urgentflow-slurm: cluster $(scontrol show config | awk '$1 == "ClusterName" {print $3}') up: $(sinfo -h -N -o '%N=%T' | tr '\n' ' ')"
  exec /usr/sbin/sshd -D -e -f /etc/ssh/sshd_config.urgentflow
}

health() {
  scontrol ping | grep -q 'is UP' && nodes_up && [ -s /run/sshd-urgentflow.pid ] \
    && kill -0 "$(cat /run/sshd-urgentflow.pid)"
}

case "${1:-run}" in
  run) run ;;
  health) health ;;
  *) exec "$@" ;;
esac
