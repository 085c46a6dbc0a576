"""What a real PINOCCHIO v5.1 run log says: the echo of its parameters and the number of
halos it put in the light cone (tests/test_pinocchio_real.py)."""

from __future__ import annotations

import re
from pathlib import Path

ECHO = {  # log label -> parameter-file keys, in the order of the echoed values
    "Omega0": ["Omega0"], "OmegaLambda": ["OmegaLambda"], "OmegaBaryon": ["OmegaBaryon"],
    "DE EoS parameters": ["DEw0", "DEwa"], "Hubble100": ["Hubble100"], "Sigma8": ["Sigma8"],
    "PrimordialIndex": ["PrimordialIndex"], "RandomSeed": ["RandomSeed"],
    "OutputList": ["OutputList"], "GridSize": ["GridSize"] * 3,
    "BoxSize (Mpc/h)": ["BoxSize"], "MinHaloMass (particles)": ["MinHaloMass"],
    "BoundaryLayerFactor": ["BoundaryLayerFactor"], "MaxMem per task (Mb)": ["MaxMem"],
    "MaxMem per particle (b)": ["MaxMemPerParticle"], "PredPeakFactor": ["PredPeakFactor"],
    "NumFiles": ["NumFiles"],
}
PLC_ECHO = [  # (pattern, parameter-file keys)
    (r"The Past Light Cone will be reconstructed from z=(\S+) to z=(\S+)",
     ["StartingzForPLC", "LastzForPLC"]),
    (r"It will have an aperture of (\S+) degrees", ["PLCAperture"]),
    (r"centred on point \[(\S+),(\S+),(\S+)\]", ["PLCCenter"] * 3),
    (r"pointed toward \[(\S+),(\S+),(\S+)\]", ["PLCAxis"] * 3),
]


def parameter_values(path: Path) -> dict[str, list[str]]:
    """Key -> values of a parameter file (flags map to [])."""
    lines = [line.split() for line in path.read_text().splitlines()]
    return {words[0]: words[1:] for words in lines if words and words[0][0] not in "#%"}


def echo_mismatches(log: Path, parameter_file: Path) -> list[str]:
    """Parameters whose value echoed in ``log`` differs from ``parameter_file`` (numbers
    at the echo's printed precision, %f: 6 decimals). Empty when all agree; raises
    ValueError when an echo line is missing."""
    text = log.read_text(errors="replace")
    written = parameter_values(parameter_file)
    echoed: list[tuple[str, str]] = []
    for label, keys in ECHO.items():
        match = re.search(rf"^{re.escape(label)}\s+(.+)$", text, re.M)
        if match is None:
            raise ValueError(f"{log}: no echo of {label!r}")
        echoed += list(zip(keys, match.group(1).split(), strict=False))
    for pattern, keys in PLC_ECHO:
        match = re.search(pattern, text)
        if match is None:
            raise ValueError(f"{log}: no line matching {pattern!r}")
        echoed += list(zip(keys, match.groups(), strict=True))
    position: dict[str, int] = {}
    mismatches = []
    for key, value in echoed:
        index = position.get(key, 0) if key in ("PLCCenter", "PLCAxis") else 0
        position[key] = index + 1
        expected = written[key][index]
        if not _same(value, expected):
            mismatches.append(f"{key}: log {value}, parameter file {expected}")
    flag = re.search(r"^OutputInH100\s+(\d)$", text, re.M)
    if flag is None or (flag.group(1) == "1") != ("OutputInH100" in written):
        mismatches.append(f"OutputInH100: log {flag and flag.group(1)}, parameter file "
                          f"{'on' if 'OutputInH100' in written else 'off'}")
    return mismatches


def _same(echoed: str, written: str) -> bool:
    try:
        return abs(float(echoed) - float(written)) <= 5e-7 * max(1.0, abs(float(written)))
    except ValueError:
        return echoed == written


def plc_halo_count(log: Path) -> int:
    """'total number of halos in the PLC: N' of a run log."""
    match = re.search(r"total number of halos in the PLC: (\d+)", log.read_text())
    if match is None:
        raise ValueError(f"{log}: no 'total number of halos in the PLC' line")
    return int(match.group(1))
