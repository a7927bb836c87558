"""The users' CLI against the Kubernetes API emulator."""

from __future__ import annotations

import pytest

from tests.cli.helpers import Cli
from tests.support.kube_fixtures import KubeHandle, kube, kube_env  # noqa: F401  (fixtures)


@pytest.fixture
def cli(kube: KubeHandle, capsys: pytest.CaptureFixture) -> Cli:  # noqa: F811
    return Cli(kube, capsys)
