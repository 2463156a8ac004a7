"""Causal discovery over catalog-level variables, with bootstrap edge confidence on Dask.

The PC algorithm of causal-learn (Spirtes & Glymour; Fisher-z partial-correlation
tests on standardised variables) gives a graph over integrated photometry,
colours and the store's physical and morphological labels (inclination, size),
and optionally a sparse model's most frequent feature activations (zero where a
feature is inactive: a zero-inflated variable, which Fisher-z treats as linear);
refitting it on bootstrap resamples, one Dask task each, gives every edge's
frequency -- the confidence the report draws it with.  Fisher-z assumes linear
Gaussian relations: monotone non-linear ones are mostly found, others may be
missed, which the edge frequencies and the benchmark against the synthetic
survey's own graph (:mod:`surveyproc.store.synth.graph`) show.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..catalog.schema import ModelColumns
from ..store import SurveyStore
from .frames import dense_activations, sample_joined

__all__ = ["CausalGraph", "bootstrap_graphs", "catalog_variables", "causal_labels", "discover",
           "edge_scores", "store_variables"]

#: Labels never used as causal variables: line fluxes and errors are many, noisy and
#: partly missing; a binary class breaks the Gaussian test.
_SKIP_PREFIXES = ("flux_",)
_SKIP = {"agn"}
#: A variable unknown for more than this fraction of the sample is left out (the test
#: needs complete rows).
MAX_MISSING = 0.3


@dataclass
class CausalGraph:
    """Edges among ``names``: the skeleton (pairs) and, where PC orients one, its direction
    (cause, effect); ``frequency`` is each pair's share of bootstrap graphs having it."""

    names: list[str]
    adjacent: set[frozenset[str]]
    directed: set[tuple[str, str]]
    frequency: dict[frozenset[str], float] = field(default_factory=dict)
    #: Variables left out, with why (an exact linear function of others: the tests' partial
    #: correlations are undefined with it).
    dropped: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        pairs = sorted(self.adjacent | set(self.frequency), key=sorted)
        return {"variables": self.names, "dropped": self.dropped,
                "edges": [{"pair": sorted(p), "in_graph": p in self.adjacent,
                           "direction": next(([a, b] for a, b in self.directed
                                              if {a, b} == set(p)), None),
                           "bootstrap_frequency": self.frequency.get(p)} for p in pairs]}


#: A variable whose R^2 on the variables kept before it exceeds this is left out: it is a
#: linear function of them but for a handful of rows, which a bootstrap resample may miss
#: (leaving a singular correlation matrix).
COLLINEAR_R2 = 0.9995


def collinear(data: np.ndarray, names: Sequence[str]) -> dict[str, str]:
    """Variables (after the first) that are, on the complete rows of ``data``, a linear
    function of the ones kept before them (R^2 above :data:`COLLINEAR_R2`), with why.

    >>> x = np.arange(10.0)
    >>> collinear(np.column_stack([x, x ** 2, 3 * x + 1]), ["a", "b", "c"])
    {'c': 'a linear function of a, b'}
    """
    x = _standardised(data)
    kept: list[int] = []
    dropped = {}
    for j in range(x.shape[1]):
        if kept:
            fit = np.linalg.lstsq(x[:, kept], x[:, j], rcond=None)[0]
            left = x[:, j] - x[:, kept] @ fit
            if 1 - left.var() / max(x[:, j].var(), 1e-300) > COLLINEAR_R2:
                dropped[names[j]] = f"a linear function of {', '.join(names[k] for k in kept)}"
                continue
        kept.append(j)
    return dropped


def _standardised(data: np.ndarray) -> np.ndarray:
    """The complete rows of ``data``, each column standardised."""
    x = np.asarray(data, dtype=np.float64)
    x = x[np.isfinite(x).all(axis=1)]
    return (x - x.mean(axis=0)) / np.where(x.std(axis=0) > 0, x.std(axis=0), 1.0)


def discover(data: np.ndarray, names: Sequence[str], alpha: float = 0.01) -> CausalGraph:
    """PC with Fisher-z tests at level ``alpha`` on the complete rows of ``data``
    (n, variables), standardised; variables in :func:`collinear` are left out."""
    from causallearn.search.ConstraintBased.PC import pc

    dropped = collinear(data, names)
    keep = [j for j, name in enumerate(names) if name not in dropped]
    names = [names[j] for j in keep]
    x = _standardised(np.asarray(data)[:, keep])
    graph = pc(x, alpha, "fisherz", show_progress=False).G.graph
    adjacent, directed = set(), set()
    for i, j in itertools.combinations(range(len(names)), 2):
        if graph[i, j] == 0 and graph[j, i] == 0:
            continue
        adjacent.add(frozenset((names[i], names[j])))
        if graph[i, j] == -1 and graph[j, i] == 1:  # causal-learn: i -> j
            directed.add((names[i], names[j]))
        elif graph[i, j] == 1 and graph[j, i] == -1:
            directed.add((names[j], names[i]))
    return CausalGraph(names, adjacent, directed, dropped=dropped)


def bootstrap_graphs(data: np.ndarray, names: Sequence[str], resamples: int,
                     alpha: float = 0.01, seed: int = 0) -> CausalGraph:
    """:func:`discover` on all rows, with each pair's frequency over ``resamples``
    bootstrap resamples, computed as Dask tasks on the current client (or Dask's
    default scheduler)."""
    from dask import compute, delayed

    whole = discover(data, names, alpha)
    keep = [j for j, name in enumerate(names) if name not in whole.dropped]
    shared = delayed(np.asarray(data)[:, keep], pure=True)  # one copy in the graph
    tasks = [delayed(_resampled)(shared, whole.names, alpha, [seed, k])
             for k in range(resamples)]
    graphs = compute(*tasks) if tasks else ()
    counts: dict[frozenset[str], int] = {}
    for g in graphs:
        for pair in g.adjacent:
            counts[pair] = counts.get(pair, 0) + 1
    whole.frequency = {p: c / max(len(graphs), 1) for p, c in counts.items()}
    return whole


def _resampled(data: np.ndarray, names: list[str], alpha: float, seed: list[int]
               ) -> CausalGraph:
    """:func:`discover` on a bootstrap resample (rows drawn with replacement) of ``data``."""
    rows = np.random.default_rng(seed).integers(0, len(data), len(data))
    return discover(data[rows], names, alpha)


def edge_scores(found: set[frozenset[str]], truth: set[frozenset[str]]) -> dict[str, float]:
    """Precision and recall of found adjacencies against true ones.

    >>> a, b, c = (frozenset(p) for p in ("xy", "yz", "xz"))
    >>> edge_scores({a, b}, {a, c})
    {'precision': 0.5, 'recall': 0.5, 'found': 2, 'true': 2}
    """
    hits = len(found & truth)
    return {"precision": hits / len(found) if found else float("nan"),
            "recall": hits / len(truth) if truth else float("nan"),
            "found": len(found), "true": len(truth)}


def photometry_variables(photometry: Mapping[str, np.ndarray], bands: Sequence[str],
                         zero_points: Mapping[str, float], reference: str | None
                         ) -> dict[str, np.ndarray]:
    """The reference band's magnitude (``mag_<band>``) and adjacent colours (``g-r``) from
    fluxes (NaN where a flux is not positive)."""
    mags = {}
    for band in bands:
        flux = np.asarray(photometry[band], dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            mags[band] = np.where(flux > 0, zero_points.get(band, 22.5)
                                  - 2.5 * np.log10(flux), np.nan)
    out = {f"mag_{reference}": mags[reference]} if reference else {}
    for a, b in itertools.pairwise(bands):
        out[f"{a}-{b}"] = mags[a] - mags[b]
    return out


def causal_labels(store: SurveyStore, labels: Sequence[str] | None = None) -> list[str]:
    """``labels``, or every label of the store but line fluxes and classes."""
    return list(labels) if labels is not None else [
        name for name in store.label_names
        if name not in _SKIP and not name.startswith(_SKIP_PREFIXES)]


def store_variables(store: SurveyStore, rows: int, seed: int = 0,
                    labels: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Catalog-level variables of a random sample of ``rows`` objects of ``store``: the
    reference magnitude and colours from its photometry, and its labels (``labels``, or
    every label but line fluxes and classes), each known for most of the sample."""
    n = min(rows, store.n_objects)
    index = np.sort(np.random.default_rng(seed).choice(store.n_objects, n, replace=False))
    out = {name: np.asarray(store.array(f"labels/{name}").get_coordinate_selection(index),
                            dtype=np.float64) for name in causal_labels(store, labels)}
    fluxes = {b: np.asarray(store.array(f"photometry/{b}").get_coordinate_selection(index))
              for b in store.layout.photometry_bands}
    return _usable({**out, **_magnitudes(store, fluxes)})


def catalog_variables(parts: Sequence[str], storage_options: dict[str, Any] | None,
                      store: SurveyStore, model: ModelColumns, features: Sequence[int],
                      rows: int, total_rows: int, seed: int = 0,
                      labels: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """:func:`store_variables` of about ``rows`` random catalog rows, with the activation
    of each of a sparse model's ``features`` (``<model>_f<n>``, zero where inactive) beside
    them: the store's columns and the catalog's joined on Dask."""
    names = causal_labels(store, labels)
    bands = list(store.layout.photometry_bands)
    table = sample_joined(parts, storage_options, store, [model.act_idx, model.act_val],
                          [*(f"labels/{n}" for n in names), *(f"photometry/{b}" for b in bands)],
                          rows, total_rows, seed)
    dense = dense_activations(table, model.act_idx, model.act_val, model.n_features)
    out = {name: table[name].to_numpy(dtype=np.float64, na_value=np.nan) for name in names}
    fluxes = {b: table[f"phot_{b}"].to_numpy(dtype=np.float64, na_value=np.nan) for b in bands}
    activations = {f"{model.name}_f{f}": dense[:, f] for f in features}
    return _usable({**out, **_magnitudes(store, fluxes), **activations})


def _magnitudes(store: SurveyStore, fluxes: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """:func:`photometry_variables` of the store's bands (none without photometry)."""
    bands = list(fluxes)
    if not bands:
        return {}
    reference = "r" if "r" in bands else bands[-1]
    return photometry_variables(fluxes, bands, store.attrs.get("zero_points", {}), reference)


def _usable(variables: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The variables known for most of the sample and not constant."""
    return {k: v for k, v in variables.items() if np.isfinite(v).mean() >= 1 - MAX_MISSING
            and np.nanstd(v) > 0}
