#!/usr/bin/env bash
# Build the pinned Kubo (IPFS) from the Go module proxy into a cache outside the repository.
# `go install ...@version` refuses modules whose go.mod has replace/exclude directives (Kubo's does),
# so download the module and build ./cmd/ipfs inside it instead.
set -euo pipefail
: "${KUBO_VERSION:?}" "${KUBO_CACHE:?}"
dest="$KUBO_CACHE/ipfs-$KUBO_VERSION"
[ -x "$dest" ] && exit 0
command -v go >/dev/null || { echo "error: Go is needed to build Kubo; install Go >= 1.24 (https://go.dev/dl) and retry" >&2; exit 1; }
mkdir -p "$KUBO_CACHE"
dir=$(go mod download -json "github.com/ipfs/kubo@$KUBO_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
echo "building Kubo $KUBO_VERSION from $dir (a few minutes, once)" >&2
(cd "$dir" && GOFLAGS=-buildvcs=false go build -o "$dest.tmp" ./cmd/ipfs)
mv -f "$dest.tmp" "$dest"
"$dest" version
