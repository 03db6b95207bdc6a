#!/usr/bin/env python3
"""Run the main DAG on the embedded runtime through the REST API and follow it to the end.

    scripts/demo.py [--dag wildfire_forecast] [--conf '{"ensemble_size": 8}'] [--timeout 900]

Unpauses the DAG, waits until it is parsed, starts a run, prints one line per change of a task's
state, then the run's state, the return values of the last tasks (where the results are), the UI
URL of the run and how to log in. The flagship ``wildfire_forecast`` is started the way an operator
reports an incident, ``POST /urgentflow/incidents``, and its map, data and result viewer are printed;
other DAGs are triggered with ``POST /api/v2/dags/{id}/dagRuns``. Exits non-zero when the run fails,
with the failed tasks' logs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from airflow_client import USERNAME, AirflowClient, ApiError, passwords_file, run_url

MAIN_DAG = "wildfire_forecast"
# The conf each DAG is triggered with unless --conf is given (keys override these).
DEFAULT_CONF: dict[str, dict[str, Any]] = {
    "quickstart": {"members": 3, "size": 64, "seed": 7},
    "wildfire_forecast": {
        "kind": "wildfire",
        "name": "Demo fire, Serra de Monchique",
        "ignition": {"lat": 37.30, "lon": -8.55},
        "region": {"min_lon": -8.65, "min_lat": 37.22, "max_lon": -8.45, "max_lat": 37.38},
        "weather": {"wind_speed_ms": 6.0, "wind_direction_deg": 315.0, "fuel_moisture": 0.08},
        "ensemble_size": 8,
        "deadline_minutes": 60,
        "seed": 0,
    },
}
INCIDENT_DAGS = {"wildfire_forecast"}
LOG_LINES = 25
STATE_ORDER = [
    "success",
    "running",
    "deferred",
    "queued",
    "scheduled",
    "up_for_retry",
    "up_for_reschedule",
    "restarting",
    "failed",
    "upstream_failed",
    "skipped",
    "removed",
    "none",
]


def topo_order(tasks: list[dict]) -> list[str]:
    """Task ids upstream first (ties by name), so the progress reads in pipeline order."""
    downstream = {t["task_id"]: sorted(t.get("downstream_task_ids") or []) for t in tasks}
    indegree = Counter(d for ds in downstream.values() for d in ds)
    ready = sorted(t for t in downstream if indegree[t] == 0)
    order: list[str] = []
    while ready:
        task = ready.pop(0)
        order.append(task)
        for d in downstream[task]:
            indegree[d] -= 1
            if indegree[d] == 0:
                ready.append(d)
        ready.sort()
    return order + sorted(set(downstream) - set(order))


def summarize(tis: list[dict]) -> str:
    """One task's state: 'success' or, for a mapped task, '3 mapped: 2 success, 1 running'."""
    mapped = [ti for ti in tis if ti["map_index"] >= 0]
    if not mapped:
        ti = tis[0]
        state = ti["state"] or "none"
        return f"{state} (try {ti['try_number']})" if ti["try_number"] > 1 else state
    counts = Counter(ti["state"] or "none" for ti in mapped)
    parts = ", ".join(
        f"{counts[s]} {s}"
        for s in sorted(counts, key=lambda s: STATE_ORDER.index(s) if s in STATE_ORDER else 99)
    )
    return f"{len(mapped)} mapped: {parts}"


class Progress:
    """Prints a line when the run's state or a task's summary changes (never the same line twice)."""

    def __init__(self, order: list[str]) -> None:
        self.order = order
        self.t0 = time.monotonic()
        self.seen: dict[str, str] = {}
        self.width = max((len(t) for t in order), default=10)

    def line(self, name: str, text: str) -> None:
        print(f"  [{time.monotonic() - self.t0:6.1f}s] {name:<{self.width}}  {text}", flush=True)

    def __call__(self, run: dict, tis: list[dict]) -> None:
        if self.seen.get("\0run") != run["state"]:
            self.seen["\0run"] = run["state"]
            self.line("(run)", run["state"])
        by_task: dict[str, list[dict]] = {}
        for ti in tis:
            by_task.setdefault(ti["task_id"], []).append(ti)
        for task in self.order + sorted(set(by_task) - set(self.order)):
            if task not in by_task:
                continue
            text = summarize(by_task[task])
            if self.seen.get(task) != text and not (task not in self.seen and text == "none"):
                self.seen[task] = text
                self.line(task, text)


def show_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 400 else text[:400] + " ..."


def report_results(
    client: AirflowClient, dag_id: str, run_id: str, tasks: list[dict], tis: list[dict]
) -> None:
    leaves = {t["task_id"] for t in tasks if not t.get("downstream_task_ids")}
    shown = 0
    for ti in sorted(tis, key=lambda t: (t["task_id"], t["map_index"])):
        if ti["task_id"] not in leaves or ti["state"] != "success":
            continue
        value = client.xcom(dag_id, run_id, ti["task_id"], map_index=ti["map_index"])
        if value is None:
            continue
        label = ti["task_id"] + (f"[{ti['map_index']}]" if ti["map_index"] >= 0 else "")
        if shown == 0:
            print("results (return values of the last tasks):")
        if shown < 10:
            print(f"  {label}: {show_value(value)}")
        shown += 1
    if shown > 10:
        print(f"  ... and {shown - 10} more")


def report_incident(client: AirflowClient, incident_id: str, run_id: str) -> None:
    """The forecast's map, data files and result viewer, as ``GET /urgentflow/incidents/{id}`` gives them."""
    found = client.request("GET", f"/urgentflow/incidents/{incident_id}")
    (run,) = [r for r in found["runs"] if r["run_id"] == run_id]
    jobs = Counter((j["machine"], j["state"]) for j in run["jobs"])
    print(
        "batch jobs: "
        + ", ".join(f"{n} {state} on {machine}" for (machine, state), n in sorted(jobs.items()))
    )
    print("forecast (download links valid for 1 hour):")
    for result in run["results"]:
        if "/forecast/" in result["key"]:
            print(f"  {result['key'].rsplit('/', 1)[-1]:<28} {result['size']:>9} B  {result['download']}")
    for service in run["services"]:
        print(f"result viewer ({service['state']}): {service['url']}/")
    print(
        f"incident: {client.base}/urgentflow/incidents/{incident_id} (JSON), all incidents: {client.base}/urgentflow/ui/incidents"
    )


def report_failures(client: AirflowClient, dag_id: str, run_id: str, tis: list[dict]) -> None:
    failed = [ti for ti in tis if ti["state"] == "failed"]
    blocked = sorted({ti["task_id"] for ti in tis if ti["state"] == "upstream_failed"})
    for ti in failed:
        label = ti["task_id"] + (f"[{ti['map_index']}]" if ti["map_index"] >= 0 else "")
        print(f"\nFAILED {label} (try {ti['try_number']}), last lines of its log:")
        try:
            lines = client.task_log(dag_id, run_id, ti["task_id"], ti["try_number"], ti["map_index"])
        except ApiError as exc:
            lines = [f"(could not read the log: {exc})"]
        for line in lines[-LOG_LINES:]:
            print(f"    {line}")
    if blocked:
        print(f"\nnot run because an upstream task failed: {', '.join(blocked)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dag", default=MAIN_DAG, help=f"DAG id (default {MAIN_DAG})")
    parser.add_argument("--conf", default=None, help="run conf as JSON, merged over the DAG's default conf")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the run")
    parser.add_argument("--parse-timeout", type=float, default=90.0, help="seconds to wait for parsing")
    args = parser.parse_args(argv)

    conf = dict(DEFAULT_CONF.get(args.dag, {}))
    if args.conf:
        try:
            given = json.loads(args.conf)
        except json.JSONDecodeError as exc:
            parser.error(f"--conf is not valid JSON: {exc}")
        if not isinstance(given, dict):
            parser.error("--conf must be a JSON object")
        conf.update(given)

    client = AirflowClient()
    try:
        try:
            client.health()
        except ApiError:
            print(
                f"ERROR: the Airflow runtime does not answer at {client.base}: start it with `make up`",
                file=sys.stderr,
            )
            return 2
        t0 = time.monotonic()
        client.wait_for_dag(args.dag, timeout=args.parse_timeout)
        client.unpause(args.dag)
        tasks = client.dag_tasks(args.dag)
        incident_id = None
        if args.dag in INCIDENT_DAGS:
            created = client.request("POST", "/urgentflow/incidents", json=conf, ok=(201,))
            incident_id, run_id = created["incident_id"], created["run_id"]
            print(f"reported incident {incident_id} ({conf.get('name')}): {args.dag} run {run_id}")
        else:
            run_id = client.trigger(args.dag, conf)["dag_run_id"]
            print(f"triggered {args.dag} run {run_id} with conf {json.dumps(conf)}")
        progress = Progress(topo_order(tasks))
        run = client.wait_for_run(args.dag, run_id, timeout=args.timeout, on_poll=progress)
        tis = client.task_instances(args.dag, run_id)
        print(f"\nrun {run_id}: {run['state'].upper()} in {time.monotonic() - t0:.1f} s")
        if run["state"] == "success" and incident_id:
            report_incident(client, incident_id, run_id)
        elif run["state"] == "success":
            report_results(client, args.dag, run_id, tasks, tis)
        else:
            report_failures(client, args.dag, run_id, tis)
        print(f"UI: {run_url(args.dag, run_id, client.base)}")
        print(f"login: user {USERNAME}, password in {passwords_file()}")
        return 0 if run["state"] == "success" else 1
    except ApiError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
