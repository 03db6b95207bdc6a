# Test-bed part "slurm": two real Slurm 22.05 clusters (alpha, beta) side by side on this machine,
# one slurmdbd (accounting in the local MariaDB) serving both, and munge.
#
#   alpha: slurmctld :6917, nodes alpha-n1/alpha-n2 (slurmd :6921/:6922), partitions debug (default), long
#   beta:  slurmctld :7017, nodes beta-n1/beta-n2 (slurmd :7021/:7022), partition debug (default)
#   slurmdbd :6919, database slurm_acct_db on 127.0.0.1:3306 (own user, password generated once)
#
# Every node claims 4 CPUs and 4000 MB (SlurmdParameters=config_overrides), whatever the host has.
# Memory is enforced with cgroup/v1 (this host has a v1/v2 hybrid layout, where cgroup/v2 makes slurmd
# exit): a job over its --mem ends OUT_OF_MEMORY.
# The Slurm daemons listen on 0.0.0.0 (Slurm has no bind-address setting); nothing outside this
# machine is expected to reach them.
#
# Reach a cluster from this host:  SLURM_CONF=$TESTBED_DIR/slurm/alpha/slurm.conf sinfo
# (over SSH as the test user: see the sshd part).
# State lives in $TESTBED_DIR/slurm/: config, state, spool, pid and log files; stop keeps it.
# shellcheck shell=bash

TB_SLURM_DIR=$TESTBED_DIR/slurm
TB_SLURM_DBD_PORT=${TB_SLURM_DBD_PORT:-6919}
TB_SLURM_DB_HOST=${TB_SLURM_DB_HOST:-127.0.0.1}
TB_SLURM_DB_PORT=${TB_SLURM_DB_PORT:-3306}
TB_SLURM_DB_ADMIN=${TB_SLURM_DB_ADMIN:-root} # MariaDB account that may create the database and user
TB_SLURM_DB_NAME=slurm_acct_db
TB_SLURM_DB_USER=urgentflow_slurm
# cluster: "slurmctld-port node:port node:port ..."
declare -A TB_SLURM_CLUSTERS=(
  [alpha]="6917 alpha-n1:6921 alpha-n2:6922"
  [beta]="7017 beta-n1:7021 beta-n2:7022"
)
TB_SLURM_CLUSTER_ORDER=(alpha beta)
declare -A TB_SLURM_RESTARTED=() # node -> epoch when this run started its slurmd
TB_SLURM_NODE_CPUS=4
TB_SLURM_NODE_MEM=4000

# ---------------------------------------------------------------------------------------------------
# helpers


# _slurm_put FILE MODE CONTENT: write FILE only when its content changes; true when it changed.
_slurm_put() {
  local file=$1 mode=$2 content=$3
  if [ -f "$file" ] && [ "$(cat "$file")" = "$content" ]; then
    chmod "$mode" "$file"
    return 1
  fi
  printf '%s\n' "$content" >"$file.tmp"
  chmod "$mode" "$file.tmp"
  mv "$file.tmp" "$file"
  return 0
}


_slurm_kill() { stop_pidfile "$1" "$2" 15; }

_slurm_conf_of() { printf '%s/%s/slurm.conf' "$TB_SLURM_DIR" "$1"; }
_slurm_nodes_of() { local a; read -r -a a <<<"${TB_SLURM_CLUSTERS[$1]}"; printf '%s\n' "${a[@]:1}"; }
_slurm_ctld_port_of() { local a; read -r -a a <<<"${TB_SLURM_CLUSTERS[$1]}"; printf '%s' "${a[0]}"; }

_slurm_munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

# ---------------------------------------------------------------------------------------------------
# munge

_slurm_munge_start() {
  local d=$TB_SLURM_DIR/munge
  install -d -o munge -g munge -m 700 "$d"
  if [ ! -s /etc/munge/munge.key ]; then
    log "creating the munge key /etc/munge/munge.key"
    install -d -o munge -g munge -m 700 /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  chown munge:munge /etc/munge/munge.key
  chmod 400 /etc/munge/munge.key
  install -d -o munge -g munge -m 755 /run/munge
  if pid_alive "$d/munged.pid"; then
    log "munged already running (pid $(head -1 "$d/munged.pid"))"
    return 0
  fi
  if _slurm_munge_ok; then
    log "munged: using the one already running on this machine (not started by us, left alone by stop)"
    return 0
  fi
  # munged insists on owning its log file
  [ -f "$d/munged.log" ] || install -o munge -g munge -m 640 /dev/null "$d/munged.log"
  chown munge:munge "$d/munged.log"
  runuser -u munge -- /usr/sbin/munged --pid-file="$d/munged.pid" --log-file="$d/munged.log" \
    </dev/null >>"$d/munged.log" 2>&1 || fail_with_log "munged did not start" "$d/munged.log"
  wait_until 15 "munged" _slurm_munge_ok || fail_with_log "munged does not answer (munge -n | unmunge)" "$d/munged.log"
}

# ---------------------------------------------------------------------------------------------------
# slurmdbd and its database

_slurm_mysql_admin() { mysql -h "$TB_SLURM_DB_HOST" -P "$TB_SLURM_DB_PORT" -u "$TB_SLURM_DB_ADMIN" "$@"; }

_slurm_db_setup() {
  local pwfile=$TB_SLURM_DIR/dbd/db-password
  if [ ! -s "$pwfile" ]; then
    (umask 077 && head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$pwfile")
  fi
  local pw
  pw=$(cat "$pwfile")
  _slurm_mysql_admin -e 'SELECT 1' >/dev/null 2>&1 \
    || die "cannot reach MariaDB at $TB_SLURM_DB_HOST:$TB_SLURM_DB_PORT as '$TB_SLURM_DB_ADMIN' (no password): slurmdbd needs it. Is mariadbd running?"
  local host out
  for host in localhost 127.0.0.1; do
    out=$(_slurm_mysql_admin 2>&1 <<SQL
CREATE DATABASE IF NOT EXISTS $TB_SLURM_DB_NAME;
CREATE USER IF NOT EXISTS '$TB_SLURM_DB_USER'@'$host' IDENTIFIED BY '$pw';
ALTER USER '$TB_SLURM_DB_USER'@'$host' IDENTIFIED BY '$pw';
GRANT ALL PRIVILEGES ON $TB_SLURM_DB_NAME.* TO '$TB_SLURM_DB_USER'@'$host';
SQL
    ) || die "creating the database $TB_SLURM_DB_NAME / user $TB_SLURM_DB_USER in MariaDB failed: $out"
  done
}

_slurm_dbd_conf() {
  local d=$TB_SLURM_DIR/dbd
  cat <<EOF
# slurmdbd of the urgentflow test bed (generated by scripts/testbed.d/slurm.sh; edits are overwritten)
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$TB_SLURM_DBD_PORT
SlurmUser=root
DebugLevel=info
LogFile=$d/slurmdbd.log
PidFile=$d/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=$TB_SLURM_DB_HOST
StoragePort=$TB_SLURM_DB_PORT
StorageUser=$TB_SLURM_DB_USER
StoragePass=$(cat "$d/db-password")
StorageLoc=$TB_SLURM_DB_NAME
EOF
}

# sacctmgr answers (any cluster's slurm.conf points at the shared slurmdbd)
_slurm_dbd_ok() { SLURM_CONF=$(_slurm_conf_of alpha) timeout 10 sacctmgr -n -P show cluster format=cluster; }

_slurm_dbd_start() {
  local d=$TB_SLURM_DIR/dbd
  if pid_alive "$d/slurmdbd.pid"; then
    log "slurmdbd already running (pid $(head -1 "$d/slurmdbd.pid"), port $TB_SLURM_DBD_PORT)"
    return 0
  fi
  need_port "$TB_SLURM_DBD_PORT" slurmdbd
  _slurm_db_setup
  # slurmdbd finds slurmdbd.conf next to $SLURM_CONF (there is no -f for it)
  SLURM_CONF=$d/slurm.conf slurmdbd </dev/null >>"$d/slurmdbd.log" 2>&1 \
    || fail_with_log "slurmdbd did not start" "$d/slurmdbd.log"
  wait_until 120 "slurmdbd (port $TB_SLURM_DBD_PORT)" _slurm_dbd_ok \
    || fail_with_log "slurmdbd does not answer sacctmgr within 120 s" "$d/slurmdbd.log"
}

# ---------------------------------------------------------------------------------------------------
# the clusters

_slurm_cluster_conf() {
  local c=$1 d=$TB_SLURM_DIR/$1 ctld_port node port np first_port nodes=()
  ctld_port=$(_slurm_ctld_port_of "$c")
  cat <<EOF
# Slurm cluster "$c" of the urgentflow test bed (generated by scripts/testbed.d/slurm.sh; edits are
# overwritten). Commands reach it with SLURM_CONF=$d/slurm.conf.
ClusterName=$c
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
StateSaveLocation=$d/state
SlurmdSpoolDir=$d/spool/%n
SlurmctldPidFile=$d/run/slurmctld.pid
SlurmdPidFile=$d/run/slurmd-%n.pid
SlurmctldLogFile=$d/log/slurmctld.log
SlurmdLogFile=$d/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
MinJobAge=300
Waittime=0
# fast scheduling: a submitted job runs within about a second
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,bf_interval=1,default_queue_depth=200,bf_continue
SchedulerTimeSlice=5
MessageTimeout=10
# reject at submission a job that no partition limit allows (instead of leaving it pending forever)
EnforcePartLimits=ALL
# nodes claim what the host may not have
SlurmdParameters=config_overrides
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
# memory enforcement through cgroup/v1 (see cgroup.conf): over --mem -> OUT_OF_MEMORY
ProctrackType=proctrack/cgroup
TaskPlugin=task/cgroup
JobAcctGatherType=jobacct_gather/cgroup
JobAcctGatherFrequency=task=5
# accounting in the shared slurmdbd; associations are not enforced, so any Unix user may submit
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$TB_SLURM_DBD_PORT
JobCompType=jobcomp/none
EOF
  while read -r np; do
    node=${np%%:*} port=${np##*:}
    nodes+=("$node")
    install -d -m 755 "$d/spool/$node"
    first_port=${first_port:-$port}
    echo "NodeName=$node NodeHostname=localhost NodeAddr=127.0.0.1 Port=$port CPUs=$TB_SLURM_NODE_CPUS RealMemory=$TB_SLURM_NODE_MEM State=UNKNOWN"
  done < <(_slurm_nodes_of "$c")
  local list
  list=$(IFS=,; echo "${nodes[*]}")
  echo "SlurmdPort=$first_port"
  echo "PartitionName=debug Nodes=$list Default=YES MaxTime=60 State=UP"
  if [ "$c" = alpha ]; then
    echo "PartitionName=long Nodes=$list Default=NO MaxTime=1-00:00:00 State=UP"
  fi
}

_slurm_cgroup_conf() {
  cat <<'EOF'
# cgroup/v1: this host mixes v1 controllers with a v2 mount (hybrid), which cgroup/v2 refuses.
CgroupPlugin=cgroup/v1
CgroupMountpoint=/sys/fs/cgroup
ConstrainCores=no
ConstrainRAMSpace=yes
AllowedRAMSpace=100
ConstrainSwapSpace=no
ConstrainDevices=no
EOF
}

_slurm_ctld_ok() { SLURM_CONF=$(_slurm_conf_of "$1") timeout 10 scontrol ping 2>/dev/null | grep -q 'is UP'; }

# every node of the cluster answers and is usable (idle, or busy with jobs)
_slurm_nodes_ok() {
  local states
  states=$(SLURM_CONF=$(_slurm_conf_of "$1") timeout 10 sinfo -h -N -o '%T' 2>/dev/null) || return 1
  [ -n "$states" ] || return 1
  ! grep -qvE '^(idle|mixed|allocated|completing)$' <<<"$states"
}

_slurm_cluster_write_conf() {
  local c=$1 d=$TB_SLURM_DIR/$1 changed=0
  install -d -m 755 "$d" "$d/log" "$d/run" "$d/spool"
  install -d -m 700 "$d/state"
  _slurm_put "$d/slurm.conf" 644 "$(_slurm_cluster_conf "$c")" && changed=1
  _slurm_put "$d/cgroup.conf" 644 "$(_slurm_cgroup_conf)" && changed=1
  return $((1 - changed))
}

_slurm_cluster_start() {
  local c=$1 d=$TB_SLURM_DIR/$1 conf ctld_port np node port changed=$2
  conf=$(_slurm_conf_of "$c")
  ctld_port=$(_slurm_ctld_port_of "$c")
  if [ "$changed" = 1 ] && pid_alive "$d/run/slurmctld.pid"; then
    log "WARNING: the configuration of cluster $c changed while it runs: apply it with 'scripts/testbed stop slurm; scripts/testbed start slurm'"
  fi
  # the cluster must be known to slurmdbd before its slurmctld starts
  if ! pid_alive "$d/run/slurmctld.pid" \
    && ! SLURM_CONF=$conf timeout 20 sacctmgr -n -P show cluster format=cluster | grep -qx "$c"; then
    SLURM_CONF=$conf timeout 20 sacctmgr -i add cluster "$c" >/dev/null \
      || fail_with_log "sacctmgr add cluster $c failed" "$TB_SLURM_DIR/dbd/slurmdbd.log"
    log "registered cluster $c in slurmdbd"
  fi
  if pid_alive "$d/run/slurmctld.pid"; then
    log "slurmctld of $c already running (pid $(head -1 "$d/run/slurmctld.pid"), port $ctld_port)"
  else
    need_port "$ctld_port" "slurmctld of cluster $c"
    slurmctld -f "$conf" </dev/null >>"$d/log/slurmctld.log" 2>&1 \
      || fail_with_log "slurmctld of cluster $c did not start" "$d/log/slurmctld.log"
  fi
  while read -r np; do
    node=${np%%:*} port=${np##*:}
    if pid_alive "$d/run/slurmd-$node.pid"; then
      log "slurmd $node already running (pid $(head -1 "$d/run/slurmd-$node.pid"), port $port)"
      continue
    fi
    TB_SLURM_RESTARTED[$node]=$(date +%s)
    need_port "$port" "slurmd $node"
    slurmd -f "$conf" -N "$node" </dev/null >>"$d/log/slurmd-$node.log" 2>&1 \
      || fail_with_log "slurmd $node did not start" "$d/log/slurmd-$node.log"
  done < <(_slurm_nodes_of "$c")
}

_slurm_cluster_wait() {
  local c=$1 d=$TB_SLURM_DIR/$1 np node
  wait_until 60 "slurmctld of $c" _slurm_ctld_ok "$c" \
    || fail_with_log "slurmctld of cluster $c does not answer 'scontrol ping' within 60 s" "$d/log/slurmctld.log"
  if ! wait_until 60 "nodes of $c" _slurm_nodes_ok "$c"; then
    while read -r np; do
      node=${np%%:*}
      pid_alive "$d/run/slurmd-$node.pid" \
        || fail_with_log "slurmd $node of cluster $c is not running" "$d/log/slurmd-$node.log"
    done < <(_slurm_nodes_of "$c")
    fail_with_log "nodes of cluster $c are not usable within 60 s: $(SLURM_CONF=$(_slurm_conf_of "$c") sinfo -h -N -o '%N=%T' 2>&1 | tr '\n' ' ')" \
      "$d/log/slurmctld.log"
  fi
  _slurm_cancel_phantoms "$c"
}

# Jobs slurmctld still calls RUNNING on a node whose slurmd we have just started, and that started
# before it: their processes ended with the previous stop (or a reboot), so they would never finish.
_slurm_cancel_phantoms() {
  local c=$1 conf node since id start ids=""
  conf=$(_slurm_conf_of "$c")
  for node in "${!TB_SLURM_RESTARTED[@]}"; do
    [[ $node == "$c"-* ]] || continue
    since=${TB_SLURM_RESTARTED[$node]}
    while IFS='|' read -r id start; do
      [ -n "$id" ] || continue
      start=$(date -d "$start" +%s 2>/dev/null) || continue
      [ "$start" -lt "$since" ] && ids+="$id "
    done < <(SLURM_CONF=$conf timeout 10 squeue -h -w "$node" -t RUNNING,SUSPENDED -o '%i|%S' 2>/dev/null || true)
  done
  [ -n "$ids" ] || return 0
  log "cancelling jobs of $c left RUNNING from before the restart (their processes are gone): $ids"
  # shellcheck disable=SC2086
  SLURM_CONF=$conf timeout 10 scancel $ids || true
}

# processes left in our nodes' cgroups (slurmstepd and job processes outliving a stopped slurmd)
_slurm_leftover_pids() {
  local c node np ctl
  for c in "${TB_SLURM_CLUSTER_ORDER[@]}"; do
    while read -r np; do
      node=${np%%:*}
      for ctl in memory pids freezer cpuacct; do
        [ -d "/sys/fs/cgroup/$ctl/slurm_$node" ] || continue
        find "/sys/fs/cgroup/$ctl/slurm_$node" -name cgroup.procs -exec cat {} + 2>/dev/null
      done
    done < <(_slurm_nodes_of "$c")
  done | sort -u
}

# Running jobs cannot outlive a stop (their processes are ours): cancel them first so slurmctld and the
# accounting record them as CANCELLED. Pending jobs are kept and run after the next start. A job that
# starts between this and the end of slurmctld is killed with the leftovers; slurmctld would keep it
# RUNNING forever, so the next start cancels it (_slurm_cancel_phantoms).
_slurm_cancel_running_jobs() {
  local c conf ids deadline
  for c in "${TB_SLURM_CLUSTER_ORDER[@]}"; do
    if ! pid_alive "$TB_SLURM_DIR/$c/run/slurmctld.pid" || ! _slurm_ctld_ok "$c"; then continue; fi
    conf=$(_slurm_conf_of "$c")
    ids=$(SLURM_CONF=$conf timeout 10 squeue -h -t RUNNING,SUSPENDED,CONFIGURING -o %i | tr '\n' ' ' || true)
    [ -n "${ids// /}" ] || continue
    log "cancelling the running jobs of $c (they cannot outlive the stop): $ids"
    # shellcheck disable=SC2086
    SLURM_CONF=$conf timeout 10 scancel $ids || true
    deadline=$((SECONDS + 20))
    while [ -n "$(SLURM_CONF=$conf timeout 10 squeue -h -j "${ids// /,}" -t RUNNING,SUSPENDED,CONFIGURING,COMPLETING -o %i 2>/dev/null)" ] \
      && [ "$SECONDS" -lt "$deadline" ]; do
      sleep 0.3
    done
  done
}

# remove our nodes' (now empty) cgroup directories, deepest first; best effort
_slurm_remove_node_cgroups() {
  local c np ctl
  for c in "${TB_SLURM_CLUSTER_ORDER[@]}"; do
    while read -r np; do
      for ctl in /sys/fs/cgroup/*/"slurm_${np%%:*}"; do
        [ -d "$ctl" ] && find "$ctl" -depth -type d -exec rmdir {} + 2>/dev/null
      done
    done < <(_slurm_nodes_of "$c")
  done
  return 0
}

# ---------------------------------------------------------------------------------------------------
# the part's entry points

slurm_start() {
  apt_need munge slurm-wlm slurmdbd slurm-client mariadb-client python3-numpy
  install -d -m 755 "$TB_SLURM_DIR"
  install -d -m 700 "$TB_SLURM_DIR/dbd"
  local c changed
  declare -A changed_of=()
  for c in "${TB_SLURM_CLUSTER_ORDER[@]}"; do
    changed=0
    _slurm_cluster_write_conf "$c" && changed=1
    changed_of[$c]=$changed
  done
  _slurm_munge_start
  [ -s "$TB_SLURM_DIR/dbd/db-password" ] || _slurm_db_setup
  if _slurm_put "$TB_SLURM_DIR/dbd/slurmdbd.conf" 600 "$(_slurm_dbd_conf)" \
    && pid_alive "$TB_SLURM_DIR/dbd/slurmdbd.pid"; then
    log "WARNING: slurmdbd.conf changed while slurmdbd runs: restart the slurm part to apply it"
  fi
  _slurm_dbd_start
  for c in "${TB_SLURM_CLUSTER_ORDER[@]}"; do _slurm_cluster_start "$c" "${changed_of[$c]}"; done
  for c in "${TB_SLURM_CLUSTER_ORDER[@]}"; do _slurm_cluster_wait "$c"; done
  for c in "${TB_SLURM_CLUSTER_ORDER[@]}"; do
    log "cluster $c: SLURM_CONF=$(_slurm_conf_of "$c") sinfo  (slurmctld port $(_slurm_ctld_port_of "$c"))"
  done
}

slurm_stop() {
  local c np node pids
  _slurm_cancel_running_jobs
  for c in "${TB_SLURM_CLUSTER_ORDER[@]}"; do
    _slurm_kill "$TB_SLURM_DIR/$c/run/slurmctld.pid" "slurmctld of $c"
    while read -r np; do
      node=${np%%:*}
      _slurm_kill "$TB_SLURM_DIR/$c/run/slurmd-$node.pid" "slurmd $node"
    done < <(_slurm_nodes_of "$c")
  done
  pids=$(_slurm_leftover_pids)
  if [ -n "$pids" ]; then
    log "killing job processes left in our nodes' cgroups: $(echo "$pids" | tr '\n' ' ')"
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    local deadline=$((SECONDS + 10))
    while [ -n "$(_slurm_leftover_pids)" ] && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
  fi
  _slurm_remove_node_cgroups
  _slurm_kill "$TB_SLURM_DIR/dbd/slurmdbd.pid" slurmdbd
  _slurm_kill "$TB_SLURM_DIR/munge/munged.pid" munged
}

slurm_status() {
  local c np node pf
  _slurm_status_line() { # NAME PIDFILE
    if pid_alive "$2"; then log "$1: running (pid $(head -1 "$2"))"; else log "$1: stopped"; fi
  }
  if pid_alive "$TB_SLURM_DIR/munge/munged.pid"; then
    _slurm_status_line munged "$TB_SLURM_DIR/munge/munged.pid"
  elif _slurm_munge_ok; then
    log "munged: running (not ours)"
  else
    log "munged: stopped"
  fi
  _slurm_status_line "slurmdbd (port $TB_SLURM_DBD_PORT)" "$TB_SLURM_DIR/dbd/slurmdbd.pid"
  for c in "${TB_SLURM_CLUSTER_ORDER[@]}"; do
    _slurm_status_line "slurmctld $c (port $(_slurm_ctld_port_of "$c"))" "$TB_SLURM_DIR/$c/run/slurmctld.pid"
    while read -r np; do
      node=${np%%:*}
      pf=$TB_SLURM_DIR/$c/run/slurmd-$node.pid
      _slurm_status_line "slurmd $node (port ${np##*:})" "$pf"
    done < <(_slurm_nodes_of "$c")
    if _slurm_ctld_ok "$c"; then
      log "cluster $c: SLURM_CONF=$(_slurm_conf_of "$c")  nodes: $(SLURM_CONF=$(_slurm_conf_of "$c") sinfo -h -N -o '%N/%P=%T' | tr '\n' ' ')"
    elif pid_alive "$TB_SLURM_DIR/$c/run/slurmctld.pid"; then
      log "cluster $c: slurmctld runs but does not answer (see $TB_SLURM_DIR/$c/log/slurmctld.log)"
    fi
  done
}
