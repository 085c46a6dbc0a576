"""The learning curve's parts (cosmo_sbi.learning_curve): nested subsets, the config checks,
the curve's metrics (known answers) and the report's sentence."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from cosmo_sbi.config import ConfigError
from cosmo_sbi.learning_curve import (
    CURVE_PARAMETERS,
    CurvePoint,
    check_learning_curve_config,
    curve_fractions,
    curve_rows,
    learning_curve_markdown,
    nested_subset,
    parse_points,
    read_table,
    subset_rows,
    subset_size,
    write_table,
)
from cosmo_sbi.metrics import r_squared, rmse
from cosmo_sbi.posterior_config import split_simulations
from tests.conftest import make_config


@pytest.mark.parametrize("n", [1, 7, 10, 682])
def test_subsets_are_nested_of_size_ceil_f_n_and_deterministic(n: int) -> None:
    fractions = [0.1, 0.25, 0.3, 0.5, 0.75, 1.0]
    subsets = [nested_subset(n, fraction, seed=3) for fraction in fractions]
    for fraction, subset in zip(fractions, subsets, strict=True):
        assert len(subset) == math.ceil(round(fraction * n, 9))
        assert np.all(np.diff(subset) > 0) and subset.min() >= 0 and subset.max() < n
        assert np.array_equal(subset, nested_subset(n, fraction, seed=3))
    for smaller, larger in zip(subsets, subsets[1:], strict=False):
        assert set(smaller) <= set(larger)
    assert np.array_equal(subsets[-1], np.arange(n))


def test_subset_sizes_and_seeds() -> None:
    assert subset_size(10, 0.3) == 3  # 0.3 * 10 = 3.0000000000000004 in floating point
    assert subset_size(700, 0.25) == 175 and subset_size(682, 0.25) == 171
    assert not np.array_equal(nested_subset(100, 0.5, seed=0), nested_subset(100, 0.5, seed=1))
    rows = np.array([4, 9, 11, 20])
    assert np.array_equal(subset_rows(rows, 1.0, seed=0), rows)
    assert set(subset_rows(rows, 0.5, seed=0)) <= set(rows.tolist())
    with pytest.raises(ValueError, match="fraction"):
        nested_subset(10, 0.0, seed=0)


def test_fractions_default_and_off() -> None:
    assert curve_fractions(make_config()) == [0.25, 0.5, 1.0]
    assert curve_fractions(make_config({"learning_curve": {"fractions": [0.2, 0.6]}})) == [
        0.2, 0.6, 1.0]  # the full split is always a point
    assert curve_fractions(make_config({"learning_curve": {"fractions": []}})) == []


@pytest.mark.parametrize(("fractions", "message"), [
    ([0.5, 0.25, 1.0], "ascending"),
    ([0.0, 1.0], "learning_curve.fractions"),   # schema: 0 < f
    ([0.5, 1.5], "learning_curve.fractions"),   # schema: f <= 1
    ([0.5, 0.5], "learning_curve.fractions"),   # schema: unique
    (["half"], "learning_curve.fractions"),
])
def test_bad_fractions_name_the_field(fractions: list, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_learning_curve_config(make_config({"learning_curve": {"fractions": fractions}}))


def test_too_few_simulations_for_the_npe_is_refused_with_the_numbers() -> None:
    small = {"design": {"latin_hypercube": {"n_simulations": 20}}}
    n_train = split_simulations(make_config(small), ["train"])
    fraction = 1.5 / n_train  # ceil -> 2 simulations: enough for min_simulations 2
    check_learning_curve_config(make_config({**small, "learning_curve": {
        "fractions": [fraction, 1.0]}}))
    overlay = {**small, "learning_curve": {"fractions": [fraction, 1.0]},
               "posterior": {"min_simulations": 3}}
    with pytest.raises(ConfigError, match=rf"learning_curve.fractions.*{n_train} "
                                          r"training-split simulations leaves 2.*at least 3"):
        check_learning_curve_config(make_config(overlay))


def test_ensembles_are_refused() -> None:
    with pytest.raises(ConfigError, match="learning_curve.fractions.*ensemble_seeds"):
        check_learning_curve_config(make_config({"training": {"ensemble_seeds": [0, 1]}}))


def _point(method: str, fraction: float, mean: np.ndarray, true: np.ndarray,
           n_train: int) -> CurvePoint:
    ids = np.array([str(i) for i in range(len(true))])
    return CurvePoint(method, fraction, n_train, ids, true, mean, np.full_like(true, 0.1))


def test_curve_rows_known_answers() -> None:
    rng = np.random.default_rng(0)
    true = rng.uniform(size=(50, len(CURVE_PARAMETERS)))
    perfect = _point("cnn", 1.0, true.copy(), true, 100)
    constant = _point("cnn", 0.5, np.broadcast_to(true.mean(axis=0), true.shape).copy(),
                      true, 50)
    noisy_mean = true + rng.normal(0, 0.1, true.shape)
    noisy = _point("two_point", 1.0, noisy_mean, true, 100)
    rows = curve_rows([constant, perfect, noisy], n_bootstrap=200, seed=0)
    assert len(rows) == 3 * len(CURVE_PARAMETERS)
    get = {(r["method"], r["fraction"], r["parameter"]): r for r in rows}
    for index, name in enumerate(CURVE_PARAMETERS):
        assert get[("cnn", 0.5, name)]["r2"] == pytest.approx(0.0, abs=1e-12)
        assert get[("cnn", 0.5, name)]["r2_gain"] is None
        best = get[("cnn", 1.0, name)]
        assert best["r2"] == 1.0 and best["rmse"] == 0.0 and best["r2_err"] == 0.0
        assert best["r2_gain"] == pytest.approx(1.0) and best["n_train"] == 100
        row = get[("two_point", 1.0, name)]
        assert row["r2"] == pytest.approx(r_squared(true, noisy_mean)[index], rel=1e-12)
        assert row["rmse"] == pytest.approx(rmse(true, noisy_mean)[index], rel=1e-12)
        assert row["sigma"] == pytest.approx(0.1)
        # R^2 = 1 - 0.01 / var(true) ~ 0.88 for uniform truths; bootstrap error ~ 0.02
        assert 0.005 < row["r2_err"] < 0.06


def test_a_resampling_of_one_repeated_simulation_has_no_r2() -> None:
    from cosmo_sbi.metrics import paired_bootstrap

    true = np.array([[0.1], [0.2], [0.3]]) * 3
    mean = true + 0.01  # one simulation thrice: -inf, or ~-1e26 where the mean rounds
    assert np.isnan(r_squared(true[[2, 2, 2]], mean[[2, 2, 2]])[0])
    boot = paired_bootstrap(true, {"m": mean}, r_squared, 2000, 0)["m"]  # 1/9 of them
    undefined = np.isnan(boot[:, 0])
    assert 0.05 < undefined.mean() < 0.2 and np.all(boot[~undefined, 0] > -100)


def test_points_on_other_test_simulations_are_refused() -> None:
    true = np.ones((4, len(CURVE_PARAMETERS)))
    other = _point("cnn", 1.0, true, true, 4)
    other.ids = np.array(["9", "1", "2", "3"])
    with pytest.raises(ValueError, match="test simulations differ"):
        curve_rows([_point("cnn", 0.5, true, true, 2), other], 10, 0)


def test_parse_points() -> None:
    assert parse_points(["cnn:0.5=a/b"]) == [("cnn", 0.5, Path("a/b"))]
    for bad in ("cnn=a", "cnn:2=a", "cnn:x=a", "cnn:0.5="):
        with pytest.raises(ValueError, match="METHOD:FRACTION=FOLDER"):
            parse_points([bad])


def _write_curve(tmp_path: Path, gain_sigmas: float) -> Path:
    """A table whose largest fraction gains ``gain_sigmas`` errors on every parameter."""
    rows = []
    for fraction, n_train in ((0.5, 50), (1.0, 100)):
        for name in CURVE_PARAMETERS:
            rows.append({"method": "cnn", "fraction": fraction, "n_train": n_train,
                         "parameter": name, "r2": 0.5, "r2_err": 0.05, "rmse": 0.1,
                         "sigma": None, "r2_gain": None if fraction < 1 else 0.01 * gain_sigmas,
                         "r2_gain_err": None if fraction < 1 else 0.01})
    path = tmp_path / "learning_curve" / "learning_curve.csv"
    path.parent.mkdir()
    write_table(rows, path)
    assert read_table(path)[-1]["r2_gain"] == pytest.approx(0.01 * gain_sigmas)
    return path


def test_report_sentence_says_whether_r2_still_rises(tmp_path: Path) -> None:
    report = tmp_path / "report"
    rising = "\n".join(learning_curve_markdown(_write_curve(tmp_path, 3.0), report, 2.0))
    assert "**cnn** (50 -> 100 simulations): yes for Omega_m (+0.03 ± 0.01)" in rising
    assert "](../learning_curve/learning_curve.png)" in rising
    assert "| Omega_m | cnn | 0.5 ± 0.05 (50) | 0.5 ± 0.05 (100) | - |" in rising
    flat_dir = tmp_path / "flat"
    flat_dir.mkdir()
    flat = "\n".join(learning_curve_markdown(_write_curve(flat_dir, 1.0), report, 2.0))
    assert "**cnn** (50 -> 100 simulations): no for Omega_m (+0.01 ± 0.01)" in flat
    assert "yes" not in flat and "undefined" not in flat


def test_checkpoint_fingerprint_includes_the_fraction() -> None:
    from cosmo_sbi.train import run_fingerprint

    config = make_config()
    full = run_fingerprint(config, "cnn", "content")
    assert run_fingerprint(config, "cnn", "content", 1.0) == full  # main runs keep resuming
    half = run_fingerprint(config, "cnn", "content", 0.5)
    quarter = run_fingerprint(config, "cnn", "content", 0.25)
    assert len({full["training config"], half["training config"],
                quarter["training config"]}) == 3
    assert half["dataset content"] == full["dataset content"]
