"""Download the wheels a GPU node without internet needs to run benchmarks/gpu_check.sh.

    python benchmarks/wheelhouse.py --present node_packages.txt --dest .whl
    WHEELHOUSE=.whl bash benchmarks/gpu_check.sh            # then, on the node

The node's python is expected to hold torch (a CUDA build) and the common scientific
packages; ``--present`` lists the distributions it already has (one name per line, or the
output of ``pip list`` / ``pip freeze``). This script walks the runtime requirements of
the package (snakemake, astropy, jsonschema and what they need) through the metadata of
the environment it runs in, leaves out what the node has, and downloads the versions
installed here (the ones the tests pass with) as binary wheels for the node's Python and
platform, with ``pip download --no-deps`` (``pip wheel`` builds the pure-python ones that
are published as source only).
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import re
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement

ROOTS = ("snakemake", "astropy", "jsonschema")
"""Runtime requirements of cosmo_sbi that a PyTorch image usually lacks."""
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_present(path: Path) -> set[str]:
    """Distribution names of a list, ``pip list`` or ``pip freeze`` output."""
    names = set()
    for line in path.read_text().splitlines():
        token = re.split(r"[\s=<>]", line.strip(), maxsplit=1)[0]
        if token and not token.startswith(("#", "-")) and token.lower() != "package":
            names.add(normalise(token))
    return names


def closure(roots: tuple[str, ...], present: set[str],
            python_version: str) -> dict[str, str]:
    """name -> version installed here of every requirement reachable from ``roots`` that
    the node lacks (environment markers evaluated for Linux x86_64 CPython)."""
    environment = {"extra": "", "python_version": python_version,
                   "python_full_version": f"{python_version}.0", "sys_platform": "linux",
                   "platform_system": "Linux", "platform_machine": "x86_64",
                   "os_name": "posix", "implementation_name": "cpython",
                   "platform_python_implementation": "CPython"}
    found: dict[str, str] = {}
    todo = list(roots)
    while todo:
        name = normalise(todo.pop())
        if name in found or name in present:
            continue
        distribution = metadata.distribution(name)
        found[name] = distribution.version
        for text in distribution.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate(environment):
                todo.append(requirement.name)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--present", type=Path, required=True,
                        help="the node's installed distributions (names, pip list or freeze)")
    parser.add_argument("--dest", type=Path, default=Path(".whl"))
    parser.add_argument("--python-version", default="3.12", help="the node's Python")
    args = parser.parse_args()
    wanted = closure(ROOTS, read_present(args.present), args.python_version)
    platforms = [option for platform in PLATFORMS for option in ("--platform", platform)]
    binary = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
              "--python-version", args.python_version, "--implementation", "cp", *platforms,
              "-q", "-d", str(args.dest)]
    print(f"{len(wanted)} distributions: {' '.join(sorted(wanted))}", flush=True)
    for name, version in sorted(wanted.items()):
        if subprocess.run([*binary, f"{name}=={version}"]).returncode != 0:
            # no wheel published (an sdist only): build a pure-python one here
            print(f"{name}: no wheel for the node; building one", flush=True)
            subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                            str(args.dest), f"{name}=={version}"], check=True)
    size = sum(path.stat().st_size for path in args.dest.glob("*.whl"))
    print(f"{len(list(args.dest.glob('*.whl')))} wheels, {size / 2**20:.1f} MiB in {args.dest}")


if __name__ == "__main__":
    main()
