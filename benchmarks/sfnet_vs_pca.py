"""SFNet-k vs PCA-k of a dense CNN vs the dense CNN, on the synthetic survey (SFNet paper, Table 2).

    python benchmarks/sfnet_vs_pca.py [--n 12000] [--size 32] [--epochs 12] [--width 32] [--seeds 3]

For each target family (gas-phase metallicity; the four log line fluxes
[NII], Halpha, [OIII], Hbeta) and each seed it trains, with surveyproc's own
training loop on the store's train split (80 % by id hash):

* the dense CNN (ResNet-18 -> ReLU -> linear), then PCA-k of its pooled
  features on the train split -> linear regression, for every k;
* SFNet (ResNet-18 -> ReLU -> top-k -> linear) for every k;

and scores every model by RMSE on the test split (10 %; for line fluxes the
mean RMSE of the four lines, in dex).  It prints mean +- standard deviation
over seeds and the two checks of the paper's pattern: SFNet-4 within 5 % of the
dense CNN, and SFNet-k below PCA-k at k = 2 and 4.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from surveyproc.models import Normalization, PCARegression, TargetInfo, get_model, resolve_targets
from surveyproc.store import open_store
from surveyproc.store.synth import SynthConfig, synthesize
from surveyproc.train import (
    RegressionTask,
    StoreBatches,
    TrainConfig,
    evaluate,
    fit,
    seed_everything,
    target_statistics,
)

FAMILIES = {
    "metallicity": ["metallicity"],
    "line fluxes": ["log_flux_nii", "log_flux_halpha", "log_flux_oiii", "log_flux_hbeta"],
}
VAL, TEST = 0.1, 0.1


def _features(model, batches) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    feats, ys = [], []
    with torch.inference_mode():
        for x, y, _ in batches:
            feats.append(model.features(x).numpy())
            ys.append(y.numpy())
    return np.concatenate(feats), np.concatenate(ys)


def _rmse(prediction: np.ndarray, truth: np.ndarray) -> float:
    per_target = [np.sqrt(np.mean((prediction[k, j] - truth[k, j]) ** 2))
                  for j in range(truth.shape[1]) for k in [np.isfinite(truth[:, j])]]
    return float(np.mean(per_target))


def run_family(store, family: str, seeds: list[int], ks: list[int], config: TrainConfig,
               width: int) -> dict:
    specs = resolve_targets(FAMILIES[family], store.label_names)
    mean, std, usable = target_statistics(store, specs, VAL, TEST)
    infos = [TargetInfo(s.name, s.unit, float(m), float(d))
             for s, m, d in zip(specs, mean, std, strict=True)]
    task = RegressionTask(infos)
    shards = store.plan_shards()

    def stream(split: str, norm: Normalization, shuffle: bool, seed: int = 0) -> StoreBatches:
        return StoreBatches(store, shards, split, specs, norm, VAL, TEST,
                            batch_size=config.batch_size, shuffle=shuffle, seed=seed)

    sample = np.concatenate([x for x, _, _ in stream("train", Normalization((1.0,)), False)
                             .raw_rows(0)])[:2048]
    norm = Normalization.fit(sample)
    steps = int(np.ceil(usable / config.batch_size))
    results: dict[str, list[float]] = {}
    variance: dict[int, list[float]] = {}
    seconds = []
    for seed in seeds:
        cfg = TrainConfig(**{**config.__dict__, "seed": seed})
        for name, kind, extra in [("dense", "dense_cnn", {})] + \
                [(f"sfnet_{k}", "sfnet", {"k": k}) for k in ks]:
            seed_everything(seed)
            model = get_model(kind, in_bands=len(store.bands), n_targets=len(specs), width=width,
                              **extra)
            t0 = time.perf_counter()
            fit(model, task, stream("train", norm, True, seed).epoch,
                stream("val", norm, False).epoch, cfg, steps, desc=f"{family} {name} s{seed}")
            seconds.append(time.perf_counter() - t0)
            _, pred, truth, _ = evaluate(model, task, stream("test", norm, False).epoch())
            results.setdefault(name, []).append(_rmse(pred, truth))
            if kind == "dense_cnn":
                train_x, train_y = _features(model, stream("train", norm, False).epoch())
                test_x, test_y = _features(model, stream("test", norm, False).epoch())
                z_train = (train_y - mean) / std
                for k in ks:
                    pca = PCARegression(k).fit(train_x, z_train)
                    results.setdefault(f"pca_{k}", []).append(
                        _rmse(pca.predict(test_x) * std + mean, test_y))
                    # How much of the dense features' variance the k components hold:
                    # near 1 means the features have collapsed onto few directions.
                    variance.setdefault(k, []).append(
                        float(pca.pca.explained_variance_ratio_.sum()))
    return {"rmse": results, "train_seconds_mean": float(np.mean(seconds)),
            "pca_variance_share": {str(k): float(np.mean(v)) for k, v in variance.items()},
            "training_galaxies": usable, "label_std": [float(s) for s in std]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=12000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--width", type=int, default=32,
                        help="channels of the first ResNet-18 stage (64: the standard network)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--ks", default="2,4,8")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--store", default=None, help="reuse (or create) the store here")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    os.environ.setdefault("SURVEYPROC_PROGRESS", "0")
    ks = [int(k) for k in args.ks.split(",")]
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         patience=args.epochs, augment=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.store or str(Path(tmp) / "survey.zarr")
        if not Path(url).exists():
            synthesize(url, SynthConfig(n=args.n, size=args.size, seed=2024))
        store = open_store(url)
        report = {family: run_family(store, family, list(range(args.seeds)), ks, config,
                                     args.width)
                  for family in args.families.split(",")}
    total = time.perf_counter() - started
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; total {total / 60:.1f} min")
    print(f"{store.n_objects} synthetic galaxies, {args.size}x{args.size}, bands "
          f"{','.join(store.bands)}; ResNet-18 width {args.width} ({8 * args.width} features); "
          f"{args.epochs} epochs, batch {args.batch_size}, "
          f"lr {args.lr}, {args.seeds} seed(s); test RMSE mean +- std over seeds\n")
    columns = ["dense"] + [f"sfnet_{k}" for k in ks] + [f"pca_{k}" for k in ks]
    print(f"{'target':<13}" + "".join(f"{c:>17}" for c in columns))
    for family, result in report.items():
        cells = [f"{np.mean(result['rmse'][c]):.4f} +- {np.std(result['rmse'][c]):.4f}"
                 for c in columns]
        print(f"{family:<13}" + "".join(f"{c:>17}" for c in cells))
    print()
    for family, result in report.items():
        rmse = {c: float(np.mean(v)) for c, v in result["rmse"].items()}
        if 4 in ks:
            ratio = rmse["sfnet_4"] / rmse["dense"]
            print(f"{family}: SFNet-4 / dense = {ratio:.3f} "
                  f"({'within' if ratio <= 1.05 else 'NOT within'} 5%)")
        for k in (2, 4):
            if k in ks:
                better = rmse[f"sfnet_{k}"] < rmse[f"pca_{k}"]
                print(f"{family}: SFNet-{k} {rmse[f'sfnet_{k}']:.4f} vs PCA-{k} "
                      f"{rmse[f'pca_{k}']:.4f} ({'SFNet better' if better else 'PCA better'})")
        shares = ", ".join(f"{k} components {v:.2f}"
                           for k, v in result["pca_variance_share"].items())
        print(f"{family}: share of dense-feature variance in the top PCA components: {shares}")
        print(f"{family}: label std {result['label_std']}, {result['training_galaxies']} "
              f"training galaxies, {result['train_seconds_mean']:.0f} s per model")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
