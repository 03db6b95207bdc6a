#!/usr/bin/env bash
# The airflow-init service of docker-compose.yaml (runs as root in the urgentflow Airflow image, once per
# `docker compose up`; every step is idempotent):
#   1. the shared directories, owned by AIRFLOW_UID:0 as in Airflow's own compose file
#   2. the HPC login: a client key pair and the Slurm container's host key, made once in volumes
#      (never in the repository); the client side gets known_hosts pinning that host key
#   3. Airflow's database, FAB's tables included (the image's /entrypoint with _AIRFLOW_DB_MIGRATE=true)
#   4. the users and roles of the FAB auth manager (scripts/auth_users.py --from-env: each password from
#      its AIRFLOW_<USER>_PASSWORD, read from the environment: never written to a file or printed).
#      A password changed in the UI is set back to .env's at the next start: rotate it in .env.
#   5. the catalog database + migrations and the object-store bucket (deploy/init/prepare.py)
set -euo pipefail

: "${AIRFLOW_UID:=50000}"
SSH_CLIENT_DIR=${URGENTFLOW_SSH_CLIENT_DIR:-/opt/urgentflow-ssh/client}
SSH_SERVER_DIR=${URGENTFLOW_SSH_SERVER_DIR:-/opt/urgentflow-ssh/server}
HPC_SSH_HOST=${URGENTFLOW_HPC_SSH_HOST:-slurm}

echo "1. directories"
mkdir -p /opt/airflow/logs
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

echo "3. Airflow database"
/entrypoint airflow version

echo "4. users and roles"
python3 /opt/urgentflow/scripts/auth_users.py --from-env

echo "5. catalog database and bucket"
python3 /opt/urgentflow/deploy/init/prepare.py
# anything the steps above logged as root stays writable by the Airflow user
chown -R "$AIRFLOW_UID:0" /opt/airflow/logs
