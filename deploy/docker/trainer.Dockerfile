# The trainer image the RayJob's head and worker pods run: Ray's own CUDA image (so
# `ray start`, which KubeRay issues, matches the ray==2.60.0 the project pins) plus
# CUDA torch and this project with its `trainer` extra.
#
# Build from the repository root, tagged with the package version:
#   VERSION=$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
#   docker build -f deploy/docker/trainer.Dockerfile --build-arg VERSION=$VERSION \
#     -t ghcr.io/finetune-dev/finetune-trainer:$VERSION .
# For a CPU-only image use RAY_IMAGE=rayproject/ray:2.60.0-py311-cpu and
# TORCH_INDEX=https://download.pytorch.org/whl/cpu.

ARG RAY_IMAGE=rayproject/ray:2.60.0-py311-cu128
FROM ${RAY_IMAGE}
ARG VERSION=0.1.0
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
LABEL org.opencontainers.image.title="finetune-trainer" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_DISABLE_TELEMETRY=1
# CUDA torch first, from PyTorch's index, so the project's install keeps it instead of
# pulling a build from PyPI.
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}"
WORKDIR /home/ray/finetune
COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users operator ./operator
COPY --chown=ray:users trainer ./trainer
# The constraint holds torch at the CUDA build installed above.
RUN echo "torch==${TORCH_VERSION}" > /tmp/torch-constraint.txt \
    && pip install --no-cache-dir --constraint /tmp/torch-constraint.txt ".[trainer]" \
    && rm /tmp/torch-constraint.txt \
    && python -c "import finetune_trainer, ray; assert ray.__version__ == '2.60.0', ray.__version__"
WORKDIR /home/ray
# The base image's unprivileged `ray` user (uid 1000).
USER 1000
