# Postgres + pgvector from Debian's own packages, for where pgvector/pgvector:pg17 cannot be
# pulled. Debian bookworm has no pgvector package; trixie has postgresql-17-pgvector (0.8.0),
# the same Postgres major as the official image (moving a volume between the two is untested).
# It reads the official image's variables (POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB) and
# keeps its data in the same place (/var/lib/postgresql/data): docker-compose.yml takes it
# unchanged through REID_POSTGRES_IMAGE.
#   docker build -f deploy/postgres.Dockerfile --build-arg DEBIAN_IMAGE=reid-local/debian:trixie \
#     -t reid-local/pgvector:pg17 deploy
ARG DEBIAN_IMAGE=debian:trixie-slim
FROM ${DEBIAN_IMAGE}
# no default cluster: the entrypoint makes one in the volume on first start
RUN mkdir -p /etc/postgresql-common/createcluster.d \
 && echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/no-main.conf \
 && apt-get update \
 && apt-get install -y --no-install-recommends postgresql-17 postgresql-17-pgvector \
 && rm -rf /var/lib/apt/lists/*
ENV PATH=/usr/lib/postgresql/17/bin:$PATH \
    PGDATA=/var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
