-- urgentflow catalog, version 8: the completion notices jobs sent (operators/hpc/notice.py), each
-- nonce accepted once: a notice replayed is refused. A notice only ever makes the machine's pollers look
-- at once; the job's state is what the poll finds, kept in jobs/job_states as before.

CREATE TABLE job_notices (
    machine      TEXT NOT NULL,
    job_name     TEXT NOT NULL,
    nonce        TEXT NOT NULL CHECK (nonce ~ '^[0-9a-f]{32}$'),
    received_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (machine, nonce)
);
CREATE INDEX job_notices_by_job ON job_notices (machine, job_name);
