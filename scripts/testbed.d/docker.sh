# Test-bed part "docker": a private Docker engine (dockerd on its own socket, its own bridge ufbr0, no
# iptables) with two local images built without any registry: urgentflow/base:1 (Debian bookworm
# minbase + python3, from debootstrap) and urgentflow/busybox:1 (busybox-static).
# Sourced by scripts/testbed; defines docker_start, docker_stop, docker_status.
#
# How Airflow reaches it: DockerHook takes the engine URL only from its base_url argument (the docker
# connection is for registry login, and DockerHook logs in whenever docker_conn_id is set), so use
#   DockerHook(docker_conn_id=None, base_url=<extra.docker_url of connection docker_default>)
#   DockerOperator(docker_url=<same>, ...)   (or DOCKER_HOST from $TESTBED_DIR/docker/env)
# shellcheck shell=bash

DOCKER_DIR=$TESTBED_DIR/docker
DOCKER_SOCK=$DOCKER_DIR/docker.sock
DOCKER_URL=unix://$DOCKER_SOCK
DOCKER_PIDFILE=$DOCKER_DIR/docker.pid
DOCKER_LOG=$DOCKER_DIR/dockerd.log
DOCKER_CACHE=$DOCKER_DIR/cache
DOCKER_BRIDGE=ufbr0
DOCKER_BRIDGE_CIDR=10.213.77.1/24
DOCKER_READY_SECONDS=${URGENTFLOW_DOCKER_READY_SECONDS:-60}
DOCKER_BASE_IMAGE=urgentflow/base:1
DOCKER_BUSYBOX_IMAGE=urgentflow/busybox:1
# The cached root file system of the base image; change the name when its package set changes.
DOCKER_BASE_TARBALL=$DOCKER_CACHE/base-bookworm-python3-v1.tar



_dk() { docker -H "$DOCKER_URL" "$@"; }

# _docker_fail WHAT: stop what we started, then die naming dockerd with the tail of its log.
_docker_fail() {
  local pid
  # dockerd writes its pid file only part-way through its start: fall back to the pid we launched
  pid=$(head -1 "$DOCKER_PIDFILE" 2>/dev/null || true)
  [ -n "$pid" ] || pid=${_docker_pid:-}
  if [ -n "$pid" ] && proc_running "$pid"; then _docker_stop_pid "$pid"; else _docker_kill_leftovers; fi
  rm -f "$DOCKER_PIDFILE"
  die "the Docker engine (dockerd, socket $DOCKER_SOCK) $1. Last lines of its log $DOCKER_LOG:
$(awk '/^==== .* starting dockerd$/ {n = 0} {line[n++] = $0} END {for (i = (n > 15 ? n - 15 : 0); i < n; i++) print "    " line[i]}' "$DOCKER_LOG" 2>/dev/null)"
}

_docker_probe() {
  _dk version && return 0
  # fd 3 is the caller's stderr (wait_until silences the probe's own output)
  proc_running "$_docker_pid" || _docker_fail "exited during start-up" 2>&3
  return 1
}

# Pids of our containerd and its shims (their command lines name our exec root).
_docker_leftovers() {
  local d pid
  for d in /proc/[0-9]*; do
    pid=${d#/proc/}
    case $(cat "$d/comm" 2>/dev/null) in containerd*) ;; *) continue ;; esac
    tr '\0' ' ' < "$d/cmdline" 2>/dev/null | grep -qF -- "$DOCKER_DIR/exec/" && echo "$pid"
  done
  return 0
}

_docker_stop_pid() {
  # dockerd stops running containers first (--shutdown-timeout 10), then its containerd
  stop_pid "$1" dockerd 30
  _docker_kill_leftovers
}

_docker_kill_leftovers() {
  local left
  left=$(_docker_leftovers)
  [ -n "$left" ] || return 0
  log "stopping leftover containerd processes: $(echo "$left" | tr '\n' ' ')"
  # shellcheck disable=SC2086
  kill -TERM $left 2>/dev/null || true
  sleep 2
  left=$(_docker_leftovers)
  # shellcheck disable=SC2086
  [ -z "$left" ] || { kill -KILL $left 2>/dev/null || true; sleep 0.5; }
}

_docker_bridge() {
  if ! ip link show "$DOCKER_BRIDGE" >/dev/null 2>&1; then
    log "creating bridge $DOCKER_BRIDGE ($DOCKER_BRIDGE_CIDR)"
    ip link add "$DOCKER_BRIDGE" type bridge || die "cannot create bridge $DOCKER_BRIDGE (ip link add)"
  fi
  ip -4 addr show dev "$DOCKER_BRIDGE" | grep -qF " ${DOCKER_BRIDGE_CIDR} " \
    || ip addr add "$DOCKER_BRIDGE_CIDR" dev "$DOCKER_BRIDGE" \
    || die "cannot give bridge $DOCKER_BRIDGE the address $DOCKER_BRIDGE_CIDR"
  ip link set "$DOCKER_BRIDGE" up || die "cannot bring bridge $DOCKER_BRIDGE up"
}

# The Debian mirror apt uses here (debootstrap needs one); URGENTFLOW_DEBIAN_MIRROR overrides it.
_docker_mirror() {
  if [ -n "${URGENTFLOW_DEBIAN_MIRROR:-}" ]; then echo "$URGENTFLOW_DEBIAN_MIRROR"; return; fi
  local m
  m=$({
    cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '$1 == "URIs:" {for (i = 2; i <= NF; i++) print $i}'
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
      | awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; break}}'
  } | grep -v -e security -e '^https\?://[^/]*/debian-' | grep '/debian/\?$' | head -1 || true)
  echo "${m:-http://deb.debian.org/debian}"
}

_docker_base_tarball() {
  [ -s "$DOCKER_BASE_TARBALL" ] && return 0
  apt_need debootstrap debian-archive-keyring
  local rootfs=$DOCKER_CACHE/base-rootfs.tmp mirror dlog=$DOCKER_CACHE/debootstrap.log
  mirror=$(_docker_mirror)
  rm -rf "$rootfs" "$DOCKER_BASE_TARBALL.tmp"
  log "debootstrap bookworm (minbase + python3) from $mirror: about a minute, cached afterwards"
  debootstrap --variant=minbase --include=python3 --components=main bookworm "$rootfs" "$mirror" \
    > "$dlog" 2>&1 \
    || { rm -rf "$rootfs"; die "debootstrap of the base image failed (mirror $mirror). Last lines of $dlog:
$(tail -n 12 "$dlog" | sed 's/^/    /')"; }
  # keep it small: no package caches, lists, docs, man pages or translations
  chroot "$rootfs" apt-get clean >/dev/null 2>&1 || true
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/debconf/*-old \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
    "$rootfs"/usr/share/locale/* "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* "$rootfs"/debootstrap
  chroot "$rootfs" python3 -c 'import http.server' \
    || { rm -rf "$rootfs"; die "the debootstrapped base image has no working python3 (see $dlog)"; }
  tar -C "$rootfs" --numeric-owner -cf "$DOCKER_BASE_TARBALL.tmp" . \
    || { rm -rf "$rootfs"; die "cannot write $DOCKER_BASE_TARBALL"; }
  mv "$DOCKER_BASE_TARBALL.tmp" "$DOCKER_BASE_TARBALL"
  rm -rf "$rootfs"
  log "cached the base root file system in $DOCKER_BASE_TARBALL ($(du -h "$DOCKER_BASE_TARBALL" | cut -f1))"
}

_docker_images() {
  if ! _dk image inspect "$DOCKER_BASE_IMAGE" >/dev/null 2>&1; then
    _docker_base_tarball
    log "importing $DOCKER_BASE_IMAGE"
    _dk import \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'ENV LANG=C.UTF-8' \
      --change 'CMD ["python3"]' \
      -m "urgentflow test bed: debootstrap bookworm minbase + python3" \
      "$DOCKER_BASE_TARBALL" "$DOCKER_BASE_IMAGE" >/dev/null \
      || die "docker import of $DOCKER_BASE_IMAGE failed (remove $DOCKER_BASE_TARBALL to rebuild it)"
  fi
  if ! _dk image inspect "$DOCKER_BUSYBOX_IMAGE" >/dev/null 2>&1; then
    local bb=/bin/busybox root=$DOCKER_CACHE/busybox-rootfs.tmp a
    [ -x "$bb" ] || die "$bb is missing although busybox-static is installed"
    log "importing $DOCKER_BUSYBOX_IMAGE (busybox-static with its applet links)"
    rm -rf "$root"
    mkdir -p "$root"/bin "$root"/etc "$root"/root "$root"/tmp "$root"/proc "$root"/sys "$root"/dev
    chmod 1777 "$root/tmp"
    cp "$bb" "$root/bin/busybox"
    for a in $("$bb" --list); do
      [ "$a" = busybox ] || ln -s busybox "$root/bin/$a"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' \
      > "$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
    tar -C "$root" --numeric-owner -c . \
      | _dk import --change 'ENV PATH=/bin' --change 'CMD ["sh"]' \
        -m "urgentflow test bed: busybox-static" - "$DOCKER_BUSYBOX_IMAGE" >/dev/null \
      || { rm -rf "$root"; die "docker import of $DOCKER_BUSYBOX_IMAGE failed"; }
    rm -rf "$root"
  fi
}

# The service images (include/images/*), built FROM the base image by operators/services/images.py;
# it skips an image whose directory and base are unchanged (content label), so this is quick when current.
_docker_service_images() {
  [ -x "$VENV/bin/python" ] || die "the project venv ($VENV) is missing: run make venv (it builds the service images)"
  local out
  out=$(cd "$URGENTFLOW_ROOT" && AIRFLOW_HOME=$DOCKER_CACHE/airflow-home \
    "$VENV/bin/python" -m operators.services.images --docker-url "$DOCKER_URL" 2>&1) \
    || die "building the service images (include/images/*) failed:
$(printf '%s\n' "$out" | tail -n 15 | sed 's/^/    /')"
  log "service images: $(printf '%s\n' "$out" | tr '\n' ' ')"
}

_docker_record() {
  cat > "$DOCKER_DIR/env" <<EOF
# The urgentflow test bed's Docker engine (scripts/testbed.d/docker.sh). Source this file for the docker
# CLI, docker.from_env() and DockerOperator's default docker_url. DockerHook needs it explicitly:
#   DockerHook(docker_conn_id=None, base_url=DOCKER_HOST)  (docker_conn_id means registry login)
DOCKER_HOST=$DOCKER_URL
EOF
  write_connection docker_default "{\"conn_type\":\"docker\",\"extra\":{\"docker_url\":\"$DOCKER_URL\"}}"
}

docker_start() {
  # docker-compose (Debian 1.29): tests render docker-compose.yaml with it (tests/integration/test_compose_config.py)
  apt_need docker.io containerd runc tini busybox-static iproute2 docker-compose
  command -v docker >/dev/null || die "no docker client on PATH although docker.io is installed"
  mkdir -p "$DOCKER_DIR/data" "$DOCKER_DIR/exec" "$DOCKER_CACHE"
  chmod 700 "$DOCKER_DIR"

  if pid_alive "$DOCKER_PIDFILE"; then
    _dk version >/dev/null 2>&1 \
      || die "dockerd is running (pid $(head -1 "$DOCKER_PIDFILE")) but does not answer on $DOCKER_SOCK. Try scripts/testbed stop docker; scripts/testbed start docker. Log: $DOCKER_LOG"
    _docker_images
    _docker_service_images
    _docker_record
    log "already running (pid $(head -1 "$DOCKER_PIDFILE")): $DOCKER_URL"
    return 0
  fi
  rm -f "$DOCKER_PIDFILE"
  local left
  left=$(_docker_leftovers)
  [ -z "$left" ] || die "dockerd is not running but processes of its containerd still are (pids: $(echo "$left" | tr '\n' ' ')): stop them first (scripts/testbed stop docker)"

  _docker_bridge
  [ -s "$DOCKER_DIR/daemon.json" ] || echo '{}' > "$DOCKER_DIR/daemon.json"
  log "starting dockerd on $DOCKER_SOCK (bridge $DOCKER_BRIDGE, no iptables)"
  printf '\n==== %s starting dockerd\n' "$(date -Is)" >> "$DOCKER_LOG"
  # own config file, so a machine-wide /etc/docker/daemon.json cannot interfere
  setsid dockerd -H "$DOCKER_URL" --config-file "$DOCKER_DIR/daemon.json" \
    --data-root "$DOCKER_DIR/data" --exec-root "$DOCKER_DIR/exec" --pidfile "$DOCKER_PIDFILE" \
    --bridge="$DOCKER_BRIDGE" --iptables=false --ip-forward=false --ip-masq=false \
    --shutdown-timeout=10 \
    >> "$DOCKER_LOG" 2>&1 < /dev/null &
  _docker_pid=$!
  wait_until "$DOCKER_READY_SECONDS" "Docker engine" _docker_probe 3>&2 \
    || _docker_fail "did not answer within ${DOCKER_READY_SECONDS} s and was stopped"

  _docker_images
  _docker_service_images
  _docker_record
  log "running (pid $(head -1 "$DOCKER_PIDFILE")): $DOCKER_URL; images $DOCKER_BASE_IMAGE $DOCKER_BUSYBOX_IMAGE; connection docker_default, env file $DOCKER_DIR/env"
}

docker_stop() {
  if pid_alive "$DOCKER_PIDFILE"; then
    local pid
    pid=$(head -1 "$DOCKER_PIDFILE")
    log "stopping dockerd (pid $pid) and its containers"
    _docker_stop_pid "$pid"
    proc_running "$pid" && die "dockerd (pid $pid) is still running after SIGKILL"
    log "stopped (data and images kept in $DOCKER_DIR/data; bridge $DOCKER_BRIDGE kept)"
  else
    if [ -n "$(_docker_leftovers)" ]; then
      log "dockerd is not running"
      _docker_kill_leftovers
    else
      log "not running"
    fi
  fi
  rm -f "$DOCKER_PIDFILE"
}

docker_status() {
  if pid_alive "$DOCKER_PIDFILE"; then
    local images
    images=$(_dk images --format '{{.Repository}}:{{.Tag}} ({{.Size}})' 'urgentflow/*' 2>/dev/null | tr '\n' ' ')
    log "running (pid $(head -1 "$DOCKER_PIDFILE")): $DOCKER_URL (DOCKER_HOST in $DOCKER_DIR/env), bridge $DOCKER_BRIDGE $DOCKER_BRIDGE_CIDR, images: ${images:-none}"
  else
    log "stopped (data in $DOCKER_DIR/data)"
  fi
}
