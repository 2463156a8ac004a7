"""The MMI information decomposition against the ``dit`` package on small discrete examples,
and the three estimators recovering a designed information structure."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from surveyproc.models.information import entropy_bits, information_terms, mmi_decomposition


def _dit_pid(name: str) -> tuple[np.ndarray, dict[str, float]]:
    """(outcomes x1 x2 y with probabilities) and dit's MMI atoms of a named bivariate."""
    dit = pytest.importorskip("dit")
    from dit.pid import PID_MMI

    d = {"xor": dit.pid.distributions.bivariates["synergy"],
         "and": dit.pid.distributions.bivariates["and"],
         "copy": dit.pid.distributions.bivariates["cat"]}[name]
    pid = PID_MMI(d)
    atoms = {"redundant": pid[((0,), (1,))], "unique_1": pid[((0,),)],
             "unique_2": pid[((1,),)], "synergy": pid[((0, 1),)]}
    rows = np.array([[int(c) for c in outcome] + [p]
                     for outcome, p in zip(d.outcomes, d.pmf, strict=True)], dtype=float)
    return rows, {k: float(v) for k, v in atoms.items()}


def _exact_log_q(rows: np.ndarray) -> tuple[float, dict[str, np.ndarray], np.ndarray]:
    """h(y), ln q_k(y) of every outcome under the exact conditionals, and the weights."""
    x1, x2, y, p = rows.T
    prior = {v: p[y == v].sum() for v in np.unique(y)}

    def conditional(mask_of) -> np.ndarray:
        return np.array([np.log(p[mask_of(i) & (y == y[i])].sum() / p[mask_of(i)].sum())
                         for i in range(len(rows))])

    log_q = {"1": conditional(lambda i: x1 == x1[i]), "2": conditional(lambda i: x2 == x2[i]),
             "12": conditional(lambda i: (x1 == x1[i]) & (x2 == x2[i]))}
    return entropy_bits(np.array(list(prior.values()))), log_q, p


@pytest.mark.parametrize("name", ["xor", "and", "copy"])
def test_population_decomposition_matches_dit(name):
    rows, expected = _dit_pid(name)
    h, log_q, weight = _exact_log_q(rows)
    terms = information_terms(h, log_q)
    means = {k: float(np.average(terms[k], weights=weight)) for k in ("1", "2", "12")}
    population = mmi_decomposition(means["1"], means["2"], means["12"])
    for atom, value in expected.items():
        assert float(population[atom]) == pytest.approx(value, abs=1e-9), atom


@pytest.mark.parametrize("name", ["xor", "and", "copy"])
def test_trained_estimators_match_dit_within_tolerance(name):
    """The kind's estimators, trained on 4,000 draws of the example with each input in a
    band of a small noisy image, give the population decomposition dit computes from the
    exact distribution, within 0.06 bits per atom."""
    from surveyproc.kinds.mi_decomposition import InformationTask
    from surveyproc.models.checkpoint import TargetInfo
    from surveyproc.models.grid import Grid
    from surveyproc.models.mi_decomposition import EncoderInput, InformationEstimators

    rows, expected = _dit_pid(name)
    rng = np.random.default_rng(1)
    n_train, n_test = 4000, 4000
    draw = rng.choice(len(rows), size=n_train + n_test, p=rows[:, 3] / rows[:, 3].sum())
    x1, x2, y = rows[draw, 0], rows[draw, 1], rows[draw, 2]
    images = np.zeros((len(draw), 2, 8, 8), dtype=np.float32)
    images[:, 0] = 3.0 * x1[:, None, None]
    images[:, 1] = 3.0 * x2[:, None, None]
    images += 0.3 * rng.standard_normal(images.shape).astype(np.float32)
    x = torch.from_numpy(images)
    target = torch.from_numpy(y[:, None].astype(np.float32))
    n_values = int(rows[:, 2].max()) + 1
    grid = Grid(low=-0.5, high=n_values - 0.5, n_bins=n_values)
    torch.manual_seed(0)
    net = InformationEstimators(EncoderInput(images=(0,)), EncoderInput(images=(1,)),
                                n_targets=1, n_bins=n_values, width=4, hidden=16)
    task = InformationTask([grid], [TargetInfo("y", "", 0.0, 1.0)])
    optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)
    net.train()
    for _ in range(6):
        for batch in torch.randperm(n_train).split(200):
            optimiser.zero_grad()
            task.loss(net, x[batch], target[batch]).backward()
            optimiser.step()
    net.eval()
    with torch.no_grad():
        metrics = task.metrics(task.predict(net, x[n_train:]), target[n_train:].numpy())
    for atom, value in expected.items():
        assert metrics[f"mi_{atom}_y"] == pytest.approx(value, abs=0.06), (atom, metrics)


def test_pointwise_terms_keep_misinformation_and_nan():
    terms = information_terms(1.0, {"1": np.log([0.25, np.nan]), "2": np.log([0.5, 0.5]),
                                    "12": np.log([0.5, 0.5])})
    assert terms["1"][0] == pytest.approx(-1.0)  # less than the prior on the truth
    assert terms["redundant"][0] == pytest.approx(-1.0)
    assert terms["unique_2"][0] == pytest.approx(1.0)
    assert terms["synergy"][0] == pytest.approx(0.0)
    assert all(np.isnan(v[1]) for k, v in terms.items() if k not in ("2", "12"))
