#!/usr/bin/env bash
# mypy over the whole import package, the top-level flows/, tasks/ and blocks/ included: they
# are subpackages of prefect_mltrain mapped from other folders (pyproject's package-dir), which
# mypy cannot follow, so it checks a tree of links laid out as the installed package.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tree="$(mktemp -d)"
trap 'rm -rf "$tree"' EXIT
mkdir "$tree/prefect_mltrain"
for entry in "$root"/prefect_mltrain/*; do ln -s "$entry" "$tree/prefect_mltrain/"; done
for sub in flows tasks blocks; do ln -s "$root/$sub" "$tree/prefect_mltrain/$sub"; done
cd "$tree"
exec "$root/.venv/bin/mypy" --config-file "$root/pyproject.toml" -p prefect_mltrain "$@"
