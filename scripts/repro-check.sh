#!/usr/bin/env bash
# Checks that the filter build is reproducible: builds the module twice with
# scripts/build-filter.sh, from this checkout and from a copy of its tracked files in
# another directory, under two different CARGO_HOMEs and target directories, and
# compares the sha256s. Two cold builds: minutes, so it is not part of scripts/test.sh
# (which checks the cheap symptom, scripts/wasm-paths-check.sh); run it after changing
# the toolchain, the build flags or the dependencies.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cargo_home=$(cd "${CARGO_HOME:-$HOME/.cargo}" && pwd)

# Build 1: this checkout and CARGO_HOME, a fresh target directory.
CARGO_TARGET_DIR="$tmp/target-one" scripts/build-filter.sh -q
one=$(sha256sum "$tmp/target-one/wasm32-wasip1/release/meshauth_filter.wasm" | cut -d' ' -f1)

# Build 2: the tracked and new files (with their uncommitted edits) elsewhere, another
# CARGO_HOME holding a copy of the registry (no network needed), another target.
mkdir -p "$tmp/elsewhere/checkout" "$tmp/other-cargo-home"
git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$tmp/elsewhere/checkout"
cp -r "$cargo_home/registry" "$tmp/other-cargo-home/"
(cd "$tmp/elsewhere/checkout" &&
  CARGO_HOME="$tmp/other-cargo-home" CARGO_TARGET_DIR="$tmp/target-two" \
    scripts/build-filter.sh -q --offline)
two=$(sha256sum "$tmp/target-two/wasm32-wasip1/release/meshauth_filter.wasm" | cut -d' ' -f1)

echo "repro-check: $one (this checkout, $cargo_home)"
echo "repro-check: $two (a copy elsewhere, another CARGO_HOME)"
[ "$one" = "$two" ] || { echo "repro-check: the two builds differ" >&2; exit 1; }
echo "repro-check: reproducible"
