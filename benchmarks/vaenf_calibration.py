"""VAE + normalizing-flow posteriors vs the dense CNN on the synthetic survey (Siddiqa et al.).

    python benchmarks/vaenf_calibration.py [--n 12000] [--size 32] [--epochs 12] [--width 32]

Trains, through ``train_model`` (the path of ``surveyproc train``), a ``vae_flow``
model and the ``dense_cnn`` point estimator on the same targets (physical
parameters and the four log line fluxes), then scores both on the test split
(20 % by id hash) with the kind's own inference (the columns ``surveyproc
infer`` writes): per target the RMSE of the posterior median against truth and
the dense CNN's RMSE, 68 %/95 % coverage and the PIT KS statistic from the
catalog PDFs (the report's definitions), the mean posterior correlation of
stellar mass and SFR beside the correlation of the generator's truths, and
posterior draws per second.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from benchlib import describe, pit_ks, publish, synthetic_survey, training_arguments

from surveyproc.catalog.pdf import covered, pit_values
from surveyproc.jobs import TrainSection
from surveyproc.kinds import build_network, get_kind
from surveyproc.models import load_checkpoint, resolve_targets
from surveyproc.train import StoreBatches, train_model

PHYSICAL = ["log_mstar", "log_sfr", "redshift", "metallicity", "log_mbh"]
LINES = ["log_flux_halpha", "log_flux_hbeta", "log_flux_nii", "log_flux_oiii"]
VAL = 0.1
#: Acceptance: coverage within this many points of nominal; median RMSE within this
#: factor of the dense CNN's for these targets.
COVERAGE_TOLERANCE = 0.03
RMSE_FACTOR, RMSE_TARGETS = 1.1, ("log_mstar", "redshift")


def _test_batches(store, checkpoint, batch_size: int):
    specs = resolve_targets([t.name for t in checkpoint.targets], store.label_names)
    provenance = checkpoint.provenance["train"]
    return StoreBatches(store, store.plan_shards(), "test", specs, checkpoint.model_input(),
                        provenance["val_fraction"], provenance["test_fraction"],
                        batch_size=batch_size, shuffle=False)


def _infer_test_split(store, url: str, batch_size: int):
    """A checkpoint's kind's catalog columns over the test split: (checkpoint, columns,
    outputs by column, truths, seconds inside the kind's inference)."""
    checkpoint = load_checkpoint(url)
    kind = get_kind(checkpoint.kind)
    columns = kind.columns(checkpoint.kind, checkpoint)
    model = build_network(checkpoint)
    outputs: dict[str, list[np.ndarray]] = {}
    truths, seconds = [], 0.0
    with torch.inference_mode():
        for x, y, _ in _test_batches(store, checkpoint, batch_size).epoch():
            started = time.perf_counter()
            out = kind.infer(model, x, columns, checkpoint)
            seconds += time.perf_counter() - started
            truths.append(y.numpy())
            for name, values in out.items():
                outputs.setdefault(name, []).append(values)
    return (checkpoint, columns, {k: np.concatenate(v) for k, v in outputs.items()},
            np.concatenate(truths), seconds)


def score_vae_flow(store, url: str, batch_size: int) -> dict:
    checkpoint, columns, columns_out, truth, seconds = _infer_test_split(store, url,
                                                                         batch_size)
    galaxies = len(truth)
    grids = columns.pdf_grids
    per_target = {}
    for j, target in enumerate(columns.targets):
        known = np.isfinite(truth[:, j])
        t = truth[known, j]
        pit = pit_values(columns_out[f"{target}_pdf"][known], t, grids[target])
        median = columns_out[f"{target}_q50"][known]
        per_target[target] = {
            "n": int(known.sum()), "rmse_median": float(np.sqrt(np.mean((median - t) ** 2))),
            "coverage68": float(covered(pit, 0.68).mean()),
            "coverage95": float(covered(pit, 0.95).mean()), "pit_ks": pit_ks(pit),
            "mean_std": float(np.mean(columns_out[f"{target}_std"][known]))}
    correlation = columns.extra["correlation"]
    pair = correlation["pairs"].index(["log_mstar", "log_sfr"])
    i, j = columns.targets.index("log_mstar"), columns.targets.index("log_sfr")
    both = np.isfinite(truth[:, i]) & np.isfinite(truth[:, j])
    residual = truth[both][:, [i, j]] - np.stack(
        [columns_out["log_mstar_q50"][both], columns_out["log_sfr_q50"][both]], axis=1)
    return {
        "targets": per_target, "galaxies": galaxies, "infer_seconds": seconds,
        "draws_per_s": galaxies * int(checkpoint.config["samples"]) / seconds,
        "galaxies_per_s": galaxies / seconds,
        "mass_sfr": {
            "posterior_mean_corr": float(np.mean(columns_out[correlation["column"]][:, pair])),
            "generator_corr": float(np.corrcoef(truth[both, i], truth[both, j])[0, 1]),
            "residual_corr": float(np.corrcoef(residual.T)[0, 1])},
        "val_metrics": checkpoint.metrics.get("val", {}),
        "best_epoch": checkpoint.metrics.get("best_epoch")}


def score_dense(store, url: str, batch_size: int) -> dict:
    _, columns, out, truth, _ = _infer_test_split(store, url, batch_size)
    rmse = {}
    for j, target in enumerate(columns.targets):
        known = np.isfinite(truth[:, j])
        rmse[target] = float(np.sqrt(np.mean((out[f"{target}_mean"][known]
                                              - truth[known, j]) ** 2)))
    return {"rmse": rmse}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    training_arguments(parser)
    parser.add_argument("--test-fraction", type=float, default=0.2,
                        help="share of galaxies (by id hash) scored; validation takes 10 %%")
    parser.add_argument("--samples", type=int, default=256, help="posterior draws per galaxy")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("SURVEYPROC_PROGRESS", "0")
    targets = PHYSICAL + LINES
    train = TrainSection(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         patience=args.epochs, seed=args.seed, val_fraction=VAL,
                         test_fraction=args.test_fraction)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        store = synthetic_survey(args, tmp)
        sections = {
            "vae_flow": get_kind("vae_flow").settings(
                name="vaenf", kind="vae_flow", targets=targets, width=args.width,
                samples=args.samples),
            "dense_cnn": get_kind("dense_cnn").settings(
                name="dense", kind="dense_cnn", targets=targets, width=args.width)}
        seconds, urls = {}, {}
        for name, section in sections.items():
            t0 = time.perf_counter()
            urls[name] = train_model(store, section, train, url=str(Path(tmp) / f"{name}.pt"),
                                     force=True).url
            seconds[name] = time.perf_counter() - t0
        record = {"vae_flow": score_vae_flow(store, urls["vae_flow"], args.batch_size),
                  "dense_cnn": score_dense(store, urls["dense_cnn"], args.batch_size),
                  "train_seconds": seconds, "bands": list(store.bands),
                  "objects": store.n_objects, "threads": torch.get_num_threads()}
    publish("vaenf_calibration", args, record, render, started=started)


def checks(results: dict) -> dict[str, bool]:
    """The issue's acceptance checks on these results."""
    vae, dense = results["vae_flow"], results["dense_cnn"]["rmse"]
    coverage = all(abs(r["coverage68"] - 0.68) <= COVERAGE_TOLERANCE
                   and abs(r["coverage95"] - 0.95) <= COVERAGE_TOLERANCE
                   for r in vae["targets"].values())
    rmse = all(vae["targets"][t]["rmse_median"] <= RMSE_FACTOR * dense[t] for t in RMSE_TARGETS)
    corr = vae["mass_sfr"]
    same_sign = np.sign(corr["posterior_mean_corr"]) == np.sign(corr["residual_corr"])
    return {"coverage": coverage, "rmse": rmse, "correlation_sign": bool(same_sign)}


def render(record: dict) -> str:
    """The Markdown section of ``docs/results.md`` for these raw results."""
    a, r = record["args"], record["results"]
    vae, dense = r["vae_flow"], r["dense_cnn"]["rmse"]
    ok = checks(r)
    mark = {True: "yes", False: "**no**"}
    lines = [
        "## VAE + normalizing-flow posteriors (`benchmarks/vaenf_calibration.py`)", "",
        f"{r['objects']:,} synthetic galaxies (seed 2024), {a['size']}x{a['size']} pixels, "
        f"bands {' '.join(r['bands'])}; validation 10 %, test "
        f"{100 * a['test_fraction']:.0f} % by id hash; both models "
        f"ResNet-18 of width {a['width']}, {a['epochs']} epochs, batch {a['batch_size']}, "
        f"AdamW lr {a['lr']}, trained with `train_model` (the path of `surveyproc train`); "
        f"`vae_flow` with {a['samples']} quasi-random posterior draws per galaxy; scored on "
        "the test split with the kinds' own inference (the catalog's columns). Coverage and "
        "PIT from the catalog PDFs; line fluxes only where detected (S/N >= 3).", "",
        describe(record["machine"]), "",
        "| target | test galaxies | median RMSE | dense CNN RMSE | ratio | 68 % coverage | "
        "95 % coverage | PIT KS | mean posterior std |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for target, t in vae["targets"].items():
        lines.append(
            f"| {target} | {t['n']:,} | {t['rmse_median']:.4f} | {dense[target]:.4f} | "
            f"{t['rmse_median'] / dense[target]:.3f} | {100 * t['coverage68']:.1f} % | "
            f"{100 * t['coverage95']:.1f} % | {t['pit_ks']:.3f} | {t['mean_std']:.4f} |")
    c = vae["mass_sfr"]
    lines += [
        "", f"Stellar mass - SFR: mean posterior correlation {c['posterior_mean_corr']:+.3f}; "
        f"correlation of the test galaxies' errors (truth - posterior median) "
        f"{c['residual_corr']:+.3f}; correlation of the generator's truths "
        f"{c['generator_corr']:+.3f}.", "",
        f"Inference (this process, {r['threads']} torch threads, encoder + flows + summaries): "
        f"{vae['galaxies_per_s']:.0f} galaxies/s, {vae['draws_per_s']:,.0f} posterior "
        f"draws/s. Training: vae_flow {r['train_seconds']['vae_flow'] / 60:.1f} min, dense CNN "
        f"{r['train_seconds']['dense_cnn'] / 60:.1f} min.", "",
        f"Checks: 68 %/95 % coverage within 3 points for every target: {mark[ok['coverage']]}; "
        f"median RMSE <= 1.1x the dense CNN's for stellar mass and redshift: "
        f"{mark[ok['rmse']]}; posterior mass-SFR correlation has the sign of the errors' "
        f"correlation: {mark[ok['correlation_sign']]}."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
