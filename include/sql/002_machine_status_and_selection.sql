-- urgentflow catalog, version 2: machine status gets the probe's round-trip latency and its error;
-- machine selection decisions are kept with the inputs they were made from.

ALTER TABLE machine_status
    ADD COLUMN latency_ms REAL,
    ADD COLUMN error TEXT NOT NULL DEFAULT '';
CREATE INDEX machine_status_latest ON machine_status (machine, observed_at DESC);

CREATE TABLE machine_selections (
    id          BIGSERIAL PRIMARY KEY,
    dag_id      TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    task_id     TEXT NOT NULL,
    map_index   INTEGER NOT NULL DEFAULT -1,
    request     JSONB NOT NULL,
    candidates  JSONB NOT NULL,   -- every machine/partition considered, with its numbers or why not
    chosen      JSONB,            -- the assignment(s); null when nothing fitted
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- a retried task replaces its decision instead of adding a second one
    UNIQUE (dag_id, run_id, task_id, map_index)
);
