"""The texture statistics against hand computations on tiny tensors, and their invariances."""
import numpy as np
import pytest
import torch

from invtool import losses

# two channels, one row of two pixels: F = [[1, 2], [3, 4]]
F2 = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])


@pytest.mark.parametrize("norm, divisor", [("none", 1), ("pixels", 2), ("gatys", 4), ("elements", 4)])
def test_gram_matrix_by_hand(norm, divisor):
    # F Fᵀ = [[1+4, 3+8], [3+8, 9+16]]; M = 2 pixels, C = 2 channels
    expected = torch.tensor([[[5.0, 11.0], [11.0, 25.0]]]) / divisor
    assert torch.allclose(losses.gram_matrix(F2, norm), expected)


def test_gram_loss_is_gatys_eq4():
    g = torch.Generator().manual_seed(0)
    f, t = torch.rand(1, 3, 4, 5, generator=g), torch.rand(1, 3, 4, 5, generator=g)
    fn, tn = f.reshape(3, 20).double().numpy(), t.reshape(3, 20).double().numpy()
    c, m = 3, 20
    expected = ((fn @ fn.T - tn @ tn.T) ** 2).sum() / (4 * c ** 2 * m ** 2)
    got = losses.gram_loss(losses.gram_matrix(f, "gatys"), losses.gram_matrix(t, "gatys"))
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_sorted_loss_by_hand():
    f = torch.tensor([3.0, 1.0, 2.0]).reshape(1, 1, 1, 3)
    target = torch.tensor([0.0, 2.0, 4.0]).reshape(1, 1, 3)        # already sorted
    # sorted f = [1, 2, 3]; differences [1, 0, -1]; mean of squares 2/3
    assert losses.sorted_loss(f, target).item() == pytest.approx(2 / 3)


def test_resample_sorted_by_hand():
    values = torch.tensor([0.0, 1.0])
    # 4 quantiles of 2 samples at positions (i + 1/2) * 2/4 - 1/2 = -0.25, 0.25, 0.75, 1.25 (clamped)
    assert torch.allclose(losses.resample_sorted(values, 4), torch.tensor([0.0, 0.25, 0.75, 1.0]))
    assert torch.equal(losses.resample_sorted(values, 2), values)


def test_sorted_loss_across_pixel_counts():
    """The same distribution at 4x the pixels (nearest upsampling) compares as identical when the target
    has more samples, and nearly so the other way (the target's quantiles are interpolated)."""
    g = torch.Generator().manual_seed(1)
    f, other = torch.rand(1, 4, 5, 6, generator=g), torch.rand(1, 4, 10, 12, generator=g) ** 3
    big = f.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    assert losses.sorted_loss(f, losses.sorted_channels(big)).item() == pytest.approx(0.0, abs=1e-12)
    unrelated = losses.sorted_loss(other, losses.sorted_channels(f)).item()
    assert losses.sorted_loss(big, losses.sorted_channels(f)).item() < 0.05 * unrelated


def test_swd_one_channel_is_sorted_loss():
    """With one channel every unit direction is +1 or -1, and both give the sorted loss."""
    g = torch.Generator().manual_seed(2)
    f, t = torch.rand(1, 1, 3, 4, generator=g), torch.rand(1, 1, 3, 4, generator=g)
    expected = losses.sorted_loss(f, losses.sorted_channels(t))
    for seed in range(3):
        got = losses.sliced_wasserstein_loss(f, t, n_projections=5, generator=torch.Generator().manual_seed(seed))
        assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_swd_projections_follow_the_generator():
    g = torch.Generator().manual_seed(3)
    f, t = torch.rand(1, 8, 4, 4, generator=g), torch.rand(1, 8, 4, 4, generator=g)
    a = losses.sliced_wasserstein_loss(f, t, generator=torch.Generator().manual_seed(0))
    b = losses.sliced_wasserstein_loss(f, t, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(0)
    c, d = (losses.sliced_wasserstein_loss(f, t, generator=gen) for _ in range(2))
    assert a == b == c          # same seed, same directions
    assert c != d               # redrawn on each call


def test_swd_by_hand_projection():
    """Against numpy: project on the same directions, sort, mean squared difference."""
    g = torch.Generator().manual_seed(4)
    f, t = torch.rand(1, 3, 2, 3, generator=g), torch.rand(1, 3, 4, 3, generator=g)   # 6 vs 12 pixels
    d = torch.randn(3, 2, generator=torch.Generator().manual_seed(9))
    d = (d / d.norm(dim=0)).numpy()
    pf = np.sort(f.reshape(3, 6).numpy().T @ d, axis=0)        # [6, 2]
    pt = np.sort(t.reshape(3, 12).numpy().T @ d, axis=0)       # [12, 2]
    pt6 = (pt[0::2] + pt[1::2]) / 2                            # quantiles (i + 1/2)/6 of 12 samples
    expected = ((pf - pt6) ** 2).mean()
    got = losses.sliced_wasserstein_loss(f, t, n_projections=2, generator=torch.Generator().manual_seed(9))
    assert got.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("name", ["gram", "sorted", "swd"])
def test_zero_for_identical_and_invariant_to_permutation(name):
    g = torch.Generator().manual_seed(5)
    f = torch.rand(2, 6, 5, 7, generator=g)
    perm = torch.randperm(35, generator=g)
    shuffled = f.flatten(2)[:, :, perm].reshape(f.shape)
    other = torch.rand(2, 6, 5, 7, generator=g)

    def loss(x, y):
        if name == "gram":
            return losses.gram_loss(losses.gram_matrix(x), losses.gram_matrix(y)).item()
        if name == "sorted":
            return losses.sorted_loss(x, losses.sorted_channels(y)).item()
        return losses.sliced_wasserstein_loss(x, y, generator=torch.Generator().manual_seed(0)).item()

    assert loss(f, f) == pytest.approx(0.0, abs=1e-10)
    assert loss(shuffled, f) == pytest.approx(0.0, abs=1e-10)
    assert loss(other, f) > 1e-4


def test_feature_errors_by_hand():
    f, t = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 0.0, 1.0])
    assert losses.feature_mse(f, t).item() == pytest.approx((0 + 4 + 4) / 3)
    assert losses.normalized_feature_error(f, t).item() == pytest.approx(8 / 2)
    assert losses.normalized_feature_error(t, t).item() == 0
