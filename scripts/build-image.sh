#!/usr/bin/env bash
# Build a fasflow Apptainer image, or reuse it when its definition and the lock are unchanged.
#
#   scripts/build-image.sh [cpu|gpu]      (default: cpu; `make image` runs the cpu build)
#
# The image lands in a cache keyed by sha256(definition + requirements/lock.txt):
#   ${FASFLOW_IMAGE_CACHE:-~/.cache/fasflow/images}/fasflow-<flavour>-<hash>.sif
# and containers/fasflow-<version>-<flavour>.sif (the path config key container.image names) is a
# symlink to it. <version> is the definition's org.opencontainers.image.version label: bump it
# whenever the definition or lock changes, because Snakemake only sees the path string and
# would not rerun anything for an image rebuilt under the same name.
# Prints the image path on the last line of stdout.
set -euo pipefail

flavour=${1:-cpu}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
case "$flavour" in
    cpu) def="$repo/containers/fasflow-cpu.def" ;;
    gpu) def="$repo/containers/fasflow.def" ;;
    *) echo "usage: $0 [cpu|gpu]" >&2; exit 2 ;;
esac
lock="$repo/requirements/lock.txt"
for f in "$def" "$lock"; do
    [ -f "$f" ] || { echo "error: $f not found" >&2; exit 1; }
done

if ! command -v apptainer >/dev/null 2>&1; then
    # the project's install location (../shared/tools/install-apptainer.sh)
    if [ -f /opt/apptainer/env.sh ]; then
        # shellcheck disable=SC1091
        source /opt/apptainer/env.sh
    else
        echo "error: apptainer not found; install it (e.g. ../shared/tools/install-apptainer.sh)" >&2
        exit 1
    fi
fi

version=$(awk '$1 == "org.opencontainers.image.version" {print $2; exit}' "$def")
[ -n "$version" ] || { echo "error: $def has no org.opencontainers.image.version label" >&2; exit 1; }
hash=$(cat "$def" "$lock" | sha256sum | cut -c1-16)
cache=${FASFLOW_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fasflow/images}
mkdir -p "$cache"
image="$cache/fasflow-$flavour-$hash.sif"
if [ "$flavour" = cpu ]; then
    link="$repo/containers/fasflow-$version-cpu.sif"
else
    link="$repo/containers/fasflow-$version.sif"
fi

# One build per hash at a time (CI and a developer may ask concurrently).
exec 9>"$cache/.fasflow-$flavour-$hash.lock"
flock 9

if [ -s "$image" ]; then
    echo "reusing $image (definition + lock unchanged)" >&2
else
    binds=()
    # pip inside %post reaches PyPI through this machine's TLS-intercepting proxy: bind its CA (read-only).
    [ -s /etc/ssl/certs/ca-certificates.crt ] &&
        binds+=(--bind /etc/ssl/certs/ca-certificates.crt:/opt/host-ca/ca-certificates.crt:ro)
    # local wheel folder and simple indexes that hold torch/torchvision/nvidia-* (see `pip config list`)
    for d in /opt/wheels /opt/pypi /opt/pypi-more; do
        [ -d "$d" ] && binds+=(--bind "$d:$d:ro")
    done
    # The build unpacks a ~6.8 GB tree under APPTAINER_TMPDIR and writes a 3.4 GiB SIF into the cache.
    for d in "${APPTAINER_TMPDIR:-/tmp}" "$cache"; do
        "$repo/scripts/require-free-space.sh" "$d" "${FASFLOW_IMAGE_MIN_FREE_GB:-11}" \
            "an image build (FASFLOW_IMAGE_MIN_FREE_GB; APPTAINER_TMPDIR / FASFLOW_IMAGE_CACHE move it)"
    done
    tmp="$image.partial.$$"
    trap 'rm -f "$tmp"' EXIT
    start=$(date +%s)
    echo "building $image from $def (log: $image.log)" >&2
    # cd to the repo: %files paths in the definition are relative to it
    if ! (cd "$repo" && apptainer build --force "${binds[@]}" "$tmp" "$def") >"$image.log" 2>&1; then
        tail -n 40 "$image.log" >&2
        echo "error: image build failed; full log: $image.log" >&2
        exit 1
    fi
    mv -f "$tmp" "$image"
    trap - EXIT
    secs=$(($(date +%s) - start))
    echo "built $image in ${secs} s, $(du -h "$image" | cut -f1)" >&2
    echo "build_seconds=$secs size_bytes=$(stat -c %s "$image")" >"$image.stats"
fi

if [ -L "$link" ] && [ "$(readlink "$link")" != "$image" ]; then
    echo "warning: $link pointed to $(readlink "$link"); definition or lock changed without a" \
        "version bump, so Snakemake will not rerun jobs for the new image" >&2
fi
ln -sfn "$image" "$link"
echo "$link"
