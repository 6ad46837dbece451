#!/usr/bin/env bash
# Installs the browser the page tests drive: Debian's chromium (Playwright uses it through its
# executable_path; no browser is downloaded). Pinned: bookworm-security's current build, or,
# once the security mirror has moved past it, bookworm's own release build, which never leaves.
# Prints the path of the browser.
set -euo pipefail

PINNED_VERSIONS=("156.0.8078.129-1~deb12u1" "150.0.7871.100-1~deb12u1")

installed_version() {
  dpkg-query -W -f='${Status} ${Version}\n' chromium 2>/dev/null | awk '$3 == "installed" {print $4}'
}

current=$(installed_version || true)
for version in "${PINNED_VERSIONS[@]}"; do
  if [ "$current" = "$version" ]; then
    command -v chromium
    exit 0
  fi
done

as_root=()
if [ "$(id -u)" -ne 0 ]; then as_root=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq >&2
for version in "${PINNED_VERSIONS[@]}"; do
  if "${as_root[@]}" apt-get install -y -qq --no-install-recommends \
      "chromium=$version" "chromium-common=$version" fonts-liberation >&2; then
    command -v chromium
    exit 0
  fi
  echo "chromium $version is not available here; trying the next pinned build" >&2
done
echo "none of the pinned chromium builds (${PINNED_VERSIONS[*]}) could be installed" >&2
exit 1
