"""Predict's parts on a Dask cluster, through Prefect's integration (prefect-dask's ``DaskTaskRunner``).

``pipeline.dask_address`` names the cluster: ``local`` or a worker count starts a ``LocalCluster`` for the
stage (one thread per worker process, no dashboard), ``tcp://host:port`` connects to a running one. The
predict stage (:func:`triage.tasks.predict.predict`) cuts the tickets to compute into parts of thousands
and names each part's file; :func:`dask_parts` maps one Prefect task per part over the cluster and yields
the parts' results as they finish. A worker loads the model version once per process
(:func:`triage.models.loading.load_cached`) and writes its part to the lake itself; the driver sends no
secret, only the part's tickets and where the lake and the model store are.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect_dask import DaskTaskRunner

from triage.tasks.predict import PartJob, PartResult, PartRunner, predict_part


@task(name="predict part", cache_policy=NO_CACHE, persist_result=False)
def predict_part_task(job: PartJob) -> PartResult:
    """One part of predict's tickets through the model, written to the lake."""
    return predict_part(job)


def dask_runner(address: str) -> DaskTaskRunner:
    """The task runner for ``pipeline.dask_address`` (see the module's docstring)."""
    if "://" in address:
        return DaskTaskRunner(address=address)
    cluster: dict[str, Any] = {"threads_per_worker": 1, "processes": True, "dashboard_address": None}
    if address != "local":
        cluster["n_workers"] = int(address)
    return DaskTaskRunner(cluster_kwargs=cluster)


def dask_parts(address: str) -> PartRunner:
    """A :data:`~triage.tasks.predict.PartRunner` mapping the parts over the cluster at ``address``."""

    def run(jobs: Sequence[PartJob]) -> Iterator[PartResult]:
        if not jobs:
            return
        with dask_runner(address) as runner:
            futures = runner.map(predict_part_task, {"job": list(jobs)})
            for future in as_completed(futures):
                yield future.result()

    return run
