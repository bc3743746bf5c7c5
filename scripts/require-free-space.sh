#!/usr/bin/env bash
# Stop before a step that cannot fit on the disk, instead of half way through it.
#
#   scripts/require-free-space.sh DIR GB WHAT
#
# Exits 0 when the filesystem holding DIR has at least GB gigabytes free, else prints
# "error: WHAT needs GB GB free in DIR, found N GB" to stderr and exits 1.
set -euo pipefail

[ $# -eq 3 ] || { echo "usage: $0 DIR GB WHAT" >&2; exit 2; }
dir=$1 need_gb=$2 what=$3
free_gb=$(df -P --block-size=1G "$dir" | awk 'NR == 2 {print $4}')
echo "disk: ${free_gb} GB free in $dir, ${need_gb} GB needed for $what" >&2
if ((free_gb < need_gb)); then
    df -h "$dir" >&2
    echo "error: $what needs ${need_gb} GB free in $dir, found ${free_gb} GB;" \
        "free some (old clones, superseded images in ~/.cache/fasflow/images) and rerun" >&2
    exit 1
fi
