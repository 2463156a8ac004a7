"""The image-translation building blocks: the U-Net's geometry, the log-flux gradients,
and the flow-weighted gradient loss learning which residuals to trust."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from surveyproc.models.translation import (
    GradientLoss,
    Stretch,
    UNet,
    emulate_noise,
    log_flux_gradients,
)


def test_the_unet_maps_survey_a_bands_and_pixels_to_survey_bs():
    torch.manual_seed(0)
    net = UNet(5, 4, width=8, depth=2, upscale=2)
    out = net(torch.randn(3, 5, 16, 16))
    assert out.shape == (3, 4, 32, 32)
    # untrained, it passes the resampled input through a band mixture (zero correction)
    x = torch.randn(2, 5, 16, 16)
    resampled = torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear")
    torch.testing.assert_close(net(x), net.mix(resampled))
    with pytest.raises(ValueError, match="divide by 2"):
        net(torch.randn(1, 5, 15, 15))


def test_gradients_are_differences_of_the_stretch_and_vanish_on_a_constant():
    rng = np.random.default_rng(1)
    images = rng.normal(size=(2, 3, 5, 6)).astype(np.float32)
    g = log_flux_gradients(torch.from_numpy(images))
    np.testing.assert_allclose(g["y"].numpy(), np.diff(images, axis=2), rtol=1e-6)
    np.testing.assert_allclose(g["x"].numpy(), np.diff(images, axis=3), rtol=1e-6)
    np.testing.assert_allclose(g["band"].numpy(), np.diff(images, axis=1), rtol=1e-6)
    flat = log_flux_gradients(torch.full((1, 3, 4, 4), 2.5))
    assert all(float(v.abs().max()) == 0.0 for v in flat.values())


def test_the_stretch_inverts_and_refuses_bad_softening():
    stretch = Stretch([0.01, 0.02, 0.05])
    flux = torch.randn(4, 3, 8, 8) * torch.tensor([1.0, 10.0, 0.01]).view(1, 3, 1, 1)
    torch.testing.assert_close(stretch.inverse(stretch(flux)), flux, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="positive"):
        Stretch([0.1, 0.0])


def test_the_flow_weights_residuals_by_how_predictable_they_are():
    """Residuals of band 0 scatter 10x less than those of band 1: after fitting, the loss
    must weigh a band-0 residual about 100x more (inverse variance), learnt, not set."""
    torch.manual_seed(0)
    loss = GradientLoss(2, anchor=0.0, sample=4096)
    optimiser = torch.optim.Adam(loss.parameters(), lr=5e-3)
    target = torch.zeros(16, 2, 16, 16)
    for _ in range(300):
        noise = torch.randn_like(target) * torch.tensor([0.05, 0.5]).view(1, 2, 1, 1)
        # predicted - target gradients: spatial differences of per-band noise
        optimiser.zero_grad()
        value = loss(target + noise, target)
        value.backward()
        optimiser.step()
    bands = torch.tensor([0, 1])
    context = loss.context(1, bands, torch.zeros(2))  # x-gradients in the sky
    weights = loss.weights(context)
    assert float(weights[0] / weights[1]) == pytest.approx(100.0, rel=0.5)


def test_coarser_scales_weigh_a_colour_over_many_pixels_above_one_pixels_colour():
    """Independent per-pixel residuals of the same scatter in both bands: one pixel's
    colour (band difference) scatters 4x more than the colour of a 4 x 4 block, so with
    scales [1, 4] the flow must weigh the block's colour about 16x more (the integrated
    SED counts even where single pixels are noise); a loss that did not pool, or did not
    tell the flow the scale, gives about 1."""
    torch.manual_seed(0)
    loss = GradientLoss(2, anchor=0.0, sample=4096, scales=[1, 4])
    optimiser = torch.optim.Adam(loss.parameters(), lr=5e-3)
    target = torch.zeros(16, 2, 16, 16)
    for _ in range(300):
        optimiser.zero_grad()
        loss(target + 0.3 * torch.randn_like(target), target).backward()
        optimiser.step()
    band = torch.tensor([1])
    pixel = loss.weights(loss.context(2, band, torch.zeros(1), scale=0))
    block = loss.weights(loss.context(2, band, torch.zeros(1), scale=1))
    assert float(block / pixel) == pytest.approx(16.0, rel=0.5)


def test_the_gradient_loss_takes_one_band_and_refuses_bad_scales():
    loss = GradientLoss(1, sample=256, scales=[1, 2])
    value = loss(torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8))
    assert torch.isfinite(value)
    for scales in ([], [0], [2, 2]):
        with pytest.raises(ValueError, match="scales"):
            GradientLoss(2, scales=scales)
    with pytest.raises(ValueError, match=r"\(4, 4\) cutouts are too small for scales \[4\]"):
        GradientLoss(1, scales=[4])(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4))


def test_noise_emulation_adds_the_target_surveys_sky_noise():
    flux = np.zeros((50, 2, 16, 16), np.float32)
    noisy = emulate_noise(flux, [0.01, 0.1], seed=3)
    assert noisy.dtype == np.float32
    np.testing.assert_allclose(noisy.std(axis=(0, 2, 3)), [0.01, 0.1], rtol=0.05)
    # each object's noise is its own: cutting the survey into other batches changes nothing
    batches = [emulate_noise(flux[a:a + 16], [0.01, 0.1], seed=3, first=a)
               for a in range(0, 50, 16)]
    np.testing.assert_array_equal(np.concatenate(batches), noisy)
    assert not np.array_equal(emulate_noise(flux, [0.01, 0.1], seed=4), noisy)
