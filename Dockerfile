# One image for the user code server and every run container (DockerRunLauncher).
#   docker build -t reid-pipeline .                     # CPU: dlib + insightface on onnxruntime
#   docker build --build-arg VARIANT=gpu -t reid-pipeline:gpu .   # onnxruntime-gpu
FROM python:3.11-slim-bookworm

ARG VARIANT=insightface
ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/home \
    REID_HOME=/data \
    REID_DATA_ROOT=/data \
    REID_INBOX=/inbox \
    REID_SQL_DIR=/opt/dagster/app/sql

# libgl/glib for OpenCV (insightface pulls the non-headless wheel), build tools for insightface's Cython part
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 build-essential \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/dagster/app
COPY pyproject.toml README.md constraints.txt ./
COPY reid_pipeline ./reid_pipeline
RUN pip install --no-cache-dir -c constraints.txt ".[${VARIANT}]" "dagster-docker>=0.29"

# Dagster code (loaded from the checkout, as in Dagster's own Docker example) and schema
COPY assets ./assets
COPY resources ./resources
COPY sql ./sql
COPY definitions.py workspace.yaml ./
RUN mkdir -p "$DAGSTER_HOME" /data /inbox
COPY deploy/dagster.yaml $DAGSTER_HOME/dagster.yaml

EXPOSE 4000
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-f", "definitions.py", "--working-directory", "/opt/dagster/app"]
