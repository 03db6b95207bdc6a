-- urgentflow catalog, version 6: the observations ingest_observation rejected, each with why (its incident
-- is gone, its object changed since it was announced, its data no longer fits the incident). A rejected
-- event is skipped and the rest of its batch applied. The incident is kept as the event named it, without
-- a reference: a rejection is recorded whether or not the incident still exists.

CREATE TABLE rejected_observations (
    dag_id          TEXT NOT NULL,
    run_id          TEXT NOT NULL,
    event_index     INTEGER NOT NULL,   -- its place among the run's triggering events
    incident_id     TEXT,
    observation_id  TEXT,
    key             TEXT,
    reason          TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- a retried run records each of its rejections once
    PRIMARY KEY (dag_id, run_id, event_index)
);
CREATE INDEX rejected_observations_by_incident ON rejected_observations (incident_id);
