#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian machine with Node.js, installing what it needs:
# the Debian packages of the real clients and servers the tests talk to, then npm dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."

# Real peers used by the tests (never mocked): skopeo (OCI client), docker-registry (CNCF
# distribution 2.8, as an upstream), chromium (the web page, driven by playwright-core), openssh-client
# (ssh-keygen reads the keys the registry writes), podman (pulls container images from the
# registry), Ceph's RADOS Gateway (the S3 the storage tests use: it checks signatures;
# scripts/s3-test-server.sh starts it).
APT_PACKAGES=(skopeo podman docker-registry chromium openssh-client radosgw ceph-mon ceph-osd uuid-runtime curl)

. scripts/apt-packages.sh
# The OCI conformance suite (test/oci-conformance.test.ts) is built with Go: Debian's unless
# the machine has one already (e.g. /usr/local/go).
command -v go >/dev/null || [ -x /usr/local/go/bin/go ] || APT_PACKAGES+=(golang-go)
ensure_apt_packages --no-install-recommends "${APT_PACKAGES[@]}"
# distribution's Debian package starts a system service on install; the tests run their own.
if command -v systemctl >/dev/null && systemctl is-active --quiet docker-registry 2>/dev/null; then
  systemctl stop docker-registry || true
fi

npm ci --no-audit --no-fund

# One throwaway Ceph cluster for the whole run (test files run alone start their own).
if [ -z "${OREG_S3_ENDPOINT:-}" ]; then
  CEPH_DIR=$(mktemp -d /tmp/oreg-ceph.XXXXXX)
  trap 'scripts/s3-test-server.sh stop "$CEPH_DIR"; rm -rf "$CEPH_DIR"' EXIT
  OREG_S3_ENDPOINT=$(scripts/s3-test-server.sh start "$CEPH_DIR")
  export OREG_S3_ENDPOINT
fi
npm test
