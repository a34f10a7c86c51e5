#!/usr/bin/env bash
# Re-fetch the vendored front-end assets at exactly the pinned versions, from the npm registry.
#
# `npm pack` downloads each package's published tarball (nothing is installed,
# no node_modules); the files we serve and each package's LICENSE are copied
# next to this script. Run it after changing a version below, then update
# README.md beside it and commit the result.
set -euo pipefail

HTMX_VERSION=2.0.11
HTMX_WS_VERSION=2.0.4
ASCIINEMA_PLAYER_VERSION=3.18.0

here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# unpack NAME VERSION: the package's tarball, unpacked under $work/NAME/package
unpack() {
    local name="$1" version="$2"
    mkdir -p "$work/$name"
    (cd "$work/$name" && npm pack --silent "$name@$version" >/dev/null && tar -xzf ./*.tgz)
}

# copy NAME FILE...: files from the unpacked package into vendor/NAME/, plus its LICENSE
copy() {
    local name="$1"
    shift
    rm -rf "${here:?}/$name"
    mkdir -p "$here/$name"
    cp "$work/$name/package/LICENSE" "$here/$name/LICENSE"
    for file in "$@"; do
        cp "$work/$name/package/$file" "$here/$name/$(basename "$file")"
    done
}

unpack htmx.org "$HTMX_VERSION"
unpack htmx-ext-ws "$HTMX_WS_VERSION"
unpack asciinema-player "$ASCIINEMA_PLAYER_VERSION"

copy htmx.org dist/htmx.min.js
copy htmx-ext-ws dist/ws.min.js
copy asciinema-player dist/bundle/asciinema-player.min.js dist/bundle/asciinema-player.css

echo "Vendored htmx.org $HTMX_VERSION, htmx-ext-ws $HTMX_WS_VERSION, asciinema-player $ASCIINEMA_PLAYER_VERSION into $here"
