"""The bias ratio (cosmo_sbi.bias_calibration, ``simulator.embedded.bias_ratio``): known
answer from embedded runs whose bias is scaled by 1.25 at the same seeds, and the cases
that must fail.

Geometry: config/laptop.yaml + config/pinocchio-cross.yaml (128^3 in 700 Mpc/h, +-12 deg,
0.3 < z_obs < 0.5, M > 2e13 Msun/h: ~17,000 halos per cone), 4 fiducial seeds. Its 5.5
Mpc/h cells keep the bias fields of every bin below 3e14 Msun/h at the 6 Mpc/h radius
with either ratio; config/tiny.yaml's 23 Mpc/h cells smooth them at 24 Mpc/h for
bias_ratio 1.25, which suppresses the scaled bias at the measured k (1.04 measured).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from cosmo_sbi.bias_calibration import (
    BiasCalibrationError,
    kaiser_bias_ratio,
    measure_bias_ratio,
    write_bias_calibration,
)
from cosmo_sbi.config import ConfigError, load_config
from cosmo_sbi.design import read_design_rows, simulation_ids, write_design
from cosmo_sbi.histogram import histogram_lightcone_files
from cosmo_sbi.simulators.embedded import simulate_lightcones
from tests.conftest import REPO, make_config

SEEDS = 4


def embedded_config(bias_ratio: float) -> dict:
    return load_config([REPO / "config.yaml", REPO / "config/laptop.yaml",
                        REPO / "config/pinocchio-cross.yaml"],
                       {"design": {"fiducial": {"n_simulations": SEEDS},
                                   "derivatives": {"n_seeds": 0}},
                        "simulator": {"embedded": {"bias_ratio": bias_ratio}}})


def fiducial_histograms(config: dict, folder: Path) -> list[Path]:
    """The fiducial seeds of ``config`` simulated and histogrammed in ``folder``."""
    folder.mkdir()
    design = folder / "fiducial.ecsv"
    write_design(config, "fiducial", design)
    ids = simulation_ids(SEEDS)
    cones = [folder / f"{sim_id}.lightcone.h5" for sim_id in ids]
    histograms = [folder / f"{sim_id}.h5" for sim_id in ids]
    simulate_lightcones(config, read_design_rows(design, ids), cones, threads=2)
    histogram_lightcone_files(config, cones, histograms)
    return histograms


@pytest.fixture(scope="module")
def histograms(tmp_path_factory) -> dict[float, list[Path]]:
    root = tmp_path_factory.mktemp("bias")
    return {ratio: fiducial_histograms(embedded_config(ratio), root / str(ratio))
            for ratio in (1.0, 1.25)}


def test_scaled_bias_is_measured_within_its_error(histograms) -> None:
    result = measure_bias_ratio(embedded_config(1.0), histograms[1.25], histograms[1.0])
    # Measured 1.278 +- 0.098. Same seeds: the Gaussian fields are equal, so the ratio is
    # closer than its seed-scatter error (which treats the two sets as independent).
    assert abs(result.ratio - 1.25) < result.error, result
    assert result.error < 0.15, result
    # The monopole ratio alone (no Kaiser term) sits below 1.25^2.
    assert result.power_ratio < 1.25**2
    # The bias weight has mean 1: the count changes only through Poisson noise.
    assert result.other_mean_count == pytest.approx(result.embedded_mean_count, rel=0.02)


def test_equal_bias_is_not_measured_as_scaled(histograms) -> None:
    result = measure_bias_ratio(embedded_config(1.0), histograms[1.0], histograms[1.0])
    assert result.ratio == pytest.approx(1.0, abs=1e-12)
    assert abs(result.ratio - 1.25) > 2.5 * result.error, result  # 1.000 +- 0.080


def test_overlay_scales_the_current_bias_ratio(histograms, tmp_path) -> None:
    """Embedded runs at bias_ratio 1.25 measured against runs at 1.0: the overlay sets
    1.25 x the measured ~0.8, i.e. back to ~1, and passes the config check."""
    output = tmp_path / "bias.yaml"
    result = write_bias_calibration(embedded_config(1.25), histograms[1.0], histograms[1.25],
                                    output)
    overlay = yaml.safe_load(output.read_text())
    written = overlay["simulator"]["embedded"]["bias_ratio"]
    assert written == pytest.approx(1.25 * result.ratio, abs=1e-4)
    assert written == pytest.approx(1.0, abs=2 * 1.25 * result.error)
    make_config(overlay)


def test_kaiser_inversion_known_answer() -> None:
    bias, f = 1.8, 0.7

    def kaiser(b: float) -> float:
        return b**2 + 2 * b * f / 3 + f**2 / 5

    ratio, slope = kaiser_bias_ratio(kaiser(1.25 * bias) / kaiser(bias), bias, f)
    assert ratio == pytest.approx(1.25, rel=1e-12)
    step = 1e-6
    numeric = (kaiser_bias_ratio(kaiser(1.25 * bias) / kaiser(bias) + step, bias, f)[0]
               - ratio) / step
    assert slope == pytest.approx(numeric, rel=1e-4)
    assert math.sqrt(kaiser(1.25 * bias) / kaiser(bias)) < 1.23  # sqrt(R) alone is biased


def test_too_few_seeds_are_refused(histograms) -> None:
    with pytest.raises(BiasCalibrationError, match="2 histograms; expected at least 3"):
        measure_bias_ratio(embedded_config(1.0), histograms[1.25][:2], histograms[1.0])


def test_different_cosmologies_are_refused(histograms, tmp_path) -> None:
    config = embedded_config(1.0)
    config["design"]["fiducial"]["parameters"]["Omega_m"] = 0.33
    other = fiducial_histograms(config, tmp_path / "other")
    with pytest.raises(BiasCalibrationError, match="different cosmologies"):
        measure_bias_ratio(embedded_config(1.0), other, histograms[1.0])


def test_bias_ratio_needs_sample_mode() -> None:
    with pytest.raises(ConfigError, match="bias_ratio = 1.25 applies to mode: sample"):
        make_config({"simulator": {"embedded": {"mode": "peaks", "bias_ratio": 1.25}}})

