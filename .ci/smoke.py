"""Smoke test of the installed wheel (run by .ci/package with the fresh venv's python).

    smoke.py VENV WHEEL

Checks that nclab is imported from VENV (not from a source tree), that the wheel holds
py.typed and the license, that ``nclab --version`` and ``nclab measure`` on a tiny file
work, and that each extra's requirements are installed and its integration imports.
"""

import importlib
import importlib.metadata as metadata
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
from packaging.requirements import Requirement

#: extra -> the modules that need it (imported below with the extra's libraries present)
EXTRA_MODULES = {
    "lightning": ["nclab.integrations.lightning"],
    "hf": ["nclab.integrations.transformers"],
    "torchmetrics": ["nclab.integrations.torchmetrics"],
    "tensorboard": ["torch.utils.tensorboard"],
    "wandb": ["wandb"],
    "mlflow": ["mlflow"],
    "mujoco": ["mujoco", "gymnasium"],
    "docs": ["mkdocs", "mkdocstrings_handlers.python"],
}


def check(condition, message):
    if not condition:
        sys.exit(f"smoke test failed: {message}")


def run(*args):
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    check(done.returncode == 0, f"{' '.join(map(str, args))} exited {done.returncode}:\n"
                                f"{done.stdout}{done.stderr}")
    return done.stdout


def installed_from_the_wheel(venv: Path, wheel: Path) -> None:
    import nclab

    check(Path(nclab.__file__).resolve().is_relative_to(venv.resolve()),
          f"nclab was imported from {nclab.__file__}, not from the wheel in {venv}")
    names = zipfile.ZipFile(wheel).namelist()
    version = metadata.version("nclab")
    for needed in ("nclab/py.typed", f"nclab-{version}.dist-info/licenses/LICENSE"):
        check(needed in names, f"the wheel lacks {needed}")
    check(metadata.metadata("nclab")["License-Expression"] == "MIT", "no SPDX license")


def command_line(venv: Path) -> None:
    import nclab

    shown = run(venv / "bin" / "nclab", "--version").strip()
    check(shown == f"nclab {nclab.__version__}", f"nclab --version printed {shown!r}")
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 10)
    features = 4 * np.eye(3, 5)[labels] + rng.normal(size=(30, 5))
    np.savez("tiny.npz", features=features, labels=labels, weight=np.eye(3, 5))
    run(venv / "bin" / "nclab", "measure", "tiny.npz", "--json", "tiny.json")
    result = json.loads(Path("tiny.json").read_text())
    expected = nclab.measure(features, labels, weight=np.eye(3, 5)).nc1
    check(abs(result["nc1"] - expected) <= 1e-9 * abs(expected),
          f"nclab measure gave nc1 {result['nc1']}, nclab.measure {expected}")


def extras() -> None:
    requirements = [Requirement(text) for text in metadata.requires("nclab") or ()]
    declared = set(metadata.metadata("nclab").get_all("Provides-Extra") or ())
    check(set(EXTRA_MODULES) <= declared, f"extras missing: {set(EXTRA_MODULES) - declared}")
    for extra, modules in EXTRA_MODULES.items():
        for requirement in requirements:
            if requirement.marker is None or not requirement.marker.evaluate({"extra": extra}):
                continue
            try:
                version = metadata.version(requirement.name)
            except metadata.PackageNotFoundError:
                sys.exit(f"smoke test failed: extra {extra} needs {requirement}, not installed")
            check(requirement.specifier.contains(version, prereleases=True),
                  f"extra {extra} needs {requirement}; {version} is installed")
        for module in modules:
            importlib.import_module(module)
        print(f"  extra {extra}: requirements met, {', '.join(modules)} imported")


def main() -> None:
    venv, wheel = Path(sys.argv[1]), Path(sys.argv[2])
    installed_from_the_wheel(venv, wheel)
    command_line(venv)
    extras()
    print(f"smoke test of {wheel.name}: passed")


if __name__ == "__main__":
    main()
