# A Python 3.11 base for the project image where python:3.11-slim-bookworm cannot be pulled:
# Debian bookworm's own python3.11 on a local Debian image (deploy/smoke.py builds one with
# debootstrap + docker import). `python3 -m venv` must work; the project image adds the rest.
#   docker build -f deploy/python-base.Dockerfile --build-arg DEBIAN_IMAGE=reid-local/debian:bookworm \
#     -t reid-local/python:3.11-bookworm deploy
ARG DEBIAN_IMAGE=debian:bookworm-slim
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
