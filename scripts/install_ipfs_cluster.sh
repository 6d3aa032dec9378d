#!/usr/bin/env bash
# Build the pinned IPFS Cluster (ipfs-cluster-service, ipfs-cluster-ctl) from the Go module proxy into a cache
# outside the repository. Like Kubo, its go.mod has replace directives, so `go install ...@version` refuses it:
# download the module and build ./cmd/... inside a copy of it.
#
# One-line patch: clusterhost.go hard-codes `libp2p.NATPortMap()`, which probes the LAN for a router (UPnP SSDP
# multicast, NAT-PMP to the default gateway) on every start. hddm's cluster peers must never send a packet
# outside 127.0.0.0/8, and v1.1.0 has no option to turn it off, so the build drops that one line
# (the marker file `.no-natportmap` records it; a binary without the marker is rebuilt).
set -euo pipefail
: "${CLUSTER_VERSION:?}" "${CLUSTER_DIR:?}"
marker="$CLUSTER_DIR/.no-natportmap"
[ -x "$CLUSTER_DIR/ipfs-cluster-service" ] && [ -x "$CLUSTER_DIR/ipfs-cluster-ctl" ] && [ -f "$marker" ] && exit 0
command -v go >/dev/null || { echo "error: Go is needed to build IPFS Cluster; install Go >= 1.24 (https://go.dev/dl) and retry" >&2; exit 1; }
mkdir -p "$CLUSTER_DIR"
dir=$(go mod download -json "github.com/ipfs-cluster/ipfs-cluster@$CLUSTER_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
src=$(mktemp -d)
trap 'chmod -R u+w "$src"; rm -rf "$src"' EXIT
cp -r "$dir/." "$src/" && chmod -R u+w "$src"
[ "$(grep -c 'libp2p.NATPortMap(),' "$src/clusterhost.go")" = 1 ] || { echo "error: clusterhost.go changed upstream; update the NATPortMap patch in $0" >&2; exit 1; }
sed -i '/libp2p.NATPortMap(),/d' "$src/clusterhost.go"
echo "building IPFS Cluster $CLUSTER_VERSION from $dir (a few minutes, once)" >&2
for cmd in ipfs-cluster-service ipfs-cluster-ctl; do
  (cd "$src" && GOFLAGS=-buildvcs=false go build -o "$CLUSTER_DIR/$cmd.tmp" "./cmd/$cmd")
  mv -f "$CLUSTER_DIR/$cmd.tmp" "$CLUSTER_DIR/$cmd"
done
touch "$marker"
"$CLUSTER_DIR/ipfs-cluster-service" --version
