#!/bin/sh
# The entrypoint of the ragstream image: the first argument picks the role.
# Every role is a `ragstream` command; the stage names and their validation
# live in ragstream/topology.py and the CLI, not here.
set -eu

PROG=ragstream-entrypoint
RUN_DIR=${RAGSTREAM_RUN_DIR:-/tmp}
ROLE_FILE="$RUN_DIR/ragstream-role"
ROLES="api worker migrate topics monitor"

usage() {
    cat <<EOF
usage: $PROG ROLE [ARGS...]

roles:
  api                 the HTTP API (port \$RAGSTREAM_API_PORT, 8000 in the image)
  worker STAGE        one stage's consumer; STAGE is one of \`ragstream worker --help\`
  migrate [REVISION]  bring the database schema to the Alembic head, then exit
  topics              declare every stage topic and its DLQ (idempotent), then exit
  monitor             the stuck-document watchdog and throughput monitor

other commands:
  ragstream ARGS...   any ragstream command (replay, status, dlq, ingest, ...)
  healthcheck         probe the role running in this container (the HEALTHCHECK)
  roles               each role and the ragstream command it runs
  version             the installed ragstream version
  help                this text
EOF
}

# The ragstream command of a role (word-split on purpose: "topics create").
command_for() {
    case "$1" in
        api) echo "api" ;;
        worker) echo "worker" ;;
        migrate) echo "migrate" ;;
        topics) echo "topics create" ;;
        monitor) echo "monitor" ;;
        *) return 1 ;;
    esac
}

# The first role started in a container is the one `healthcheck` probes; a
# later `docker exec ... ragstream-entrypoint ...` does not replace it.
remember_role() {
    if [ ! -e "$ROLE_FILE" ]; then
        printf '%s\n' "$1" 2>/dev/null >"$ROLE_FILE" || true
    fi
}

# GET http://<this container's address>:PORT/PATH answers 200. The address is
# the one the container's hostname resolves to (what other containers and the
# published port reach), never the loopback: a server bound only to 127.0.0.1
# is unreachable for its clients, so it must fail the check.
http_ok() {
    python3 - "$1" "$2" <<'EOF'
import socket
import sys
import urllib.request

address = socket.gethostbyname(socket.gethostname())
url = f"http://{address}:{sys.argv[1]}{sys.argv[2]}"
try:
    with urllib.request.urlopen(url, timeout=5) as response:
        sys.exit(0 if response.status == 200 else 1)
except Exception as exc:
    print(f"unhealthy: {url}: {exc}", file=sys.stderr)
    sys.exit(1)
EOF
}

healthcheck() {
    role=$(cat "$ROLE_FILE" 2>/dev/null || true)
    case "$role" in
        api)
            http_ok "${RAGSTREAM_API_PORT:-8000}" /healthz
            ;;
        worker)
            port=${RAGSTREAM_HEALTH_PORT:-0}
            if [ "$port" = 0 ]; then
                echo "$PROG: RAGSTREAM_HEALTH_PORT is 0 (a random port): cannot probe the worker" >&2
                exit 1
            fi
            http_ok "$port" /livez
            ;;
        monitor)
            http_ok "${RAGSTREAM_MONITOR_METRICS_PORT:-9108}" /metrics
            ;;
        migrate | topics)
            exit 0
            ;;
        "")
            echo "$PROG: no role has started in this container" >&2
            exit 1
            ;;
        *)
            echo "$PROG: unknown role '$role' in $ROLE_FILE" >&2
            exit 1
            ;;
    esac
}

if [ $# -eq 0 ]; then
    usage >&2
    exit 64
fi

role=$1
shift

if cmd=$(command_for "$role"); then
    if [ "$role" = worker ] && [ $# -eq 0 ]; then
        echo "$PROG: the worker role needs a stage: worker STAGE (see: ragstream worker --help)" >&2
        exit 64
    fi
    remember_role "$role"
    # shellcheck disable=SC2086 # the command is one or two words
    exec ragstream $cmd "$@"
fi

case "$role" in
    ragstream)
        exec ragstream "$@"
        ;;
    healthcheck)
        healthcheck
        ;;
    roles)
        for name in $ROLES; do
            printf '%s\tragstream %s\n' "$name" "$(command_for "$name")"
        done
        ;;
    version | --version)
        exec python3 -c 'from importlib.metadata import version; print("ragstream", version("ragstream"))'
        ;;
    help | -h | --help)
        usage
        ;;
    *)
        echo "$PROG: unknown role '$role'; one of: $ROLES (or: ragstream, healthcheck, roles, version, help)" >&2
        exit 64
        ;;
esac
