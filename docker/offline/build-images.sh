#!/usr/bin/env bash
# The images docker-compose.kafka.yml and the Dockerfile name, for a Docker
# engine that cannot reach a container registry. Each is pulled when a registry
# answers; otherwise it is built here, from Debian packages and Maven Central
# jars, under the same name (tagged locally, never pushed):
#
#   python:3.11-slim-bookworm  Debian bookworm's CPython 3.11 (`python3`, venv) and
#                              tini. Used by the Dockerfile's FROM.
#   apache/kafka:4.1.1         Apache Kafka 4.1.1 (Maven Central jars) on Debian's
#                              JRE 17, one KRaft node. As the official image: the
#                              KAFKA_* variables become server.properties (NODE_ID,
#                              PROCESS_ROLES, LISTENERS, ... as the compose file sets
#                              them), CLUSTER_ID formats the data directory,
#                              KAFKA_HEAP_OPTS sizes the JVM, the tools are under
#                              /opt/kafka/bin (kafka-broker-api-versions.sh, the
#                              healthcheck; kafka-topics.sh; kafka-consumer-groups.sh;
#                              kafka-storage.sh; kafka-metadata-quorum.sh), uid 1000.
#   pgvector/pgvector:pg17     Debian trixie's PostgreSQL 17 with pgvector. As the
#                              official image: POSTGRES_USER, POSTGRES_PASSWORD and
#                              POSTGRES_DB create the cluster on first start, data in
#                              /var/lib/postgresql/data, pg_isready on the PATH,
#                              port 5432, scram-sha-256 over TCP.
#
# Usage: docker/offline/build-images.sh [--force]   (--force rebuilds even when present)
# Needs: a running Docker engine, debootstrap, and Maven (or the jars in
# ~/.cache/ragstream/kafka-image) for the Kafka image. Takes ~3 minutes the first time.
set -euo pipefail
cd "$(dirname "$0")"

force=0
[ "${1:-}" = --force ] && force=1
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${RAGSTREAM_IMAGE_CACHE:-$HOME/.cache/ragstream/images}
KAFKA_VERSION=4.1.1
mkdir -p "$CACHE"

have() { docker image inspect "$1" >/dev/null 2>&1; }

# An official image is pulled when a registry answers (a short timeout: on a
# machine without one the pull fails at once or hangs on the proxy).
pulled() {
    [ "$force" = 1 ] && return 1
    have "$1" && return 0
    timeout 60 docker pull -q "$1" >/dev/null 2>&1
}

debian_base() {
    local suite=$1 name=ragstream-offline/debian:$1
    if have "$name" && [ "$force" = 0 ]; then return; fi
    local root
    root=$(mktemp -d "$CACHE/rootfs-$suite.XXXX")
    echo "debootstrap $suite into $root"
    debootstrap --variant=minbase "$suite" "$root" "$MIRROR" >"$CACHE/debootstrap-$suite.log" 2>&1 \
        || { tail -20 "$CACHE/debootstrap-$suite.log"; exit 1; }
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -c . | docker import - "$name" >/dev/null
    rm -rf "$root"
}

KAFKA_LIBS=$CACHE/kafka-$KAFKA_VERSION-libs
fetch_kafka_jars() {
    if [ ! -f "$KAFKA_LIBS/kafka-tools-$KAFKA_VERSION.jar" ]; then
        mkdir -p "$KAFKA_LIBS"
        mvn -q -B -f kafka/pom.xml -Dkafka.version="$KAFKA_VERSION" dependency:copy-dependencies \
            -DoutputDirectory="$KAFKA_LIBS" -DincludeScope=runtime >&2
    fi
}

build() {
    local name=$1 dir=$2 suite=$3
    debian_base "$suite"
    echo "building $name"
    docker build -t "$name" "$dir" >"$CACHE/build-${name//[:\/]/_}.log" 2>&1 \
        || { tail -30 "$CACHE/build-${name//[:\/]/_}.log"; exit 1; }
}

start=$(date +%s)
pulled python:3.11-slim-bookworm || build python:3.11-slim-bookworm python bookworm
pulled pgvector/pgvector:pg17 || build pgvector/pgvector:pg17 postgres trixie
if ! pulled "apache/kafka:$KAFKA_VERSION"; then
    context=$(mktemp -d)
    trap 'rm -rf "$context"' EXIT
    cp -r kafka/. "$context/"
    fetch_kafka_jars
    cp -r "$KAFKA_LIBS" "$context/libs"
    build "apache/kafka:$KAFKA_VERSION" "$context" bookworm
fi
echo "images ready in $(($(date +%s) - start)) s:"
docker image ls --format '  {{.Repository}}:{{.Tag}}  {{.Size}}' \
    | grep -E 'python:3.11-slim-bookworm|apache/kafka|pgvector/pgvector|ragstream-offline'
