"""Load, merge and validate the workflow configuration.

The JSON schema ``cosmo_sbi/schemas/config.schema.yaml`` (shipped with the package;
``workflow/schemas/config.schema.yaml`` links to it) is the one source of truth for the
structure; the CLI and the Snakefile (``common.smk``) both load YAML with :func:`read_yaml`
and validate with :func:`validate_schema`. :func:`check_config` adds the checks that need
arithmetic; :func:`cosmo_sbi.models.configs.check_model_configs` checks each network's
config (no torch). Every error names the offending field (or file) and what was expected.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import re
import shlex
import shutil
import string
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import yaml

from cosmo_sbi import PARAMETER_NAMES, Config

SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "config.schema.yaml"
MAX_YAML_NODES = 100_000
"""Most nodes a config file may hold once its aliases are expanded (an alias bomb stops)."""
MIN_LATIN_HYPERCUBE = 3
"""One cosmology per split (train, validation, test): the dataset needs at least three."""
RENAMED_KEYS: dict[tuple[str, ...], str] = {
    ("simulator", "embedded", "min_mass_msun_h"):
        "renamed to simulator.embedded.lowest_halo_mass_msun_h (the lowest halo mass the "
        "embedded simulator makes: drawn in sample mode, kept in peaks mode); the physical "
        "mass cut of the histograms is histogram.min_mass_msun_h",
}



class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and what was expected."""


class _Loader(yaml.SafeLoader):
    """Safe YAML loader that refuses duplicate keys and reads ``1e13`` as a number (YAML 1.2)
    instead of the string YAML 1.1 makes of it."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {seen[key].line + 1}); "
                    "expected each key once per mapping", key_node.start_mark)
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _expanded_size(node: yaml.Node, sizes: dict[int, int], active: set[int]) -> int:
    """Nodes in ``node`` once every alias is expanded (memoised per node; refuses cycles)."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in active:
        raise ConfigError("recursive YAML alias; expected a tree")
    active.add(key)
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(item, sizes, active) for item in node.value)
    elif isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(k, sizes, active) + _expanded_size(v, sizes, active)
                    for k, v in node.value)
    active.discard(key)
    sizes[key] = min(size, MAX_YAML_NODES + 1)
    return sizes[key]


def read_yaml(path: str | os.PathLike[str]) -> Any:
    """One YAML file as Python values, with the file named in every error.

    UTF-8 only; duplicate keys refused; ``1e13`` is a float; aliases may expand to at most
    MAX_YAML_NODES nodes (checked on the node graph before anything is built).
    """
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from error
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"config file {path} is not UTF-8 text: byte "
                          f"0x{data[error.start]:02x} at offset {error.start}; expected a "
                          "UTF-8 YAML file") from error
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        try:
            size = _expanded_size(node, {}, set())
        except ConfigError as error:
            raise ConfigError(f"config file {path}: {error}") from None
        if size > MAX_YAML_NODES:
            raise ConfigError(f"config file {path}: its aliases expand to more than "
                              f"{MAX_YAML_NODES} nodes; expected a config of a few hundred")
        return loader.construct_document(node)
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from error
    finally:
        loader.dispose()


def deep_merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> Config:
    """Return ``base`` updated recursively by ``overlay`` (overlay wins; inputs untouched)."""
    merged = copy.deepcopy(dict(base))
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_schema() -> dict[str, Any]:
    """The config JSON schema as a dict."""
    with open(SCHEMA_PATH) as stream:
        return yaml.safe_load(stream)


def _is_integer(checker: Any, instance: Any) -> bool:
    """JSON-schema "integer" as an integer literal: 4 yes, 4.0 and True no."""
    return isinstance(instance, int) and not isinstance(instance, bool)


def _validator_filling_defaults() -> type:
    """A Draft 2020-12 validator that also fills ``default`` values (as Snakemake does) and
    takes "integer" to mean an int (jsonschema alone accepts 4.0)."""
    base = jsonschema.Draft202012Validator
    validate_properties = base.VALIDATORS["properties"]

    def properties_with_defaults(validator, properties, instance, schema):  # noqa: ANN001
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(
        base, {"properties": properties_with_defaults},
        type_checker=base.TYPE_CHECKER.redefine("integer", _is_integer))


def _hint(error: jsonschema.ValidationError) -> str:
    """A fix for the two type errors a YAML writer makes without seeing them."""
    if error.validator != "type":
        return ""
    if isinstance(error.instance, float) and "integer" in str(error.validator_value):
        return " (write an integer without a decimal point, e.g. 4 rather than 4.0)"
    if isinstance(error.instance, str):
        try:
            float(error.instance)
        except ValueError:
            return ""
        return " (a number in quotes or read as text; write it unquoted, e.g. 1.0e+13)"
    return ""


def check_finite(value: Any, path: Sequence[str] = ()) -> None:
    """Raise ConfigError naming the first NaN or infinite number anywhere in ``value``
    (JSON schema's ``number`` and every comparison let NaN through)."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            check_finite(item, (*path, str(key)))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            check_finite(item, (*path, str(index)))
    elif isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{_field(path)}: expected a finite number, got {value}")


def _check_renamed(config: Mapping[str, Any]) -> None:
    for path, hint in RENAMED_KEYS.items():
        section: Any = config
        for key in path[:-1]:
            section = section.get(key) if isinstance(section, Mapping) else None
        if isinstance(section, Mapping) and path[-1] in section:
            raise ConfigError(f"{_field(path)}: {hint}")


def validate_schema(config: Config) -> Config:
    """Validate ``config`` against the schema in place, filling defaults; return it.

    Refuses NaN/infinity anywhere and keys that were renamed (with the new name) first.
    """
    check_finite(config)
    _check_renamed(config)
    validator = _validator_filling_defaults()(load_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"{_field(e.absolute_path)}: {e.message}{_hint(e)}" for e in errors]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))
    return config


def _field(path: Iterable[Any]) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _check_range(field: str, bounds: list[float]) -> None:
    low, high = bounds
    if not low < high:
        raise ConfigError(f"{field}: expected [min, max] with min < max, got {list(bounds)}")


def check_config(config: Config) -> Config:
    """Checks beyond the schema: ordered ranges, physical limits, geometry, executables."""
    ranges = config["design"]["latin_hypercube"]["ranges"]
    fiducial = config["design"]["fiducial"]["parameters"]
    omega_b = config["design"]["fixed"]["Omega_b"]
    for name in PARAMETER_NAMES:
        _check_range(f"design.latin_hypercube.ranges.{name}", ranges[name])
    physical_lower = {"Omega_m": 0.0, "sigma_8": 0.0, "n_s": 0.0, "h": 0.0}
    for name, limit in physical_lower.items():
        field = f"design.latin_hypercube.ranges.{name}"
        if ranges[name][0] <= limit:
            raise ConfigError(f"{field}: expected values > {limit}, got min {ranges[name][0]}")
        if fiducial[name] <= limit:
            raise ConfigError(
                f"design.fiducial.parameters.{name}: expected > {limit}, got {fiducial[name]}"
            )
    if ranges["Omega_m"][1] >= 1.0:
        raise ConfigError(
            f"design.latin_hypercube.ranges.Omega_m: expected max < 1 (flat, Omega_de > 0), "
            f"got {ranges['Omega_m'][1]}"
        )
    if omega_b >= ranges["Omega_m"][0] or omega_b >= fiducial["Omega_m"]:
        raise ConfigError(f"design.fixed.Omega_b: expected < every Omega_m, got {omega_b}")
    w_max = ranges["w0"][1] + ranges["wa"][1]
    if w_max >= 0:
        raise ConfigError(
            "design.latin_hypercube.ranges: expected w0 + wa < 0 everywhere in the prior "
            f"(dark energy must not dominate at early times), max w0 + wa = {w_max:g}"
        )
    if fiducial["w0"] + fiducial["wa"] >= 0:
        raise ConfigError("design.fiducial.parameters: expected w0 + wa < 0")

    n_latin = config["design"]["latin_hypercube"]["n_simulations"]
    if n_latin < MIN_LATIN_HYPERCUBE:
        raise ConfigError(
            f"design.latin_hypercube.n_simulations: expected >= {MIN_LATIN_HYPERCUBE} (one "
            f"cosmology for each split: train, validation, test), got {n_latin}")

    hist = config["histogram"]
    if len(set(hist["bins"])) != 1:
        raise ConfigError(f"histogram.bins: expected a cube [D, D, D] (the networks take "
                          f"cubic grids), got {hist['bins']}")
    for key in ("ra_deg", "dec_deg", "z_obs"):
        _check_range(f"histogram.{key}", hist[key])
    for key in ("ra_deg", "dec_deg"):
        if max(abs(v) for v in hist[key]) >= 90:
            raise ConfigError(f"histogram.{key}: expected |angle| < 90 deg, got {hist[key]}")
    padding = config["lightcone"]["z_padding"]
    if hist["z_obs"][0] - padding <= 0:
        raise ConfigError(
            f"histogram.z_obs: expected min - lightcone.z_padding > 0, got {hist['z_obs'][0]}"
            f" - {padding}"
        )
    aperture = config["lightcone"]["aperture_deg"]
    corner = window_corner_angle_deg(hist["ra_deg"], hist["dec_deg"])
    if corner >= aperture:
        raise ConfigError(
            f"lightcone.aperture_deg: the RA/DEC window {hist['ra_deg']} x {hist['dec_deg']} "
            f"has corners {corner:.2f} deg off the cone axis; expected aperture > {corner:.2f}, "
            f"got {aperture}"
        )

    split = config.get("dataset", {}).get("split")
    if split and not math.isclose(sum(split.values()), 1.0, abs_tol=1e-9):
        raise ConfigError(f"dataset.split: expected fractions summing to 1, got {split}")

    check_command_template(config["simulator"]["pinocchio"]["command"])
    if config["simulator"]["backend"] == "pinocchio":
        check_executable(config["simulator"]["pinocchio"]["executable"])
        check_pinocchio_replication(config)
    check_mass_function_ratio(config)
    check_bias_ratio(config)
    check_summaries(config)
    check_derivatives(config)
    return config


COMMAND_PLACEHOLDERS: tuple[str, ...] = ("tasks", "threads", "executable", "parameter_file")
"""The placeholders of ``simulator.pinocchio.command``."""


def check_command_template(template: str, field: str = "simulator.pinocchio.command") -> None:
    """Refuse a PINOCCHIO command template that cannot be run: unbalanced quotes, an unknown
    or malformed placeholder, or no {executable} / {parameter_file}."""
    expected = ", ".join("{" + name + "}" for name in COMMAND_PLACEHOLDERS)
    try:
        words = shlex.split(template)
    except ValueError as error:
        raise ConfigError(f"{field}: {template!r} cannot be split into words like a shell "
                          f"would ({error}); expected balanced quotes") from error
    used: set[str] = set()
    for word in words:
        try:
            parsed = list(string.Formatter().parse(word))
        except ValueError as error:
            raise ConfigError(f"{field}: {word!r} in {template!r}: {error}; expected only the "
                              f"placeholders {expected} (write {{{{ }}}} for a brace)") from error
        for _, name, spec, conversion in parsed:
            if name is None:
                continue
            if name not in COMMAND_PLACEHOLDERS:
                raise ConfigError(f"{field}: unknown placeholder {{{name}}} in {template!r}; "
                                  f"expected only {expected}")
            if spec or conversion:
                raise ConfigError(f"{field}: placeholder {{{name}}} in {template!r} has a "
                                  "conversion or format spec; expected a plain {name}")
            used.add(name)
    missing = [name for name in ("executable", "parameter_file") if name not in used]
    if missing:
        raise ConfigError(f"{field}: {template!r} lacks "
                          f"{', '.join('{' + name + '}' for name in missing)}; expected e.g. "
                          "'mpirun -np {tasks} {executable} {parameter_file}'")


def check_mass_function_ratio(config: Config) -> None:
    """A fitted ratio n_PINOCCHIO / n_model applies only to the model it was fitted to."""
    section = config["simulator"]["embedded"]
    ratio = section.get("mass_function_ratio")
    if not ratio:
        return
    if ratio["model"] != section["mass_function"]:
        raise ConfigError(
            f"simulator.embedded.mass_function_ratio: fitted to {ratio['model']!r}, but "
            f"simulator.embedded.mass_function is {section['mass_function']!r}; expected the "
            "same model (refit with cosmo-sbi calibrate-mass-function --model)")
    _check_range("simulator.embedded.mass_function_ratio.mass_range_msun_h",
                 ratio["mass_range_msun_h"])


def check_bias_ratio(config: Config) -> None:
    """``simulator.embedded.bias_ratio`` scales the bias of sample mode only: peaks mode
    has no bias model to scale."""
    section = config["simulator"]["embedded"]
    if section["mode"] == "peaks" and section["bias_ratio"] != 1.0:
        raise ConfigError(f"simulator.embedded.bias_ratio = {section['bias_ratio']} applies to "
                          "mode: sample only; expected 1 with mode: peaks")


def check_pinocchio_replication(config: Config) -> None:
    """Refuse a PINOCCHIO box smaller than the cone at the prior's extreme cosmologies
    (PINOCCHIO tiles the box, so halos would repeat inside the window), unless
    ``simulator.pinocchio.allow_replication`` is true. Same geometry as the embedded
    simulator, which always refuses such a box."""
    from cosmo_sbi.simulators.embedded.geometry import largest_cone_extent

    section = config["simulator"]["pinocchio"]
    if section["allow_replication"]:
        return
    extent, cosmo = largest_cone_extent(config)
    box = section["box_size_mpc_h"]
    if np.max(extent) > box:
        raise ConfigError(
            f"simulator.pinocchio.box_size_mpc_h = {box:g} is smaller than the light cone: at "
            f"Omega_m = {cosmo.Omega_m:.4g}, w0 = {cosmo.w0:.4g}, wa = {cosmo.wa:.4g} (a corner "
            f"of the prior) the window spans {extent[0]:.0f} (depth) x {extent[1]:.0f} x "
            f"{extent[2]:.0f} Mpc/h, so PINOCCHIO would replicate the box and repeat halos "
            f"inside the window; expected box_size_mpc_h >= {np.ceil(np.max(extent)):.0f}, or "
            "simulator.pinocchio.allow_replication: true to accept repeated halos"
        )


def fisher_enabled(config: Config) -> bool:
    """Whether the Fisher stage runs: design.derivatives.n_seeds > 0."""
    return config["design"].get("derivatives", {}).get("n_seeds", 0) > 0


def n_fisher_features(config: Config) -> int:
    """Length of the Fisher stage's coarse two-point vector: n(z) bins + k bins x multipoles."""
    fisher = config["fisher"]
    return fisher["n_z_bins"] + fisher["n_k_bins"] * len(fisher["multipoles"])


def check_summaries(config: Config) -> None:
    """The summaries (and, with the Fisher stage, fisher) binning fits histogram.bins."""
    bins = config["histogram"]["bins"]
    for section in ("summaries", "fisher") if fisher_enabled(config) else ("summaries",):
        n_z = config[section]["n_z_bins"]
        if n_z is not None and bins[2] % n_z:
            raise ConfigError(f"{section}.n_z_bins: expected a divisor of histogram.bins[2] = "
                              f"{bins[2]}, got {n_z}")
    if fisher_enabled(config):
        # k runs from the fundamental 2 pi / D to below Nyquist in k_bin_width steps
        steps = max(1, math.floor((min(bins) / 2 - 1) / config["summaries"]["k_bin_width"]))
        most = math.floor(steps * config["summaries"]["k_bin_width"])
        if config["fisher"]["n_k_bins"] > most:
            raise ConfigError(f"fisher.n_k_bins: expected at most {most} (bins at least one "
                              f"fundamental 2 pi / {min(bins)} wide), got "
                              f"{config['fisher']['n_k_bins']}")
        unknown = set(config["fisher"]["multipoles"]) - set(config["summaries"]["multipoles"])
        if unknown:
            raise ConfigError(f"fisher.multipoles: {sorted(unknown)} not in "
                              f"summaries.multipoles = {config['summaries']['multipoles']}")


def check_derivatives(config: Config) -> None:
    """Fisher derivative set: every step stays in the prior box (hence physical: the box
    is checked above), and enough fiducial seeds for a Hartlap-corrected covariance."""
    if not fisher_enabled(config):
        return
    design = config["design"]
    fraction = design["derivatives"]["step_fraction"]
    fiducial = design["fiducial"]["parameters"]
    for name in PARAMETER_NAMES:
        low, high = design["latin_hypercube"]["ranges"][name]
        step = fraction * (high - low)
        for value in (fiducial[name] - step, fiducial[name] + step):
            if not low <= value <= high:
                raise ConfigError(
                    f"design.derivatives.step_fraction: the step {step:g} in {name} takes the "
                    f"fiducial {fiducial[name]} to {value:g}, outside "
                    f"design.latin_hypercube.ranges.{name} = {[low, high]}; expected a "
                    "smaller step_fraction or a fiducial point further inside the prior")
    features = n_fisher_features(config)
    count = design["fiducial"]["n_simulations"]
    if count <= features + 2:
        raise ConfigError(
            f"design.fiducial.n_simulations: {count} fiducial seeds are too few for the Fisher "
            f"covariance of {features} features (fisher.n_z_bins + fisher.n_k_bins x "
            f"len(fisher.multipoles)); expected > {features + 2} (Hartlap): add seeds or "
            "compress the features")


def window_corner_angle_deg(ra_deg: list[float], dec_deg: list[float]) -> float:
    """Largest angle [deg] between the cone axis (RA = DEC = 0) and a corner of the window."""
    corners = [(ra, dec) for ra in ra_deg for dec in dec_deg]
    cosines = [math.cos(math.radians(ra)) * math.cos(math.radians(dec)) for ra, dec in corners]
    return math.degrees(math.acos(min(cosines)))


def check_executable(executable: str) -> str:
    """Resolve a PINOCCHIO executable (path or name on PATH); error if missing/not executable."""
    resolved = shutil.which(executable)
    if resolved is None:
        exists = os.path.exists(executable)
        reason = "is not executable" if exists else "was not found (nor on PATH)"
        raise ConfigError(
            f"simulator.pinocchio.executable: {executable!r} {reason}; expected the path to "
            "a PINOCCHIO v5 build compiled with -DPLC (see README, 'Using PINOCCHIO')"
        )
    return resolved


def load_config(paths: Iterable[str | os.PathLike[str]],
                overrides: Mapping[str, Any] | None = None) -> Config:
    """Deep-merge YAML files in order (later wins), then ``overrides``; validate and check."""
    config: Config = {}
    for path in paths:
        layer = read_yaml(path)
        if layer is None:
            layer = {}
        if not isinstance(layer, dict):
            raise ConfigError(f"config file {path}: expected a mapping at the top level")
        config = deep_merge(config, layer)
    config = deep_merge(config, overrides or {})
    return check_config(validate_schema(config))


def configfile_flags(argv: Sequence[str]) -> int:
    """How often ``--configfile``/``--configfiles`` (or an abbreviation) occurs in ``argv``.

    Snakemake 9 keeps only the files after the LAST such flag, silently dropping the others.
    """
    flags = [arg.split("=", 1)[0] for arg in argv]
    return sum(1 for flag in flags
               if flag.startswith("--configf") and "--configfiles".startswith(flag))


def check_single_configfile_flag(argv: Sequence[str]) -> None:
    """ConfigError unless ``--configfile`` occurs at most once (see :func:`configfile_flags`)."""
    count = configfile_flags(argv)
    if count > 1:
        raise ConfigError(
            f"--configfile was given {count} times; Snakemake 9 keeps only the files after the "
            "last one and drops the others. Pass every file after ONE flag, in order (later "
            "wins): --configfile config/laptop.yaml my.yaml")


def write_snapshot(config: Config, folder: str | os.PathLike[str],
                   sources: Sequence[str | os.PathLike[str]]) -> Path:
    """Write the validated config as ``<folder>/<hash>.yaml``, named by its content, and
    return the path.

    Written once (atomically) and never modified: a second Snakemake invocation with other
    values writes another file, so it cannot change what running jobs read. ``sources`` (the
    files merged, in order) are recorded in a header comment, outside the hash.
    """
    text = _snapshot_text(config)
    path = snapshot_path(config, folder)
    if path.exists():
        return path
    header = "".join(f"#   {source}\n" for source in sources)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        temporary.write_text(f"# validated configuration, merged in order from:\n{header}"
                             f"{text}")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def _snapshot_text(config: Config) -> str:
    return yaml.safe_dump(json.loads(json.dumps(config)), sort_keys=True)


def snapshot_path(config: Config, folder: str | os.PathLike[str]) -> Path:
    """Where :func:`write_snapshot` writes ``config``: ``<folder>/<content hash>.yaml``."""
    return Path(folder) / f"{hashlib.sha256(_snapshot_text(config).encode()).hexdigest()[:16]}.yaml"


def config_hash(section: Any) -> str:
    """Stable SHA-256 (first 16 hex digits) of a JSON-serialisable config section."""
    text = json.dumps(section, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
