"""The locked Celery and its Airflow provider fit together (scaled mode's CeleryExecutor loads).

celery 5.7 dropped ``celery.backends.database.retry``, which apache-airflow-providers-celery 3.26.0
imports: with it the scheduler of the scaled mode could not load its executor at all.
"""

from __future__ import annotations


def test_celery_executor_and_its_worker_task_import() -> None:
    from airflow.providers.celery.executors import celery_executor, celery_executor_utils

    assert celery_executor.CeleryExecutor.__name__ == "CeleryExecutor"
    assert celery_executor_utils.execute_workload.name == "execute_workload"
