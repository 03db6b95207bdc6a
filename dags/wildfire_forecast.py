"""wildfire_forecast (flagship): an ensemble wildfire forecast on the best HPC machine for an incident."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Param, dag, task

from operators.hpc.operators import BatchJobOperator
from operators.incidents import NAME_PATTERN, Perimeter, Point, Region, Weather, param_schema
from operators.machines.operators import SelectMachineOperator
from operators.services.operators import StartServiceOperator
from operators.storage.assets import PUBLISHED

DOC = """
### wildfire_forecast

The urgent-computing flagship (after VESTEC). For one wildfire incident it

1. **prepares** the inputs: a synthetic landscape (terrain, fuel, vegetation density, a lake and a
   river as firebreaks) generated reproducibly from the region and `seed`, the scenario (ignition cell,
   the cells inside an observed `perimeter` burning from the start, weather with its per-member
   perturbation) and the model code, all written to the object store and catalogued for the incident;
2. **selects** the machine (`SelectMachineOperator`: up, fits, earliest start, then cost);
3. runs a **mapped ensemble** of `ensemble_size` fire-spread simulations there
   (`include/wildfire/model.py`: the Alexandridis et al. 2008 cellular automaton driven by wind, slope,
   fuel and moisture) as batch jobs, submitted together and watched from the triggerer (no worker per
   member); each job **fetches** the inputs itself (presigned links, checked against their sha256,
   fetched once per run on the machine): no staging task before the first job;
4. each member's job **publishes** its own output to the object store (presigned links, sha256 computed
   on the machine), catalogued with lineage inputs → member when its end is judged: no task copies
   files off the machine;
5. **aggregates** the members into the burn-probability map (PNG with legend, km scale, ignition) and
   data files (npz, CSV of cells, GeoJSON contours), catalogued with lineage members → map;
6. opens a **result viewer** (a service container serving the map and data) that stays up after the run
   for `viewer_ttl_minutes` or until nobody keeps it alive.

Trigger it from this form, from `POST /api/v2/dags/wildfire_forecast/dagRuns` with the same conf, or
through `POST /urgentflow/incidents` (which also records the incident). Data pushed later with
`POST /urgentflow/incidents/{id}/data` (weather, perimeter) re-runs it through `ingest_observation`
when the incident asked for `updates`. See the README.
"""

INCIDENT_ID_PATTERN = "^(inc-[0-9a-f]{12})?$"
MACHINE = "{{ ti.xcom_pull(task_ids='select_machine')['machine'] }}"
PARTITION = "{{ ti.xcom_pull(task_ids='select_machine')['partition'] }}"
# A member's walltime: the deadline, within 5..60 minutes (WALLTIME_MINUTES renders the same from params).
WALLTIME_MINUTES = "{{ [5, [params.deadline_minutes, 60] | min] | max }}"
# A member's job: the model on the inputs its job fetched into its work directory (BatchJobOperator inputs).
MEMBER = (
    '"${URGENTFLOW_PYTHON:-python3}" model.py --landscape landscape.npz --scenario scenario.json'
    ' --member "$1" --out .'
)


def _wildfire(module: str) -> Any:
    """The science code of include/wildfire (imported in tasks only, never at parse time)."""
    import importlib
    import sys
    from pathlib import Path

    include = str(Path(__file__).resolve().parents[1] / "include")
    if include not in sys.path:
        sys.path.insert(0, include)
    return importlib.import_module(f"wildfire.{module}")


@dag(
    dag_id="wildfire_forecast",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["urgentflow", "use-case", "wildfire"],
    doc_md=DOC,
    default_args={"owner": "urgentflow", "retries": 1, "retry_delay": timedelta(seconds=10)},
    params={
        "incident_id": Param(
            "",
            type="string",
            pattern=INCIDENT_ID_PATTERN,
            description="set by POST /incidents; empty: a new incident is recorded",
        ),
        "name": Param("Demo fire, Serra de Monchique", type="string", pattern=NAME_PATTERN),
        "ignition": Param({"lat": 37.30, "lon": -8.55}, **param_schema(Point)),
        "region": Param(
            {"min_lon": -8.65, "min_lat": 37.22, "max_lon": -8.45, "max_lat": 37.38}, **param_schema(Region)
        ),
        "weather": Param(
            {"wind_speed_ms": 6.0, "wind_direction_deg": 315.0, "fuel_moisture": 0.08},
            **param_schema(Weather),
        ),
        "ensemble_size": Param(8, type="integer", minimum=1, maximum=200),
        "deadline_minutes": Param(60, type="integer", minimum=5, maximum=1440),
        "seed": Param(0, type="integer", minimum=0, maximum=2**31 - 1),
        "updates": Param(
            False, type="boolean", description="re-run when data is pushed (POST /incidents/{id}/data)"
        ),
        "perimeter": Param(
            None,
            anyOf=[param_schema(Perimeter), {"type": "null"}],
            description="observed fire perimeter (GeoJSON Polygon, lon/lat): its cells burn from the start",
        ),
        "kind": Param("wildfire", type="string", enum=["wildfire"]),
        "grid_cells": Param(
            160, type="integer", minimum=40, maximum=400, description="cells along the region's longer side"
        ),
        "forecast_hours": Param(8, type="integer", minimum=1, maximum=48),
        "viewer_ttl_minutes": Param(120, type="integer", minimum=5, maximum=1440),
    },
    render_template_as_native_obj=True,
    dagrun_timeout=timedelta(hours=6),
    max_active_runs=8,
)
def wildfire_forecast() -> None:
    @task
    def prepare(params: dict | None = None, ti: Any = None) -> dict:
        """Validate the incident, generate and store the inputs, catalogue them for the incident."""
        import json
        import tempfile
        from pathlib import Path

        from operators.catalog.catalog import Catalog, Producer
        from operators.incidents import WildfireIncident, new_incident_id
        from operators.storage.hook import ObjectStoreHook

        assert params is not None
        fields = set(WildfireIncident.model_fields)
        incident = WildfireIncident(**{k: v for k, v in params.items() if k in fields})
        catalog = Catalog()
        incident_id = params["incident_id"] or new_incident_id()
        if catalog.incident(incident_id) is None:
            catalog.create_incident(incident_id, incident.kind, incident.model_dump(mode="json"))
        catalog.record_incident_run(incident_id, ti.dag_id, ti.run_id, "running")

        landscape_mod, model_mod = _wildfire("landscape"), _wildfire("model")
        land = landscape_mod.generate(incident.region.model_dump(), int(params["grid_cells"]), incident.seed)
        row, col = ignition_cell(land, incident.ignition.lat, incident.ignition.lon)
        burning = (
            landscape_mod.cells_inside(land, incident.perimeter.coordinates) if incident.perimeter else []
        )
        minutes_per_step = 5
        scenario = {
            "ignition": [row, col],
            "burning": [list(cell) for cell in burning],
            "wind_speed_ms": incident.weather.wind_speed_ms,
            "wind_direction_deg": incident.weather.wind_direction_deg,
            "fuel_moisture": incident.weather.fuel_moisture,
            "duration_steps": int(params["forecast_hours"]) * 60 // minutes_per_step,
            "minutes_per_step": minutes_per_step,
            "base_seed": incident.seed,
            "perturbation": {
                "wind_speed_sd_ms": 1.5,
                "wind_direction_sd_deg": 15.0,
                "fuel_moisture_sd": 0.02,
            },
        }
        store = ObjectStoreHook()
        prefix = f"incidents/{incident_id}/{ti.run_id.replace(':', '-').replace('+', '-')}"
        producer = Producer.of(ti)
        keys, ids = {}, []
        with tempfile.TemporaryDirectory() as tmp:
            files = {
                "landscape.npz": landscape_mod.save(land, Path(tmp) / "landscape.npz"),
                "scenario.json": Path(tmp) / "scenario.json",
                "model.py": Path(model_mod.__file__),
            }
            files["scenario.json"].write_text(json.dumps(scenario, indent=2))
            for name, path in files.items():
                stored = store.put_file(f"{prefix}/inputs/{name}", path)
                keys[name] = stored.key
                ids.append(catalog.record_stored(stored, producer, incident_id))
        return {
            "incident_id": incident_id,
            "name": incident.name,
            "prefix": prefix,
            "members_prefix": f"{prefix}/members",
            "forecast_prefix": f"{prefix}/forecast",
            "keys": keys,
            "input_keys": [keys["model.py"], keys["landscape.npz"], keys["scenario.json"]],
            "input_ids": ids,
            "ignition": [row, col],
            "members": incident.ensemble_size,
            "walltime_minutes": walltime_minutes(incident.deadline_minutes),
            # a member left on a hold for a quarter of the deadline is cancelled and submitted afresh
            "held_timeout_minutes": max(1.0, incident.deadline_minutes / 4),
        }

    inputs = prepare()
    # Selection and the members' arguments need only the params: both run beside prepare, and the jobs
    # fetch their inputs themselves, so the first job goes out as soon as prepare and selection are done.
    select = SelectMachineOperator(
        task_id="select_machine", cores=1, memory_mb=1000, walltime_minutes=WALLTIME_MINUTES
    )

    @task
    def member_args(params: dict | None = None) -> list[dict]:
        """Each member's command and the two files its job publishes (no task copies them off the machine)."""
        assert params is not None
        return [
            {
                "command": ["bash", "-c", MEMBER, "member", str(i)],
                "outputs": [f"member-{i}.npz", f"member-{i}.json"],
            }
            for i in range(int(params["ensemble_size"]))
        ]

    members = BatchJobOperator.partial(
        task_id="simulate",
        machine=MACHINE,
        partition=PARTITION,
        memory_mb=1000,
        walltime_minutes=inputs["walltime_minutes"],
        held_timeout_minutes=inputs["held_timeout_minutes"],
        poll_interval=1.0,  # urgent: a member's end is known within a second (one squeue for all jobs)
        inputs=inputs["input_keys"],  # model.py, landscape.npz, scenario.json: fetched by each job
        output_prefix=inputs["members_prefix"],
        input_dataset_ids=inputs["input_ids"],  # lineage: inputs -> member
        incident_id=inputs["incident_id"],
    ).expand_kwargs(member_args())
    select >> members

    @task(outlets=[PUBLISHED])
    def aggregate(inputs: dict, jobs: list[dict], ti: Any = None, outlet_events: Any = None) -> dict:
        """Burn probability from every member, as a map a person can read and as data, catalogued.
        Its Asset event names the members' outputs and the map (``verify_published`` re-checks them)."""
        import tempfile
        from pathlib import Path

        from operators.catalog.catalog import Catalog, Producer
        from operators.storage.assets import event_extra, record_outlet_events
        from operators.storage.hook import ObjectStoreHook

        store, catalog = ObjectStoreHook(), Catalog()
        files = [
            o for job in jobs for o in job["outputs"]
        ]  # each member's npz and json, published by its job
        landscape_mod, aggregate_mod = _wildfire("landscape"), _wildfire("aggregate")
        with tempfile.TemporaryDirectory() as tmp:
            land_path = Path(tmp) / "landscape.npz"
            store.get_file(inputs["keys"]["landscape.npz"], land_path)
            land = landscape_mod.load(land_path)
            local = []
            for o in files:  # member-N.npz (arrival steps) and member-N.json (its weather and numbers)
                path = Path(tmp) / o["key"].rsplit("/", 1)[-1]
                store.get_file(o["key"], path)
                if path.suffix == ".npz":
                    local.append(path)
            result = aggregate_mod.aggregate(local, land)
            out = Path(tmp) / "forecast"
            out.mkdir()
            title = f"{inputs['name']} ({inputs['incident_id']})"
            made = [
                aggregate_mod.render_png(
                    result, land, inputs["ignition"], out / "burn_probability.png", title
                )
            ]
            made += aggregate_mod.save_data(result, out / "burn_probability.npz")
            producer = Producer.of(ti)
            member_ids = [o["dataset_id"] for o in files]
            published = []
            for path in made:
                kind = {".png": "image/png", ".csv": "text/csv", ".geojson": "application/geo+json"}
                stored = store.put_file(
                    f"{inputs['forecast_prefix']}/{path.name}",
                    path,
                    kind.get(path.suffix, "application/octet-stream"),
                )
                dataset_id = catalog.record_stored(stored, producer, inputs["incident_id"], member_ids)
                published.append(
                    {
                        "key": stored.key,
                        "dataset_id": dataset_id,
                        "size": stored.size,
                        "sha256": stored.sha256,
                    }
                )
        machines = ",".join(sorted({str(job["machine"]) for job in jobs}))
        extra = event_extra(
            store.bucket, [*files, *published], incident_id=inputs["incident_id"], machine=machines
        )
        record_outlet_events([PUBLISHED], {"outlet_events": outlet_events}, extra)
        return {"forecast": published, "members": result.n_members, "burned_area": result.area_stats()}

    forecast = aggregate(inputs, members.output)

    viewer = StartServiceOperator(
        task_id="result_viewer",
        image="urgentflow/viewer:1",
        container_port=8000,
        data_prefix=inputs["forecast_prefix"],
        ttl_minutes="{{ params.viewer_ttl_minutes }}",
        outlive_run=True,
        cpus=0.5,
        memory_mb=128,
    )
    forecast >> viewer


def walltime_minutes(deadline_minutes: int) -> int:
    return max(5, min(int(deadline_minutes), 60))


def ignition_cell(land: Any, lat: float, lon: float) -> tuple[int, int]:
    """The grid cell of a point (row 0 is north); moved to the nearest burnable cell when it falls on
    water or rock (the reported point is approximate)."""
    import numpy as np

    lon0, lat0 = land.cell_lonlat(0, 0)
    lon1, lat1 = land.cell_lonlat(1, 1)
    rows, cols = land.shape
    row = int(np.clip(round((float(lat0) - lat) / (float(lat0) - float(lat1))), 0, rows - 1))
    col = int(np.clip(round((lon - float(lon0)) / (float(lon1) - float(lon0))), 0, cols - 1))
    burnable = np.argwhere(np.asarray(land.fuel) > 0)
    nearest = burnable[np.argmin(((burnable - [row, col]) ** 2).sum(axis=1))]
    return int(nearest[0]), int(nearest[1])


wildfire_forecast()
