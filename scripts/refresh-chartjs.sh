#!/usr/bin/env bash
#
# Refreshes the Chart.js build the gateway embeds (frontend/vendor/chart.umd.js and its
# licence) from npm, at the version pinned in frontend/package.json. The files are kept in
# the repository so that `cargo build` never needs npm or the internet; run this only after
# changing the pinned version (then `npm install --prefix frontend` to update the lock file,
# and commit all four files together).
#
# Usage: scripts/refresh-chartjs.sh
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
frontend=$repo_root/frontend
vendor=$frontend/vendor

command -v npm >/dev/null || {
  echo "refresh-chartjs: npm not found: install Node.js 20+ (Debian/Ubuntu: apt-get install nodejs npm)" >&2
  exit 1
}
version=$(node -p "require('$frontend/package.json').dependencies['chart.js']")
if [[ ! "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
  echo "refresh-chartjs: frontend/package.json pins chart.js as '$version'; pin an exact version" >&2
  exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/refresh-chartjs.XXXXXX")
trap 'rm -rf "$work"' EXIT
# `npm pack` fetches the published tarball exactly as `npm ci` would, without installing.
integrity=$(cd "$work" && npm pack --json --silent "chart.js@$version" |
  node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s)[0].integrity))')
# The lock file records what `npm ci` installs for the browser tests: the embedded copy must
# be the same bytes, or the tests would exercise another Chart.js than the one users get.
locked=$(node -p "require('$frontend/package-lock.json').packages['node_modules/chart.js']?.integrity ?? ''")
if [[ -n "$locked" && "$locked" != "$integrity" ]]; then
  echo "refresh-chartjs: chart.js@$version from npm ($integrity) differs from package-lock.json ($locked);" >&2
  echo "  run 'npm install --prefix frontend' first so that the lock file pins $version" >&2
  exit 1
fi
tar -xzf "$work/chart.js-$version.tgz" -C "$work" package/dist/chart.umd.js package/LICENSE.md

mkdir -p "$vendor"
cp "$work/package/dist/chart.umd.js" "$vendor/chart.umd.js"
cp "$work/package/LICENSE.md" "$vendor/chart.js-LICENSE.md"
echo "refresh-chartjs: frontend/vendor/ now holds Chart.js $version ($integrity)"
