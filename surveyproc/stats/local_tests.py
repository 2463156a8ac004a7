"""Local conditional-independence tests in a learned latent (Zhang, Lin, Ting et al.).

A model's latent (``<model>_latent``, or a sparse model's feature activations)
places together galaxies whose input says the same about the target.  Within
each galaxy's ``k`` nearest neighbours there, any remaining correlation between
the target and a query variable (inclination, size, a colour) is information
about the target the input did not carry, and the correlation after regressing
both on a conditioning variable (redshift, say) asks whether the query matters
beyond that variable too.  Per neighbourhood we compute, as the paper's public
code does, the correlation (and the same after shuffling the query within the
neighbourhood, the null baseline), a permutation p-value, and the predictive
efficiency (the share of the target's variance a quadratic in the query
explains); the summary is their distribution over neighbourhoods and the share
of neighbourhoods dependent at level ``alpha`` (about ``alpha`` when the target
is locally independent of the query).

Neighbourhoods of nearby galaxies share members, so their tests are not
independent and the share's spread under independence is wider than binomial.
The verdict therefore uses only neighbourhoods with no member in common
(chosen greedily in random order): their tests are independent when the target
is locally independent of the query, so a one-sided binomial test of their count
of p < ``alpha`` is exact.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..catalog.schema import ModelColumns
from ..errors import InvalidParameterError
from ..store import SurveyStore
from .frames import dense_activations, list_values, sample_joined

__all__ = ["LocalTest", "disjoint_rows", "latent_model", "latent_sample", "local_correlation",
           "neighbourhoods", "permutation_pvalues", "predictive_efficiency",
           "quadratic_residual", "run_local_tests"]

#: Level of the binomial test behind a "dependent" verdict.
VERDICT_LEVEL = 0.01
#: Edges of the correlation histograms in the report.
CORRELATION_EDGES = np.linspace(-1.0, 1.0, 41)


def neighbourhoods(latent: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """(len(queries), k) indices into ``latent`` of each query row's ``k`` nearest
    neighbours (Euclidean, on standardised latent dimensions), the row itself excluded.

    >>> latent = np.array([[0.0], [1.0], [2.0], [10.0]])
    >>> neighbourhoods(latent, np.array([0, 3]), 2).tolist()
    [[1, 2], [2, 1]]
    """
    from sklearn.neighbors import NearestNeighbors

    x = np.asarray(latent, dtype=np.float64)
    spread = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    search = NearestNeighbors(n_neighbors=k + 1).fit(x)
    _, index = search.kneighbors(x[queries])
    # drop the query itself (not always first when points coincide)
    keep = index != np.asarray(queries)[:, None]
    return np.stack([row[mask][:k] for row, mask in zip(index, keep, strict=True)])


def local_correlation(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of ``y`` with the same row of ``x`` ((m, k) each);
    NaN where either is constant.

    >>> local_correlation(np.array([[1.0, 2, 3]]), np.array([[2.0, 4, 7]])).round(4).tolist()
    [0.9934]
    """
    dy = y - y.mean(axis=1, keepdims=True)
    dx = x - x.mean(axis=1, keepdims=True)
    norm = np.sqrt((dy ** 2).sum(axis=1) * (dx ** 2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, (dy * dx).sum(axis=1) / norm, np.nan)


def quadratic_residual(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``y`` less its least-squares quadratic in ``x``, row by row ((m, k) each).

    >>> x = np.array([[0.0, 1, 2, 3]])
    >>> bool(np.abs(quadratic_residual(1 + x - 2 * x ** 2, x)).max() < 1e-9)
    True
    """
    # x centred and scaled per row: the same fit, better conditioned
    spread = x.std(axis=1, keepdims=True)
    u = (x - x.mean(axis=1, keepdims=True)) / np.where(spread > 0, spread, 1.0)
    design = np.stack([np.ones_like(u), u, u ** 2], axis=2)  # (m, k, 3)
    coef = np.linalg.pinv(design) @ y[..., None]  # (m, 3, 1); pinv: a constant x is fine
    return y - (design @ coef)[..., 0]


def predictive_efficiency(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Per row, the share of the variance of ``y`` that a quadratic in ``x`` explains."""
    residual = quadratic_residual(y, x)
    total = ((y - y.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    left = ((residual - residual.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 1.0 - left / total, np.nan)


def permutation_pvalues(y: np.ndarray, x: np.ndarray, permutations: int,
                        rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the two-sided permutation p-value of the correlation of ``y`` with ``x``
    (``x`` shuffled within the row ``permutations`` times; (1 + hits) / (1 + permutations)),
    and the correlation of one shuffle (the null baseline the report plots)."""
    observed = np.abs(local_correlation(y, x))
    hits = np.zeros(len(y))
    first = np.full(len(y), np.nan)
    for p in range(permutations):
        shuffled = rng.permuted(x, axis=1)
        null = local_correlation(y, shuffled)
        if p == 0:
            first = null
        hits += np.abs(null) >= observed
    return (1.0 + hits) / (1.0 + permutations), first


@dataclass
class LocalTest:
    """One query variable's tests over all neighbourhoods, unconditional and (when a
    conditioning variable is given) after regressing it out."""

    query: str
    correlation: np.ndarray
    permuted: np.ndarray
    pvalue: np.ndarray
    efficiency: np.ndarray
    disjoint: np.ndarray  # neighbourhoods sharing no member (the verdict's)
    conditional: LocalTest | None = None

    def summary(self, alpha: float) -> dict[str, Any]:
        """Means over neighbourhoods, the share dependent at ``alpha``, the verdict from the
        disjoint neighbourhoods (binomial test at level 0.01), and the correlation
        histograms."""
        from scipy.stats import binomtest

        m = int(np.isfinite(self.pvalue).sum())
        share = float(np.nanmean(self.pvalue < alpha)) if m else float("nan")
        tested = self.pvalue[self.disjoint & np.isfinite(self.pvalue)]
        hits = int((tested < alpha).sum())
        binomial = (float(binomtest(hits, len(tested), alpha, alternative="greater").pvalue)
                    if len(tested) else float("nan"))
        out: dict[str, Any] = {
            "query": self.query, "neighbourhoods": m,
            "mean_correlation": float(np.nanmean(self.correlation)),
            "mean_abs_correlation": float(np.nanmean(np.abs(self.correlation))),
            "mean_abs_correlation_permuted": float(np.nanmean(np.abs(self.permuted))),
            "mean_predictive_efficiency": float(np.nanmean(self.efficiency)),
            "share_dependent": share, "share_expected_if_independent": alpha,
            "disjoint_neighbourhoods": len(tested), "disjoint_dependent": hits,
            "binomial_pvalue": binomial, "dependent": bool(binomial < VERDICT_LEVEL),
            "histogram": {"edges": CORRELATION_EDGES.tolist(),
                          "correlation": _histogram(self.correlation),
                          "permuted": _histogram(self.permuted)}}
        if self.conditional is not None:
            out["conditional"] = self.conditional.summary(alpha)
        return out


def _histogram(values: np.ndarray) -> list[int]:
    return np.histogram(values[np.isfinite(values)], CORRELATION_EDGES)[0].tolist()


def disjoint_rows(index: np.ndarray) -> np.ndarray:
    """Mask of the rows of ``index`` (neighbourhoods as member indices) kept greedily, in
    order, when none of their members is in a neighbourhood kept before.

    >>> disjoint_rows(np.array([[0, 1], [1, 2], [3, 4], [4, 5]])).tolist()
    [True, False, True, False]
    """
    used: set[int] = set()
    keep = np.zeros(len(index), dtype=bool)
    for row, members in enumerate(index):
        if used.isdisjoint(members.tolist()):
            keep[row] = True
            used.update(members.tolist())
    return keep


def _test(y: np.ndarray, x: np.ndarray, query: str, permutations: int,
          rng: np.random.Generator, disjoint: np.ndarray) -> LocalTest:
    pvalue, permuted = permutation_pvalues(y, x, permutations, rng)
    return LocalTest(query, local_correlation(y, x), permuted, pvalue,
                     predictive_efficiency(y, x), disjoint)


def run_local_tests(latent: np.ndarray, values: Mapping[str, np.ndarray], target: str,
                    queries: Sequence[str], condition: str | None = None, *, k: int = 100,
                    neighbourhood_count: int = 2000, permutations: int = 200,
                    alpha: float = 0.05, seed: int = 0) -> dict[str, Any]:
    """The tests of ``target`` against each of ``queries`` (and given ``condition``) in the
    neighbourhoods of ``neighbourhood_count`` random rows of ``latent`` (rows with any of
    these values unknown are left out first).

    Returns the summary the report shows: per query, :meth:`LocalTest.summary`.
    """
    names = [target, *queries, *([condition] if condition else [])]
    known = np.isfinite(np.asarray(latent, dtype=np.float64)).all(axis=1)
    for name in names:
        known &= np.isfinite(np.asarray(values[name], dtype=np.float64))
    rows = np.flatnonzero(known)
    if len(rows) <= k:
        msg = (f"local tests: {len(rows)} galaxies have a latent and every value of "
               f"{', '.join(names)}; need more than k={k}")
        raise ValueError(msg)
    rng = np.random.default_rng(seed)
    centres = rng.choice(len(rows), min(neighbourhood_count, len(rows)), replace=False)
    index = neighbourhoods(np.asarray(latent)[rows], centres, k)
    # a neighbourhood's members include its centre for the disjointness check
    disjoint = disjoint_rows(np.column_stack([centres, index]))
    local = {name: np.asarray(values[name], dtype=np.float64)[rows][index] for name in names}
    y = local[target]
    tests = []
    for query in queries:
        test = _test(y, local[query], query, permutations, rng, disjoint)
        if condition:
            test.conditional = _test(quadratic_residual(y, local[condition]),
                                     quadratic_residual(local[query], local[condition]),
                                     query, permutations, rng, disjoint)
        tests.append(test.summary(alpha))
    return {"target": target, "condition": condition, "k": k, "alpha": alpha,
            "permutations": permutations, "galaxies": len(rows), "tests": tests}


def latent_model(models: Sequence[ModelColumns], name: str | None) -> ModelColumns:
    """The model whose latent the tests search: ``name``, else the first with a latent
    column or sparse activations (one clear line when there is none)."""
    usable = [m for m in models if "latent" in m.extra or m.k is not None]
    chosen = [m for m in usable if name is None or m.name == name]
    if not chosen:
        have = ", ".join(m.name for m in usable) or "none"
        msg = (f"aggregate.local_tests: {f'model {name}' if name else 'the catalog'} has no "
               f"latent (models with one: {have}); an mi_decomposition model with latent set, "
               "or a sparse-feature model, provides it")
        raise InvalidParameterError(msg)
    return chosen[0]


def latent_sample(parts: Sequence[str], storage_options: dict[str, Any] | None,
                  store: SurveyStore, model: ModelColumns, labels: Sequence[str], rows: int,
                  total_rows: int, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """About ``rows`` random catalog rows (of ``total_rows``) as (latent, {label: values}),
    read and joined with the store's labels on Dask.  A sparse model's latent is its
    activations spread over all its features (zero where inactive)."""
    missing = [name for name in labels if name not in store.label_names]
    if missing:
        msg = (f"aggregate.local_tests: {', '.join(missing)} is not a label of the store "
               f"({', '.join(store.label_names)})")
        raise InvalidParameterError(msg)
    columns = ([model.extra["latent"]["column"]] if "latent" in model.extra
               else [model.act_idx, model.act_val])
    table = sample_joined(parts, storage_options, store, columns,
                          [f"labels/{name}" for name in labels], rows, total_rows, seed)
    latent = (list_values(table[columns[0]]).astype(np.float64) if "latent" in model.extra
              else dense_activations(table, model.act_idx, model.act_val, model.n_features))
    values = {name: table[name].to_numpy(dtype=np.float64, na_value=np.nan)
              for name in labels}
    return latent, values
