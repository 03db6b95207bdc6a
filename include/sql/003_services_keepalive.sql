-- urgentflow catalog, version 3: service containers get a keep-alive time (last_seen, set when the
-- service is recorded and whenever its user touches it), their owner and their image.

ALTER TABLE services
    ADD COLUMN last_seen TIMESTAMPTZ NOT NULL DEFAULT now(),
    ADD COLUMN owner TEXT,
    ADD COLUMN image TEXT;
CREATE INDEX services_by_run ON services (dag_id, run_id);
