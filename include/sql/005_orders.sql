-- urgentflow catalog, version 5: orders (after IVCAP): a registered tool image run over input datasets
-- with parameters. The analytics_order DAG moves an order queued -> running -> succeeded | failed and
-- records the tool's exit code; the exit handler (plugins/urgentflow_listener.py) records how its run
-- ended, also when it failed before any task ran. Outputs are datasets derived from every input.

CREATE TABLE orders (
    id          TEXT PRIMARY KEY CHECK (id ~ '^ord-[0-9a-f]{12}$'),
    tool        TEXT NOT NULL,
    image       TEXT,                       -- null when the tool is not in the registry
    params      JSONB NOT NULL DEFAULT '{}'::jsonb,
    input_ids   BIGINT[] NOT NULL DEFAULT '{}',
    output_ids  BIGINT[] NOT NULL DEFAULT '{}',
    state       TEXT NOT NULL DEFAULT 'queued'
                CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    exit_code   INTEGER,
    reason      TEXT NOT NULL DEFAULT '',   -- why it failed, when known
    dag_id      TEXT,
    run_id      TEXT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at  TIMESTAMPTZ,
    ended_at    TIMESTAMPTZ,
    -- one order per DAG run: a retried task finds its run's order
    UNIQUE (dag_id, run_id)
);
CREATE INDEX orders_newest ON orders (created_at DESC);
