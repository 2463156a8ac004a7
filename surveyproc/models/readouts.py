"""What an SFNet learned, read off its activations and head (SFNet paper, sections 3-4).

These per-model readouts are what the statistics stage aggregates over the
catalog: how often each feature fires, the linear "equation" of each target in
the features, and how well the most frequent features alone separate AGN from
star-forming galaxies (a linear SVM, as in the paper's section 4.2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .checkpoint import TargetInfo

__all__ = ["Equation", "activation_frequency", "agn_classifier", "dense_activations",
           "head_equations", "sfnet_readouts"]


def dense_activations(act_idx: np.ndarray, act_val: np.ndarray, n_features: int) -> np.ndarray:
    """(n, k) top-k indices and values -> (n, n_features) matrix with zeros elsewhere."""
    out = np.zeros((act_idx.shape[0], n_features), dtype=np.float32)
    np.put_along_axis(out, act_idx.astype(np.int64), act_val.astype(np.float32), axis=1)
    return out


def activation_frequency(act_idx: np.ndarray, act_val: np.ndarray, n_features: int) -> np.ndarray:
    """Fraction of galaxies on which each feature is active (non-zero).

    Examples
    --------
    >>> activation_frequency(np.array([[0, 2], [2, 1]]), np.ones((2, 2)), 4).tolist()
    [0.5, 0.5, 1.0, 0.0]
    """
    active = act_val > 0
    counts = np.bincount(act_idx[active].ravel(), minlength=n_features)
    return counts / max(act_idx.shape[0], 1)


@dataclass
class Equation:
    """target = intercept + sum_f weight[f] * activation[f], in the target's own unit."""

    target: str
    unit: str
    intercept: float
    weights: np.ndarray  # (n_features,)

    def terms(self, features: np.ndarray) -> list[tuple[int, float]]:
        """(feature, weight) for the given features, largest |weight| first."""
        pairs = [(int(f), float(self.weights[f])) for f in features]
        return sorted(pairs, key=lambda p: -abs(p[1]))


def head_equations(weight: np.ndarray, bias: np.ndarray,
                   targets: list[TargetInfo]) -> list[Equation]:
    """Turn a linear head trained on standardised targets into per-target equations in units."""
    equations = []
    for j, target in enumerate(targets):
        equations.append(Equation(target.name, target.unit,
                                  float(bias[j] * target.std + target.mean),
                                  weight[j].astype(np.float64) * target.std))
    return equations


@dataclass
class ClassifierReadout:
    """A linear SVM on the ``features`` most frequent features: held-out accuracy and weights."""

    features: np.ndarray
    accuracy: float
    baseline_accuracy: float  # always guessing the majority class
    coefficients: np.ndarray


def agn_classifier(act_idx: np.ndarray, act_val: np.ndarray, is_agn: np.ndarray,
                   n_features: int, top_m: int = 8, seed: int = 0) -> ClassifierReadout:
    """Separate AGN from star-forming galaxies with the ``top_m`` most frequent features.

    Half the galaxies (chosen with ``seed``) fit the SVM, the other half score it.
    """
    frequency = activation_frequency(act_idx, act_val, n_features)
    chosen = np.argsort(-frequency)[:top_m]
    x = dense_activations(act_idx, act_val, n_features)[:, chosen]
    y = is_agn.astype(bool)
    order = np.random.default_rng(seed).permutation(len(y))
    fit, score = order[: len(y) // 2], order[len(y) // 2:]
    from sklearn.svm import LinearSVC  # here: importing it costs an inference actor 1.4 s

    svm = LinearSVC(C=1.0, class_weight="balanced", max_iter=20000).fit(x[fit], y[fit])
    accuracy = float((svm.predict(x[score]) == y[score]).mean())
    majority = float(max(y[score].mean(), 1 - y[score].mean()))
    return ClassifierReadout(chosen, accuracy, majority, svm.coef_[0])


def sfnet_readouts(act_idx: np.ndarray, act_val: np.ndarray, head_weight: np.ndarray,
                   head_bias: np.ndarray, targets: list[TargetInfo],
                   is_agn: np.ndarray | None = None, top: int = 10) -> dict:
    """JSON-able summary of an SFNet on a sample of galaxies, stored with its checkpoint.

    The ``top`` most frequently active features with their frequency, mean
    activation and weight in each target's equation; and, when AGN labels are
    given, the held-out accuracy of a linear SVM on the 8 most frequent features.
    """
    n_features = head_weight.shape[1]
    frequency = activation_frequency(act_idx, act_val, n_features)
    dense = dense_activations(act_idx, act_val, n_features)
    active = dense > 0
    mean_activation = np.where(active.any(axis=0),
                               dense.sum(axis=0) / np.maximum(active.sum(axis=0), 1), 0.0)
    equations = head_equations(head_weight, head_bias, targets)
    order = np.argsort(-frequency)[:top]
    summary: dict = {
        "galaxies": int(act_idx.shape[0]),
        "features_ever_active": int((frequency > 0).sum()),
        "top_features": [
            {"feature": int(f), "frequency": float(frequency[f]),
             "mean_activation": float(mean_activation[f]),
             "weights": {e.target: float(e.weights[f]) for e in equations}}
            for f in order],
        "intercepts": {e.target: e.intercept for e in equations},
    }
    if is_agn is not None and 0 < is_agn.mean() < 1:
        readout = agn_classifier(act_idx, act_val, is_agn, n_features)
        summary["agn_classifier"] = {"features": readout.features.tolist(),
                                     "accuracy": readout.accuracy,
                                     "majority_accuracy": readout.baseline_accuracy}
    return summary
