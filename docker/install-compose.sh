#!/usr/bin/env bash
# Docker Compose v2 as a CLI plugin, where `docker compose` is missing: Debian
# bookworm ships only compose v1, so the plugin binary (it needs only libc) is
# taken from Debian trixie's docker-compose package, fetched with apt into a
# private directory (the system's sources are not changed). Needs root.
set -euo pipefail

if docker compose version >/dev/null 2>&1; then
    exit 0
fi
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/archives/partial" "$work/deb"
echo "deb $MIRROR trixie main" >"$work/sources.list"
apt_opts=(-q -o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
          -o "Dir::State::Lists=$work/lists" -o "Dir::Cache::Archives=$work/archives"
          -o APT::Sandbox::User=root)
apt-get "${apt_opts[@]}" update >/dev/null
(cd "$work/deb" && apt-get "${apt_opts[@]}" download docker-compose >/dev/null)
dpkg-deb -x "$work"/deb/docker-compose_*.deb "$work/x"
install -D -m 0755 "$work/x/usr/libexec/docker/cli-plugins/docker-compose" \
    /usr/local/lib/docker/cli-plugins/docker-compose
docker compose version
