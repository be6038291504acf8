# The S3-compatible service of the compose `s3` profile: the moto server (deploy/s3-server.py)
# on the same Python base as the project image, installed from the same wheelhouse when it
# holds wheels (deploy/wheelhouse.sh adds moto[server]'s), else from PyPI.
#   docker build -f deploy/s3.Dockerfile --build-arg PYTHON_IMAGE=reid-local/python:3.11-bookworm -t reid-s3 .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY deploy/wheelhouse/ /wheels/
COPY constraints.txt /tmp/
RUN python3 -m venv /opt/s3 \
 && if ls /wheels/*.whl >/dev/null 2>&1; then \
      /opt/s3/bin/pip install --no-index --find-links /wheels -c /tmp/constraints.txt "moto[server]"; \
    else \
      /opt/s3/bin/pip install -c /tmp/constraints.txt "moto[server]"; \
    fi

FROM ${PYTHON_IMAGE}
ENV PYTHONUNBUFFERED=1 PATH=/opt/s3/bin:$PATH
COPY --from=build /opt/s3 /opt/s3
COPY deploy/s3-server.py /opt/s3-server.py
EXPOSE 5000
HEALTHCHECK --interval=2s --timeout=3s --retries=30 CMD test -f /tmp/s3-ready
CMD ["python", "/opt/s3-server.py", "--port", "5000"]
