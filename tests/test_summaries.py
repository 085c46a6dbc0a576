"""Two-point summaries: known answers (Poisson, white power, plane waves, no wrap-around)
and refused input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import correlate

from cosmo_sbi.summaries import (
    SummaryError,
    SummarySettings,
    padded_power,
    padded_shape,
    solid_angle_fractions,
    two_point_summaries,
)

SETTINGS = SummarySettings(n_z_bins=16, k_edges=tuple(np.linspace(0.1, 3.1, 16)), multipoles=(0, 2))
SHAPE = (64, 64, 64)


def _multipoles(summaries: np.ndarray) -> np.ndarray:
    return summaries[1 + SETTINGS.n_z_bins:].reshape(len(SETTINGS.multipoles), -1)


def test_feature_names_match_the_vector() -> None:
    counts = np.random.default_rng(0).poisson(3.0, (16, 16, 16))
    settings = SummarySettings(4, tuple(np.linspace(0.2, 3.0, 5)), (0, 2, 4))
    names = settings.feature_names()
    values = two_point_summaries(counts, settings)
    assert len(names) == len(values) == 1 + 4 + 3 * 4
    assert values[0] == counts.sum() == values[1:5].sum()
    assert names[:2] == ["N_total", "nz_00"] and names[-1] == "P4_k03"


@pytest.mark.parametrize("dec_deg", [None, (-20.0, 20.0)])
def test_poisson_field_has_no_power_after_shot_noise(dec_deg: tuple | None) -> None:
    """Constant clustering-free mean (evolving n(z), solid-angle cells): P0 ~ P2 ~ 0."""
    rng = np.random.default_rng(1)
    rate = 5.0
    mean = (solid_angle_fractions(SHAPE[:2], dec_deg)[:, :, None] * SHAPE[0] * SHAPE[1]
            * rate * np.linspace(0.5, 1.5, SHAPE[2]))
    power = np.mean([_multipoles(two_point_summaries(rng.poisson(mean), SETTINGS, dec_deg))
                     for _ in range(6)], axis=0)
    shot = 1.0 / rate  # P_shot in cell^3 at the mean rate
    # the lowest k bin loses the purely radial modes to n(z) (a few % of shot noise)
    assert np.all(np.abs(power / shot) < 0.2), power / shot
    assert abs(np.mean(power[0, 1:] / shot)) < 0.02
    assert abs(np.mean(power[1, 1:] / shot)) < 0.03


def test_white_gaussian_power_is_recovered() -> None:
    """Counts ~ Poisson(20 (1 + delta)), delta white with variance 0.09: P0 = 0.09 cell^3."""
    rng = np.random.default_rng(2)
    variance = 0.09
    power = np.mean([_multipoles(two_point_summaries(
        rng.poisson(20.0 * np.clip(1 + rng.normal(0, variance**0.5, SHAPE), 0, None)),
        SETTINGS)) for _ in range(3)], axis=0)
    np.testing.assert_allclose(power[0, 1:] / variance, 1.0, atol=0.1)
    assert np.all(np.abs(power[1, 2:] / variance) < 0.2)


@pytest.mark.parametrize(("wave", "expected_ratio"),
                         [((8, 0, 0), -2.5), ((0, 5, 3), 5 * (1.5 * 9 / 34 - 0.5))])
def test_plane_wave_lands_in_its_k_bin_with_its_mu(wave: tuple, expected_ratio: float) -> None:
    """A plane wave of wave vector k0 puts the peak of P0 in the bin holding |k0|, and
    P2 / P0 = 5 L2(mu0) there (mu0 = k0_z / |k0|)."""
    grid = np.indices(SHAPE)
    phase = 2 * np.pi / SHAPE[0] * np.tensordot(np.asarray(wave), grid, axes=1)
    counts = np.random.default_rng(3).poisson(20.0 * (1 + 0.5 * np.cos(phase)))
    power = _multipoles(two_point_summaries(counts, SETTINGS))
    k0 = 2 * np.pi / SHAPE[0] * np.linalg.norm(wave)
    peak = int(np.argmax(power[0]))
    assert SETTINGS.k_edges[peak] <= k0 < SETTINGS.k_edges[peak + 1]
    assert power[0, peak] > 5 * np.delete(power[0], peak).max()
    assert power[1, peak] / power[0, peak] == pytest.approx(expected_ratio, abs=0.1)


def test_zero_padding_removes_wrap_around() -> None:
    """|F(k)|^2 of the padded field is the transform of the non-periodic pair sum; the
    periodic one is not (a field with structure on opposite faces correlates across them)."""
    field = np.zeros((8, 8, 8))
    field[0] = np.random.default_rng(4).normal(size=(8, 8))
    field[-1] = field[0]  # opposite faces equal: neighbours only through the wrap
    direct = correlate(field, field, mode="full", method="direct")  # lags -7..7
    lags = np.indices(direct.shape).reshape(3, -1).T - 7

    def pair_sums(pad: bool) -> np.ndarray:
        shape = padded_shape(field.shape) if pad else field.shape
        correlation = np.fft.irfftn(padded_power(field, pad=pad), s=shape, axes=(0, 1, 2))
        return correlation[tuple((lags % np.array(shape)).T)]

    np.testing.assert_allclose(pair_sums(pad=True), direct.ravel(), atol=1e-9)
    assert not np.allclose(pair_sums(pad=False), direct.ravel(), atol=1e-3)


@pytest.mark.parametrize(("counts", "message"), [
    (np.ones((8, 8)), "shape"),
    (np.full((8, 8, 8), np.nan), "NaN"),
    (-np.ones((8, 8, 8)), "negative"),
    (np.zeros((8, 8, 8)), "empty"),
])
def test_bad_counts_are_refused_naming_the_source(counts: np.ndarray, message: str) -> None:
    with pytest.raises(SummaryError, match=f"results/histograms/x.h5.*{message}"):
        two_point_summaries(counts, SummarySettings(2, (0.5, 1.5, 3.0), (0,)),
                            source="results/histograms/x.h5")


def test_n_z_bins_must_divide_the_redshift_bins() -> None:
    with pytest.raises(SummaryError, match="n_z_bins = 3"):
        two_point_summaries(np.ones((8, 8, 8)), SummarySettings(3, (0.5, 1.5, 3.0), (0,)))
