-- urgentflow catalog, version 1: incidents, datasets with provenance and lineage, batch jobs with
-- their state history, services, machine status. Applied by operators/catalog/migrations.py.

CREATE TABLE incidents (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'open',
    payload     JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE datasets (
    id           BIGSERIAL PRIMARY KEY,
    bucket       TEXT NOT NULL,
    key          TEXT NOT NULL,
    sha256       CHAR(64) NOT NULL,
    size         BIGINT NOT NULL CHECK (size >= 0),
    content_type TEXT NOT NULL DEFAULT 'application/octet-stream',
    incident_id  TEXT REFERENCES incidents (id),
    -- producer: who wrote it (dag, run, task, map index, machine, job id)
    dag_id       TEXT,
    run_id       TEXT,
    task_id      TEXT,
    map_index    INTEGER NOT NULL DEFAULT -1,
    machine      TEXT,
    job_id       TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- a retried task writing the same bytes to the same key records one row
    UNIQUE (bucket, key, sha256)
);
CREATE INDEX datasets_by_run ON datasets (dag_id, run_id);
CREATE INDEX datasets_by_incident ON datasets (incident_id);

CREATE TABLE lineage (
    input_id   BIGINT NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    output_id  BIGINT NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    PRIMARY KEY (input_id, output_id),
    CHECK (input_id <> output_id)
);

CREATE TABLE jobs (
    id          BIGSERIAL PRIMARY KEY,
    machine     TEXT NOT NULL,
    native_id   TEXT NOT NULL,
    name        TEXT NOT NULL,
    dag_id      TEXT,
    run_id      TEXT,
    task_id     TEXT,
    map_index   INTEGER NOT NULL DEFAULT -1,
    state       TEXT NOT NULL,
    exit_code   INTEGER,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- job ids overlap between clusters: a job is (machine, native id)
    UNIQUE (machine, native_id)
);

CREATE TABLE job_states (
    job_id     BIGINT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    state      TEXT NOT NULL,
    exit_code  INTEGER,
    at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, state)
);

CREATE TABLE services (
    id           TEXT PRIMARY KEY,
    dag_id       TEXT,
    run_id       TEXT,
    task_id      TEXT,
    url          TEXT,
    container_id TEXT,
    state        TEXT NOT NULL,
    expires_at   TIMESTAMPTZ,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE machine_status (
    machine     TEXT NOT NULL,
    observed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    state       TEXT NOT NULL,
    detail      JSONB NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (machine, observed_at)
);
