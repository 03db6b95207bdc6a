"""What the plugin's routers share about Airflow itself: the auth manager's permission checks, and DAG-run
triggering, run failing and Asset events done **in process** through Airflow's own code paths.

Nothing here calls back over HTTP: a plugin route runs inside the API server, so it uses the same
functions Airflow's REST routes use (``trigger_dag_run``, ``patch_dag_run_state``,
``create_asset_event``), after the same permission checks those routes' dependencies make. No address
is taken from the request, no caller credential is forwarded anywhere, and no worker thread waits on
another request of the same server. Each call writes an audit entry to Airflow's ``log`` table, like
Airflow's ``action_logging`` does for its own routes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from typing import Any, Literal

from airflow.api_fastapi.auth.managers.models.resource_details import (
    AssetDetails,
    DagAccessEntity,
    DagDetails,
)
from fastapi import HTTPException, Request

Method = Literal["GET", "POST", "PUT", "DELETE"]


def _auth_manager() -> Any:
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager()


def _team_of(dag_id: str) -> str | None:
    from airflow.configuration import conf

    if not conf.getboolean("core", "multi_team", fallback=False):
        return None
    from airflow.models.dag import DagModel

    return DagModel.get_team_name(dag_id)


def allowed(user: Any, dag_id: str | None, method: Method) -> bool:
    """May ``user`` do ``method`` (GET read, POST create, PUT change, DELETE) on the runs of ``dag_id``?

    ``dag_id=None`` (a record that belongs to no DAG) asks for the right on the runs of **every** DAG:
    auth managers read a DAG-less GET as "may list some DAGs", which is not enough here."""
    if dag_id is None:
        return allowed_everywhere(user, method)
    return bool(
        _auth_manager().is_authorized_dag(
            method=method,
            access_entity=DagAccessEntity.RUN,
            details=DagDetails(id=dag_id, team_name=_team_of(dag_id)),
            user=user,
        )
    )


def allowed_everywhere(user: Any, method: Method) -> bool:
    """Has ``user`` the right ``method`` on the runs of every DAG Airflow knows?"""
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        every = set(session.scalars(select(DagModel.dag_id)))
    return all(allowed(user, dag_id, method) for dag_id in every)


def require(user: Any, dag_id: str | None, method: Method, what: str) -> None:
    """403 unless ``allowed``; ``what`` says what was refused."""
    if not allowed(user, dag_id, method):
        raise HTTPException(status_code=403, detail=f"you may not {what}")


@cache
def _dag_bag() -> Any:
    """The API server's way to read serialized DAGs (cached like Airflow's own routes' DagBag)."""
    from airflow.api_fastapi.common.dagbag import create_dag_bag

    return create_dag_bag()


def _audit(session: Any, user: Any, event: str, dag_id: str | None, run_id: str | None, extra: dict) -> None:
    from airflow.models.log import Log

    name = user.get_name()
    session.add(
        Log(
            event=f"urgentflow.{event}",
            owner=name,
            owner_display_name=name,
            extra=json.dumps(extra),
            dag_id=dag_id,
            run_id=run_id,
        )
    )


def _refusal(exc: Exception) -> HTTPException:
    """What a caller is told when Airflow's own code refuses: its HTTPException as is; a duplicate run id
    409; a request body Airflow's model refuses 422; anything else 503 (the run was not created)."""
    from pydantic import ValidationError
    from sqlalchemy.exc import IntegrityError

    if isinstance(exc, HTTPException):
        return exc
    if isinstance(exc, IntegrityError):
        return HTTPException(status_code=409, detail="a run with this id exists already")
    if isinstance(exc, ValidationError):
        return HTTPException(
            status_code=422, detail=[{"loc": e["loc"], "msg": e["msg"]} for e in exc.errors()]
        )
    return HTTPException(status_code=503, detail=f"Airflow could not do it: {type(exc).__name__}")


def trigger_run(
    request: Request, user: Any, dag_id: str, body: dict[str, Any], undo: Callable[[], None]
) -> dict[str, Any]:
    """Create a run of ``dag_id`` as ``user``, exactly as ``POST /api/v2/dags/{dag_id}/dagRuns`` would
    (its permission check, the DAG's params schema, its run-id rules); the new run's ``dag_run_id`` and
    ``state``. On any refusal or failure ``undo()`` runs first and the refusal is raised (403, 404, 400,
    409, 422, 503)."""
    from airflow.api_fastapi.core_api.datamodels.dag_run import TriggerDAGRunPostBody

    try:
        require(user, dag_id, "POST", f"trigger {dag_id}")
        return create_run(request, user, dag_id, TriggerDAGRunPostBody.model_validate(body))
    except BaseException as exc:
        undo()
        if isinstance(exc, Exception):
            raise _refusal(exc) from None
        raise


def create_run(request: Request, user: Any, dag_id: str, post: Any) -> dict[str, Any]:
    """Airflow's own trigger route function, called in process in a session of its own."""
    from airflow.api_fastapi.core_api.routes.public.dag_run import trigger_dag_run
    from airflow.utils.session import create_session

    with create_session() as session:
        # the route function returns the DagRun row (FastAPI serialises it as its response model)
        run: Any = trigger_dag_run(dag_id, post, _dag_bag(), user, session, request)
        created = {"dag_run_id": run.run_id, "state": str(run.state)}
        _audit(session, user, "trigger_dag_run", dag_id, run.run_id, {"conf_keys": sorted(post.conf or {})})
    return created


def fail_run(user: Any, dag_id: str, run_id: str) -> bool:
    """Set a live run to failed as ``user`` (as ``PATCH .../dagRuns/{run_id} {"state": "failed"}``: its
    unfinished tasks fail, deferred ones lose their triggers, whose cleanup cancels their batch jobs, and
    the listeners hear of it). False when the run does not exist (any more)."""
    from airflow.api_fastapi.common.dagbag import get_dag_for_run
    from airflow.api_fastapi.core_api.datamodels.dag_run import DagRunMutableStates
    from airflow.api_fastapi.core_api.services.public.dag_run import patch_dag_run_state
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    require(user, dag_id, "PUT", f"change runs of {dag_id}")
    try:
        with create_session() as session:
            dag_run = session.scalar(select(DagRun).filter_by(dag_id=dag_id, run_id=run_id))
            if dag_run is None:
                return False
            dag = get_dag_for_run(_dag_bag(), dag_run, session=session)
            patch_dag_run_state(dag=dag, dag_run=dag_run, state=DagRunMutableStates.FAILED, session=session)
            _audit(session, user, "fail_dag_run", dag_id, run_id, {})
    except Exception as exc:
        raise _refusal(exc) from None
    return True


def asset_event(user: Any, uri: str, extra: dict[str, Any]) -> int:
    """Create an event of the Asset ``uri`` as ``user`` (as ``POST /api/v2/assets/events``, with its
    permission check); the event's id. 503 when Airflow does not know the asset (its DAG not deployed)."""
    from airflow.api_fastapi.core_api.datamodels.assets import CreateAssetEventsBody
    from airflow.api_fastapi.core_api.routes.public.assets import create_asset_event
    from airflow.models.asset import AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    try:
        with create_session() as session:
            asset_id = session.scalar(
                select(AssetModel.id).where(AssetModel.uri == uri, AssetModel.active.has())
            )
            if asset_id is None:
                raise HTTPException(
                    status_code=503, detail=f"the asset {uri} is not known to Airflow (is its DAG deployed?)"
                )
            if not _auth_manager().is_authorized_asset(
                method="POST", details=AssetDetails(id=str(asset_id)), user=user
            ):
                raise HTTPException(status_code=403, detail="you may not create asset events")
            event = create_asset_event(
                CreateAssetEventsBody(asset_id=asset_id, extra=extra), session=session, user=user
            )
            _audit(session, user, "create_asset_event", None, None, {"asset_id": asset_id})
            return int(event.id)
    except Exception as exc:
        raise _refusal(exc) from None
