"""The ``posterior:`` config section: methods and the checks run before any job (called by
common.smk after cosmo_sbi.config.load_config, like the networks' check, and by the
posterior stage; no torch import)."""

from __future__ import annotations

import numpy as np

from cosmo_sbi.config import Config, ConfigError, config_hash

NETWORK_METHODS: tuple[str, ...] = ("cnn", "vit")
COMBINED_PARTS: tuple[str, ...] = ("cnn", "vit", "two_point")
"""The summary tables concatenated by the ``combined`` method, as the paper combined them."""
METHODS: tuple[str, ...] = (*NETWORK_METHODS, "two_point", "combined")


def training_simulations(config: Config) -> int:
    """Latin-hypercube simulations in ``posterior.train_splits`` (:func:`split_simulations`)."""
    return split_simulations(config, config["posterior"]["train_splits"])


_ASSIGNED_SPLITS: dict[str, np.ndarray] = {}
"""The Latin hypercube's split names per config hash: a Snakemake parse asks twice
(posterior and learning-curve checks)."""


def split_simulations(config: Config, splits: list[str]) -> int:
    """Latin-hypercube simulations in ``splits``: the design and its hash-based split are
    deterministic, so this is the exact count the dataset will hold."""
    from cosmo_sbi.dataset import assign_splits
    from cosmo_sbi.design import latin_hypercube, set_size

    key = config_hash(config)
    if key not in _ASSIGNED_SPLITS:
        # the design's parameter columns, without the table (astropy.table: ~0.2 s to import)
        design = config["design"]
        theta = latin_hypercube(design["latin_hypercube"]["ranges"],
                                set_size(config, "latin_hypercube"), design["seed"])
        # assign_splits needs one per split; the dataset stage says so
        _ASSIGNED_SPLITS[key] = (assign_splits(theta, config["dataset"]["split"])
                                 if len(theta) >= 3 else np.array([], dtype=str))
    return int(np.isin(_ASSIGNED_SPLITS[key], splits).sum())


def posterior_methods(config: Config) -> list[str]:
    """``posterior.methods``, or for null every method the trained networks allow: each
    network of training.models, two_point, and combined when both networks are trained."""
    methods = config["posterior"]["methods"]
    if methods is not None:
        return list(methods)
    trained = [model for model in NETWORK_METHODS if model in config["training"]["models"]]
    combined = ["combined"] if len(trained) == len(NETWORK_METHODS) else []
    return [*trained, "two_point", *combined]


def check_posterior_config(config: Config) -> Config:
    """Checks of the ``posterior:`` section; ConfigError naming the field. Returns ``config``."""
    section = config["posterior"]
    methods = posterior_methods(config)
    if not methods:
        return config
    splits = section["train_splits"]
    if "test" in splits:
        raise ConfigError("posterior.train_splits: contains 'test'; expected splits other "
                          "than the test split, on which the posteriors are calibrated")
    networks = [method for method in methods
                if method in NETWORK_METHODS or method == "combined"]
    if "train" in splits and networks:
        raise ConfigError(
            f"posterior.train_splits: contains 'train', on which the networks trained; their "
            f"outputs there are over-confident, so the NPE of {networks} would be too. "
            "Expected splits the networks never trained on (e.g. [validation])")
    trained = config["training"]["models"]
    for method in methods:
        needed = COMBINED_PARTS[:2] if method == "combined" else (
            (method,) if method in NETWORK_METHODS else ())
        missing = [model for model in needed if model not in trained]
        if missing:
            raise ConfigError(f"posterior.methods: {method!r} needs the networks {missing}, "
                              f"which are not in training.models {trained}")
    if section["ensemble_size"] > section["n_samples"]:
        raise ConfigError(f"posterior.ensemble_size: {section['ensemble_size']} NPEs share "
                          f"posterior.n_samples = {section['n_samples']} samples; expected at "
                          "most one NPE per sample")
    count = training_simulations(config)
    if count < section["min_simulations"]:
        raise ConfigError(
            f"posterior.min_simulations: the NPE would train on {count} simulations (the "
            f"Latin-hypercube cosmologies in dataset.split {splits}); expected at least "
            f"{section['min_simulations']}: raise design.latin_hypercube.n_simulations or "
            "the fractions of those splits (or set posterior.methods: [] for no posteriors)")
    return config
