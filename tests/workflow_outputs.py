"""Compare the outputs of two workflow runs (local vs SLURM, interrupted vs uninterrupted).

Every file under ``results/`` counts except logs (timings, host names, PIDs) and training
checkpoints (not declared outputs; they hold the wall time too). Files are compared byte
for byte, except that wall-clock measurements are masked out of the text files that
report them (training history and summary, metrics, the report): those differ between
any two runs of the same computation; config snapshots are compared without their header
(the paths of the files merged).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path
from typing import Any

WALL_CLOCK_FIELDS = frozenset({"wall_time_s", "samples_per_second"})
SKIPPED_FOLDERS = frozenset({"logs", "checkpoints"})
TEMPORARY_MARK = ".tmp-"  # cosmo_sbi.io.atomic_path writes <name>.tmp-<pid> first


def _without_wall_clock(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_wall_clock(item) for key, item in value.items()
                if key not in WALL_CLOCK_FIELDS}
    if isinstance(value, list):
        return [_without_wall_clock(item) for item in value]
    return value


def _masked_csv(text: str) -> str:
    """Drop wall-clock columns and rows that name a wall-clock metric."""
    rows = list(csv.reader(io.StringIO(text)))
    keep = [index for index, name in enumerate(rows[0]) if name not in WALL_CLOCK_FIELDS]
    out = io.StringIO()
    writer = csv.writer(out)
    for row in rows:
        if not WALL_CLOCK_FIELDS.intersection(row):
            writer.writerow([row[index] for index in keep])
    return out.getvalue()


def comparable_bytes(path: Path) -> bytes:
    """The content of ``path`` that must not change between runs of the same config."""
    if path.suffix == ".json":
        data = _without_wall_clock(json.loads(path.read_text()))
        return json.dumps(data, sort_keys=True).encode()
    if path.suffix == ".csv":
        return _masked_csv(path.read_text()).encode()
    if path.suffix == ".yaml":  # a config snapshot: its header names the files merged
        lines = path.read_text().splitlines()
        return "\n".join(line for line in lines if not line.startswith("#")).encode()
    if path.suffix == ".md":
        lines = path.read_text().splitlines()
        return "\n".join(line for line in lines
                         if not any(name in line for name in WALL_CLOCK_FIELDS)).encode()
    return path.read_bytes()


def output_files(workdir: Path) -> list[Path]:
    """Compared files under ``workdir/results`` (relative paths), leftovers excluded."""
    results = workdir / "results"
    return sorted(
        path.relative_to(workdir) for path in results.rglob("*")
        if path.is_file() and TEMPORARY_MARK not in path.name
        and not SKIPPED_FOLDERS.intersection(path.relative_to(results).parts)
    )


def output_digests(workdir: Path, paths: list[Path] | None = None) -> dict[str, str]:
    """SHA-256 of the comparable content of each output (all of them by default)."""
    return {str(path): hashlib.sha256(comparable_bytes(workdir / path)).hexdigest()
            for path in (output_files(workdir) if paths is None else paths)}


def assert_same_outputs(expected_dir: Path, actual_dir: Path) -> None:
    """The two runs produced the same set of outputs with the same content."""
    expected = output_digests(expected_dir)
    actual = output_digests(actual_dir)
    assert sorted(actual) == sorted(expected), (
        f"missing: {sorted(set(expected) - set(actual))}, "
        f"unexpected: {sorted(set(actual) - set(expected))}")
    differing = [name for name in expected if actual[name] != expected[name]]
    assert not differing, f"outputs differ from {expected_dir}: {differing}"
