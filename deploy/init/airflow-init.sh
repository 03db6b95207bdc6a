#!/usr/bin/env bash
# The airflow-init service of docker-compose.yaml (runs as root in the urgentflow Airflow image, once per
# `docker compose up`; every step is idempotent):
#   1. the shared directories, owned by AIRFLOW_UID:0 as in Airflow's own compose file
#   2. the HPC login: a client key pair and the Slurm container's host key, made once in volumes
#      (never in the repository); the client side gets known_hosts pinning that host key
#   3. the admin password file of Airflow's simple auth manager, from AIRFLOW_ADMIN_PASSWORD
#   4. Airflow's database (the image's /entrypoint with _AIRFLOW_DB_MIGRATE=true)
#   5. the catalog database + migrations and the object-store bucket (deploy/init/prepare.py)
set -euo pipefail

: "${AIRFLOW_UID:=50000}"
: "${AIRFLOW_ADMIN_PASSWORD:?set AIRFLOW_ADMIN_PASSWORD (see .env.example)}"
SSH_CLIENT_DIR=${URGENTFLOW_SSH_CLIENT_DIR:-/opt/urgentflow-ssh/client}
SSH_SERVER_DIR=${URGENTFLOW_SSH_SERVER_DIR:-/opt/urgentflow-ssh/server}
HPC_SSH_HOST=${URGENTFLOW_HPC_SSH_HOST:-slurm}
AUTH_DIR=/opt/airflow/auth

echo "1. directories"
mkdir -p /opt/airflow/logs "$AUTH_DIR"
chown -R "$AIRFLOW_UID:0" /opt/airflow/logs

echo "2. HPC ssh keys"
install -d -m 700 "$SSH_CLIENT_DIR" "$SSH_SERVER_DIR"
if [ ! -s "$SSH_CLIENT_DIR/id_ed25519" ]; then
  ssh-keygen -q -t ed25519 -N '' -C urgentflow-compose -f "$SSH_CLIENT_DIR/id_ed25519"
  echo "   created the client key"
fi
if [ ! -s "$SSH_SERVER_DIR/ssh_host_ed25519_key" ]; then
  ssh-keygen -q -t ed25519 -N '' -C urgentflow-compose-slurm -f "$SSH_SERVER_DIR/ssh_host_ed25519_key"
  echo "   created the Slurm container's host key"
fi
cp "$SSH_CLIENT_DIR/id_ed25519.pub" "$SSH_SERVER_DIR/authorized_keys"
printf '%s %s\n' "$HPC_SSH_HOST" "$(cut -d' ' -f1,2 "$SSH_SERVER_DIR/ssh_host_ed25519_key.pub")" \
  > "$SSH_CLIENT_DIR/known_hosts"
chown -R "$AIRFLOW_UID:0" "$SSH_CLIENT_DIR"
chmod 600 "$SSH_CLIENT_DIR/id_ed25519"
chmod 644 "$SSH_CLIENT_DIR/known_hosts" "$SSH_SERVER_DIR/authorized_keys"
chmod 600 "$SSH_SERVER_DIR/ssh_host_ed25519_key"

echo "3. admin password file"
(umask 077 && python3 -c 'import json, os, sys; json.dump({"admin": os.environ["AIRFLOW_ADMIN_PASSWORD"]}, sys.stdout)' \
  > "$AUTH_DIR/passwords.json")
chown "$AIRFLOW_UID:0" "$AUTH_DIR/passwords.json"

echo "4. Airflow database"
/entrypoint airflow version

echo "5. catalog database and bucket"
python3 /opt/urgentflow/deploy/init/prepare.py
# anything the steps above logged as root stays writable by the Airflow user
chown -R "$AIRFLOW_UID:0" /opt/airflow/logs
