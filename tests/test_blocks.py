"""Blocks: one `cosmo-sbi simulate` / `histogram` process for several files writes the
same bytes as one process per file, and a block resumes at its first missing file."""

from __future__ import annotations

from pathlib import Path

import h5py
import pytest
import yaml

from cosmo_sbi.cli import main
from cosmo_sbi.io import read_attrs
from cosmo_sbi.simulators.embedded.simulate import has_provenance
from tests.conftest import REPO

# a 32^3 grid and a small window: a few thousand halos per light cone
OVERLAY = {
    "simulator": {"embedded": {"grid_size": 32}},
    "histogram": {"bins": [8, 8, 8], "ra_deg": [-5.0, 5.0], "dec_deg": [-5.0, 5.0],
                  "z_obs": [0.3, 0.4]},
}


def read_attrs_of(path: Path) -> dict:
    with h5py.File(path, "r") as source:
        return read_attrs(source)


@pytest.fixture
def stage(tmp_path: Path):
    """Run a `cosmo-sbi` stage in-process with config.yaml + OVERLAY; returns its status."""
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump(OVERLAY))
    config = ["--config", str(REPO / "config.yaml"), "--config", str(overlay)]
    design = tmp_path / "design.ecsv"
    assert main(["design", *config, "--set", "fiducial", "--output", str(design)]) == 0

    def run(name: str, *args: str) -> int:
        extra = ("--design", str(design)) if name == "simulate" else ()
        return main([name, *config, *extra, *args])

    return run


def test_block_files_are_byte_identical_to_one_process_each(tmp_path: Path, stage) -> None:
    ids = ["0000", "0001", "0002"]
    single = [tmp_path / f"single{sim_id}.h5" for sim_id in ids]
    block = [tmp_path / f"block{sim_id}.h5" for sim_id in ids]
    for sim_id, path in zip(ids, single, strict=True):
        assert stage("simulate", "--id", sim_id, "--output", str(path)) == 0
    assert stage("simulate", "--id", *ids, "--output", *map(str, block)) == 0
    for one, many in zip(single, block, strict=True):
        assert one.read_bytes() == many.read_bytes(), one

    # histograms: the light-cone file name is part of the provenance, so both read `block`
    hist_single = [tmp_path / f"hist_single{sim_id}.h5" for sim_id in ids]
    hist_block = [tmp_path / f"hist_block{sim_id}.h5" for sim_id in ids]
    for cone, path in zip(block, hist_single, strict=True):
        assert stage("histogram", "--input", str(cone), "--output", str(path)) == 0
    assert stage("histogram", "--input", *map(str, block),
                 "--output", *map(str, hist_block)) == 0
    for one, many in zip(hist_single, hist_block, strict=True):
        assert one.read_bytes() == many.read_bytes(), one


def test_thread_count_changes_no_byte(tmp_path: Path, stage) -> None:
    """simulator.embedded.threads is no rerun trigger: 1, 2 and 3 FFT threads (scipy's
    pocketfft splits the independent 1D transforms among them) write the same bytes."""
    outputs = {threads: [tmp_path / f"t{threads}_{sim_id}.h5" for sim_id in ("0000", "0001")]
               for threads in (1, 2, 3)}
    for threads, paths in outputs.items():
        assert stage("simulate", "--id", "0000", "0001", "--output", *map(str, paths),
                     "--threads", str(threads)) == 0
    for one, two, three in zip(*outputs.values(), strict=True):
        assert one.read_bytes() == two.read_bytes() == three.read_bytes(), one


def test_resume_keeps_finished_files_and_redoes_stale_ones(tmp_path: Path, stage) -> None:
    reference = [tmp_path / "ref0.h5", tmp_path / "ref1.h5", tmp_path / "ref2.h5"]
    assert stage("simulate", "--id", "0000", "0001", "0002",
                 "--output", *map(str, reference)) == 0
    block = [tmp_path / "out0.h5", tmp_path / "out1.h5", tmp_path / "out2.h5"]
    # a killed block: the first file finished; the second holds another row's light cone
    assert stage("simulate", "--id", "0000", "0002", "--output", *map(str, block[:2])) == 0
    kept = block[0].stat().st_mtime_ns, block[0].stat().st_ino
    assert stage("simulate", "--id", "0000", "0001", "0002", "--output", *map(str, block),
                 "--resume") == 0
    assert (block[0].stat().st_mtime_ns, block[0].stat().st_ino) == kept
    for done, expected in zip(block, reference, strict=True):
        assert done.read_bytes() == expected.read_bytes(), done


def test_ids_and_outputs_must_pair_up(tmp_path: Path, stage, capsys) -> None:
    assert stage("simulate", "--id", "0000", "0001", "--output", str(tmp_path / "a.h5")) == 2
    assert "one output per simulation id" in capsys.readouterr().err
    assert stage("histogram", "--input", str(tmp_path / "a.h5"), "--output",
                 str(tmp_path / "h1.h5"), str(tmp_path / "h2.h5")) == 2
    assert "one output per input light cone" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.h5"))


def test_only_the_same_provenance_counts_as_done(tmp_path: Path, stage) -> None:
    cone = tmp_path / "cone.h5"
    assert stage("simulate", "--id", "0001", "--output", str(cone)) == 0
    attrs = read_attrs_of(cone)
    assert has_provenance(cone, attrs)
    settings = {**attrs["simulator_settings"], "lpt_smoothing_mpc_h": 5.0}
    assert not has_provenance(cone, {**attrs, "simulator_settings": settings})
    assert not has_provenance(cone, {**attrs, "package_version": "0.0.0"})
    assert not has_provenance(tmp_path / "missing.h5", attrs)
