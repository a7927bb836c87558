"""The users' CLI against the Kubernetes API emulator."""

from __future__ import annotations

import pytest

from tests.cli.helpers import Cli
from tests.support.kube_fixtures import KubeHandle, kube  # noqa: F401  (fixture)


@pytest.fixture
def cli(kube: KubeHandle, capsys: pytest.CaptureFixture) -> Cli:  # noqa: F811
    return Cli(kube, capsys)
