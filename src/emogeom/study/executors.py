"""Where jobs run. Both executors call the same ``compute_job`` and hand each result back to
the caller, which writes it: workers never touch the output folder, so a Ray cluster needs no
shared file system and a killed worker leaves nothing half-written.

GPUs: local worker processes are pinned to the visible GPUs round-robin (each worker's
``CUDA_VISIBLE_DEVICES`` is set before torch starts CUDA in it, and ``$EMOGEOM_DEVICE`` tells
its load path to use that GPU, see ``models.devices.job_device``); a Ray task with
``num_gpus`` > 0 runs on the GPU Ray assigns it (Ray sets ``CUDA_VISIBLE_DEVICES``; the task
gets ``EMOGEOM_DEVICE=cuda``). Without a GPU nothing changes."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from typing import Any

from emogeom.errors import EmogeomError
from emogeom.models.devices import DEVICE_ENV, visible_gpus, worker_gpu
from emogeom.study.jobs import Inputs, ModelTask, compute_job

# One unit of work: a model task (its jobs of one model × precision), inputs and reference RDMs
# by preset; ``compute_job`` returns {job name: payload}.
Done = Callable[[ModelTask, dict[str, dict[str, Any]]], None]
Failed = Callable[[ModelTask, BaseException], None]
Work = tuple[ModelTask, dict[str, Inputs], dict[str, dict[str, Any]]]


def run_local(work: Iterable[Work], on_done: Done, on_failed: Failed, jobs: int = 1,
              console=None) -> None:
    """Run jobs in this process one after another, or in ``jobs`` worker processes."""
    work = list(work)
    if jobs <= 1 or len(work) <= 1:
        for job, inputs, refs in work:
            try:
                payload = compute_job(job, inputs, refs, console)
            except Exception as exc:  # noqa: BLE001 - one failed job must not stop the study
                on_failed(job, exc)
                continue
            on_done(job, payload)
        return
    context = get_context("spawn")
    pinning: dict[str, Any] = {}
    gpus = visible_gpus()
    if gpus:
        slots = context.Queue()
        for index in range(jobs):
            slots.put(worker_gpu(index, gpus))
        pinning = {"initializer": pin_worker, "initargs": (slots,)}
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context, **pinning) as pool:
        futures = {pool.submit(compute_job, job, inputs, refs): job for job, inputs, refs in work}
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                exc = fut.exception()
                if exc is not None:
                    on_failed(futures[fut], exc)
                else:
                    on_done(futures[fut], fut.result())


def pin_worker(slots) -> None:
    """Pool initializer: take this worker's GPU from ``slots`` and pin the process to it
    before anything in it starts CUDA."""
    try:
        gpu = slots.get(timeout=5)
    except Exception:  # noqa: BLE001 - no slot left: share the GPUs as they are
        return
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
        os.environ[DEVICE_ENV] = "cuda"


def ray_task_options(num_cpus: float, num_gpus: float) -> dict[str, Any]:
    """``ray.remote`` options of a job task: its CPUs and GPUs, no retry, and with GPUs
    ``EMOGEOM_DEVICE=cuda`` so the job loads onto the GPU Ray assigned it."""
    options: dict[str, Any] = {"num_cpus": num_cpus, "num_gpus": num_gpus, "max_retries": 0}
    if num_gpus > 0:
        options["runtime_env"] = {"env_vars": {DEVICE_ENV: "cuda"}}
    return options


def run_ray(work: Iterable[Work], on_done: Done, on_failed: Failed, address: str | None = None,
            num_cpus: float = 1, num_gpus: float = 0, max_in_flight: int | None = None,
            local_cpus: int | None = None) -> None:
    """Run each job as a Ray task (``num_cpus``/``num_gpus`` each) on the cluster at
    ``address``, or on a local Ray started here with ``local_cpus`` CPUs."""
    try:
        import ray
    except ImportError:
        raise EmogeomError("the Ray executor needs Ray: pip install 'emogeom[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "configure_logging": False}
        if address:
            kwargs["address"] = address
        else:
            kwargs["num_cpus"] = local_cpus or os.cpu_count() or 1
        ray.init(**kwargs)
    try:
        task = ray.remote(**ray_task_options(num_cpus, num_gpus))(compute_job)
        queue = list(work)
        limit = max_in_flight or len(queue) or 1
        in_flight: dict[Any, ModelTask] = {}
        while queue or in_flight:
            while queue and len(in_flight) < limit:
                job, inputs, refs = queue.pop(0)
                in_flight[task.remote(job, inputs, refs)] = job
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in ready:
                job = in_flight.pop(ref)
                try:
                    payload = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - RayTaskError wraps the job's error
                    on_failed(job, getattr(exc, "cause", None) or exc)
                    continue
                on_done(job, payload)
    finally:
        if started_here:
            ray.shutdown()
