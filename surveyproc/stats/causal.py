"""Causal discovery over catalog-level variables, with bootstrap edge confidence on Dask.

The PC algorithm of causal-learn (Spirtes & Glymour; Fisher-z partial-correlation
tests on standardised variables) gives a graph over integrated photometry,
colours and the store's physical and morphological labels (inclination, size);
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

from ..store import SurveyStore

__all__ = ["CausalGraph", "bootstrap_graphs", "discover", "edge_scores", "store_variables"]

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

    def to_dict(self) -> dict[str, Any]:
        pairs = sorted(self.adjacent | set(self.frequency), key=sorted)
        return {"variables": self.names,
                "edges": [{"pair": sorted(p), "in_graph": p in self.adjacent,
                           "direction": next(([a, b] for a, b in self.directed
                                              if {a, b} == set(p)), None),
                           "bootstrap_frequency": self.frequency.get(p)} for p in pairs]}


def discover(data: np.ndarray, names: Sequence[str], alpha: float = 0.01) -> CausalGraph:
    """PC with Fisher-z tests at level ``alpha`` on the complete rows of ``data``
    (n, variables), standardised."""
    from causallearn.search.ConstraintBased.PC import pc

    x = np.asarray(data, dtype=np.float64)
    x = x[np.isfinite(x).all(axis=1)]
    x = (x - x.mean(axis=0)) / np.where(x.std(axis=0) > 0, x.std(axis=0), 1.0)
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
    return CausalGraph(list(names), adjacent, directed)


def bootstrap_graphs(data: np.ndarray, names: Sequence[str], resamples: int,
                     alpha: float = 0.01, seed: int = 0) -> CausalGraph:
    """:func:`discover` on all rows, with each pair's frequency over ``resamples``
    bootstrap resamples, computed as Dask tasks on the current client (or Dask's
    default scheduler)."""
    from dask import compute, delayed

    shared = delayed(np.asarray(data), pure=True)  # one copy in the graph, not one a task
    tasks = [delayed(_resampled)(shared, list(names), alpha, [seed, k])
             for k in range(resamples)]
    graphs = compute(*tasks) if tasks else ()
    whole = discover(data, names, alpha)
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


def store_variables(store: SurveyStore, rows: int, seed: int = 0,
                    labels: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Catalog-level variables of a random sample of ``rows`` objects of ``store``: the
    reference magnitude and colours from its photometry, and its labels (``labels``, or
    every label but line fluxes and classes), each known for most of the sample."""
    n = min(rows, store.n_objects)
    index = np.sort(np.random.default_rng(seed).choice(store.n_objects, n, replace=False))
    names = list(labels) if labels is not None else [
        name for name in store.label_names
        if name not in _SKIP and not name.startswith(_SKIP_PREFIXES)]
    out = {name: np.asarray(store.array(f"labels/{name}").get_coordinate_selection(index),
                            dtype=np.float64) for name in names}
    bands = list(store.layout.photometry_bands)
    if bands:
        fluxes = {b: np.asarray(store.array(f"photometry/{b}").get_coordinate_selection(index))
                  for b in bands}
        reference = "r" if "r" in bands else bands[-1]
        out.update(photometry_variables(fluxes, bands, store.attrs.get("zero_points", {}),
                                        reference))
    return {k: v for k, v in out.items() if np.isfinite(v).mean() >= 1 - MAX_MISSING
            and np.nanstd(v) > 0}
