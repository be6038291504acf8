# Postgres + pgvector from Debian bookworm's packages (postgresql-15, postgresql-15-pgvector
# 0.4.x... see `apt-cache policy`), for where pgvector/pgvector:pg17 cannot be pulled. It reads
# the same variables as the official image (POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB) and
# keeps its data in the same place (/var/lib/postgresql/data), so docker-compose.yml takes it
# unchanged through REID_POSTGRES_IMAGE. A volume made by one major version (15 here, 17 in
# the official image) cannot be opened by the other.
#   docker build -f deploy/postgres.Dockerfile --build-arg DEBIAN_IMAGE=reid-local/debian:bookworm \
#     -t reid-local/pgvector:pg15 deploy
ARG DEBIAN_IMAGE=debian:bookworm-slim
FROM ${DEBIAN_IMAGE}
# no default cluster: the entrypoint makes one in the volume on first start
RUN mkdir -p /etc/postgresql-common/createcluster.d \
 && echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/no-main.conf \
 && apt-get update \
 && apt-get install -y --no-install-recommends postgresql-15 postgresql-15-pgvector \
 && rm -rf /var/lib/apt/lists/*
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
