# syntax=docker/dockerfile:1
# scp-operator image: a wheel built in one stage, installed with its dependencies into a venv in a
# clean runtime stage. The runtime stage has no compilers, no pip in the venv, no source tree and
# no secrets (SCP keys are mounted at run time; see helm/scp-operator).
#
#   docker build -t registry.example.com/scp-operator:0.1.0 .
#
# tests/packaging/test_dockerfile.py reproduces these steps in a fresh virtualenv and lints this
# file with hadolint.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Only what the wheel needs (.dockerignore keeps the rest of the context out).
COPY pyproject.toml README.md ./
COPY operator/ operator/
# The project's own wheel, then wheels of its pinned dependencies (built here if a dependency
# ships no wheel for this platform, so build tools never reach the runtime stage).
RUN python -m pip wheel --no-deps --wheel-dir /dist . \
 && python -m pip wheel --wheel-dir /wheels /dist/*.whl

FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="scp-operator" \
      org.opencontainers.image.description="Deletes Samsung Cloud Platform virtual servers when their VirtualServer resources are deleted" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/scp-operator \
    PATH=/opt/scp-operator/bin:$PATH
# A venv without pip, filled by the base image's pip from the builder's wheels only (no index):
# the runtime stage installs exactly the wheel and its dependencies, compiled to bytecode now
# because the root filesystem is read-only at run time. Then the base image's own pip,
# setuptools and wheel go too: nothing in the final image can install or build packages.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m venv --without-pip /opt/scp-operator \
 && python -m pip --python /opt/scp-operator/bin/python install --no-index --find-links=/wheels \
      scp-operator \
 && python -m pip uninstall --yes --quiet pip setuptools wheel \
 && groupadd --system --gid 65532 nonroot \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin nonroot
USER 65532:65532
WORKDIR /tmp
# 8080: Kopf's /healthz (liveness/readiness); 9090: Prometheus /metrics.
EXPOSE 8080 9090
ENTRYPOINT ["scp-operator"]
# Kopf flags: only command-line-only ones belong here (--liveness serves /healthz); every other
# Kopf option is set in the startup hook, whose docstring lists them all
# (operator/scp_operator/handlers/startup.py), e.g. no Kopf peering (settings.peering.standalone).
CMD ["run", "--liveness=http://0.0.0.0:8080/healthz"]
