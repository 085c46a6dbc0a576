"""PINOCCHIO stage: run-directory set-up, the runner's failure detection, the converter.

Runs use tests/fake_pinocchio/pinocchio.x as a real subprocess: it parses the parameter
file like PINOCCHIO v5.1 and copies the light cone of a real run (tests/data/pinocchio/lc64).
"""

from __future__ import annotations

import copy
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from cosmo_sbi import cli
from cosmo_sbi.config import ConfigError, load_config, window_corner_angle_deg
from cosmo_sbi.cosmology import Cosmology
from cosmo_sbi.design import read_design_row, write_design
from cosmo_sbi.lightcone import read_lightcone
from cosmo_sbi.simulators.pinocchio import (
    LOG_FILE,
    MAX_RANDOM_SEED,
    PARAMETER_FILE,
    POWER_TABLE,
    PinocchioRunError,
    build_command,
    convert_run,
    format_parameter_file,
    plc_file_names,
    run_pinocchio,
    setup_run,
)
from cosmo_sbi.simulators.pinocchio_io import read_plc

ROOT = Path(__file__).resolve().parents[1]
FAKE = ROOT / "tests" / "fake_pinocchio" / "pinocchio.x"
LC64 = ROOT / "tests" / "data" / "pinocchio" / "lc64"
LC64_HALOS = 875  # "total number of halos in the PLC: 875" (its run log)

# Required by PINOCCHIO v5.1 (docs/pinocchio-v5.md, "Parameter file")
REQUIRED_KEYS = """RunFlag OutputList BoxSize GridSize RandomSeed Omega0 OmegaLambda OmegaBaryon
Hubble100 Sigma8 PrimordialIndex DEw0 DEwa TabulatedEoSfile FileWithInputSpectrum
InputSpectrum_UnitLength_in_cm WDM_PartMass_in_kev BoundaryLayerFactor MaxMem
MaxMemPerParticle PredPeakFactor MinHaloMass AnalyticMassFunction StartingzForPLC
LastzForPLC""".split()


def parameter_file(path: Path) -> dict[str, list[str]]:
    """Key -> values of a PINOCCHIO parameter file (flags map to [])."""
    lines = [line.split() for line in path.read_text().splitlines()]
    return {words[0]: words[1:] for words in lines if words and words[0][0] not in "#%"}


def make_config(tmp_path: Path, **pinocchio: object) -> tuple[dict, list[Path]]:
    """config.yaml overlaid with the PINOCCHIO backend run directly (the fake executable, no
    MPI launcher) and the ``pinocchio`` settings."""
    settings = {"executable": str(FAKE), "command": "{executable} {parameter_file}", "tasks": 2,
                **pinocchio}
    overlay = {"design": {"latin_hypercube": {"n_simulations": 3}},
               "posterior": {"methods": []},  # 1 validation cosmology: too few for the NPE
               "simulator": {"backend": "pinocchio", "pinocchio": settings}}
    overlay_path = tmp_path / "overlay.yaml"
    overlay_path.write_text(yaml.safe_dump(overlay))
    paths = [ROOT / "config.yaml", overlay_path]
    return load_config(paths), paths


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The test config; copy it (copy.deepcopy) before changing it."""
    return make_config(tmp_path_factory.mktemp("config"))[0]


@pytest.fixture(scope="module")
def rows(tmp_path_factory: pytest.TempPathFactory, config: dict) -> list[dict]:
    design = tmp_path_factory.mktemp("design") / "design.ecsv"
    write_design(config, "latin_hypercube", design)
    return [read_design_row(design, sim_id) for sim_id in ("0000", "0001")]


def test_parameter_file_content(tmp_path: Path, config: dict, rows: list[dict]) -> None:
    row = rows[0]
    run_dir = tmp_path / "run"
    setup_run(config, row, run_dir)
    text = (run_dir / PARAMETER_FILE).read_text()
    assert max(len(line) for line in text.splitlines()) < 100
    params = parameter_file(run_dir / PARAMETER_FILE)
    assert set(REQUIRED_KEYS) <= set(params)

    def number(key: str) -> float:
        return float(params[key][0])

    for key, name in [("Omega0", "Omega_m"), ("Sigma8", "sigma_8"), ("DEw0", "w0"),
                      ("DEwa", "wa"), ("PrimordialIndex", "n_s"), ("Hubble100", "h"),
                      ("OmegaBaryon", "Omega_b")]:
        assert number(key) == row[name], key  # repr of a float reads back exactly
    assert number("OmegaLambda") == 1.0 - row["Omega_m"]
    assert 1 <= int(params["RandomSeed"][0]) <= MAX_RANDOM_SEED
    section = config["simulator"]["pinocchio"]
    assert number("BoxSize") == section["box_size_mpc_h"]
    assert int(params["GridSize"][0]) == section["grid_size"]
    assert int(params["MinHaloMass"][0]) == section["min_halo_mass_particles"]
    assert params["FileWithInputSpectrum"] == ["no"]  # built-in Eisenstein & Hu
    # flags: present (bare) when on, absent when off
    for flag in ("BoxInH100", "OutputInH100", "PLCProvideConeData"):
        assert params[flag] == []
    assert "CatalogInAscii" not in params
    # cone: observer at the box origin, axis +x, histogram window padded in redshift
    assert [float(v) for v in params["PLCCenter"]] == [0.0, 0.0, 0.0]
    assert [float(v) for v in params["PLCAxis"]] == [1.0, 0.0, 0.0]
    assert number("PLCAperture") == config["lightcone"]["aperture_deg"]
    (z_min, z_max), pad = config["histogram"]["z_obs"], config["lightcone"]["z_padding"]
    # written rounded to 10 decimals
    assert number("LastzForPLC") == pytest.approx(z_min - pad, abs=1e-10)
    assert number("StartingzForPLC") == pytest.approx(z_max + pad, abs=1e-10)
    outputs = [float(line) for line in (run_dir / "outputs").read_text().splitlines()
               if not line.startswith("#")]
    assert outputs == sorted(outputs, reverse=True)
    assert outputs[-1] <= number("LastzForPLC")
    assert not (run_dir / POWER_TABLE).exists()


def test_setup_is_deterministic_and_seed_dependent(tmp_path: Path, config: dict,
                                                   rows: list[dict]) -> None:
    for name, row in [("a", rows[0]), ("b", rows[0]), ("c", rows[1])]:
        setup_run(config, row, tmp_path / name)
    text = {name: (tmp_path / name / PARAMETER_FILE).read_bytes() for name in "abc"}
    assert text["a"] == text["b"]
    seeds = [parameter_file(tmp_path / name / PARAMETER_FILE)["RandomSeed"] for name in "ac"]
    assert seeds[0] != seeds[1]
    big = dict(rows[0], seed=2**63 - 1)  # the largest design seed still fits a C int
    setup_run(config, big, tmp_path / "big")
    assert 1 <= int(parameter_file(tmp_path / "big" / PARAMETER_FILE)["RandomSeed"][0]) \
        <= MAX_RANDOM_SEED


def test_power_table(tmp_path: Path, rows: list[dict]) -> None:
    config, _ = make_config(tmp_path, power_spectrum="table")
    run_dir = tmp_path / "run"
    setup_run(config, rows[0], run_dir)
    assert parameter_file(run_dir / PARAMETER_FILE)["FileWithInputSpectrum"] == [POWER_TABLE]
    lines = (run_dir / POWER_TABLE).read_text().splitlines()
    assert all(line[0] not in "#%" for line in lines)  # PINOCCHIO fails on a comment line
    k, power = np.loadtxt(run_dir / POWER_TABLE, unpack=True)
    assert k[0] <= 1e-4 and k[-1] >= 100.0 and np.all(np.diff(k) > 0)
    # written with 11 significant digits
    np.testing.assert_allclose(power, Cosmology.from_params(rows[0]).linear_power(k), rtol=1e-9)
    run_pinocchio(config, run_dir)  # the fake reads and checks the table


def test_aperture_must_cover_window(tmp_path: Path, config: dict, rows: list[dict]) -> None:
    corner = window_corner_angle_deg(config["histogram"]["ra_deg"], config["histogram"]["dec_deg"])
    config = copy.deepcopy(config)
    config["lightcone"]["aperture_deg"] = math.floor(corner)
    with pytest.raises(ConfigError, match="lightcone.aperture_deg"):
        setup_run(config, rows[0], tmp_path / "run")
    assert not (tmp_path / "run" / PARAMETER_FILE).exists()


def test_long_line_and_spaces_refused() -> None:
    with pytest.raises(ValueError, match="OutputList: line of 1.. characters"):
        format_parameter_file({"OutputList": "x" * 90})
    with pytest.raises(ValueError, match="RunFlag: 'a b' must be one token"):
        format_parameter_file({"RunFlag": "a b"})


def test_fake_accepts_real_parameter_file(tmp_path: Path, config: dict) -> None:
    # the lc64 parameter file was accepted by PINOCCHIO v5.1 itself
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for name in (PARAMETER_FILE, "outputs"):
        shutil.copyfile(LC64 / name, run_dir / name)
    with pytest.raises(PinocchioRunError, match=r"no light-cone file \['pinocchio.run.plc.out'\]"):
        run_pinocchio(config, run_dir)  # RunFlag lc64 writes pinocchio.lc64.plc.out
    assert (run_dir / "pinocchio.lc64.plc.out").is_file()
    assert "Pinocchio done!" in (run_dir / LOG_FILE).read_text()


@pytest.mark.parametrize("bad_line, message", [
    ("Omega0 0.3", "Tag Omega0 is unknown"),  # repeated
    ("OmegaK 0.0", "Tag OmegaK is unknown"),
    ("# " + "x" * 100, "Tag x+ is unknown"),
    ("Sigma8", "Tag Sigma8 has no argument"),
])
def test_runner_reports_parameter_errors(tmp_path: Path, config: dict, rows: list[dict],
                                         bad_line: str, message: str) -> None:
    run_dir = tmp_path / "run"
    setup_run(config, rows[0], run_dir)
    path = run_dir / PARAMETER_FILE
    lines = path.read_text().splitlines()
    if bad_line == "Sigma8":
        lines = [line for line in lines if not line.startswith("Sigma8")]
    path.write_text("\n".join([*lines, bad_line]) + "\n")
    with pytest.raises(PinocchioRunError, match=rf"exited with status 1 .*{message}"):
        run_pinocchio(config, run_dir)


@pytest.mark.parametrize("failure, message", [
    ("exit", r"exited with status 3 in .*simulated fatal error"),
    ("error", r"ERROR line\(s\) in .*log; line \d+: 'ERROR on task 0: PLC storage overshooted'"),
    ("noplc", r"no light-cone file \['pinocchio.run.plc.out'\] .* -DPLC"),
])
def test_runner_detects_failures(tmp_path: Path, config: dict, rows: list[dict],
                                 monkeypatch: pytest.MonkeyPatch, failure: str,
                                 message: str) -> None:
    run_dir = tmp_path / "run"
    setup_run(config, rows[0], run_dir)
    (run_dir / "pinocchio.run.plc.out").write_bytes(b"stale light cone of an earlier run")
    monkeypatch.setenv("FAKE_PINOCCHIO_FAIL", failure)
    with pytest.raises(PinocchioRunError, match=message):
        run_pinocchio(config, run_dir)


def test_runner_sets_threads_and_writes_log(tmp_path: Path, rows: list[dict]) -> None:
    config, _ = make_config(tmp_path, threads=3)
    run_dir = tmp_path / "run"
    setup_run(config, rows[0], run_dir)
    run_pinocchio(config, run_dir)
    log = (run_dir / LOG_FILE).read_text()
    assert "Using 3 OpenMP threads" in log and "Pinocchio done!" in log
    assert len(read_plc(run_dir / plc_file_names(1)[0])) == LC64_HALOS


def test_missing_launcher(tmp_path: Path, config: dict, rows: list[dict]) -> None:
    setup_run(config, rows[0], tmp_path)
    with pytest.raises(PinocchioRunError, match="cannot start 'no-such-mpirun'"):
        run_pinocchio(config, tmp_path,
                      command="no-such-mpirun -np {tasks} {executable} {parameter_file}")


def test_command_templates(config: dict) -> None:
    section = dict(config["simulator"]["pinocchio"], tasks=64, threads=4)
    assert build_command("mpirun -np {tasks} {executable} {parameter_file}", section) == [
        "mpirun", "-np", "64", str(FAKE), PARAMETER_FILE]
    srun = "srun --ntasks={tasks} --cpus-per-task={threads} {executable} {parameter_file}"
    assert build_command(srun, section)[:3] == ["srun", "--ntasks=64", "--cpus-per-task=4"]
    with pytest.raises(ConfigError, match=r"simulator.pinocchio.command: .*'nodes'"):
        build_command("srun -N {nodes} {executable} {parameter_file}", section)
    with pytest.raises(ConfigError, match=r"pinocchio.command: .* lacks {parameter_file}"):
        build_command("mpirun -np {tasks} {executable}", section)


def test_plc_file_names() -> None:
    assert plc_file_names(1) == ["pinocchio.run.plc.out"]
    assert plc_file_names(3) == [f"pinocchio.run.plc.out.{part}" for part in range(3)]


def test_convert_fixture_run(tmp_path: Path, config: dict, rows: list[dict]) -> None:
    row = rows[0]
    run_dir = tmp_path / "run"
    setup_run(config, row, run_dir)
    run_pinocchio(config, run_dir)
    output = tmp_path / "lightcone.h5"
    convert_run(config, row, run_dir, output)
    halos, attrs = read_lightcone(output, fields=("ra", "dec", "z_cos", "z_obs", "mass", "pos"))
    plc = read_plc(LC64 / "pinocchio.lc64.plc.out")
    assert len(halos["ra"]) == LC64_HALOS
    for field, source in [("z_cos", "truez"), ("z_obs", "obsz"), ("mass", "mass"),
                          ("pos", "pos")]:
        np.testing.assert_array_equal(halos[field], plc[source])

    # PINOCCHIO's frame for axis (1,0,0): z' = (1,0,0), x' = (0,-1,0), y' = z' x x' =
    # (0,0,-1); theta = 90 - angle(pos, z'), phi = atan2(pos.y', pos.x'). Hence
    # x/r = sin(theta), y/r = -cos(theta) cos(phi), z/r = -cos(theta) sin(phi), and with
    # RA = atan2(y, x), DEC = asin(z / r):
    theta, phi = np.radians(plc["theta"].astype(np.float64)), np.radians(plc["phi"])
    ra = np.degrees(np.arctan2(-np.cos(theta) * np.cos(phi), np.sin(theta)))
    dec = np.degrees(np.arcsin(-np.cos(theta) * np.sin(phi)))
    # float32 theta/phi: ulp 3e-5 deg at 360 deg; float32 positions: 4e-6 deg
    np.testing.assert_allclose(halos["ra"], ra, rtol=0, atol=1e-4)
    np.testing.assert_allclose(halos["dec"], dec, rtol=0, atol=1e-4)

    hist = config["histogram"]
    window = ((halos["ra"] > hist["ra_deg"][0]) & (halos["ra"] < hist["ra_deg"][1])
              & (halos["dec"] > hist["dec_deg"][0]) & (halos["dec"] < hist["dec_deg"][1])
              & (halos["z_obs"] > hist["z_obs"][0]) & (halos["z_obs"] < hist["z_obs"][1]))
    assert window.sum() > LC64_HALOS // 3
    off_axis = np.degrees(np.arccos(np.cos(np.radians(halos["ra"][window]))
                                    * np.cos(np.radians(halos["dec"][window]))))
    corner = window_corner_angle_deg(hist["ra_deg"], hist["dec_deg"])
    assert off_axis.max() <= corner < config["lightcone"]["aperture_deg"]

    assert attrs["simulator"] == "pinocchio" and attrs["seed"] == row["seed"]
    assert attrs["Omega_m"] == row["Omega_m"] and attrs["sim_id"] == row["id"]
    assert attrs["pinocchio_parameter_file"] == (run_dir / PARAMETER_FILE).read_text()
    assert attrs["simulator_settings"]["grid_size"] == config["simulator"]["pinocchio"]["grid_size"]


def test_convert_multi_file_run(tmp_path: Path, rows: list[dict]) -> None:
    config, _ = make_config(tmp_path, num_files=2)
    run_dir = tmp_path / "run"
    setup_run(config, rows[0], run_dir)
    run_pinocchio(config, run_dir)
    assert all((run_dir / name).is_file() for name in plc_file_names(2))
    convert_run(config, rows[0], run_dir, tmp_path / "lightcone.h5")
    halos, _ = read_lightcone(tmp_path / "lightcone.h5")
    assert len(halos["ra"]) == LC64_HALOS


def test_convert_refuses_another_rows_run(tmp_path: Path, config: dict, rows: list[dict]) -> None:
    run_dir = tmp_path / "run"
    setup_run(config, rows[0], run_dir)
    run_pinocchio(config, run_dir)
    with pytest.raises(ValueError, match="not the parameter file of simulation 0001"):
        convert_run(config, rows[1], run_dir, tmp_path / "lightcone.h5")
    assert not (tmp_path / "lightcone.h5").exists()


def test_cli_chain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config, paths = make_config(tmp_path)
    design = tmp_path / "design.ecsv"
    write_design(config, "latin_hypercube", design)
    configs = [arg for path in paths for arg in ("--config", str(path))]
    row_args = ["--design", str(design), "--id", "0002"]
    run_dir = str(tmp_path / "run")
    output = tmp_path / "lightcone.h5"
    assert cli.main(["pinocchio-setup", *configs, *row_args, "--run-dir", run_dir]) == 0
    monkeypatch.setenv("FAKE_PINOCCHIO_FAIL", "error")
    assert cli.main(["pinocchio-run", *configs, "--run-dir", run_dir]) == 2
    monkeypatch.delenv("FAKE_PINOCCHIO_FAIL")
    assert cli.main(["pinocchio-run", *configs, "--run-dir", run_dir]) == 0
    assert cli.main(["pinocchio-convert", *configs, *row_args, "--run-dir", run_dir,
                     "--output", str(output)]) == 0
    _, attrs = read_lightcone(output)
    assert attrs["sim_id"] == "0002"


def test_warns_when_smallest_halo_exceeds_mass_cut(tmp_path: Path, config: dict,
                                                   rows: list[dict],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    setup_run(config, rows[0], tmp_path / "fine")  # 1500 Mpc/h, 1024^3: 10 particles < 1e13
    assert "will miss halos" not in caplog.text
    coarse = copy.deepcopy(config)
    coarse["simulator"]["pinocchio"]["grid_size"] = 64  # particle mass ~4e15 Msun/h
    setup_run(coarse, rows[0], tmp_path / "coarse")
    assert "histogram will miss halos" in caplog.text
