#!/usr/bin/env bash
# Prints the path of a promtool (the rule checker of tests/deploy/test_alert_rules.py):
# one on PATH, else one built once from the Go module proxy into .tools/bin.
set -euo pipefail
cd "$(dirname "$0")/../.."
VERSION=v0.316.0  # Prometheus 3.x's Go module version
if command -v promtool >/dev/null 2>&1; then command -v promtool; exit 0; fi
BIN="$PWD/.tools/bin"
if [ ! -x "$BIN/promtool" ]; then
    command -v go >/dev/null 2>&1 || { echo "promtool.sh: no promtool and no go" >&2; exit 1; }
    mkdir -p "$BIN"
    GOBIN="$BIN" GOFLAGS=-mod=mod go install "github.com/prometheus/prometheus/cmd/promtool@$VERSION" >&2
fi
echo "$BIN/promtool"
