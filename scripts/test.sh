#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian machine with Node.js, installing what it needs:
# the Debian packages of the real clients and servers the tests talk to, then npm dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."

# Real peers used by the tests (never mocked): skopeo (OCI client), docker-registry (CNCF
# distribution 2.8, as an upstream), chromium (the web page, driven by playwright-core).
APT_PACKAGES=(skopeo docker-registry chromium)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# distribution's Debian package starts a system service on install; the tests run their own.
if command -v systemctl >/dev/null && systemctl is-active --quiet docker-registry 2>/dev/null; then
  systemctl stop docker-registry || true
fi

npm ci --no-audit --no-fund
npm test
