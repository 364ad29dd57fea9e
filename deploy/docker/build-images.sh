#!/usr/bin/env bash
# Builds the images deploy/compose.yaml runs, from binaries on this machine; nothing is
# pulled from a registry:
#   icn:local             the icn binary (target/release/icn, built if missing, or the
#                         binary given as the first argument) and the libraries it links
#   icn-prometheus:local  Debian's prometheus binary (apt-get install prometheus)
# Usage: deploy/docker/build-images.sh [PATH-TO-ICN]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
icn=${1:-$top/target/release/icn}
if [ ! -x "$icn" ]; then
    (cd "$top" && cargo build --release --bin icn)
fi
prometheus=$(command -v prometheus) || {
    echo "prometheus is not installed: apt-get install prometheus" >&2
    exit 1
}

# stage BINARY DIR: a root filesystem holding BINARY as /usr/local/bin/NAME, every library
# ldd says it links, a passwd naming nobody, /tmp, and /data for the image's state.
stage() {
    local binary=$1 dir=$2
    rm -rf "$dir"
    mkdir -p "$dir/rootfs/usr/local/bin" "$dir/rootfs/etc" "$dir/rootfs/tmp" "$dir/data"
    cp "$binary" "$dir/rootfs/usr/local/bin/"
    for lib in $(ldd "$binary" | grep -o '/[^ ]*'); do
        mkdir -p "$dir/rootfs$(dirname "$lib")"
        cp -L "$lib" "$dir/rootfs$lib"
    done
    printf 'root:x:0:0::/:/nonexistent\nnobody:x:65534:65534::/data:/nonexistent\n' >"$dir/rootfs/etc/passwd"
    chmod 1777 "$dir/rootfs/tmp"
}

build=$top/target/images
stage "$icn" "$build/icn"
docker build -q -t icn:local -f "$here/icn.Dockerfile" "$build/icn"
stage "$prometheus" "$build/prometheus"
docker build -q -t icn-prometheus:local -f "$here/prometheus.Dockerfile" "$build/prometheus"
echo "built icn:local and icn-prometheus:local"
