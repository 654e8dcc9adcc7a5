"""Lays the generated spandrel folders (``integrations/spandrel_upstream/folders``) into a spandrel
checkout, registers them in ``main_registry.py``, adds ``tests/test_MambaIRv2.py`` and
``tests/test_MambaIR.py``, and with ``--run`` runs, in the checkout, with the given Python:

- spandrel's offline tests: every ``test_load`` (hyper-parameter detection of all 55
  architectures), ``tests/test_registry.py``, ``tests/test_size_req.py`` and the two new files
  (their tests of the authors' files, ``test_official_*``, download and are left out with
  ``--offline``), with the clash check: every state dict a ``test_load`` builds is offered to both
  new detectors, and any claim of a foreign one fails (``spandrel_clash_plugin.py``);
- ``ruff check`` and ``ruff format --check`` on ``libs tests``, and ``pyright`` on ``libs/`` and
  ``tests/`` as spandrel's CI runs them (strict for tests, by spandrel's pyrightconfig.json).

    git clone /path/to/spandrel /tmp/spandrel      # e.g. the mirror the fetch tool gives
    python scripts/spandrel_upstream_checkout.py /tmp/spandrel --run --offline --python ENV/bin/python
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List

REPO = Path(__file__).resolve().parents[1]
UPSTREAM = REPO / "integrations" / "spandrel_upstream"
FAMILIES = ("MambaIRv2", "MambaIR")


def lay_in(checkout: Path) -> None:
    arches = checkout / "libs" / "spandrel" / "spandrel" / "architectures"
    registry = checkout / "libs" / "spandrel" / "spandrel" / "__helpers" / "main_registry.py"
    if not arches.is_dir() or not registry.is_file():
        raise SystemExit(f"{checkout}: not a spandrel checkout (no libs/spandrel/spandrel/architectures)")
    for family in FAMILIES:
        target = arches / family
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(UPSTREAM / "folders" / family, target,
                        ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copyfile(UPSTREAM / "templates" / "tests" / f"test_{family}.py",
                        checkout / "tests" / f"test_{family}.py")
        shutil.copyfile(UPSTREAM / "templates" / "tests" / "__snapshots__" / f"test_{family}.ambr",
                        checkout / "tests" / "__snapshots__" / f"test_{family}.ambr")
    text = registry.read_text()
    if "MambaIRv2" not in text:
        # isort's order: CamelCase names case-insensitively, MambaIR before MixDehazeNet
        text = text.replace("    MixDehazeNet,\n", "    MambaIR,\n    MambaIRv2,\n    MixDehazeNet,\n", 1)
        # last: the detectors ask for keys no other architecture has (the clash check shows
        # none claims theirs and they claim no other), so the position changes nothing
        text = text.replace("    ArchSupport.from_architecture(AuraSR.AuraSRArch()),\n",
                            "    ArchSupport.from_architecture(AuraSR.AuraSRArch()),\n"
                            "    ArchSupport.from_architecture(MambaIRv2.MambaIRv2Arch()),\n"
                            "    ArchSupport.from_architecture(MambaIR.MambaIRArch()),\n", 1)
        if text.count("MambaIR") != 6:
            raise SystemExit("main_registry.py: its layout changed; register the two architectures by hand")
        registry.write_text(text)


def run(checkout: Path, python: str, offline: bool) -> int:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "scripts"), os.environ.get("PYTHONPATH", "")]))
    tests = ["tests/test_registry.py", "tests/test_size_req.py", "tests/test_MambaIRv2.py", "tests/test_MambaIR.py"]
    others = sorted(str(p.relative_to(checkout)) for p in (checkout / "tests").glob("test_*.py")
                    if str(p.relative_to(checkout)) not in tests)
    select = "not official" if offline else ""
    steps: List[List[str]] = [
        [python, "-m", "ruff", "check", "libs", "tests"],
        [python, "-m", "ruff", "format", "--check", "libs", "tests"],
        [python, "-m", "pyright", "--pythonpath", python, "libs/"],
        [python, "-m", "pyright", "--pythonpath", python, "tests/"],
        [python, "-m", "pytest", "-q", "-p", "spandrel_clash_plugin", *tests, *(["-k", select] if select else [])],
        [python, "-m", "pytest", "-q", "-p", "spandrel_clash_plugin", "--durations=5", "-k", "test_load", *others],
    ]
    failed = 0
    for cmd in steps:
        print("$", " ".join(cmd), flush=True)
        rc = subprocess.run(cmd, cwd=checkout, env=env).returncode
        print(f"-> exit {rc}", flush=True)
        failed += rc != 0
    return 1 if failed else 0


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout", type=Path, help="a spandrel git checkout (its root)")
    parser.add_argument("--run", action="store_true", help="run the tests and linters afterwards")
    parser.add_argument("--offline", action="store_true", help="leave out the tests that download models")
    parser.add_argument("--python", default=sys.executable, help="the Python of spandrel's dev environment")
    args = parser.parse_args(argv)
    lay_in(args.checkout.resolve())
    print(f"laid MambaIRv2/ and MambaIR/ into {args.checkout}")
    return run(args.checkout.resolve(), args.python, args.offline) if args.run else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
