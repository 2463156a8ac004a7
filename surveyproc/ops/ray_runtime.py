"""Start or join Ray, and fan work units out to Ray tasks with backpressure and progress.

With no address an embedded local Ray starts for the duration of the command
and stops with it (the laptop default); with an address (``ray://host:10001``
or a GCS ``host:6379``), or ``RAY_ADDRESS`` set as Ray sets it for a submitted
job's driver, the same code joins a cluster.  Usage statistics are
off, and the dashboard only starts when asked for, so tests and laptops do not
open ports they do not need.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .progress import progress_bar

if TYPE_CHECKING:
    from ..jobs import JobSpec

__all__ = ["job_ray", "map_units", "ray_runtime"]

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


@contextlib.contextmanager
def ray_runtime(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    dashboard: bool = False,
) -> Iterator[None]:
    """Make Ray available inside the block.

    If Ray is already initialised (a caller or a test fixture did it) it is
    used as is and left running; otherwise Ray is started (or joined, with
    ``address``) here and shut down on exit.
    """
    import ray

    if ray.is_initialized():
        yield
        return
    # a job submitted to a cluster runs its driver with RAY_ADDRESS set: join that cluster
    address = address or os.environ.get("RAY_ADDRESS") or None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": True}
    if address:
        kwargs["address"] = address
    else:
        # Ray's default for a local cluster (token authentication) is what we want;
        # its notice about that default would print on every command.
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(
            logging.ERROR)
        kwargs.update(num_cpus=num_cpus, include_dashboard=dashboard)
    log.info("ray: %s", f"joining {address}" if address else "starting embedded local Ray")
    ray.init(**kwargs)
    try:
        yield
    finally:
        ray.shutdown()


def job_ray(job: JobSpec) -> contextlib.AbstractContextManager[None]:
    """The job's Ray (embedded or joined) for the duration of a ``with`` block."""
    return ray_runtime(job.ray.address, num_cpus=job.ray.num_cpus, dashboard=job.ray.dashboard)


def _apply(fn: Callable[[T], R], unit: T) -> R:
    return fn(unit)


def _unwrap(error: Exception) -> Exception:
    """Return the user's exception inside a Ray task error, if it is one of ours."""
    from ..errors import SurveyprocError

    cause = getattr(error, "cause", None)
    return cause if isinstance(cause, SurveyprocError) else error


def map_units(
    fn: Callable[[T], R],
    units: Sequence[T],
    *,
    weight: Callable[[T], int] = lambda unit: 1,
    parallel: bool = True,
    num_cpus: float = 1.0,
    max_in_flight: int | None = None,
    desc: str = "working",
    unit_name: str = "obj",
) -> Iterator[tuple[T, R]]:
    """Apply ``fn`` to every unit, on Ray tasks when ``parallel``; yield ``(unit, result)``.

    Results come in completion order, as soon as each is ready, so the caller
    can write or merge them without holding them all.  At most
    ``max_in_flight`` tasks are pending at once (default: twice the cluster's
    CPUs), so a million-unit plan never floods the object store.  The progress
    bar advances by ``weight(unit)`` (e.g. objects in the unit).  Serial mode
    runs in this process: for ``memory://`` stores, which other processes
    cannot see, and for debugging.  A task that raises a
    :class:`~surveyproc.errors.SurveyprocError` re-raises it here, unwrapped.
    """
    total = sum(weight(u) for u in units)
    with progress_bar(total=total, desc=desc, unit=unit_name) as bar:
        if not parallel:
            for unit in units:
                result = fn(unit)
                bar.update(weight(unit))
                yield unit, result
            return
        with ray_runtime():
            import ray

            remote: Any = ray.remote(num_cpus=num_cpus, max_retries=2)(_apply)
            fn_ref = ray.put(fn)  # shipped once, not once per unit
            limit = max_in_flight or max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
            pending: dict[Any, T] = {}
            queue = iter(units)
            try:
                while True:
                    for unit in queue:
                        pending[remote.remote(fn_ref, unit)] = unit
                        if len(pending) >= limit:
                            break
                    if not pending:
                        return
                    done, _ = ray.wait(list(pending), num_returns=1)
                    unit = pending.pop(done[0])
                    try:
                        result = ray.get(done[0])
                    except ray.exceptions.RayTaskError as error:
                        raise _unwrap(error) from None
                    bar.update(weight(unit))
                    yield unit, result
            finally:
                for ref in pending:
                    ray.cancel(ref)
