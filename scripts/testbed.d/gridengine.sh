# Test-bed part "gridengine": a real Grid Engine 8.1.9 (Debian gridengine-master/-exec/-client) cell
# on this machine, single host, and its login node (an sshd on 127.0.0.1:2224):
#
#   cell "default" (SGE_ROOT=/var/lib/gridengine), sge_qmaster :6444, sge_execd :6445 (0.0.0.0, like
#   the Slurm daemons: Grid Engine has no bind-address setting; nothing outside is expected to reach them)
#   queue all.q: this host, 2 slots, shell /bin/bash; parallel environment smp ($pe_slots, 2 slots)
#   ssh -p 2224 urgent@127.0.0.1 qsub ...     (Airflow connection hpc_gamma, host key pinned)
#
# Facts this script relies on (see scripts/testbed.d/GRIDENGINE-NOTES.md for the details):
# - the packages install without prompts with debconf preseeds (gridengine-common, -master, -client,
#   -exec: shared/gridengineconfig=true, shared/gridenginecell=default, shared/gridenginemaster=<host>);
#   their postinst creates the cell (bootstrap, act_qmaster, berkeleydb spool /var/spool/gridengine/
#   spooldb) but cannot start the daemons (no init system): we start them ourselves;
# - this host's name resolves to 127.0.0.1 (/etc/hosts), whose first name is "localhost": the daemons
#   call themselves "localhost" (execd spool dir .../execd/localhost, "localhost" in the messages), the
#   clients call the host "<hostname>". host_aliases "<hostname> localhost" makes them one host
#   (without it: "access denied ... not identical to clients host name");
# - the daemons daemonize themselves, start as root and switch to the admin user sgeadmin; their pid
#   files are <qmaster_spool_dir>/qmaster.pid and <execd_spool_dir>/<host>/execd.pid (the Debian init
#   script's /var/run/gridengine/*.pid is never written);
# - ports: sge_qmaster 6444, sge_execd 6445 come from /etc/services (netbase); set explicitly here;
# - min_uid 1000 (default): root cannot run jobs, the test user urgent (uid >= 1000) can; any user may
#   submit from a submit host (qconf -as <host>);
# - the default scheduler runs every 15 s: schedule_interval 0:0:1 + flush_submit_sec/flush_finish_sec 1
#   give submit -> running in about 1 s; job_load_adjustments NONE and queue load_thresholds NONE so a
#   busy host (other tests) never puts the queue in alarm state;
# - accounting (qacct) works out of the box; accounting_flush_time=00:00:00 writes a record as soon as
#   the job ends (default: with flush_time, 15 s);
# - a non-interactive ssh session reads neither /etc/profile nor /etc/profile.d: the environment comes
#   from the sshd's SetEnv (SGE_ROOT, SGE_CELL, ports); qsub & co. are /usr/bin wrappers that default to
#   /var/lib/gridengine + cell default anyway (/etc/default/gridengine);
# - sge_execd does not kill running jobs when it stops (their sge_shepherd processes stay): stop deletes
#   running jobs first (qdel, recorded as killed in qacct), then kills what is left.
# State: the cell in /var/lib/gridengine/default, the spool in /var/spool/gridengine (job database,
# messages logs), our logs, sshd and generated config under $TESTBED_DIR/gridengine. stop keeps it all.
# shellcheck shell=bash

TB_GE_DIR=$TESTBED_DIR/gridengine
TB_GE_ROOT=/var/lib/gridengine
TB_GE_CELL=default
TB_GE_QMASTER_PORT=${TB_GE_QMASTER_PORT:-6444}
TB_GE_EXECD_PORT=${TB_GE_EXECD_PORT:-6445}
TB_GE_SSHD_PORT=${TB_GE_SSHD_PORT:-2224}
TB_GE_QUEUE=all.q
TB_GE_SLOTS=2
TB_GE_PE=smp
TB_GE_SPOOL=/var/spool/gridengine
TB_GE_QMASTER_PID=$TB_GE_SPOOL/qmaster/qmaster.pid
TB_GE_QMASTER_LOG=$TB_GE_SPOOL/qmaster/messages
TB_GE_CONFIG_VERSION=2 # bump when the cell configuration below changes
TB_GE_PACKAGES=(gridengine-master gridengine-exec gridengine-client)

# Every Grid Engine command of this script runs with the cell's environment.
_ge() {
  SGE_ROOT=$TB_GE_ROOT SGE_CELL=$TB_GE_CELL SGE_QMASTER_PORT=$TB_GE_QMASTER_PORT \
    SGE_EXECD_PORT=$TB_GE_EXECD_PORT timeout 20 "$@"
}

_ge_host() { hostname; }

# the execd names its spool directory after its own view of the host name ("localhost" here)
_ge_execd_pidfile() {
  local f
  for f in "$TB_GE_SPOOL"/execd/*/execd.pid; do
    [ -s "$f" ] && pid_alive "$f" && { printf '%s' "$f"; return 0; }
  done
  printf '%s' "$TB_GE_SPOOL/execd/localhost/execd.pid"
}

_ge_execd_log() {
  local f
  f=$(dirname "$(_ge_execd_pidfile)")/messages
  printf '%s' "$f"
}

_ge_install() {
  local p h missing=0
  apt_need python3-numpy # batch jobs of the science DAGs (include/wildfire/model.py) run with the system python3
  for p in "${TB_GE_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing=1; done
  [ "$missing" = 1 ] || return 0
  h=$(_ge_host)
  # the postinst scripts ask three questions: preseed them (same keys for every package)
  for p in gridengine-common "${TB_GE_PACKAGES[@]}"; do
    printf '%s shared/gridengineconfig boolean true\n%s shared/gridenginecell string %s\n%s shared/gridenginemaster string %s\n' \
      "$p" "$p" "$TB_GE_CELL" "$p" "$h"
  done | debconf-set-selections || die "debconf-set-selections for gridengine failed"
  apt_need "${TB_GE_PACKAGES[@]}"
  [ -s "$TB_GE_ROOT/$TB_GE_CELL/common/bootstrap" ] \
    || die "the gridengine packages did not create the cell $TB_GE_ROOT/$TB_GE_CELL (no common/bootstrap): dpkg-reconfigure gridengine-master"
}

# the name fixes: clients and daemons must agree on this host's name (see the header)
_ge_names() {
  local common=$TB_GE_ROOT/$TB_GE_CELL/common h
  h=$(_ge_host)
  if [ "$(cat "$common/host_aliases" 2>/dev/null)" != "$h localhost" ]; then
    printf '%s localhost\n' "$h" >"$common/host_aliases"
    chmod 644 "$common/host_aliases"
  fi
  if [ "$(cat "$common/act_qmaster" 2>/dev/null)" != "$h" ]; then
    # the package wrote the host name it saw at install time; a renamed host needs the new one
    printf '%s\n' "$h" >"$common/act_qmaster"
    chown sgeadmin:sgeadmin "$common/act_qmaster"
  fi
}

_ge_qmaster_ok() { _ge qconf -sss >/dev/null 2>&1; }

_ge_queue_ok() {
  # the queue instance on this host exists and has no state letters (a=alarm, u=unknown, d, E...)
  _ge qstat -f -q "$TB_GE_QUEUE@$(_ge_host)" 2>/dev/null \
    | awk -v q="$TB_GE_QUEUE@$(_ge_host)" '$1 == q && NF == 5 {ok=1} END {exit !ok}'
}

_ge_qmaster_start() {
  if pid_alive "$TB_GE_QMASTER_PID"; then
    log "sge_qmaster already running (pid $(head -1 "$TB_GE_QMASTER_PID"), port $TB_GE_QMASTER_PORT)"
    return 0
  fi
  need_port "$TB_GE_QMASTER_PORT" sge_qmaster
  (cd / && _ge setsid /usr/sbin/sge_qmaster) </dev/null >>"$TB_GE_DIR/sge_qmaster.log" 2>&1 \
    || fail_with_log "sge_qmaster did not start (its own log: $TB_GE_QMASTER_LOG)" "$TB_GE_DIR/sge_qmaster.log"
  wait_until 30 "sge_qmaster (port $TB_GE_QMASTER_PORT)" _ge_qmaster_ok \
    || fail_with_log "sge_qmaster does not answer 'qconf -sss' within 30 s" "$TB_GE_QMASTER_LOG"
}

_ge_execd_start() {
  local pf
  pf=$(_ge_execd_pidfile)
  if pid_alive "$pf"; then
    log "sge_execd already running (pid $(head -1 "$pf"), port $TB_GE_EXECD_PORT)"
    return 0
  fi
  need_port "$TB_GE_EXECD_PORT" sge_execd
  # setsid: the daemon must not die with the session or process group of whoever started it
  (cd / && _ge setsid /usr/sbin/sge_execd) </dev/null >>"$TB_GE_DIR/sge_execd.log" 2>&1 \
    || fail_with_log "sge_execd did not start (its own log: $(_ge_execd_log))" "$TB_GE_DIR/sge_execd.log"
}

# _ge_apply KIND NAME FILE: add (-A) or modify (-M) one configuration object from FILE.
_ge_apply() {
  local kind=$1 name=$2 file=$3 out
  if _ge qconf "-s$kind" "$name" >/dev/null 2>&1; then
    out=$(_ge qconf "-M$kind" "$file" 2>&1) || die "qconf -M$kind $file ($name) failed: $out"
  else
    out=$(_ge qconf "-A$kind" "$file" 2>&1) || die "qconf -A$kind $file ($name) failed: $out"
  fi
}

# The cell's configuration: hosts, scheduler, global config, parallel environment, queue. Applied once
# per TB_GE_CONFIG_VERSION (and again whenever the queue has gone missing).
_ge_configure() {
  local d=$TB_GE_DIR/conf h stamp
  h=$(_ge_host)
  stamp="$TB_GE_CONFIG_VERSION $h"
  if [ "$(cat "$TB_GE_DIR/configured" 2>/dev/null)" = "$stamp" ] && _ge qconf -sq "$TB_GE_QUEUE" >/dev/null 2>&1; then
    return 0
  fi
  install -d -m 755 "$d"
  rm -f "$d"/*
  _ge qconf -ss 2>/dev/null | grep -qx "$h" || _ge qconf -as "$h" >/dev/null || die "qconf -as $h failed"
  cat >"$d/host" <<EOF
hostname              $h
load_scaling          NONE
complex_values        NONE
user_lists            NONE
xuser_lists           NONE
projects              NONE
xprojects             NONE
usage_scaling         NONE
report_variables      NONE
EOF
  _ge_apply e "$h" "$d/host"
  # scheduler: every second, on submit and on job end; no load adjustments
  _ge qconf -ssconf | sed -e 's/^schedule_interval .*/schedule_interval                 0:0:1/' \
    -e 's/^flush_submit_sec .*/flush_submit_sec                  1/' \
    -e 's/^flush_finish_sec .*/flush_finish_sec                  1/' \
    -e 's/^job_load_adjustments .*/job_load_adjustments              NONE/' \
    -e 's/^load_adjustment_decay_time .*/load_adjustment_decay_time        0:0:0/' >"$d/sconf"
  _ge qconf -Msconf "$d/sconf" >/dev/null 2>&1 || die "qconf -Msconf failed"
  # global configuration (qconf -Mconf takes the object's name from the FILE name: "global");
  # accounting records written at once; load reports every 10 s
  _ge qconf -sconf global | sed -e 's/^load_report_time .*/load_report_time             00:00:10/' \
    -e 's/\([[:space:]]\)flush_time=[0-9:]*/\1flush_time=00:00:01/' \
    -e 's/accounting_flush_time=[0-9:]*/accounting_flush_time=00:00:00/' \
    -e '/accounting_flush_time/!s/sharelog=\([0-9:]*\)/sharelog=\1 accounting_flush_time=00:00:00/' >"$d/global"
  _ge qconf -Mconf "$d/global" >/dev/null 2>&1 || die "qconf -Mconf global failed"
  cat >"$d/pe" <<EOF
pe_name            $TB_GE_PE
slots              $TB_GE_SLOTS
user_lists         NONE
xuser_lists        NONE
start_proc_args    NONE
stop_proc_args     NONE
allocation_rule    \$pe_slots
control_slaves     FALSE
job_is_first_task  TRUE
urgency_slots      min
accounting_summary FALSE
qsort_args         NONE
EOF
  _ge_apply p "$TB_GE_PE" "$d/pe"
  _ge qconf -sq | sed -e "s/^qname .*/qname                 $TB_GE_QUEUE/" \
    -e "s/^hostlist .*/hostlist              $h/" \
    -e 's/^load_thresholds .*/load_thresholds       NONE/' \
    -e "s/^slots .*/slots                 $TB_GE_SLOTS/" \
    -e 's|^shell .*|shell                 /bin/bash|' \
    -e "s/^pe_list .*/pe_list               $TB_GE_PE/" >"$d/queue"
  _ge_apply q "$TB_GE_QUEUE" "$d/queue"
  printf '%s\n' "$stamp" >"$TB_GE_DIR/configured"
  log "configured cell $TB_GE_CELL: queue $TB_GE_QUEUE ($TB_GE_SLOTS slots on $h), pe $TB_GE_PE"
}

# Jobs qmaster still calls running although their processes ended with the last stop (or a reboot):
# the execd reports them gone only slowly; delete them so they do not hold the slots.
_ge_running_jobs() {
  _ge qstat -u '*' -s r 2>/dev/null | awk 'NR>2 {printf "%s ", $1}'
}

# _ge_running_before EPOCH: ids of running jobs that started before EPOCH (qstat's "MM/DD/YYYY HH:MM:SS")
_ge_running_before() {
  local id day time start
  while read -r id day time; do
    [ -n "$id" ] || continue
    start=$(date -d "$day $time" +%s 2>/dev/null) || continue
    [ "$start" -lt "$1" ] && printf '%s ' "$id"
  done < <(_ge qstat -u '*' -s r 2>/dev/null | awk 'NR>2 {print $1, $6, $7}')
  return 0
}

# ---------------------------------------------------------------------------------------------------
# the login node: an sshd on 127.0.0.1:$TB_GE_SSHD_PORT (helpers and the client key from sshd.sh)

# the cell's environment for every session (non-interactive sessions read no profile)
_ge_sshd_config() {
  _sshd_config_text "Grid Engine cell" "$TB_GE_DIR/sshd" "$TB_GE_SSHD_PORT" \
    "SGE_ROOT=$TB_GE_ROOT SGE_CELL=$TB_GE_CELL SGE_QMASTER_PORT=$TB_GE_QMASTER_PORT SGE_EXECD_PORT=$TB_GE_EXECD_PORT"
}

_ge_login() {
  ssh -q -i "$TB_SSH_KEY" -p "$TB_GE_SSHD_PORT" -o BatchMode=yes -o StrictHostKeyChecking=yes \
    -o UserKnownHostsFile="$TB_GE_DIR/known_hosts" -o ConnectTimeout=5 "$TB_SSH_USER@127.0.0.1" "$@"
}

_ge_sshd_start() {
  local d=$TB_GE_DIR/sshd hostkey conf_new seen
  apt_need openssh-server openssh-client
  _sshd_user_setup
  install -d -m 755 /run/sshd
  install -d -m 700 "$d"
  if [ ! -s "$d/ssh_host_ed25519_key" ]; then
    ssh-keygen -q -t ed25519 -N '' -C "urgentflow-testbed-gamma" -f "$d/ssh_host_ed25519_key" \
      || die "ssh-keygen (host key of gamma) failed"
  fi
  chmod 600 "$d/ssh_host_ed25519_key"
  hostkey=$(cut -d' ' -f1,2 "$d/ssh_host_ed25519_key.pub")
  printf '[127.0.0.1]:%s %s\n' "$TB_GE_SSHD_PORT" "$hostkey" >"$TB_GE_DIR/known_hosts"
  conf_new=$(_ge_sshd_config)
  if [ ! -f "$d/sshd_config" ] || [ "$(cat "$d/sshd_config")" != "$conf_new" ]; then
    printf '%s\n' "$conf_new" >"$d/sshd_config"
    pid_alive "$d/sshd.pid" && log "WARNING: sshd_config of gamma changed while it runs: restart the gridengine part to apply it"
  fi
  /usr/sbin/sshd -t -f "$d/sshd_config" 2>"$d/sshd-check.log" \
    || fail_with_log "sshd_config of gamma is not valid" "$d/sshd-check.log"
  if pid_alive "$d/sshd.pid"; then
    log "sshd of gamma already running (pid $(head -1 "$d/sshd.pid"), 127.0.0.1:$TB_GE_SSHD_PORT)"
  else
    need_port "$TB_GE_SSHD_PORT" "sshd of gamma (Grid Engine)"
    /usr/sbin/sshd -f "$d/sshd_config" -E "$d/sshd.log" </dev/null \
      || fail_with_log "sshd of gamma did not start" "$d/sshd.log"
    wait_until 15 "sshd of gamma (127.0.0.1:$TB_GE_SSHD_PORT)" _sshd_port_listening "$TB_GE_SSHD_PORT" \
      || fail_with_log "sshd of gamma does not listen on 127.0.0.1:$TB_GE_SSHD_PORT" "$d/sshd.log"
  fi
  # the session must reach the cell: environment and a working qstat
  # shellcheck disable=SC2016 # expanded by the remote shell
  seen=$(_ge_login 'printf "%s|%s|" "$SGE_ROOT" "$SGE_CELL"; qstat -u "$(id -un)" >/dev/null && command -v qacct' 2>&1) \
    || fail_with_log "key login as $TB_SSH_USER to sshd of gamma (port $TB_GE_SSHD_PORT) or qstat there fails: $seen" "$d/sshd.log"
  [ "$seen" = "$TB_GE_ROOT|$TB_GE_CELL|/usr/bin/qacct" ] \
    || die "sshd of gamma gives the session '$seen' instead of '$TB_GE_ROOT|$TB_GE_CELL|/usr/bin/qacct'"
  write_connection hpc_gamma "$(printf '{"conn_type": "ssh", "host": "127.0.0.1", "port": %s, "login": "%s", "extra": {"key_file": "%s", "host_key": "%s"}}' \
    "$TB_GE_SSHD_PORT" "$TB_SSH_USER" "$TB_SSH_KEY" "$hostkey")"
}

# ---------------------------------------------------------------------------------------------------
# the part's entry points

gridengine_start() {
  install -d -m 755 "$TB_GE_DIR"
  _ge_install
  _ge_names
  local fresh=0
  pid_alive "$(_ge_execd_pidfile)" || fresh=$(date +%s)
  _ge_qmaster_start
  _ge_configure
  _ge_execd_start
  # stop leaves the queue disabled (state d): enable it
  if _ge qstat -f -q "$TB_GE_QUEUE" 2>/dev/null | awk -v q="$TB_GE_QUEUE@" 'index($1, q) == 1 && $6 ~ /d/ {f=1} END {exit !f}'; then
    _ge qmod -e "$TB_GE_QUEUE" >/dev/null 2>&1 || die "qmod -e $TB_GE_QUEUE failed"
    log "enabled queue $TB_GE_QUEUE (disabled by the last stop)"
  fi
  wait_until 30 "queue $TB_GE_QUEUE@$(_ge_host)" _ge_queue_ok \
    || fail_with_log "queue $TB_GE_QUEUE@$(_ge_host) is not usable within 30 s: $(_ge qstat -f 2>&1 | sed -n 3p)" "$(_ge_execd_log)"
  if [ "$fresh" != 0 ]; then
    local ids
    ids=$(_ge_running_before "$fresh")
    if [ -n "${ids// /}" ]; then
      log "deleting jobs left running from before the restart (their processes are gone): $ids"
      # shellcheck disable=SC2086
      _ge qdel -f $ids >/dev/null 2>&1 || true
    fi
  fi
  _ge_sshd_start
  log "cell $TB_GE_CELL: ssh -i $TB_SSH_KEY -o UserKnownHostsFile=$TB_GE_DIR/known_hosts -p $TB_GE_SSHD_PORT $TB_SSH_USER@127.0.0.1 qstat -f  (Airflow connection hpc_gamma)"
}

gridengine_stop() {
  local pf pid ids shepherds="" deadline
  _sshd_kill "$TB_GE_DIR/sshd/sshd.pid" "sshd of gamma"
  pf=$(_ge_execd_pidfile)
  if pid_alive "$TB_GE_QMASTER_PID" && _ge_qmaster_ok; then
    # disable the queue first, or pending jobs start in the slots the deleted ones free (it stays
    # disabled in the spool: start enables it again); pending jobs are kept for the next start
    _ge qmod -d "$TB_GE_QUEUE" >/dev/null 2>&1 || true
    ids=$(_ge_running_jobs)
    if [ -n "${ids// /}" ]; then
      log "deleting the running jobs (they cannot outlive the stop): $ids"
      # shellcheck disable=SC2086
      _ge qdel $ids >/dev/null 2>&1 || true
      deadline=$((SECONDS + 20))
      while [ -n "$(_ge_running_jobs)" ] && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.3; done
    fi
  fi
  if pid_alive "$pf"; then
    pid=$(head -1 "$pf")
    shepherds=$(ps -o pid= --ppid "$pid" | tr '\n' ' ' || true)
    stop_pidfile "$pf" sge_execd 15
  fi
  if [ -n "${shepherds// /}" ]; then
    # a shepherd and its job (in the shepherd's process group) outlive execd
    for pid in $shepherds; do kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true; done
    log "killed job processes left by sge_execd: $shepherds"
  fi
  stop_pidfile "$TB_GE_QMASTER_PID" sge_qmaster 30
}

gridengine_status() {
  local pf d=$TB_GE_DIR/sshd
  if pid_alive "$TB_GE_QMASTER_PID"; then
    log "sge_qmaster: running (pid $(head -1 "$TB_GE_QMASTER_PID"), port $TB_GE_QMASTER_PORT)"
  else
    log "sge_qmaster: stopped"
  fi
  pf=$(_ge_execd_pidfile)
  if pid_alive "$pf"; then
    log "sge_execd: running (pid $(head -1 "$pf"), port $TB_GE_EXECD_PORT)"
  else
    log "sge_execd: stopped"
  fi
  if pid_alive "$d/sshd.pid"; then
    log "sshd of gamma: running (pid $(head -1 "$d/sshd.pid")) on 127.0.0.1:$TB_GE_SSHD_PORT; connection $CONN_DIR/hpc_gamma.json"
  else
    log "sshd of gamma: stopped"
  fi
  if pid_alive "$TB_GE_QMASTER_PID" && _ge_qmaster_ok; then
    log "queues: $(_ge qstat -f 2>/dev/null | awk 'NR>2 && /@/ {printf "%s %s %s; ", $1, $3, $6}')"
  fi
}
