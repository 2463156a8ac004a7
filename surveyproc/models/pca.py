"""PCA-k baseline of the SFNet paper: dense-CNN features -> k principal components -> linear fit.

It asks whether SFNet's k sparse features say more than the k directions of
largest variance of an ordinary CNN's features: same budget of k numbers per
galaxy, chosen without looking at the target.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

from .sfnet import DenseCNN, RegressionOutput

__all__ = ["PCANet", "PCARegression"]


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
        from sklearn.decomposition import PCA  # here: an inference actor never needs it

        self.pca = PCA(n_components=k)
        self.regressions: list[Any] = []  # sklearn LinearRegression, one per target

    def fit(self, features: np.ndarray, targets: np.ndarray) -> PCARegression:
        """``targets`` is (n, t) and may hold NaN (skipped per target)."""
        from sklearn.linear_model import LinearRegression  # as PCA: only where one is fitted

        components = self.pca.fit_transform(features)
        self.regressions = []
        for j in range(targets.shape[1]):
            known = np.isfinite(targets[:, j])
            self.regressions.append(LinearRegression().fit(components[known], targets[known, j]))
        return self

    def predict(self, features: np.ndarray) -> np.ndarray:
        components = self.pca.transform(features)
        return np.stack([r.predict(components) for r in self.regressions], axis=1)


class PCANet(DenseCNN):
    """The PCA-k baseline as one network: a dense CNN whose prediction, once
    :meth:`set_pca` has been called, is a linear fit on the ``k`` principal components
    of its features (kept as buffers, so the checkpoint holds them).

    Before :meth:`set_pca` it predicts with its own linear head, which is how
    its backbone is trained.

    Examples
    --------
    >>> net = PCANet(in_bands=2, n_targets=1, k=3, width=4)
    >>> x = torch.randn(40, 2, 16, 16)
    >>> features = net.features(x).detach().numpy()
    >>> net.set_pca(PCARegression(k=3).fit(features, features[:, :1]))
    >>> bool(net.fitted), net(x).prediction.shape
    (True, torch.Size([40, 1]))
    """

    fitted: torch.Tensor
    pca_mean: torch.Tensor
    pca_components: torch.Tensor
    pca_coef: torch.Tensor
    pca_intercept: torch.Tensor

    def __init__(self, in_bands: int, n_targets: int, k: int, width: int = 64) -> None:
        super().__init__(in_bands, n_targets, width)
        n_features = self.backbone.out_features
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        self.register_buffer("pca_mean", torch.zeros(n_features))
        self.register_buffer("pca_components", torch.zeros(k, n_features))
        self.register_buffer("pca_coef", torch.zeros(n_targets, k))
        self.register_buffer("pca_intercept", torch.zeros(n_targets))

    def set_pca(self, fitted: PCARegression) -> None:
        """Copy a fitted :class:`PCARegression` (targets standardised) into the buffers."""
        as_tensor = functools.partial(torch.as_tensor, dtype=torch.float32)
        self.pca_mean.copy_(as_tensor(fitted.pca.mean_))
        self.pca_components.copy_(as_tensor(fitted.pca.components_))
        self.pca_coef.copy_(as_tensor(np.stack([r.coef_ for r in fitted.regressions])))
        self.pca_intercept.copy_(as_tensor(np.array([r.intercept_ for r in fitted.regressions])))
        self.fitted.fill_(True)

    def forward(self, x: torch.Tensor) -> RegressionOutput:
        feats = self.features(x)
        if not bool(self.fitted):
            return RegressionOutput(self.head(feats), feats)
        components = (feats - self.pca_mean) @ self.pca_components.T
        return RegressionOutput(components @ self.pca_coef.T + self.pca_intercept, components)
