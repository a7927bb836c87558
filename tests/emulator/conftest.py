"""Fixtures for the emulator's own tests: the emulator and a plain HTTP client to it."""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.emulator.helpers import Http
from tests.support.kube_fixtures import KubeHandle, kube  # noqa: F401  (fixture)


@pytest.fixture
def http(kube: KubeHandle) -> Iterator[Http]:  # noqa: F811
    client = Http(kube.url)
    yield client
    client.session.close()
