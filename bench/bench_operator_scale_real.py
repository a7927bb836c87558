"""The operator-scale benchmark (bench_operator_scale) against a real kube-apiserver
and etcd instead of the emulator: the same 1,000 jobs, baseline and figures, with the
real server's authentication, TLS, admission and etcd writes in the path.

Needs the binaries tests/kube/build.sh builds (FINETUNE_KUBE_BIN_DIR, or its default
cache folder); `make bench` builds them first.
"""

from __future__ import annotations


def main() -> None:
    from bench.bench_operator_scale import main as scale

    scale(backend="real")
