"""A corpus of bad configurations: each is refused by cosmo_sbi.config with the field named.

Every case overlays config.yaml with one bad value (or is one bad file) and must raise
ConfigError whose message names the field (or file) that is wrong, before any job could
run. CATEGORIES counts the cases per kind for docs/reliability.md.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pytest

from cosmo_sbi.config import (
    MAX_YAML_NODES,
    ConfigError,
    configfile_flags,
    load_config,
    read_yaml,
)
from cosmo_sbi.models.configs import check_model_configs
from tests.conftest import REPO

NAN, INF = math.nan, math.inf


def at(field: str, value: Any) -> dict:
    """The overlay setting the dotted ``field`` to ``value``."""
    overlay: Any = value
    for key in reversed(field.split(".")):
        overlay = {key: overlay}
    return overlay


def case(category: str, field: str, value: Any, named: str | None = None) -> Any:
    """One bad value: (category, overlay, text the message must contain)."""
    return pytest.param(category, at(field, value), named or field,
                        id=f"{field}={value!r}"[:60])


PINOCCHIO = "simulator.pinocchio"
BAD_VALUES = [
    # design
    case("type", "design.seed", -1),
    case("type", "design.seed", 1.5),
    case("nan/inf", "design.seed", NAN),
    case("type", "design.seed", "abc"),
    case("range", "design.latin_hypercube.n_simulations", 0),
    case("too few", "design.latin_hypercube.n_simulations", 2),
    case("type", "design.latin_hypercube.n_simulations", 4.0),
    case("limit", "design.latin_hypercube.n_simulations", 10**9),
    case("nan/inf", "design.latin_hypercube.n_simulations", INF),
    case("range", "design.latin_hypercube.ranges.Omega_m", [0.4, 0.25]),
    case("nan/inf", "design.latin_hypercube.ranges.Omega_m", [NAN, 0.4]),
    case("nan/inf", "design.latin_hypercube.ranges.sigma_8", [0.75, INF]),
    case("nan/inf", "design.latin_hypercube.ranges.w0", [-INF, -0.7]),
    case("nan/inf", "design.latin_hypercube.ranges.wa", [NAN, NAN]),
    case("nan/inf", "design.latin_hypercube.ranges.n_s", [0.9, NAN]),
    case("nan/inf", "design.latin_hypercube.ranges.h", [-INF, INF]),
    case("type", "design.latin_hypercube.ranges.wa", [-0.3]),
    case("range", "design.latin_hypercube.ranges.n_s", [0.0, 1.1]),
    case("type", "design.latin_hypercube.ranges.h", [0.6, 0.8, 0.9]),
    case("range", "design.latin_hypercube.ranges.Omega_m", [0.25, 1.0]),
    case("unknown key", "design.latin_hypercube.ranges.Omega_k", [0.0, 0.1], "Omega_k"),
    pytest.param("range", {"design": {"latin_hypercube": {"ranges": {
        "w0": [-1.0, -0.2], "wa": [-0.3, 0.3]}}}}, "design.latin_hypercube.ranges",
        id="w0+wa>=0"),
    case("range", "design.fiducial.n_simulations", 0),
    case("limit", "design.fiducial.n_simulations", 200_000),
    case("type", "design.fiducial.n_simulations", 2.0),
    case("nan/inf", "design.fiducial.parameters.Omega_m", NAN),
    case("nan/inf", "design.fiducial.parameters.sigma_8", INF),
    case("nan/inf", "design.fiducial.parameters.w0", -INF),
    case("nan/inf", "design.fiducial.parameters.wa", NAN),
    case("nan/inf", "design.fiducial.parameters.n_s", NAN),
    case("nan/inf", "design.fiducial.parameters.h", INF),
    case("range", "design.fiducial.parameters.sigma_8", -0.8),
    case("range", "design.fiducial.parameters.w0", 0.5, "design.fiducial.parameters"),
    case("type", "design.fiducial.parameters.n_s", "0.96"),
    case("unknown key", "design.fiducial.parameters.Omega_k", 0.0, "Omega_k"),
    case("nan/inf", "design.fixed.Omega_b", NAN),
    case("nan/inf", "design.fixed.Omega_b", INF),
    case("range", "design.fixed.Omega_b", 0),
    case("range", "design.fixed.Omega_b", 0.5),
    case("unknown key", "design.seeds", 1, "seeds"),
    # lightcone
    case("nan/inf", "lightcone.aperture_deg", NAN),
    case("nan/inf", "lightcone.aperture_deg", INF),
    case("range", "lightcone.aperture_deg", 0),
    case("range", "lightcone.aperture_deg", 95),
    case("range", "lightcone.aperture_deg", 27.0),
    case("nan/inf", "lightcone.z_padding", NAN),
    case("nan/inf", "lightcone.z_padding", INF),
    case("range", "lightcone.z_padding", -0.1),
    case("range", "lightcone.z_padding", 0.5, "histogram.z_obs"),
    case("unknown key", "lightcone.aperture", 30, "aperture"),
    # histogram
    case("networks", "histogram.bins", [64, 64, 32]),
    case("limit", "histogram.bins", [10**6] * 3),
    case("type", "histogram.bins", [64, 64]),
    case("type", "histogram.bins", [64.0, 64.0, 64.0]),
    case("range", "histogram.bins", [0, 0, 0]),
    case("nan/inf", "histogram.bins", [64, NAN, 64]),
    case("nan/inf", "histogram.ra_deg", [NAN, 20.0]),
    case("range", "histogram.ra_deg", [20.0, -20.0]),
    case("nan/inf", "histogram.dec_deg", [-20.0, INF]),
    case("range", "histogram.dec_deg", [-95.0, 95.0]),
    case("nan/inf", "histogram.z_obs", [0.3, NAN]),
    case("nan/inf", "histogram.z_obs", [-INF, 0.8]),
    case("range", "histogram.z_obs", [0.8, 0.3]),
    case("nan/inf", "histogram.min_mass_msun_h", NAN),
    case("nan/inf", "histogram.min_mass_msun_h", INF),
    case("range", "histogram.min_mass_msun_h", -1.0e13),
    case("type", "histogram.min_mass_msun_h", "1e13"),
    case("unknown key", "histogram.n_bins", 64, "n_bins"),
    # simulator
    case("type", "simulator.backend", "gadget"),
    case("type", "simulator.embedded.mode", "fast"),
    case("range", "simulator.embedded.threads", 0),
    case("type", "simulator.embedded.threads", 1.5),
    case("limit", "simulator.embedded.threads", 5000),
    case("limit", "simulator.embedded.grid_size", 100_000),
    case("type", "simulator.embedded.grid_size", 64.0),
    case("nan/inf", "simulator.embedded.box_size_mpc_h", NAN),
    case("range", "simulator.embedded.box_size_mpc_h", -1.0),
    case("nan/inf", "simulator.embedded.lpt_smoothing_mpc_h", INF),
    case("nan/inf", "simulator.embedded.lpt_smoothing_mpc_h", NAN),
    case("nan/inf", "simulator.embedded.lowest_halo_mass_msun_h", NAN),
    case("renamed key", "simulator.embedded.min_mass_msun_h", 1.0e13,
         "simulator.embedded.lowest_halo_mass_msun_h"),
    case("range", "simulator.embedded.bias_ratio", 0.0),
    case("nan/inf", "simulator.embedded.bias_ratio", NAN),
    case("command", f"{PINOCCHIO}.command", "mpirun -np {cores} {executable} {parameter_file}"),
    case("command", f"{PINOCCHIO}.command", "mpirun -np {tasks} {executable}"),
    case("command", f"{PINOCCHIO}.command", "mpirun 'a {executable} {parameter_file}"),
    case("command", f"{PINOCCHIO}.command", "{executable!r} {parameter_file}"),
    case("command", f"{PINOCCHIO}.command", "{executable} {parameter_file"),
    case("command", f"{PINOCCHIO}.command", "{0} {executable} {parameter_file}"),
    case("range", f"{PINOCCHIO}.tasks", 0),
    case("limit", f"{PINOCCHIO}.threads", 5000),
    case("limit", f"{PINOCCHIO}.grid_size", 100_000),
    case("nan/inf", f"{PINOCCHIO}.box_size_mpc_h", INF),
    case("nan/inf", f"{PINOCCHIO}.pred_peak_factor", NAN),
    case("range", f"{PINOCCHIO}.boundary_layer_factor", -1.0),
    case("type", f"{PINOCCHIO}.power_spectrum", "camb"),
    case("range", f"{PINOCCHIO}.num_files", 0),
    case("type", f"{PINOCCHIO}.max_mem_mb", 1.5),
    pytest.param("executable", {"simulator": {"backend": "pinocchio", "pinocchio": {
        "executable": "/nonexistent/pinocchio.x"}}}, f"{PINOCCHIO}.executable",
        id="missing executable"),
    # dataset
    case("nan/inf", "dataset.split.train", NAN),
    case("range", "dataset.split.train", 0),
    pytest.param("range", {"dataset": {"split": {"train": 0.5, "validation": 0.1,
                                                 "test": 0.1}}}, "dataset.split",
                 id="split sum"),
    case("type", "dataset.input_transform", "log"),
    case("unknown key", "dataset.shuffle", True, "shuffle"),
    # models
    case("models", "models.cnn.preset", "big"),
    case("models", "models.cnn.foo", 1),
    case("models", "models.cnn.channels", [-1]),
    case("networks", "models.cnn.channels", [8] * 7),
    case("models", "models.cnn.dropout", 1.0),
    case("nan/inf", "models.cnn.dropout", NAN),
    case("models", "models.cnn.head_hidden", 0),
    case("models", "models.cnn.convs_per_stage", 1.5),
    case("networks", "models.vit.heads", 5),
    case("networks", "models.vit.patch_size", 7),
    case("models", "models.vit.depth", 0),
    case("models", "models.vit.pool", "max"),
    case("models", "models.vit.stem", "resnet"),
    case("models", "models.vit.stem_channels", 0),
    case("models", "models.vit.dropout", -0.1),
    case("nan/inf", "models.vit.dropout", INF),
    case("models", "models.vit.dim", 64.5),
    case("unknown key", "models.gpt", {"preset": "paper"}, "gpt"),
    # training
    case("type", "training.models", ["cnn", "gpt"]),
    case("type", "training.models", []),
    case("type", "training.loss", "l1"),
    case("range", "training.seed", -1),
    case("range", "training.epochs", 0),
    case("limit", "training.epochs", 10**6),
    case("limit", "training.batch_size", 100_000),
    case("type", "training.batch_size", 16.0),
    case("nan/inf", "training.learning_rate", NAN),
    case("nan/inf", "training.learning_rate", INF),
    case("range", "training.learning_rate", 0),
    case("nan/inf", "training.weight_decay", NAN),
    case("range", "training.weight_decay", -0.1),
    case("range", "training.warmup_epochs", -1),
    case("range", "training.early_stopping_patience", 0),
    case("type", "training.augment", "yes"),
    case("type", "training.device", "tpu"),
    case("limit", "training.gpus", 100),
    # top level
    case("unknown key", "posteriors", {}, "posteriors"),
    # posterior
    case("type", "posterior.methods", ["cnn", "ridge"]),
    case("range", "posterior.n_samples", 5),
    case("limit", "posterior.n_samples", 10**7),
    case("nan", "posterior.learning_rate", float("nan")),
]


@pytest.mark.parametrize(("category", "overlay", "named"), BAD_VALUES)
def test_bad_value_is_refused_naming_the_field(category: str, overlay: dict,
                                               named: str) -> None:
    with pytest.raises(ConfigError) as caught:  # as common.smk checks: no torch
        check_model_configs(load_config([REPO / "config.yaml"], overrides=overlay))
    assert named in str(caught.value), f"{category}: {caught.value}"


def _schema_valid(overlay: dict) -> bool:
    try:
        load_config([REPO / "config.yaml"], overrides=overlay)
    except ConfigError:
        return False
    return True


@pytest.mark.parametrize(("category", "overlay", "named"),
                         [param for param in BAD_VALUES
                          if "models" in param.values[1] and _schema_valid(param.values[1])])
def test_train_stage_meta_build_refuses_the_same_network_configs(category: str, overlay: dict,
                                                                 named: str) -> None:
    """The train stage's check (the networks built on torch's meta device) gives the
    parse-time check's message, for every bad network config the schema lets through."""
    from cosmo_sbi.models.build import check_models

    config = load_config([REPO / "config.yaml"], overrides=overlay)
    with pytest.raises(ConfigError) as parsed:
        check_model_configs(config)
    with pytest.raises(ConfigError) as built:
        check_models(config)
    assert str(built.value) == str(parsed.value), category


def _alias_bomb(levels: int = 9) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for level in range(1, levels):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


BAD_FILES: list[Any] = [
    pytest.param(b"histogram:\n  bins: [64, 64, 64]\nhistogram:\n  bins: [32, 32, 32]\n",
                 "duplicate key 'histogram'", id="duplicate top-level key"),
    pytest.param(b"training:\n  epochs: 3\n  batch_size: 2\n  epochs: 5\n",
                 "duplicate key 'epochs'", id="duplicate nested key"),
    pytest.param(_alias_bomb().encode(), f"more than {MAX_YAML_NODES} nodes",
                 id="alias bomb"),
    pytest.param(b"a: &a [1, *a]\n", "recursive YAML alias", id="recursive alias"),
    pytest.param(b"histogram:\n  min_mass_msun_h: 1\xff\xfe\n", "not UTF-8", id="latin-1"),
    pytest.param(b"\xff\xfeh\x00i\x00", "not UTF-8", id="UTF-16"),
    pytest.param(b"- 1\n- 2\n", "expected a mapping", id="list"),
    pytest.param(b"design: [unclosed\n", "not valid YAML", id="syntax"),
    pytest.param(b"design:\n\tseed: 1\n", "not valid YAML", id="tab indent"),
]


@pytest.mark.parametrize(("content", "message"), BAD_FILES)
def test_bad_file_is_refused_naming_the_file(tmp_path: Path, content: bytes,
                                             message: str) -> None:
    path = tmp_path / "my.yaml"
    path.write_bytes(content)
    started = time.perf_counter()
    with pytest.raises(ConfigError) as caught:
        load_config([REPO / "config.yaml", path])
    assert time.perf_counter() - started < 1.0
    assert str(path) in str(caught.value)
    assert message in str(caught.value)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file .*nope.yaml"):
        load_config([tmp_path / "nope.yaml"])


def test_exponent_without_dot_is_a_number(tmp_path: Path) -> None:
    """YAML 1.1 reads 1e13 as a string; cosmo_sbi's loader reads it as YAML 1.2 does."""
    path = tmp_path / "my.yaml"
    path.write_text("histogram: {min_mass_msun_h: 3e13}\ntraining: {learning_rate: 1E-3}\n")
    assert read_yaml(path) == {"histogram": {"min_mass_msun_h": 3e13},
                               "training": {"learning_rate": 1e-3}}
    config = load_config([REPO / "config.yaml", path])
    assert config["histogram"]["min_mass_msun_h"] == 3e13


def test_anchors_within_the_bound_still_work(tmp_path: Path) -> None:
    path = tmp_path / "my.yaml"
    path.write_text("histogram:\n  ra_deg: &window [-10.0, 10.0]\n  dec_deg: *window\n")
    config = load_config([REPO / "config.yaml", path])
    assert config["histogram"]["dec_deg"] == [-10.0, 10.0]


@pytest.mark.parametrize(("argv", "count"), [
    (["--configfile", "a.yaml", "b.yaml"], 1),
    (["--configfile", "a.yaml", "--configfile", "b.yaml"], 2),
    (["--configfiles=a.yaml", "--configf", "b.yaml", "--config", "x=1"], 2),
    (["--config", "x=1", "-n"], 0),
])
def test_repeated_configfile_flags_are_counted(argv: list[str], count: int) -> None:
    assert configfile_flags(argv) == count


def test_corpus_covers_every_section_with_80_cases() -> None:
    sections = {next(iter(param.values[1])) for param in BAD_VALUES}
    assert sections >= {"design", "lightcone", "histogram", "simulator", "dataset", "models",
                        "training"}
    assert len(BAD_VALUES) + len(BAD_FILES) >= 80


def test_schema_ships_with_the_package() -> None:
    """A wheel install validates configs too: the schema is package data, and the workflow's
    schema path is a link to that same file (one source of truth)."""
    import tomllib

    import cosmo_sbi
    from cosmo_sbi.config import SCHEMA_PATH

    assert SCHEMA_PATH.parent.parent == Path(cosmo_sbi.__file__).parent
    assert (REPO / "workflow/schemas/config.schema.yaml").resolve() == SCHEMA_PATH.resolve()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = project["tool"]["setuptools"]["package-data"]["cosmo_sbi"]
    assert any(SCHEMA_PATH.match(f"cosmo_sbi/{pattern}") for pattern in patterns)
