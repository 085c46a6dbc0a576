"""The config through real Snakemake: bad values stop `snakemake -n` before any job,
overlays are applied as written, and one invocation never changes another's inputs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest
import yaml

from tests.conftest import REPO
from tests.workflow_utils import TINY_OVERLAY, snakemake_env, write_overlay

TINY = REPO / "config" / "tiny.yaml"


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`snakemake` on the repository's Snakefile in ``workdir`` with ``args`` (no config);
    stdout and stderr together in ``stdout``."""
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
               "--directory", str(workdir), "--cores", "2", *args]
    return subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=snakemake_env(), cwd=workdir)


def snapshots(workdir: Path) -> list[Path]:
    return sorted((workdir / "results" / "config").glob("*.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize(("text", "message"), [
    ("training: {learning_rate: .nan}\n", "training.learning_rate: expected a finite number"),
    ("design: {latin_hypercube: {n_simulations: 4.0}}\n",
     "design.latin_hypercube.n_simulations: 4.0 is not of type 'integer'"),
    ("design: {latin_hypercube: {n_simulations: 1000000000}}\n", "greater than the maximum"),
    ("models: {vit: {preset: paper, heads: 5}}\n", "models.vit.heads"),
    ("histogram: {bins: [64, 64, 64]}\nhistogram: {bins: [8, 8, 8]}\n", "duplicate key"),
])
def test_bad_config_stops_snakemake_before_any_job(tmp_path: Path, text: str,
                                                   message: str) -> None:
    overlay = tmp_path / "bad.yaml"
    overlay.write_text(text)
    result = snakemake(tmp_path, "-n", "--configfile", str(overlay))
    assert result.returncode != 0
    assert message in result.stdout, result.stdout[-3000:]
    assert not (tmp_path / "results").exists()


_DRY_RUN_MODULES = """
import atexit, sys
atexit.register(lambda: print("imported:", sorted(
    name for name in ("torch", "scipy.stats", "astropy.table") if name in sys.modules)))
from snakemake.cli import main
main(sys.argv[1:])
"""


def test_dry_run_imports_no_torch(tmp_path: Path) -> None:
    """The parse checks the networks from their dataclass configs (torch: ~1.7 s to
    import); a second parse of the same config skips the posterior count, whose
    Latin-hypercube design needs scipy.stats (~0.5 s), as its snapshot shows it passed."""
    command = [sys.executable, "-c", _DRY_RUN_MODULES, "-s", str(REPO / "Snakefile"),
               "--directory", str(tmp_path), "--cores", "2", "-n", "--quiet", "rules",
               "--configfile", str(REPO / "config" / "laptop.yaml")]
    first, second = (subprocess.run(command, capture_output=True, text=True,
                                    env=snakemake_env(), cwd=tmp_path) for _ in range(2))
    for result in (first, second):
        assert result.returncode == 0, result.stderr[-3000:]
    assert "imported: ['scipy.stats']" in first.stdout, first.stdout[-2000:]
    assert "imported: []" in second.stdout, second.stdout[-2000:]
    assert len(snapshots(tmp_path)) == 1


@pytest.mark.slow
def test_alias_bomb_is_refused_within_seconds(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 9) + "]" for n in range(1, 9)]
    overlay = tmp_path / "bomb.yaml"
    overlay.write_text("\n".join(lines) + "\n")
    started = time.perf_counter()
    result = snakemake(tmp_path, "-n", "--configfile", str(overlay))
    assert time.perf_counter() - started < 60  # Snakemake's own start-up included
    assert result.returncode != 0
    assert "more than 100000 nodes" in result.stdout, result.stdout[-3000:]


@pytest.mark.slow
def test_overlays_are_applied_in_order_or_refused(tmp_path: Path) -> None:
    first = write_overlay(tmp_path, {"design": {"fiducial": {"n_simulations": 3},
                                                "derivatives": {"n_seeds": 0}}}, "a.yaml")
    second = tmp_path / "b.yaml"
    second.write_text("histogram: {min_mass_msun_h: 3e13}  # YAML 1.1 would read a string\n")

    # the flag repeated: Snakemake 9 would keep only b.yaml, so the run stops and says how
    repeated = snakemake(tmp_path, "-n", "--configfile", str(TINY), "--configfile", str(first),
                         str(second))
    assert repeated.returncode != 0
    assert "--configfile was given 2 times" in repeated.stdout
    assert "--configfile config/laptop.yaml my.yaml" in repeated.stdout
    assert not (tmp_path / "results").exists()

    # one flag, three files: every file applied in order; the snapshot names them
    result = snakemake(tmp_path, "-n", "--configfile", str(TINY), str(first), str(second))
    assert result.returncode == 0, result.stdout[-3000:]
    (snapshot,) = snapshots(tmp_path)
    config = yaml.safe_load(snapshot.read_text())
    assert config["design"]["latin_hypercube"]["n_simulations"] == 4  # tiny.yaml
    assert config["design"]["fiducial"]["n_simulations"] == 3  # a.yaml
    assert config["histogram"]["min_mass_msun_h"] == 3e13  # b.yaml, read as a number
    header = snapshot.read_text().split("\ndataset:")[0]
    positions = [header.index(str(path)) for path in (REPO / "config.yaml", TINY, first,
                                                      second)]
    assert positions == sorted(positions)


@pytest.mark.slow
def test_edit_that_changes_no_value_reruns_nothing(tmp_path: Path) -> None:
    overlay = tmp_path / "my.yaml"
    overlay.write_text("histogram: {min_mass_msun_h: 2.0e+13}\n")
    targets = ["results/design/latin_hypercube.ecsv", "results/design/fiducial.ecsv"]
    assert snakemake(tmp_path, *targets, "--configfile", str(TINY), str(overlay)).returncode == 0
    # same values, written differently (comment, other spelling, flow vs block style)
    overlay.write_text("# the mass cut\nhistogram:\n  min_mass_msun_h: 2e13\n")
    dry = snakemake(tmp_path, "-n", *targets, "--configfile", str(TINY), str(overlay))
    assert dry.returncode == 0, dry.stdout[-3000:]
    assert "Nothing to be done" in dry.stdout, dry.stdout[-3000:]
    # a value of another stage (training) does not rerun the design either
    overlay.write_text("histogram: {min_mass_msun_h: 2e13}\ntraining: {epochs: 7}\n")
    dry = snakemake(tmp_path, "-n", *targets, "--configfile", str(TINY), str(overlay))
    assert "Nothing to be done" in dry.stdout, dry.stdout[-3000:]


@pytest.mark.slow
def test_a_setting_at_its_neutral_value_is_no_rerun_trigger(tmp_path: Path) -> None:
    """simulator.embedded.bias_ratio came after light cones existed: at 1 (the same halos
    as before it) it stays out of the simulation rules' params, so light cones made before
    it rerun nothing; another value reruns them."""
    target = "results/sims/latin_hypercube/0000/lightcone.h5"
    assert snakemake(tmp_path, target, "--configfile", str(TINY)).returncode == 0
    records = [json.loads(path.read_text())
               for path in (tmp_path / ".snakemake" / "metadata").iterdir()]
    recorded = [str(record["params"]) for record in records
                if record["rule"].startswith("simulate_embedded")]
    assert recorded and all("lowest_halo_mass_msun_h" in params for params in recorded)
    assert not any("bias_ratio" in params for params in recorded)
    overlay = tmp_path / "bias.yaml"
    overlay.write_text("simulator: {embedded: {bias_ratio: 1.0}}\n")
    dry = snakemake(tmp_path, "-n", target, "--configfile", str(TINY), str(overlay))
    assert "Nothing to be done" in dry.stdout, dry.stdout[-3000:]
    overlay.write_text("simulator: {embedded: {bias_ratio: 1.2}}\n")
    dry = snakemake(tmp_path, "-n", target, "--configfile", str(TINY), str(overlay))
    assert "Params have changed" in dry.stdout and "bias_ratio" in dry.stdout, dry.stdout[-3000:]


@pytest.mark.slow
def test_dry_run_with_other_values_does_not_change_a_running_job(tmp_path: Path) -> None:
    """Run A makes histograms with a 1e13 cut; while it runs, a dry run B with 3e13 in
    the same folder. Every histogram A writes must still carry A's cut, and A's config
    snapshot must be untouched."""
    run_a = write_overlay(tmp_path, TINY_OVERLAY, "a.yaml")
    run_b = write_overlay(tmp_path, {**TINY_OVERLAY, "histogram": {
        **TINY_OVERLAY["histogram"], "min_mass_msun_h": 3e13}}, "b.yaml")
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory",
               str(tmp_path), "--cores", "2", "--configfile", str(run_a), "--until",
               "histogram"]
    with open(tmp_path / "a.out", "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   env=snakemake_env())
    try:
        deadline = time.monotonic() + 120
        while not list((tmp_path / "results").glob("design/*.ecsv")):
            assert process.poll() is None, (tmp_path / "a.out").read_text()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        (snapshot_a,) = snapshots(tmp_path)
        before = (snapshot_a.read_bytes(), snapshot_a.stat().st_mtime_ns)
        # A's running block marks its light cones incomplete: B's dry run, which would
        # otherwise stop on them, is told to plan anyway
        dry = snakemake(tmp_path, "-n", "--ignore-incomplete", "--configfile", str(run_b),
                        "--until", "histogram")
        assert dry.returncode == 0, dry.stdout[-3000:]
        histograms_during_b = len(list((tmp_path / "results").rglob("histograms/*/*.h5")))
    finally:
        assert process.wait(timeout=300) == 0, (tmp_path / "a.out").read_text()[-3000:]
    assert histograms_during_b < 6  # B really ran while A still had histograms to write
    assert (snapshot_a.read_bytes(), snapshot_a.stat().st_mtime_ns) == before
    assert len(snapshots(tmp_path)) == 2  # B wrote its own, never A's
    histograms = sorted((tmp_path / "results" / "histograms").rglob("*.h5"))
    assert len(histograms) == 6
    for path in histograms:
        with h5py.File(path) as stored:
            assert stored.attrs["min_mass_msun_h"] == 1e13, path
