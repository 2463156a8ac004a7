"""PCA-k baseline of the SFNet paper: dense-CNN features -> k principal components -> linear fit.

It asks whether SFNet's k sparse features say more than the k directions of
largest variance of an ordinary CNN's features: same budget of k numbers per
galaxy, chosen without looking at the target.
"""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import LinearRegression

__all__ = ["PCARegression"]


class PCARegression:
    """Fit PCA with ``k`` components on features, then one least-squares line per target.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> features = rng.normal(size=(200, 16))
    >>> y = features[:, :1] * 3.0
    >>> model = PCARegression(k=16).fit(features, y)
    >>> float(np.abs(model.predict(features) - y).max()) < 1e-8
    True
    """

    def __init__(self, k: int) -> None:
        self.k = k
        self.pca = PCA(n_components=k)
        self.regressions: list[LinearRegression] = []

    def fit(self, features: np.ndarray, targets: np.ndarray) -> PCARegression:
        """``targets`` is (n, t) and may hold NaN (skipped per target)."""
        components = self.pca.fit_transform(features)
        self.regressions = []
        for j in range(targets.shape[1]):
            known = np.isfinite(targets[:, j])
            self.regressions.append(LinearRegression().fit(components[known], targets[known, j]))
        return self

    def predict(self, features: np.ndarray) -> np.ndarray:
        components = self.pca.transform(features)
        return np.stack([r.predict(components) for r in self.regressions], axis=1)
