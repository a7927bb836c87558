#!/usr/bin/env bash
# Builds the tests' real control plane -- kube-apiserver, etcd, kube-controller-manager --
# from the pinned Go modules in this folder, into a cache folder outside the checkout
# keyed by their versions, and prints that folder. A binary already there is not rebuilt,
# so a second run takes well under a second. A cold build of all three takes about
# 5-7 minutes on 2 cores (Go's module and build caches make later ones faster).
#
#   tests/kube/build.sh [NAME...]      NAME: kube-apiserver, etcd, kube-controller-manager
#
# FINETUNE_KUBE_BIN_DIR, when set, is the folder to use instead of the cache's.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
version_of() { awk -v module="$1" '$1 == module { print $2; exit }' "$here/go.mod"; }
kubernetes=$(version_of k8s.io/kubernetes)
etcd=$(version_of go.etcd.io/etcd/server/v3)
minor=$(echo "$kubernetes" | cut -d. -f2)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/finetune-operator/kube
bin=${FINETUNE_KUBE_BIN_DIR:-$cache/$kubernetes-etcd-$etcd/bin}

names=("$@")
[ ${#names[@]} -gt 0 ] || names=(kube-apiserver etcd kube-controller-manager)

for name in "${names[@]}"; do
    [ -d "$here/cmd/$name" ] || { echo "build.sh: no such binary: $name (see $here/cmd)" >&2; exit 2; }
    [ -x "$bin/$name" ] && continue
    command -v go >/dev/null || { echo "build.sh: $bin/$name is missing and Go is not installed" >&2; exit 1; }
    echo "build.sh: building $name ($kubernetes, etcd $etcd) into $bin ..." >&2
    mkdir -p "$bin"
    started=$SECONDS
    # Stamp the release into the binaries so /version (and kubectl) see v1.37.x.
    (cd "$here" && go build -trimpath -o "$bin/.$name.partial" \
        -ldflags "-X k8s.io/component-base/version.gitVersion=$kubernetes -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor" \
        "./cmd/$name")
    mv "$bin/.$name.partial" "$bin/$name"
    echo "build.sh: $name built in $((SECONDS - started)) s" >&2
done
echo "$bin"
