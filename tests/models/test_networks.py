"""Shapes, the top-k layer's sparsity and gradients, and the density model's PDFs."""

from __future__ import annotations

import pytest
import torch

from surveyproc.models import BinnedDensity, DenseCNN, Grid, ResNet18, SFNet, TopK


@pytest.mark.parametrize("bands", [1, 3, 5])
@pytest.mark.parametrize("size", [24, 32, 48, 64])
def test_backbone_takes_any_bands_and_size(bands, size):
    net = ResNet18(bands, width=8)
    assert net(torch.zeros(2, bands, size, size)).shape == (2, 64)


@pytest.mark.parametrize("bands", [3, 4])
def test_heads_output_shapes(bands):
    x = torch.randn(3, bands, 32, 32)
    assert DenseCNN(bands, 4, width=8)(x).prediction.shape == (3, 4)
    out = SFNet(bands, 2, k=3, width=8)(x)
    assert out.prediction.shape == (3, 2)
    assert out.act_idx.shape == out.act_val.shape == (3, 3)
    pdf = BinnedDensity(bands, Grid(low=0.0, high=0.4, n_bins=180), width=8).pdf(x)
    assert pdf.shape == (3, 180)


@pytest.mark.parametrize("k", [1, 2, 4, 8])
def test_topk_keeps_exactly_k_per_row_and_passes_gradient_only_through_them(k):
    torch.manual_seed(k)
    x = (torch.rand(16, 512) + 0.01).requires_grad_()  # all positive: k non-zeros exist
    dense, idx, val = TopK(k)(x)
    assert ((dense != 0).sum(dim=1) == k).all()
    expected = torch.topk(x.detach(), k, dim=1)
    assert torch.equal(idx, expected.indices) and torch.equal(val, expected.values)
    weights = torch.randn(512)
    (dense * weights).sum().backward()
    kept = torch.zeros_like(x, dtype=torch.bool).scatter_(1, idx, True)
    assert (x.grad[~kept] == 0).all()
    assert torch.allclose(x.grad[kept], weights.expand_as(x)[kept])


def test_sfnet_features_are_k_sparse_and_head_reads_only_them():
    torch.manual_seed(0)
    net = SFNet(4, 1, k=2, width=8).eval()
    out = net(torch.randn(6, 4, 32, 32))
    assert ((out.features != 0).sum(dim=1) <= 2).all()
    manual = out.features @ net.head.weight.T + net.head.bias
    assert torch.allclose(manual, out.prediction)


def test_density_pdfs_are_nonnegative_and_integrate_to_one():
    torch.manual_seed(1)
    grid = Grid(low=0.0, high=0.4, n_bins=180)
    model = BinnedDensity(4, grid, width=8)
    model.head.bias.data += torch.randn(180) * 5  # far from uniform
    pdf = model.pdf(torch.randn(10, 4, 32, 32))
    assert (pdf >= 0).all()
    torch.testing.assert_close((pdf * grid.width).sum(dim=1), torch.ones(10))


def test_grid_bins():
    grid = Grid(low=0.0, high=0.4, n_bins=4)
    assert grid.bin_of(torch.tensor([-1.0, 0.0, 0.099, 0.1, 0.39, 5.0])).tolist() == \
        [0, 0, 0, 1, 3, 3]
    assert grid.centres().tolist() == pytest.approx([0.05, 0.15, 0.25, 0.35])
    with pytest.raises(ValueError, match="must be above low"):
        Grid(low=1.0, high=0.0, n_bins=10)
