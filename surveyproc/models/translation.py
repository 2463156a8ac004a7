"""Survey-to-survey image translation: a U-Net from survey A's cutouts to survey B's, and
the two training objectives the image-translation papers compare.

- **Pixel loss** (the baseline): mean squared error of the translated pixels, in an
  asinh stretch of each band (linear in the noise, logarithmic for bright light, so
  neither the sky nor a bright core dominates).
- **Gradient loss** (physics-aware): the same stretch differenced along the two spatial
  axes and along the band axis, i.e. log-flux gradients: spatially resolved colours
  (the SED's shape, what carries the redshift) and light profiles.  How much each
  gradient element counts is not set by hand: a conditional normalizing flow (zuko)
  models the residual of each element given what it is (axis, band, how bright the
  target is there), and the loss is that residual's negative log-likelihood, so an
  element the flow finds predictable (a colour in a bright core) weighs more than one
  dominated by noise (a gradient in the sky): per-element weights estimated by
  probabilistic modelling, learnt jointly with the translator.  Gradients are blind to
  one constant added to every pixel and band, so a small pixel term anchors the level.
  The gradients are taken at several scales (the stretched images averaged over 1 x 1,
  2 x 2, 4 x 4 pixels): a single pixel's colour in a faint band is mostly noise, so the
  flow rightly weighs it down, while the same colour over a galaxy's core, the
  integrated SED that carries the redshift, is precise at the coarser scales and the
  flow then weighs it up.

The stretch uses survey B's sky noise per band as softening, so its inverse gives
translated pixels back in B's flux unit; :func:`emulate_noise` adds B's sky noise to
them where a translated survey should look observed rather than denoised.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import zuko
from torch import nn
from torch.nn import functional as F

__all__ = ["AXES", "GradientLoss", "Stretch", "Translator", "UNet", "emulate_noise",
           "log_flux_gradients", "pixel_loss"]

#: The axes of the log-flux gradients: along y, along x, along the bands (colours).
AXES = ("y", "x", "band")


class Stretch(nn.Module):
    """``asinh(flux / softening)`` per band and its inverse; the softening is a flux
    near the sky noise, so the stretch is a log for real light and linear in the sky.

    Examples
    --------
    >>> s = Stretch([0.1, 0.2])
    >>> x = torch.tensor([[[[0.5]], [[-1.0]]]])
    >>> torch.allclose(s.inverse(s(x)), x)
    True
    """

    def __init__(self, softening: Sequence[float]) -> None:
        super().__init__()
        values = torch.as_tensor(np.asarray(softening, dtype=np.float32))
        if values.ndim != 1 or not bool((values > 0).all()):
            msg = f"softening must be one positive flux per band, got {list(softening)}"
            raise ValueError(msg)
        self.softening: torch.Tensor
        self.register_buffer("softening", values.view(1, -1, 1, 1))

    def forward(self, flux: torch.Tensor) -> torch.Tensor:
        return torch.asinh(flux / self.softening)

    def inverse(self, stretched: torch.Tensor) -> torch.Tensor:
        return torch.sinh(stretched) * self.softening


def log_flux_gradients(stretched: torch.Tensor) -> dict[str, torch.Tensor]:
    """Forward differences of stretched images (n, bands, h, w) along :data:`AXES`:
    ``y`` (n, bands, h-1, w), ``x`` (n, bands, h, w-1), ``band`` (n, bands-1, h, w).

    Examples
    --------
    >>> g = log_flux_gradients(torch.arange(8.0).view(1, 2, 2, 2))
    >>> g["y"].flatten().tolist(), g["x"].flatten().tolist(), g["band"].flatten().tolist()
    ([2.0, 2.0, 2.0, 2.0], [1.0, 1.0, 1.0, 1.0], [4.0, 4.0, 4.0, 4.0])
    """
    return {"y": stretched[:, :, 1:, :] - stretched[:, :, :-1, :],
            "x": stretched[:, :, :, 1:] - stretched[:, :, :, :-1],
            "band": stretched[:, 1:] - stretched[:, :-1]}


def pixel_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The baseline: mean squared error of stretched pixels."""
    return F.mse_loss(predicted, target)


def _block(channels_in: int, channels_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels_in, channels_out, 3, padding=1), nn.GroupNorm(4, channels_out),
        nn.SiLU(),
        nn.Conv2d(channels_out, channels_out, 3, padding=1), nn.GroupNorm(4, channels_out),
        nn.SiLU())


class UNet(nn.Module):
    """A U-Net from ``in_bands`` stretched cutouts to ``out_bands`` ones ``upscale`` times
    larger (survey B's finer pixels over the same field).

    The input is first resampled to the output grid (bilinear); the network then predicts
    the output as a learnt per-pixel band mixture of that resampled input plus a
    correction from ``depth`` levels of down- and up-sampling with skip connections, so
    an untrained network already passes the galaxy through and training learns what
    the two instruments do differently (PSF, depth, band set)."""

    def __init__(self, in_bands: int, out_bands: int, *, width: int = 32, depth: int = 2,
                 upscale: int = 1) -> None:
        super().__init__()
        if upscale < 1 or depth < 1 or width % 4:
            msg = f"upscale and depth must be >= 1 and width a multiple of 4 " \
                  f"(got {upscale}, {depth}, {width})"
            raise ValueError(msg)
        self.upscale, self.depth = upscale, depth
        self.mix = nn.Conv2d(in_bands, out_bands, 1)
        if in_bands == out_bands:  # the same band set: start from passing each band through
            with torch.no_grad():
                self.mix.weight.copy_(torch.eye(in_bands).view(in_bands, in_bands, 1, 1))
                nn.init.zeros_(self.mix.bias)  # type: ignore[arg-type]
        widths = [width * 2 ** i for i in range(depth + 1)]
        self.down = nn.ModuleList([_block(in_bands, widths[0])] + [
            _block(widths[i], widths[i + 1]) for i in range(depth)])
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in range(depth))
        self.merge = nn.ModuleList(_block(2 * widths[i], widths[i]) for i in range(depth))
        self.out = nn.Conv2d(widths[0], out_bands, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upscale > 1:
            x = F.interpolate(x, scale_factor=self.upscale, mode="bilinear",
                              align_corners=False)
        side = x.shape[-1]
        if side % 2 ** self.depth or x.shape[-2] % 2 ** self.depth:
            msg = (f"the output side ({tuple(x.shape[-2:])}) must divide by 2^depth = "
                   f"{2 ** self.depth}")
            raise ValueError(msg)
        skips = []
        h = x
        for i, block in enumerate(self.down):
            h = block(h if i == 0 else F.max_pool2d(h, 2))
            skips.append(h)
        for i in reversed(range(self.depth)):
            h = self.merge[i](torch.cat([self.up[i](h), skips[i]], dim=1))
        return self.mix(x) + self.out(h)


class GradientLoss(nn.Module):
    """Negative log-likelihood of log-flux-gradient residuals under a conditional flow,
    plus ``anchor`` times the pixel loss.

    The flow's context for one gradient element: which axis (one-hot), which band
    (one-hot; for the band axis, the redder band of the pair), the target's stretched
    brightness there (the mean of the two pixels differenced) and, with more than one of
    ``scales``, which scale (one-hot).  Each step scores ``sample`` randomly drawn
    elements, the same number at every scale (an unbiased estimate of the mean over all
    of them, each scale counting alike, at a fraction of the flow's cost).
    :meth:`weights` reads the learnt weighting back: the inverse variance the flow gives
    residuals of a context.
    """

    def __init__(self, bands: int, *, anchor: float = 0.1, sample: int = 8192,
                 transforms: int = 2, hidden: int = 32,
                 scales: Sequence[int] = (1,)) -> None:
        super().__init__()
        if not scales or any(int(s) < 1 for s in scales) or len(set(scales)) != len(scales):
            msg = f"scales must be distinct pooling factors >= 1, got {list(scales)}"
            raise ValueError(msg)
        self.bands, self.anchor, self.sample = bands, anchor, sample
        self.scales = [int(s) for s in scales]
        self.flow = zuko.flows.NSF(1, self._context_size, transforms=transforms,
                                   hidden_features=(hidden, hidden))

    @property
    def _context_size(self) -> int:
        return len(AXES) + self.bands + 1 + (len(self.scales) if len(self.scales) > 1 else 0)

    def context(self, axis: int, band: torch.Tensor, brightness: torch.Tensor,
                scale: int = 0) -> torch.Tensor:
        """(m, context) rows for elements of one ``axis`` (and the ``scale``-th of
        :attr:`scales`) with these bands and brightnesses."""
        axis_hot = torch.zeros(len(band), len(AXES), device=band.device)
        axis_hot[:, axis] = 1.0
        band_hot = F.one_hot(band, self.bands).to(brightness.dtype)
        parts = [axis_hot, band_hot, brightness[:, None]]
        if len(self.scales) > 1:
            scale_hot = torch.zeros(len(band), len(self.scales), device=band.device)
            scale_hot[:, scale] = 1.0
            parts.append(scale_hot)
        return torch.cat(parts, dim=1)

    def _elements(self, predicted: torch.Tensor, target: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """Residuals (m, 1) and contexts (m, c) of :attr:`sample` random elements."""
        if min(target.shape[-2:]) < 2 * max(self.scales):
            msg = f"{tuple(target.shape[-2:])} cutouts are too small for scales {self.scales}"
            raise ValueError(msg)
        residuals: list[torch.Tensor] = []
        contexts: list[torch.Tensor] = []
        per_scale = max(1, self.sample // len(self.scales))
        for index, factor in enumerate(self.scales):
            pooled_p, pooled_t = ((F.avg_pool2d(v, factor) if factor > 1 else v)
                                  for v in (predicted, target))
            scale_residuals, scale_contexts = self._draw(pooled_p, pooled_t, per_scale, index)
            residuals += scale_residuals
            contexts += scale_contexts
        return torch.cat(residuals), torch.cat(contexts)

    def _draw(self, predicted: torch.Tensor, target: torch.Tensor, count: int, scale: int
              ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``count`` random gradient elements of one scale (residuals and contexts, one
        tensor per axis), spread over the axes in proportion to how many each has."""
        gp, gt = log_flux_gradients(predicted), log_flux_gradients(target)
        level = {"y": (target[:, :, 1:] + target[:, :, :-1]) / 2,
                 "x": (target[..., 1:] + target[..., :-1]) / 2,
                 "band": (target[:, 1:] + target[:, :-1]) / 2}
        total = sum(g.numel() for g in gt.values())
        residuals, contexts = [], []
        for axis, name in enumerate(AXES):
            if gt[name].numel() == 0:
                continue  # one band: no colours
            share = max(1, round(count * gt[name].numel() / total))
            flat = torch.randint(gt[name].numel(), (share,), device=target.device)
            band = (flat // (gt[name].shape[2] * gt[name].shape[3])) % gt[name].shape[1]
            if name == "band":
                band = band + 1
            residuals.append((gp[name].reshape(-1)[flat] - gt[name].reshape(-1)[flat])[:, None])
            contexts.append(self.context(axis, band, level[name].reshape(-1)[flat], scale))
        return residuals, contexts

    def forward(self, predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        residual, context = self._elements(predicted, target)
        nll = -self.flow(context).log_prob(residual).mean()
        return nll + self.anchor * pixel_loss(predicted, target)

    @torch.no_grad()
    def weights(self, context: torch.Tensor, draws: int = 2048) -> torch.Tensor:
        """Inverse variance of the residual the flow expects in each context row: the
        weight a squared residual of that kind carries in the loss."""
        samples = self.flow(context).sample((draws,))  # (draws, m, 1)
        return 1.0 / samples[..., 0].var(dim=0)


class Translator(nn.Module):
    """A U-Net, survey B's stretch and the training objective in one module.

    ``forward(x)`` maps normalised cutouts of A to B's stretched pixels; ``forward(x,
    target)`` with B's raw cutouts returns the loss instead (the objective's own
    parameters, the gradient loss's flow, are then used inside ``forward``, as
    data-parallel training needs).  In training mode the loss is the model's objective;
    in evaluation mode always the pixel loss, deterministic and the same quantity for
    both objectives, so validation compares them and picks the best epoch alike.
    Target pixels that are not finite (masked) add nothing.
    """

    def __init__(self, in_bands: int, out_bands: int, softening: Sequence[float], *,
                 input_scale: Sequence[float] | None = None, loss: str = "gradient",
                 width: int = 32, depth: int = 2, upscale: int = 1, anchor: float = 0.1,
                 sample: int = 8192, transforms: int = 2, hidden: int = 32,
                 scales: Sequence[int] = (1,)) -> None:
        super().__init__()
        if loss not in ("pixel", "gradient"):
            msg = f"loss must be 'pixel' or 'gradient', got {loss!r}"
            raise ValueError(msg)
        self.unet = UNet(in_bands, out_bands, width=width, depth=depth, upscale=upscale)
        self.stretch = Stretch(softening)
        # input ``asinh(flux / input_scale)`` -> the same flux spread over the output's
        # finer pixels, in the output's stretch: the U-Net's pass-through then starts at
        # the right level (B's bands' softening, or their mean where the band sets differ)
        restretch = torch.ones(in_bands) if input_scale is None else \
            torch.as_tensor(np.asarray(input_scale, np.float32)) / upscale ** 2
        reference = self.stretch.softening.view(-1)
        restretch = restretch / (reference if in_bands == out_bands else reference.mean())
        self.restretch: torch.Tensor
        self.register_buffer("restretch", restretch.view(1, -1, 1, 1).float())
        self.rescale = input_scale is not None
        self.gradient = (GradientLoss(out_bands, anchor=anchor, sample=sample,
                                      transforms=transforms, hidden=hidden, scales=scales)
                         if loss == "gradient" else None)

    def _unet(self, x: torch.Tensor) -> torch.Tensor:
        if self.rescale:
            x = torch.asinh(torch.sinh(x) * self.restretch)
        return self.unet(x)

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        predicted = self._unet(x)
        if target is None:
            return predicted
        known = torch.isfinite(target)
        truth = torch.where(known, self.stretch(torch.where(known, target, 0.0)),
                            predicted.detach())
        if self.training and self.gradient is not None:
            return self.gradient(predicted, truth)
        return pixel_loss(predicted, truth)

    def flux(self, x: torch.Tensor) -> torch.Tensor:
        """Translated cutouts in survey B's flux unit."""
        return self.stretch.inverse(self._unet(x))


def emulate_noise(flux: np.ndarray, sky_noise: Sequence[float], seed: int,
                  first: int = 0) -> np.ndarray:
    """``flux`` (n, bands, h, w) plus Gaussian sky noise of ``sky_noise`` per band: a
    translated (noise-free) image given the target survey's noise statistics.

    Object ``first + i`` of the survey draws its noise from its own stream ``(seed,
    first + i)``, so a survey's translation is the same whatever batches and shards cut
    it into.

    >>> flux = np.zeros((5, 1, 2, 2), np.float32)
    >>> whole = emulate_noise(flux, [1.0], seed=7)
    >>> parts = [emulate_noise(flux[:2], [1.0], 7), emulate_noise(flux[2:], [1.0], 7, first=2)]
    >>> bool(np.array_equal(whole, np.concatenate(parts)))
    True
    """
    sigma = np.asarray(sky_noise, dtype=np.float32)[:, None, None]
    noisy = np.empty_like(flux)
    for i in range(len(flux)):
        rng = np.random.default_rng((int(seed), int(first) + i))
        noisy[i] = flux[i] + sigma * rng.standard_normal(flux.shape[1:], dtype=np.float32)
    return noisy
