"""The arguments of one task instance, worked out in the triggerer as a worker would (no worker started).

With ``start_from_trigger`` the scheduler hands a task straight to the triggerer. Airflow 3.3.2 renders
there only trigger kwargs that are also template fields, and with a context whose ``ti.xcom_pull`` of a
whole task (no ``map_indexes``) asks the supervisor for a message the triggerer does not serve: such a
template blocks the triggerer's event loop. So the trigger resolves the operator's arguments itself, in
a thread (``sync_to_async``), from the serialized task the triggerer hands it:

* a mapped task: its ``partial`` kwargs (``XComArg`` references pulled) and its own element of the
  ``expand``/``expand_kwargs`` input (one expanded argument or a list of dicts, from an XCom or literal);
* an unmapped task: the kwargs its ``__init__`` stored in ``start_trigger_args``;
* then every template field rendered with the DAG's Jinja environment (native when the DAG says so)
  and the task instance's context, ``ti.xcom_pull`` of an unmapped task reading its one value.

What it cannot resolve exactly as a worker would (an XCom of a mapped upstream, several expanded
arguments, user-defined macros) raises ``Unresolvable``: the task then runs the ordinary way, from a worker.
"""

from __future__ import annotations

import copy
import functools
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any


class Unresolvable(Exception):
    """The triggerer cannot work these arguments out the way a worker would."""


class TriggerTI:
    """A task instance in the triggerer as the operator's code expects one: ``xcom_pull`` of an unmapped
    upstream reads its one value (map index -1); ``xcom_push`` writes without the task's worker-side
    attributes (the serialized task has no ``returns_dag_result``)."""

    def __init__(self, ti: Any, dag: Any) -> None:
        self._ti = ti
        self._dag = dag

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ti, name)

    def xcom_pull(
        self, task_ids: Any = None, dag_id: Any = None, key: str = "return_value", **kwargs: Any
    ) -> Any:
        if "map_indexes" not in kwargs:
            if not isinstance(task_ids, str):
                raise Unresolvable("xcom_pull of several tasks")
            kwargs["map_indexes"] = _unmapped_index(self._dag, task_ids)
        ti = self._ti
        flight = (dag_id or ti.dag_id, ti.run_id, task_ids, key, repr(sorted(kwargs.items())))
        return _READS.read(flight, lambda: ti.xcom_pull(task_ids=task_ids, dag_id=dag_id, key=key, **kwargs))

    def xcom_push(self, key: str, value: Any) -> None:
        from airflow.sdk.execution_time.xcom import XCom

        ti = self._ti
        XCom.set(key, value, dag_id=ti.dag_id, task_id=ti.task_id, run_id=ti.run_id, map_index=ti.map_index)


def _unmapped_index(dag: Any, task_id: str) -> int:
    try:
        upstream = dag.get_task(task_id)
    except Exception as exc:
        raise Unresolvable(f"no task {task_id!r}") from exc
    if getattr(upstream, "is_mapped", False) or upstream.get_closest_mapped_task_group() is not None:
        raise Unresolvable(f"{task_id!r} is mapped")
    return -1


def _pull(ti: Any, dag: Any, task_id: str, key: str) -> Any:
    index = _unmapped_index(dag, task_id)
    return _READS.read(
        (ti.dag_id, ti.run_id, task_id, key, repr([("map_indexes", index)])),
        lambda: ti.xcom_pull(task_ids=task_id, key=key, map_indexes=index),
    )


class _SingleFlight:
    """Identical XCom reads are made once while in flight and for ``keep_seconds`` after: an ensemble's
    members start over seconds (200 triggers: ~7 s in Airflow 3.3.2) and each reads the same upstream
    values, one request at a time through the triggerer's supervisor (200 reads of a 200-element list took
    ~10 s). A value kept that briefly cannot be stale for a member: a member's trigger only exists once
    its upstream succeeded, and a cleared upstream runs again (a worker start, then the scheduler, then
    the triggerer's next loop) before any new member trigger reads it. Failed reads are not kept."""

    def __init__(self, keep_seconds: float = 2.0) -> None:
        self.keep_seconds = keep_seconds
        self._lock = threading.Lock()
        self._flights: dict[tuple[Any, ...], tuple[Future[Any], float]] = {}
        self._pinned = threading.local()

    @contextmanager
    def pinned(self) -> Iterator[None]:
        """Within this block, this thread reads each value once however long the block takes (one piece
        of work at one moment: the siblings of an ensemble worked out together, ``operators.hpc.ahead``)."""
        self._pinned.values = {}
        try:
            yield
        finally:
            self._pinned.values = None

    def read(self, key: tuple[Any, ...], fetch: Callable[[], Any]) -> Any:
        pinned: dict[tuple[Any, ...], Any] | None = getattr(self._pinned, "values", None)
        if pinned is None:
            return self._read(key, fetch)
        if key not in pinned:
            pinned[key] = self._read(key, fetch)
        return copy.deepcopy(pinned[key])

    def _read(self, key: tuple[Any, ...], fetch: Callable[[], Any]) -> Any:
        now = time.monotonic()
        with self._lock:
            for stale in [k for k, (f, until) in self._flights.items() if f.done() and until <= now]:
                del self._flights[stale]
            flight, _ = self._flights.get(key, (None, 0.0))
            leader = flight is None
            if flight is None:
                flight = Future()
                self._flights[key] = (flight, float("inf"))
        if not leader:
            return copy.deepcopy(flight.result())
        try:
            flight.set_result(fetch())
        except BaseException as exc:
            flight.set_exception(exc)
            with self._lock:
                self._flights.pop(key, None)
        else:
            with self._lock:
                self._flights[key] = (flight, time.monotonic() + self.keep_seconds)
        return copy.deepcopy(flight.result())


_READS = _SingleFlight()


def _reference(value: Any) -> tuple[str, str] | None:
    """``(task_id, key)`` of a serialized XCom reference (a partial kwarg or an expand input)."""
    from airflow.serialization.definitions.xcom_arg import SchedulerPlainXComArg, SchedulerXComArg
    from airflow.serialization.serialized_objects import _XComRef

    if isinstance(value, _XComRef):
        return str(value.data["task_id"]), str(value.data.get("key") or "return_value")
    if isinstance(value, SchedulerPlainXComArg):
        return value.operator.task_id, value.key
    if isinstance(value, SchedulerXComArg):
        raise Unresolvable(f"{type(value).__name__} (zip, map, concat) as an argument")
    return None


def _value(ti: Any, dag: Any, value: Any) -> Any:
    ref = _reference(value)
    return _pull(ti, dag, *ref) if ref else value


def _element(ti: Any, dag: Any, source: Any) -> Any:
    values = _value(ti, dag, source)
    if not isinstance(values, list | tuple) or not 0 <= ti.map_index < len(values):
        raise Unresolvable(f"map index {ti.map_index} is not in the expanded input")
    return values[ti.map_index]


def _expanded(ti: Any, task: Any) -> dict[str, Any]:
    from airflow.models.expandinput import SchedulerDictOfListsExpandInput, SchedulerListOfDictsExpandInput

    expand = task._get_specified_expand_input()
    if isinstance(expand, SchedulerDictOfListsExpandInput):
        if len(expand.value) != 1:
            raise Unresolvable("expand() over several arguments")
        [(name, source)] = expand.value.items()
        return {name: _element(ti, task.dag, source)}
    if isinstance(expand, SchedulerListOfDictsExpandInput):
        kwargs = _element(ti, task.dag, expand.value)
        if not isinstance(kwargs, Mapping) or any(_reference(v) for v in kwargs.values()):
            raise Unresolvable("expand_kwargs() element is not a plain dict")
        return dict(kwargs)
    raise Unresolvable(f"unknown expand input {type(expand).__name__}")


class _Rendering:
    """Renders task instances of one task: the context (params validated) and the Jinja environment are
    built once, from ``ti``; ``kwargs`` renders ``ti`` itself or a sibling of it with them."""

    def __init__(self, ti: Any, keep_templates: bool = False) -> None:
        from airflow.sdk.definitions._internal.templater import Templater, create_template_env

        self.task, self.dag = ti.task, ti.task.dag
        self.context: Any = dict(ti.get_template_context())
        native = getattr(self.task, "render_template_as_native_obj", None)
        native = bool(self.dag.render_template_as_native_obj if native is None else native)
        self.env = create_template_env(native=native)
        if keep_templates:  # each sibling renders the same template strings: compile each once
            self.env.from_string = functools.lru_cache(maxsize=1024)(self.env.from_string)  # type: ignore[method-assign,assignment]
        self.renderer = Templater()
        self.renderer.template_ext = ()
        self.renderer.render_template_as_native_obj = native  # type: ignore[attr-defined]

    def kwargs(self, ti: Any, stored: Mapping[str, Any] | None) -> dict[str, Any]:
        task, dag = self.task, self.dag
        if getattr(task, "is_mapped", False):
            raw = {k: _value(ti, dag, v) for k, v in task.partial_kwargs.items()}
            raw.update(_expanded(ti, task))
        elif stored is not None:
            raw = dict(stored)
        else:
            raise Unresolvable("the task stored no arguments")
        context: Any = dict(self.context)
        context["ti"] = context["task_instance"] = TriggerTI(ti, dag)
        for name in task.template_fields:
            if name in raw:
                try:
                    raw[name] = self.renderer.render_template(raw[name], context, self.env, set())
                except Unresolvable:
                    raise
                except Exception as exc:
                    raise Unresolvable(f"rendering {name}: {type(exc).__name__}: {exc}") from exc
        return raw


def operator_kwargs(ti: Any, stored: Mapping[str, Any] | None) -> dict[str, Any]:
    """The rendered ``__init__`` arguments of ``ti``'s task (``ti.task``: the serialized operator)."""
    return _Rendering(ti).kwargs(ti, stored)


def sibling_ti(ti: Any, map_index: int) -> Any:
    """``ti`` as its sibling ``map_index`` of the same mapped task (its own template context, built afresh)."""
    sibling = ti.model_copy(update={"map_index": map_index})
    sibling._cached_template_context = None
    return sibling


def sibling_kwargs(ti: Any, indexes: Iterable[int]) -> Iterator[tuple[Any, dict[str, Any] | Exception]]:
    """``(sibling task instance, its rendered arguments or why not)`` for each map index of ``ti``'s task:
    one context, one Jinja environment and one read of each upstream value for all of them."""
    with _READS.pinned():
        rendering = _Rendering(ti, keep_templates=True)
        for index in indexes:
            sibling = sibling_ti(ti, index)
            try:
                yield sibling, rendering.kwargs(sibling, None)
            except Exception as exc:
                yield sibling, exc
