# One image for the user code server and every run container (DockerRunLauncher).
#   docker build -t reid-pipeline .                                # CPU: YuNet + SFace, dlib, insightface on onnxruntime, from PyPI
#   docker build --build-arg VARIANT=gpu -t reid-pipeline:gpu .    # onnxruntime-gpu
# Without a registry or without PyPI in the build (see docs/deployment.md):
#   deploy/wheelhouse.sh                                            # wheels made on the host, into deploy/wheelhouse/
#   docker build --build-arg PYTHON_IMAGE=reid-local/python:3.11-bookworm -t reid-pipeline .
# When deploy/wheelhouse/ holds wheels, pip installs from them only (--no-index): no
# certificate, index or credential enters a layer.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build stage: the dependencies' virtual environment (compilers and wheels stay here) ----
FROM ${PYTHON_IMAGE} AS build
ARG VARIANT=insightface
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY deploy/wheelhouse/ /wheels/
COPY pyproject.toml constraints.txt ./
# From the wheelhouse: no index, no compiler. From PyPI: insightface's Cython part needs one.
RUN python3 -m venv /opt/venv \
 && python3 -c "import sys, tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies'][sys.argv[1]]))" "${VARIANT}" > requirements.txt \
 && if ls /wheels/*.whl >/dev/null 2>&1; then \
      /opt/venv/bin/pip install --no-index --find-links /wheels -c constraints.txt \
        -r requirements.txt "dagster-docker>=0.29" "setuptools>=70.1,<81"; \
    else \
      apt-get update && apt-get install -y --no-install-recommends build-essential \
      && /opt/venv/bin/pip install -c constraints.txt -r requirements.txt "dagster-docker>=0.29" "setuptools>=70.1,<81"; \
    fi \
 # insightface declares the CPU build of onnxruntime, which shares onnxruntime-gpu's package
 # folder and shadows it (no CUDA provider): remove it, then lay the GPU build down again whole
 && if [ "${VARIANT}" = gpu ]; then \
      /opt/venv/bin/pip uninstall -y onnxruntime \
      && /opt/venv/bin/pip install --no-deps --force-reinstall -c constraints.txt \
        $(ls /wheels/*.whl >/dev/null 2>&1 && echo --no-index --find-links /wheels) "onnxruntime-gpu>=1.31" \
      && /opt/venv/bin/python -c "import onnxruntime as o; assert 'CUDAExecutionProvider' in o.get_available_providers()"; \
    fi

# --- runtime image ---------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
ARG VARIANT=insightface
ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH \
    DAGSTER_HOME=/opt/dagster/home \
    REID_HOME=/data \
    REID_DATA_ROOT=/data \
    REID_INBOX=/inbox \
    REID_SQL_DIR=/opt/dagster/app/sql

# libgl/glib for OpenCV (insightface pulls the non-headless wheel)
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/*

COPY --from=build /opt/venv /opt/venv
# The project last, on top of the 1.7 GB of dependencies: an edit of the code rebuilds only
# the layers from here on (seconds), never the dependencies.
COPY pyproject.toml README.md /tmp/reid-src/
COPY reid_pipeline /tmp/reid-src/reid_pipeline
# pip check, less (GPU variant) insightface's claim on the CPU onnxruntime, replaced above
RUN pip install --no-cache-dir --no-deps --no-build-isolation /tmp/reid-src \
 && broken="$(pip check | grep -v '^No broken requirements' \
      | { if [ "${VARIANT}" = gpu ]; then grep -v '^insightface .* requires onnxruntime, which is not installed'; else cat; fi; } || true)" \
 && { [ -z "$broken" ] || { echo "$broken"; exit 1; }; } \
 && rm -rf /tmp/reid-src
WORKDIR /opt/dagster/app
# Dagster code (loaded from the checkout, as in Dagster's own Docker example) and schema
COPY assets ./assets
COPY resources ./resources
COPY sql ./sql
COPY definitions.py workspace.yaml ./
RUN mkdir -p "$DAGSTER_HOME" /data /inbox
COPY deploy/dagster.yaml $DAGSTER_HOME/dagster.yaml

EXPOSE 4000
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-f", "definitions.py", "--working-directory", "/opt/dagster/app"]
