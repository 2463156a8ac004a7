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
import os
import tempfile
import time

import numpy as np
import torch
from benchlib import describe, publish, synthetic_survey, training_arguments

from surveyproc.kinds.tasks import RegressionTask
from surveyproc.models import (
    DenseCNN,
    Normalization,
    PCARegression,
    SFNet,
    TargetInfo,
    resolve_targets,
)
from surveyproc.models.inputs import ImageInput
from surveyproc.train import (
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
        return StoreBatches(store, shards, split, specs, ImageInput(norm), VAL, TEST,
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
            model = (SFNet(len(store.bands), len(specs), width=width, **extra)
                     if kind == "sfnet" else DenseCNN(len(store.bands), len(specs), width=width))
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
    training_arguments(parser)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--ks", default="2,4,8")
    parser.add_argument("--families", default=",".join(FAMILIES))
    args = parser.parse_args()
    os.environ.setdefault("SURVEYPROC_PROGRESS", "0")
    ks = [int(k) for k in args.ks.split(",")]
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         patience=args.epochs, augment=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        store = synthetic_survey(args, tmp)
        report = {family: run_family(store, family, list(range(args.seeds)), ks, config,
                                     args.width)
                  for family in args.families.split(",")}
    record = {"families": report, "bands": list(store.bands), "objects": store.n_objects,
              "threads": torch.get_num_threads()}
    publish("sfnet_vs_pca", args, record, render, started=started)


def render(record: dict) -> str:
    """The Markdown section of ``docs/results.md`` for these raw results."""
    a, r = record["args"], record["results"]
    ks = [int(k) for k in a["ks"].split(",")]
    columns = ["dense"] + [f"sfnet_{k}" for k in ks] + [f"pca_{k}" for k in ks]
    names = ["dense CNN"] + [f"SFNet-{k}" for k in ks] + [f"PCA-{k}" for k in ks]
    lines = [
        "## SFNet vs PCA-k vs dense CNN (`benchmarks/sfnet_vs_pca.py`)", "",
        "The SFNet paper's Table 2 comparison on the synthetic survey: "
        f"{r['objects']:,} synthetic galaxies (seed 2024), {a['size']}x{a['size']} pixels, "
        f"bands {' '.join(r['bands'])}; train/val/test 80/10/10 by id hash; ResNet-18 of "
        f"width {a['width']} ({8 * a['width']} pooled features); {a['epochs']} epochs, batch "
        f"{a['batch_size']}, AdamW lr {a['lr']} with flat-then-cosine schedule, flips and "
        f"rotations; {a['seeds']} seeds, {r['threads']} torch threads. Test RMSE, mean ± std "
        "over seeds (metallicity in dex; line fluxes: mean of the four log10 line-flux "
        "RMSEs, dex).", "", describe(record["machine"]), "",
        "| target | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for family, result in r["families"].items():
        std = result["label_std"]
        spread_text = f"σ = {std[0]:.3f}" if len(std) == 1 else f"σ ≈ {np.mean(std):.2f}"
        cells = [f"{np.mean(result['rmse'][c]):.4f} ± {np.std(result['rmse'][c]):.4f}"
                 for c in columns]
        lines.append(f"| {family} ({spread_text}) | " + " | ".join(cells) + " |")
    lines += ["", "Checks against the paper's pattern:", "",
              "| check | " + " | ".join(r["families"]) + " |", "|---" * (len(r["families"]) + 1)
              + "|"]
    mean = {f: {c: float(np.mean(v)) for c, v in res["rmse"].items()}
            for f, res in r["families"].items()}
    if 4 in ks:
        cells = [f"{'yes' if m['sfnet_4'] <= 1.05 * m['dense'] else '**no**'} "
                 f"({m['sfnet_4'] / m['dense']:.3f})" for m in mean.values()]
        lines.append("| SFNet-4 within 5 % of the dense CNN | " + " | ".join(cells) + " |")
    for k in (2, 4):
        if k in ks:
            cells = [f"{'yes' if m[f'sfnet_{k}'] < m[f'pca_{k}'] else '**no**'} "
                     f"({m[f'sfnet_{k}']:.4f} vs {m[f'pca_{k}']:.4f}, "
                     f"{100 * (m[f'sfnet_{k}'] / m[f'pca_{k}'] - 1):+.1f} %)"
                     for m in mean.values()]
            lines.append(f"| SFNet-{k} below PCA-{k} | " + " | ".join(cells) + " |")
    lines += ["", "Share of the dense CNN's pooled-feature variance in its top PCA components "
              "(near 1: the features collapsed onto few directions, so PCA-k keeps almost "
              "all the information and SFNet has little to gain):", ""]
    for family, result in r["families"].items():
        shares = ", ".join(f"top {k}: {v:.2f}" for k, v in result["pca_variance_share"].items())
        lines.append(f"- {family}: {shares}; {result['training_galaxies']:,} training "
                     "galaxies.")
    lines += ["", "Tried and not kept (no figures kept, the code is gone): annealing SFNet's k "
              "from 32 down to 4 over the first half of training, so that every feature "
              "receives gradient before the bottleneck closes; on one seed it moved "
              "metallicity SFNet-4 by less than the spread between seeds."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
