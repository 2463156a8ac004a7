"""Partial-information decomposition with the minimum-mutual-information redundancy.

How much of what two inputs (images and photometry, or two groups of bands)
say about a target is said by either alone (redundancy), by one only (unique)
or only by both together (synergy)?  Following Zhang, Lin, Ting et al.
(InterpretSM), three density estimators of the binned target are trained on
input 1, input 2 and both; for a galaxy whose target falls in bin ``b``

    I_k = h(y) - CE_k = h(y) + log2 q_k(b)            k in {1, 2, 12}

with ``h(y)`` the entropy of the binned prior and ``CE_k`` the estimator's
cross-entropy on the true bin (in bits).  The minimum-mutual-information (MMI)
decomposition then reads

    R = min(I_1, I_2),  U_1 = I_1 - R,  U_2 = I_2 - R,  S = I_12 - (R + U_1 + U_2).

Per galaxy the terms may be negative (an estimator that puts less than the
prior's probability on the truth: *misinformation*) and are kept so.  Over a
population the mean I_k is an estimate of the mutual information I(y; input_k),
and :func:`mmi_decomposition` of those means is the MMI partial-information
decomposition that ``dit.pid.PID_MMI`` computes for discrete distributions;
note that the *mean* of the per-galaxy redundancy min(I_1, I_2) is at most the
redundancy of the means (min is concave), so the report shows both.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["TERMS", "entropy_bits", "information_terms", "mmi_decomposition"]

#: The per-galaxy terms, in catalog order (column ``<target>_mi_<term>``).
TERMS = ("1", "2", "12", "redundant", "unique_1", "unique_2", "synergy")


def entropy_bits(probabilities: np.ndarray) -> float:
    """Shannon entropy, in bits, of a discrete distribution (zeros contribute nothing).

    >>> entropy_bits(np.array([0.5, 0.5]))
    1.0
    """
    p = np.asarray(probabilities, dtype=np.float64)
    p = p[p > 0] / p.sum()
    return float(-(p * np.log2(p)).sum())


def mmi_decomposition(i_1: np.ndarray | float, i_2: np.ndarray | float,
                      i_12: np.ndarray | float) -> dict[str, np.ndarray]:
    """Redundant, unique and synergistic parts of the informations ``I_1``, ``I_2``,
    ``I_12`` (any shape, element-wise), with the inputs themselves under ``1``, ``2``,
    ``12``.

    >>> terms = mmi_decomposition(1.0, 0.25, 1.5)
    >>> {k: float(v) for k, v in terms.items()}  # doctest: +NORMALIZE_WHITESPACE
    {'1': 1.0, '2': 0.25, '12': 1.5, 'redundant': 0.25, 'unique_1': 0.75, 'unique_2': 0.0,
     'synergy': 0.5}
    """
    i_1, i_2, i_12 = (np.asarray(v, dtype=np.float64) for v in (i_1, i_2, i_12))
    redundant = np.minimum(i_1, i_2)
    unique_1, unique_2 = i_1 - redundant, i_2 - redundant
    return {"1": i_1, "2": i_2, "12": i_12, "redundant": redundant, "unique_1": unique_1,
            "unique_2": unique_2, "synergy": i_12 - redundant - unique_1 - unique_2}


def information_terms(prior_entropy: float, log_q: Mapping[str, np.ndarray]
                      ) -> dict[str, np.ndarray]:
    """Each galaxy's terms from its estimators' natural-log probabilities of the true bin.

    ``log_q`` maps ``1``, ``2``, ``12`` to (n,) arrays of ``ln q_k(true bin)`` (NaN where
    the truth is unknown: those galaxies' terms are NaN); ``prior_entropy`` is h(y) in
    bits.

    >>> terms = information_terms(1.0, {"1": np.log([0.5]), "2": np.log([0.5]),
    ...                                 "12": np.log([1.0])})
    >>> float(terms["synergy"][0])  # XOR: each input alone says nothing, both everything
    1.0
    """
    bits = {k: prior_entropy + np.asarray(log_q[k], dtype=np.float64) / np.log(2.0)
            for k in ("1", "2", "12")}
    return mmi_decomposition(bits["1"], bits["2"], bits["12"])
