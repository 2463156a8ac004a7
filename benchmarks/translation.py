"""Image translation between two synthetic surveys of the same galaxies: how much redshift
information survives a pixel-loss and a gradient-loss translator.

    python benchmarks/translation.py [--n 6000] [--epochs 25] [--photoz-epochs 15]
                                     [--width 32] [--repeats 1] [--scales 1 2 4]
                                     [--anchor 1] [--sample 8192]

Survey A is SDSS-like (ugriz, 16 x 0.8" pixels, 1.4" seeing, noise x2.5) and survey B
CFHTLS-like (ugriz, 32 x 0.4" pixels over the same 12.8" field, 0.7" seeing, noise x0.6),
drawn from one seed with independent noise (``docs/synthetic.md``).  A photo-z model
(``binned_density``, ResNet-18 of ``--width``, trained with ``train_model``, the path of
``surveyproc train``, every epoch run and the best kept) learns redshift from B's
training split.  Two ``translator`` models
learn A -> B on the same training split, as a job file would ask for them (``surveyproc
train``: U-Nets, one with the pixel loss, one with the flow-weighted log-flux-gradient
loss, the best epoch by validation pixel loss); ``surveyproc translate`` (two Ray actors)
writes each translation of all of A as a store laid out like B, B's sky noise emulated.
The photo-z model is scored on the test split (20 % by id hash) of true B and of both
translations: sigma_NMAD of (median - z) / (1 + z), CRPS, the PIT's KS distance from
uniform.  Pixel and morphology metrics compare each translation with true B on the test
split: RMSE of the asinh-stretched pixels, and the mean absolute difference of the
r-band second-moment radius, the concentration (central 2x2 pixels over the aperture)
and the g - i colour gradient (aperture minus outskirts).  The gain
of the gradient loss is the share of the baseline's information loss it recovers,
1 - (m_gradient - m_B) / (m_pixel - m_B), for m = CRPS and sigma_NMAD; the paper
reports at least 40 %.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch
from benchlib import describe, pit_ks, publish, spread

from surveyproc.catalog.pdf import pit_values
from surveyproc.infer.translate import plan_translation, run_translation
from surveyproc.jobs import JobSpec, TrainSection
from surveyproc.kinds import build_network, get_kind
from surveyproc.kinds.binned_density import BinnedDensitySettings
from surveyproc.models import load_checkpoint, resolve_targets
from surveyproc.models.background import aperture_mask, ring_mask
from surveyproc.models.translation import Stretch, pixel_loss
from surveyproc.ops.ray_runtime import ray_runtime
from surveyproc.stats.calibration import crps
from surveyproc.store import SurveyStore, open_store
from surveyproc.store.synth import SynthConfig, synthesize
from surveyproc.train import StoreBatches, split_of, train_job, train_model

VAL, TEST = 0.1, 0.2
BANDS = ("u", "g", "r", "i", "z")
GRID = {"low": 0.0, "high": 0.4, "n_bins": 80}
LOSSES = ("pixel", "gradient")
#: The paper's gain of the gradient-space objective over the pixel baseline.
PAPER_GAIN = 0.40


def surveys(n: int, seed: int, root: str) -> tuple[SurveyStore, SurveyStore]:
    """Survey A (shallow, coarse, blurred) and B (deep, fine, sharp) of the same galaxies."""
    a = SynthConfig(n=n, seed=seed, bands=BANDS, size=16, pixel_scale=0.8, seeing=1.4,
                    noise_scale=2.5, noise_seed=seed * 1000 + 1, chunk=512)
    b = SynthConfig(n=n, seed=seed, bands=BANDS, size=32, pixel_scale=0.4, seeing=0.7,
                    noise_scale=0.6, noise_seed=seed * 1000 + 2, chunk=512)
    return (synthesize(f"{root}/a.zarr", a), synthesize(f"{root}/b.zarr", b))


def _noise(store: SurveyStore) -> list[float]:
    noise = store.attrs["calibration"]["noise"]
    return [float(noise[band]) for band in store.bands]


def score(store: SurveyStore, url: str) -> dict:
    """The photo-z checkpoint's test-split metrics on ``store``."""
    checkpoint = load_checkpoint(url)
    kind = get_kind(checkpoint.kind)
    columns = kind.columns(checkpoint.kind, checkpoint)
    model = build_network(checkpoint).eval()
    specs = resolve_targets([t.name for t in checkpoint.targets], store.label_names)
    batches = StoreBatches(store, store.plan_shards(), "test", specs, checkpoint.model_input(),
                           VAL, TEST, batch_size=1024, shuffle=False)
    pdfs, medians, truths = [], [], []
    with torch.inference_mode():
        for x, y, _ in batches.epoch():
            out = kind.infer(model, x, columns, checkpoint)
            pdfs.append(out["redshift_pdf"])
            medians.append(out["redshift_q50"])
            truths.append(y.numpy()[:, 0])
    pdf, median, truth = np.concatenate(pdfs), np.concatenate(medians), np.concatenate(truths)
    assert columns.grid is not None
    dz = (median - truth) / (1 + truth)
    per_object = crps(pdf, truth, columns.grid)
    return {"galaxies": len(truth), "sigma_nmad": _nmad(dz),
            "crps": float(np.mean(per_object)),
            "pit_ks": pit_ks(pit_values(pdf, truth, columns.grid)),
            "per_object": {"crps": per_object, "dz": dz}}


def _nmad(dz: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(dz - np.median(dz))))


def morphology(images: np.ndarray) -> dict[str, np.ndarray]:
    """Per galaxy: r-band second-moment radius (pixels), concentration (central 2x2 over
    the aperture) and g - i colour gradient (aperture minus ring, asinh magnitudes)."""
    _, _, h, w = images.shape
    r = images[:, BANDS.index("r")]
    yy, xx = np.mgrid[:h, :w] - (np.array([h, w]) - 1)[:, None, None] / 2
    aperture = aperture_mask(h, w)
    weights = np.where(aperture, np.clip(r, 0, None), 0)
    total = weights.sum(axis=(1, 2)) + 1e-12
    radius = np.sqrt((weights * (xx**2 + yy**2)).sum(axis=(1, 2)) / total)
    centre = np.zeros((h, w), bool)
    centre[h // 2 - 1:h // 2 + 1, w // 2 - 1:w // 2 + 1] = True
    concentration = r[:, centre].sum(axis=1) / (r[:, aperture].sum(axis=1) + 1e-12)
    outskirts = ~aperture & ~ring_mask(h, w)

    def colour(mask: np.ndarray) -> np.ndarray:
        g = images[:, BANDS.index("g")][:, mask].sum(axis=1)
        i = images[:, BANDS.index("i")][:, mask].sum(axis=1)
        return -2.5 / np.log(10) * (np.arcsinh(g / 0.1) - np.arcsinh(i / 0.1))

    return {"radius": radius, "concentration": concentration,
            "colour_gradient": colour(aperture) - colour(outskirts)}


def compare_pixels(truth: np.ndarray, translated: np.ndarray, stretch_b: Stretch) -> dict:
    """RMSE of stretched pixels and mean absolute morphology differences, test split."""
    with torch.inference_mode():
        rmse = float(torch.sqrt(pixel_loss(stretch_b(torch.from_numpy(translated)),
                                           stretch_b(torch.from_numpy(truth)))))
    true_m, got_m = morphology(truth), morphology(translated)
    return {"stretched_rmse": rmse,
            **{f"{k}_mad": float(np.mean(np.abs(got_m[k] - true_m[k]))) for k in true_m}}


def gain(metric: str, results: dict) -> float:
    """Share of the pixel baseline's loss of ``metric`` (over true B) the gradient loss
    recovers."""
    truth = results["b"][metric]
    return 1.0 - (results["gradient"][metric] - truth) / (results["pixel"][metric] - truth)


def gain_interval(results: dict, seed: int, draws: int = 2000) -> dict[str, list[float]]:
    """90 % bootstrap intervals of both gains over the test galaxies (one resample scores
    true B and both translations on the same galaxies): how far the test split's own
    sampling alone moves a gain, which one seed's figure cannot show."""
    rng = np.random.default_rng(seed)
    per = {key: results[key]["per_object"] for key in ("b", *LOSSES)}
    n = len(per["b"]["crps"])
    out: dict[str, list[float]] = {"crps": [], "sigma_nmad": []}
    for _ in range(draws):
        rows = rng.integers(0, n, n)
        draw = {key: {"crps": float(np.mean(p["crps"][rows])), "sigma_nmad": _nmad(p["dz"][rows])}
                for key, p in per.items()}
        for metric in out:
            out[metric].append(gain(metric, draw))
    return {metric: [float(np.percentile(v, 5)), float(np.percentile(v, 95))]
            for metric, v in out.items()}


def translator_job(a: SurveyStore, b: SurveyStore, root: str, args, seed: int) -> JobSpec:
    """The job a user would write: survey A as the store, one translator per loss, trained
    and run by ``surveyproc train`` and ``surveyproc translate``."""
    gradient = {"sample": args.sample, "anchor": args.anchor, "scales": args.scales}
    models = [{"name": loss, "kind": "translator", "target_store": b.url, "loss": loss,
               "width": args.width, "depth": 2, "seed": seed,
               **(gradient if loss == "gradient" else {})} for loss in LOSSES]
    return JobSpec.model_validate({
        "name": "translation", "store": {"url": a.url}, "output": {"dir": f"{root}/out"},
        "models": models, "metrics": {"enabled": False},
        "train": {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                  "val_fraction": VAL, "test_fraction": TEST, "seed": seed,
                  "patience": args.epochs, "augment": args.augment},
        "resources": {"actors": 2, "cpus_per_actor": 1, "threads_per_actor": 1,
                      "batch_size": 256}})


def run_once(args, seed: int, root: str) -> dict:
    a, b = surveys(args.n, seed, root)
    photoz = f"{root}/photoz.pt"
    section = BinnedDensitySettings(name="photoz", kind="binned_density", targets=["redshift"],
                                    width=args.width, grid=GRID)
    # every epoch runs and the best is kept: its validation loss jumps about from epoch to
    # epoch, and stopping at the first rise kept an epoch-0 estimator on one seed, too weak
    # to tell what a translation loses
    trained = train_model(b, section, TrainSection(epochs=args.photoz_epochs, lr=args.lr,
                                                   val_fraction=VAL, test_fraction=TEST,
                                                   seed=seed, batch_size=args.batch_size,
                                                   patience=args.photoz_epochs),
                          url=photoz, force=True)
    images_b = b.read(0, b.n_objects, labels=False, photometry=False).images
    stretch_b = Stretch(_noise(b))
    out: dict = {"b": score(b, photoz), "photoz_best_epoch": trained.metrics.get("best_epoch")}
    test = split_of(a.read_column("object_id"), VAL, TEST) == 2
    job = translator_job(a, b, root, args, seed)
    translators = {m.name: m for m in train_job(job, a, force=True)}
    for loss_name in LOSSES:
        plan = plan_translation(job, a, loss_name)
        result = run_translation(job, a, plan)
        store = open_store(plan.url)
        translated = store.read(0, store.n_objects, labels=False, photometry=False).images
        history = translators[loss_name].metrics["history"]
        out[loss_name] = {**score(store, photoz),
                          "val_pixel_loss": [e["val_loss"] for e in history],
                          "best_epoch": translators[loss_name].metrics["best_epoch"],
                          "val": translators[loss_name].metrics["val"],
                          "train_seconds": sum(e["seconds"] for e in history),
                          "translate_cutouts_per_s": result.cutouts_per_s,
                          **compare_pixels(images_b[test], translated[test], stretch_b)}
    out["gain_crps"] = gain("crps", out)
    out["gain_sigma_nmad"] = gain("sigma_nmad", out)
    interval = gain_interval(out, seed)
    out["gain_crps_90"], out["gain_sigma_nmad_90"] = interval["crps"], interval["sigma_nmad"]
    for key in ("b", *LOSSES):
        del out[key]["per_object"]
    print(f"seed {seed}: CRPS B {out['b']['crps']:.4f}, pixel {out['pixel']['crps']:.4f}, "
          f"gradient {out['gradient']['crps']:.4f}; gain {out['gain_crps']:.2f}", flush=True)
    return out


def render(record: dict) -> str:
    a, runs = record["args"], record["results"]["runs"]
    lines = [
        "## Image translation between surveys (`benchmarks/translation.py`)", "",
        f"{a['n']:,} synthetic galaxies seen by two surveys: A SDSS-like (ugriz, 16 x 0.8\" "
        "pixels, 1.4\" seeing, noise x2.5) and B CFHTLS-like (32 x 0.4\" pixels, 0.7\" "
        "seeing, noise x0.6), the two drawn from one seed with independent noise. A "
        "photo-z model (binned density, "
        f"ResNet-18 width {a['width']}, {a['photoz_epochs']} epochs, the best kept) trained "
        f"on B's training split; two `translator` models (U-Nets of width {a['width']}, "
        f"{a['epochs']} epochs, `surveyproc train`, dihedral augmentation "
        f"{'on' if a.get('augment', True) else 'off'}) translate A to B with the pixel loss or the "
        f"flow-weighted gradient loss ({a.get('sample', 8192):,} elements scored per step, "
        f"pixel anchor {a.get('anchor', 0.1):g}, gradients at scales "
        f"{', '.join(str(v) for v in a.get('scales', [1]))}), and `surveyproc translate` "
        "(2 Ray actors, "
        "one thread each) writes each translated survey as a store, B's sky noise emulated "
        f"({spread([r['gradient']['translate_cutouts_per_s'] for r in runs])['median']:,.0f}"
        " cutouts/s with the gradient model). Photo-z scored on the test split, "
        f"{len(runs)} seed(s); medians over seeds, the gains' range in brackets.", "",
        describe(record["machine"]), "",
        "| images scored | sigma_NMAD | CRPS | PIT KS | stretched RMSE | radius | "
        "concentration | g-i gradient |",
        "|---|---:|---:|---:|---:|---:|---:|---:|"]

    def med(key: str, metric: str) -> float:
        return spread([r[key][metric] for r in runs])["median"]

    for key, label in (("b", "true B"), ("pixel", "translated, pixel loss"),
                       ("gradient", "translated, gradient loss")):
        pixels = ("| — | — | — | — |" if key == "b" else
                  f"| {med(key, 'stretched_rmse'):.3f} | {med(key, 'radius_mad'):.2f} px | "
                  f"{med(key, 'concentration_mad'):.3f} | "
                  f"{med(key, 'colour_gradient_mad'):.3f} mag |")
        lines.append(f"| {label} | {med(key, 'sigma_nmad'):.4f} | {med(key, 'crps'):.4f} | "
                     f"{med(key, 'pit_ks'):.3f} {pixels}")
    crps_gain = spread([r["gain_crps"] for r in runs])
    nmad_gain = spread([r["gain_sigma_nmad"] for r in runs])
    lines += ["", "Morphology columns: mean absolute difference from true B per galaxy. "
              "Gain of the gradient loss (share of the pixel baseline's loss over true B it "
              f"recovers): CRPS {crps_gain['median']:.0%} ({crps_gain['min']:.0%} to "
              f"{crps_gain['max']:.0%}), sigma_NMAD {nmad_gain['median']:.0%} "
              f"({nmad_gain['min']:.0%} to {nmad_gain['max']:.0%}); the paper reports at least "
              f"{PAPER_GAIN:.0%}. Target: the gradient loss gives a lower CRPS and "
              "sigma_NMAD than the pixel loss: "
              + ("**met**." if crps_gain["median"] > 0 and nmad_gain["median"] > 0
                 else "**not met**."),
              *_per_seed(runs, a.get("seed", 1)),
              "", "The gain is a ratio of small differences: where the pixel baseline "
              "loses little over true B, it swings widely. Tried before (each rerun by this "
              "script's flags): single-pixel gradients only with a pixel anchor of 0.1 "
              "(`--scales 1 --anchor 0.1`, the earlier default) were not ahead on CRPS over "
              "two seeds (scored with the earlier photo-z model, below): the flow "
              "rightly finds one pixel's faint-band colour mostly noise and weighs it down, "
              "which left the translation's u-band level and integrated colours loose "
              "(validation u-band magnitude RMSE 0.42 against the pixel loss's 0.16, seed 1); "
              "eight times more gradient elements per step (`--sample 65536`) changed "
              "nothing there; a pixel anchor of 1 alone brought magnitudes and colours "
              "level with the pixel loss, not ahead. Gradients also over 2 x 2 and 4 x 4 "
              "blocks (`--scales 1 2 4`, the colour of a galaxy's core, which the flow "
              "finds precise) put the colours ahead of the pixel loss's on "
              f"{_colour_wins(runs)} (validation colour RMSE {_colours(runs, 'gradient')} against "
              f"{_colours(runs, 'pixel')} mag); with the anchor of 1 it is the default and "
              "the setting measured here. An earlier version of this "
              "script stopped the photo-z model at its first validation rise (patience 3): "
              "its validation loss jumps about between epochs, and on seed 2 that kept the "
              "epoch-0 estimator, which scored true B little better than either "
              "translation, so the seed's gains were noise; it now trains every epoch and "
              "keeps the best."]
    return "\n".join(lines)


def _colours(runs: list[dict], key: str) -> str:
    """The range over seeds of a translator's validation colour RMSE."""
    values = [r[key]["val"]["colour_rmse"] for r in runs]
    return f"{min(values):.3f}-{max(values):.3f}"


def _colour_wins(runs: list[dict]) -> str:
    """On how many seeds the gradient translator's validation colours beat the pixel's."""
    wins = sum(r["gradient"]["val"]["colour_rmse"] < r["pixel"]["val"]["colour_rmse"]
               for r in runs)
    return "every seed" if wins == len(runs) else f"{wins} of {len(runs)} seeds"


def _per_seed(runs: list[dict], first_seed: int) -> list[str]:
    """Each seed's gains with their 90 % bootstrap interval over the test galaxies (runs
    recorded before the intervals existed have none)."""
    if not all("gain_crps_90" in r for r in runs):
        return []
    parts = [f"seed {first_seed + i}: CRPS {r['gain_crps']:.0%} ({r['gain_crps_90'][0]:.0%} "
             f"to {r['gain_crps_90'][1]:.0%}), sigma_NMAD {r['gain_sigma_nmad']:.0%} "
             f"({r['gain_sigma_nmad_90'][0]:.0%} to {r['gain_sigma_nmad_90'][1]:.0%})"
             for i, r in enumerate(runs)]
    return ["", "Gains per seed, with the 90 % interval of a bootstrap over the test galaxies "
            "(how much the test split's sampling alone moves them): " + "; ".join(parts) + "."]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=6000)
    parser.add_argument("--epochs", type=int, default=25, help="translator epochs")
    parser.add_argument("--photoz-epochs", type=int, default=15)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1, help="seeds seed, seed+1, ...")
    parser.add_argument("--no-augment", dest="augment", action="store_false",
                        help="train the translators without the dihedral augmentation")
    parser.add_argument("--sample", type=int, default=8192,
                        help="gradient loss: gradient elements scored per step")
    parser.add_argument("--anchor", type=float, default=1.0,
                        help="gradient loss: weight of its pixel term")
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 2, 4],
                        help="gradient loss: pooling factors the gradients are taken at")
    parser.add_argument("--out", default=None, help="raw results (default docs/results/)")
    args = parser.parse_args()
    started = time.perf_counter()
    runs = []
    with ray_runtime():
        for repeat in range(args.repeats):
            with tempfile.TemporaryDirectory(prefix="surveyproc-translation-") as root:
                runs.append(run_once(args, args.seed + repeat, root))
    publish("translation", args, {"runs": runs}, render, started=started)


if __name__ == "__main__":
    main()
