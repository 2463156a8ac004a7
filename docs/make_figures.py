"""Draw the figures of docs/synthetic.md and the README from a freshly generated survey.

    python docs/make_figures.py
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from astropy.visualization import make_lupton_rgb

from surveyproc.store.synth import SynthConfig, draw_galaxies, generate

OUT = Path(__file__).parent / "img"


def montage() -> None:
    config = SynthConfig(n=48, size=64, bands=("g", "r", "i", "z"), seed=1)
    batch = generate(config, 0, config.n)
    fig, axes = plt.subplots(4, 8, figsize=(12, 6.4))
    for ax, k in zip(axes.flat, range(32), strict=True):
        img = batch.images[k]
        rgb = make_lupton_rgb(0.6 * img[3], 0.9 * img[1], 1.6 * img[0], stretch=0.5, Q=8,
                              minimum=-0.02 * img.max())
        ax.imshow(rgb, origin="lower")
        ax.set_title(f"z={batch.labels['redshift'][k]:.2f} "
                     f"logM={batch.labels['log_mstar'][k]:.1f}", fontsize=7)
        ax.axis("off")
    fig.suptitle("Synthetic survey, seed 1: z/r/g composites, 64x64 pixels at 0.2625\"")
    fig.tight_layout()
    fig.savefig(OUT / "synthetic_montage.png", dpi=90)
    plt.close(fig)


def relations() -> None:
    config = SynthConfig(n=20000, size=32, seed=11)
    batch = generate(config, 0, config.n, images=False)
    g = draw_galaxies(config.seed, 0, config.n)
    flux = np.stack([batch.photometry[b] for b in config.bands], 1).astype(float)
    mags = 22.5 - 2.5 * np.log10(np.clip(flux, 1e-2, None))
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    kinds = [(~g.quiescent, "star-forming", "tab:blue"),
             (g.quiescent & ~g.post_starburst, "quiescent", "tab:red"),
             (g.post_starburst, "post-starburst", "tab:orange")]
    for mask, label, colour in kinds:
        axes[0].scatter(g.redshift[mask], (mags[:, 0] - mags[:, 1])[mask], s=1, alpha=0.3,
                        color=colour, label=label)
    axes[0].set(xlabel="redshift", ylabel="g - r", title="Colour vs redshift")
    axes[0].legend(markerscale=8)
    ok = np.isfinite(batch.labels["metallicity"]) & (g.bulge_fraction < 0.3)
    sc = axes[1].scatter(g.log_mstar[ok], batch.labels["metallicity"][ok], s=1,
                         c=g.cos_inclination[ok], cmap="viridis")
    fig.colorbar(sc, ax=axes[1], label="cos(inclination)  (1 = face-on)")
    axes[1].set(xlabel="log M*", ylabel="12 + log(O/H) (fibre)",
                title="Mass-metallicity: edge-on disks lower")
    n2 = np.log10(np.clip(batch.labels["flux_nii"] / batch.labels["flux_halpha"], 1e-3, None))
    o3 = np.log10(np.clip(batch.labels["flux_oiii"] / batch.labels["flux_hbeta"], 1e-3, None))
    good = batch.labels["flux_hbeta"] > 3 * batch.labels["flux_hbeta_err"]
    axes[2].scatter(n2[good & ~g.agn], o3[good & ~g.agn], s=1, alpha=0.3, label="no AGN")
    axes[2].scatter(n2[good & g.agn], o3[good & g.agn], s=1, alpha=0.5, label="AGN")
    x = np.linspace(-2, 0.0, 100)
    axes[2].plot(x, 0.61 / (x - 0.05) + 1.3, "k--", label="Kauffmann 2003")
    x2 = np.linspace(-2, 0.3, 100)
    axes[2].plot(x2, 0.61 / (x2 - 0.47) + 1.19, "k:", label="Kewley 2001")
    axes[2].set(xlim=(-2, 0.6), ylim=(-1.5, 1.5), xlabel="log [NII]/Halpha",
                ylabel="log [OIII]/Hbeta", title="BPT diagram")
    axes[2].legend(markerscale=8, fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT / "synthetic_relations.png", dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    montage()
    relations()
