"""``surveyproc aggregate JOB.yaml``: statistics of the job's catalog, on the job's Dask."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CheckpointNotFoundError, InvalidParameterError
from ..fs import is_local, join, normalize, resolve
from ..jobs import CausalSection, JobSpec, LocalTestsSection
from ..models import Checkpoint, load_checkpoint
from ..store import SurveyStore
from .aggregate import Aggregates, aggregate_catalog, dask_client
from .calibration import off_calibration
from .causal import bootstrap_graphs, catalog_variables, store_variables
from .local_tests import latent_model, latent_sample, run_local_tests
from .report import write_report

__all__ = ["AggregateResult", "aggregate_job"]

log = logging.getLogger(__name__)


@dataclass
class AggregateResult:
    report: str
    rows: int
    seconds: float
    #: Per estimate (a target, or ``<model>_<target>`` where several models estimate it),
    #: its bins off calibration (group, n, why), as the report lists them.
    off_calibration: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def warning(self) -> str | None:
        """One line naming the bins off calibration, or None when there are none (a bin is
        named with its estimate unless the bin's name starts with it).

        >>> AggregateResult("r", 1, 0.0, {"redshift": [{"group": "redshift 0-0.1"}],
        ...     "clap_redshift": [{"group": "r 16-17 mag"}]}).warning()[:76]
        'warning: 2 bins off calibration (redshift 0-0.1, clap_redshift: r 16-17 mag)'
        """
        named = [b["group"] if b["group"].startswith(estimate) else f"{estimate}: {b['group']}"
                 for estimate, bins in self.off_calibration.items() for b in bins]
        if not named:
            return None
        shown = ", ".join(named[:4]) + (f" and {len(named) - 4} more" if len(named) > 4 else "")
        return (f"warning: {len(named)} bins off calibration ({shown}); the report's "
                "calibration sections say why")


def causal_variables(settings: CausalSection, aggregates: Aggregates, store: SurveyStore,
                     storage_options: dict[str, Any] | None) -> dict[str, np.ndarray]:
    """The causal variables the job asks for: the store's, sampled from the store, or with
    ``features`` a sparse model's most frequent activations too, sampled from the catalog."""
    if not settings.features:
        return store_variables(store, settings.rows, labels=settings.labels)
    sparse = [m for m in aggregates.spec.sparse
              if settings.feature_model in (None, m.name)]
    if not sparse:
        msg = (f"aggregate.causal.features: {settings.feature_model or 'the catalog'} has no "
               "sparse feature columns (a sparse-feature model such as sfnet has)")
        raise InvalidParameterError(msg)
    model = sparse[0]
    assert aggregates.parts is not None
    top = aggregates.features[model.name].top(settings.features)
    return catalog_variables(aggregates.parts.urls, storage_options, store, model, top,
                             settings.rows, aggregates.rows, labels=settings.labels)


def local_tests(settings: LocalTestsSection, aggregates: Aggregates, store: SurveyStore,
                storage_options: dict[str, Any] | None) -> dict[str, Any]:
    """The local conditional-independence tests the job asks for, on a sample of the
    catalog's latent joined with the store's labels."""
    assert settings.target is not None and aggregates.parts is not None
    model = latent_model(aggregates.spec.models, settings.model)
    labels = list(dict.fromkeys([settings.target, *settings.queries,
                                 *([settings.condition] if settings.condition else [])]))
    latent, values = latent_sample(aggregates.parts.urls, storage_options, store, model,
                                   labels, settings.rows, aggregates.rows)
    try:
        result = run_local_tests(latent, values, settings.target, settings.queries,
                                 settings.condition, k=settings.k,
                                 neighbourhood_count=settings.neighbourhoods,
                                 permutations=settings.permutations, alpha=settings.alpha)
    except ValueError as error:
        raise InvalidParameterError(str(error)) from None
    latent_of = model.extra.get("latent", {}).get("input")
    result["model"] = model.name
    result["latent"] = (f"{model.name}'s estimator on {latent_of}" if latent_of else
                        f"{model.name}'s sparse feature activations")
    return result


def aggregate_job(job: JobSpec, store: SurveyStore) -> AggregateResult:
    """Aggregate the job's catalog against ``store`` and write the report."""
    catalog = job.outputs.catalog
    with dask_client(job.dask.address, job.dask.n_workers):
        aggregates = aggregate_catalog(catalog, store, job.output.storage_options,
                                       targets=job.targets, plugins=job.plugins,
                                       allow_partial=job.aggregate.allow_partial)
        causal = job.aggregate.causal
        if causal.enabled:
            variables = causal_variables(causal, aggregates, store, job.output.storage_options)
            aggregates.causal = bootstrap_graphs(
                np.column_stack(list(variables.values())), list(variables),
                causal.resamples, causal.alpha).to_dict()
        if job.aggregate.local_tests.enabled:
            aggregates.local_tests = local_tests(job.aggregate.local_tests, aggregates, store,
                                                 job.output.storage_options)
    checkpoints: dict[str, Checkpoint] = {}
    for model in job.models:
        try:
            checkpoints[model.name] = load_checkpoint(job.outputs.checkpoint(model.name),
                                                      job.output.storage_options)
        except CheckpointNotFoundError:
            log.info("model %s: no checkpoint; its kind's report section gets none",
                     model.name)
    off = {target: bins for target, table in aggregates.calibration.items()
           if (bins := off_calibration(table))}
    target = job.outputs.report
    title = f"surveyproc report: {job.name}"
    if is_local(target):
        path = write_report(aggregates, store, Path(normalize(target)), checkpoints, catalog,
                            title)
        return AggregateResult(str(path), aggregates.rows, aggregates.seconds, off)
    with tempfile.TemporaryDirectory(prefix="surveyproc-report-") as tmp:
        write_report(aggregates, store, Path(tmp), checkpoints, catalog, title)
        fs, remote = resolve(target, job.output.storage_options)
        fs.put(f"{tmp}/", remote, recursive=True)
    return AggregateResult(join(target, "index.html"), aggregates.rows, aggregates.seconds,
                           off)
