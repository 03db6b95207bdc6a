-- urgentflow catalog, version 4: the DAG runs of an incident (or order) and how each ended, written by
-- the exit handler (plugins/urgentflow_listener.py) for every run, including runs that failed before
-- any task ran.

CREATE TABLE incident_runs (
    incident_id  TEXT NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    dag_id       TEXT NOT NULL,
    run_id       TEXT NOT NULL,
    state        TEXT NOT NULL,             -- queued | running | success | failed
    reason       TEXT NOT NULL DEFAULT '',  -- why it failed, when known
    started_at   TIMESTAMPTZ,
    ended_at     TIMESTAMPTZ,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (dag_id, run_id)
);
CREATE INDEX incident_runs_by_incident ON incident_runs (incident_id);
