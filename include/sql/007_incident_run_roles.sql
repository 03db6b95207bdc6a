-- urgentflow catalog, version 7: how each run belongs to its incident. Only a run of the incident kind's
-- own DAG ('incident') sets the incident's status; an ingest_observation run ('ingest') is recorded as the
-- processing of observations pushed for it and never changes it (operators/incidents.py run_role). Rows
-- of any other DAG were attached only because their conf named the incident, and are removed; the kinds
-- and DAGs below are those of operators/incidents.py DAG_OF_KIND when this migration was written.

ALTER TABLE incident_runs ADD COLUMN role TEXT NOT NULL DEFAULT 'incident'
    CHECK (role IN ('incident', 'ingest'));
ALTER TABLE incident_runs ALTER COLUMN role DROP DEFAULT;
UPDATE incident_runs SET role = 'ingest' WHERE dag_id = 'ingest_observation';
DELETE FROM incident_runs r USING incidents i
 WHERE r.incident_id = i.id AND r.role = 'incident'
   AND (i.kind, r.dag_id) NOT IN (('wildfire', 'wildfire_forecast'), ('study', 'study_pipeline'));
