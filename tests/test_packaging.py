"""The package's metadata and the files the package index shows (make package builds,
checks and installs the real wheel and sdist; these tests run in the unpacked sdist too)."""

import re
from pathlib import Path

import pytest
import tomllib

import nclab

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_license_file_and_spdx_expression():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "the nclab developers" in text
    project = PROJECT["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    assert not any(c.startswith("License ::") for c in project["classifiers"])  # PEP 639
    assert "setuptools>=77" in " ".join(PROJECT["build-system"]["requires"])


def test_metadata_for_the_index():
    project = PROJECT["project"]
    assert project["authors"] == [{"name": "nclab developers"}]
    assert "Typing :: Typed" in project["classifiers"]
    python_versions = {c.rsplit(" ", 1)[-1] for c in project["classifiers"]
                       if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)}
    low = project["requires-python"].removeprefix(">=")
    assert min(python_versions, key=lambda v: int(v.split(".")[1])) == low
    assert "urls" not in project or all(u.startswith("https://") for u in project["urls"].values())


def test_py_typed_ships_with_the_package():
    assert (ROOT / "src" / "nclab" / "py.typed").exists()
    assert "py.typed" in PROJECT["tool"]["setuptools"]["package-data"]["nclab"]


def test_citation_names_this_version():
    yaml = pytest.importorskip("yaml")
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0"
    assert citation["version"] == nclab.__version__ == PROJECT["project"]["version"]
    assert citation["license"] == PROJECT["project"]["license"]
    assert citation["title"] and citation["message"] and citation["authors"]


def test_readme_renders_on_the_index():
    """The index shows README.md without the repository around it: a relative link or
    image there leads nowhere."""
    readme = PROJECT["project"]["readme"]
    text = (ROOT / readme).read_text()
    targets = re.findall(r"\]\(([^)]+)\)", text) + re.findall(r'src="([^"]+)"', text)
    relative = [t for t in targets if not re.match(r"https?://|#", t)]
    assert relative == []


def test_manifest_ships_what_the_tests_read():
    """The sdist's tests need their helpers, conftest, references and the pages whose
    examples they run; .ci/package compares the built sdist with git's files."""
    rules = (ROOT / "MANIFEST.in").read_text().split("\n")
    for folder in ("tests", "docs", "benchmarks", "experiments"):
        assert f"graft {folder}" in rules
    included = next(line for line in rules if line.startswith("include "))
    for name in ("LICENSE", "CITATION.cff", "README.md", "Makefile"):
        assert name in included.split()
