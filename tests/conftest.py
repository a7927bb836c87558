"""Session-wide test set-up: every Ray the tests start is embedded, so it stays on
loopback (set before any test module imports ray)."""

from finetune_trainer.local_ray import use_loopback_for_embedded_ray

use_loopback_for_embedded_ray()

# One real kube-apiserver + etcd for the whole session, shared by tests/realkube and the
# real-server runs of the scenario suite.
from tests.support.real_kube_handle import real_kube  # noqa: E402,F401  (fixture)


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` run only where CUDA is available; elsewhere they are skipped."""
    import pytest

    gpu_tests = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_tests:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in gpu_tests:
        item.add_marker(skip)
