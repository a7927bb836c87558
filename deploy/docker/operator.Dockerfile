# The operator image: the `finetune` CLI and its Kubernetes dependencies, without
# the training stack (no torch, no Ray), so it stays small and starts fast.
#
# Build from the repository root, tagged with the package version:
#   VERSION=$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
#   docker build -f deploy/docker/operator.Dockerfile --build-arg VERSION=$VERSION \
#     -t ghcr.io/finetune-dev/finetune-operator:$VERSION .

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# Build a wheel in a throwaway stage so setuptools and the sources stay out of the
# final image.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
COPY trainer ./trainer
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="finetune-operator" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
# The root filesystem is read-only at run time: no bytecode writes, unbuffered logs.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /wheels
# The base install (no `trainer` extra) is exactly what the operator imports.
RUN pip install --no-cache-dir /wheels/*.whl \
    && rm -rf /wheels \
    && useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin finetune
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080 8081
ENTRYPOINT ["finetune"]
CMD ["operator"]
