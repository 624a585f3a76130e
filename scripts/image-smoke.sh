#!/usr/bin/env bash
# Image smoke test: build the container image with podman and use it as an operator would.
# Needs no image registry: the Debian base comes from debootstrap and Node from the npm registry
# (see /work/shared/research/containers.md). Checks: a model seeded into a mounted data folder is
# pulled from the container as ollama pulls (every digest verified), the web catalog (page,
# script, CSS, API) loads in Chromium with the model listed and its page shown, the server runs as
# uid 1000, the HEALTHCHECK says healthy, /readyz and /metrics answer, `ollama-registry` works
# under `exec`, a named volume is writable, `ollama-registry pull` in the image fills it from an
# upstream given by OLLAMA_REGISTRY_UPSTREAM, SIGTERM stops it (exit 0, not the kill after the
# timeout) and it serves again after a restart. Everything it makes lives under one work folder and
# is removed at the end. Every check stops the script on failure (set -e; no check runs inside an
# argument's $(…), where a failure would not count).
#
# Environment: IMAGE_SMOKE_REQUIRED=1  fail (instead of skip) when this machine cannot run containers;
#                                      CI=true does the same (.ci/run sets both)
#              IMAGE_SMOKE_CACHE=DIR    keep the Node base image here between runs (rebuilt weekly)
#              IMAGE_SMOKE_KEEP=1       leave the work folder and images for a look afterwards
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
T_START=$(date +%s%3N)
now() { date +%s%3N; }
secs() { awk -v ms="$1" 'BEGIN { printf "%.1f", ms / 1000 }'; }
say() { printf '[image-smoke] %s\n' "$*"; }
skip() {
  say "SKIP: $*"
  if [ "${IMAGE_SMOKE_REQUIRED:-0}" = 1 ] || [ "${CI:-}" = true ]; then say "FAIL: a skip is a failure here (IMAGE_SMOKE_REQUIRED=1 or CI=true)"; exit 1; fi
  exit 0
}

# Debian packages: podman (and buildah under it), runc (crun 1.8 refuses hybrid cgroups),
# debootstrap (the base image), iptables (port publishing).
APT_PACKAGES=(podman runc debootstrap iptables)
. "$(dirname "$0")/apt-packages.sh"
ensure_apt_packages "${APT_PACKAGES[@]}"
[ "$(id -u)" -eq 0 ] || skip "run as root (rootful podman with overlay storage and debootstrap)"

W=$(mktemp -d /tmp/image-smoke.XXXXXX)
NAME=ollama-registry-smoke
IMAGE=localhost/ollama-registry:smoke
VOLUME=ollama-registry-smoke

# Everything podman keeps goes under $W, so nothing touches the machine's own containers.
mkdir -p "$W/tmp"
cat > "$W/storage.conf" <<EOC
[storage]
driver = "overlay"
graphroot = "$W/storage"
runroot = "$W/run"
EOC
# runc, the ulimits and cgroupfs are what works in sandboxes without CAP_SYS_RESOURCE or systemd;
# they are harmless elsewhere.
cat > "$W/containers.conf" <<EOC
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
tmp_dir = "$W/libpod-tmp"
image_copy_tmp_dir = "$W/tmp"
EOC
export CONTAINERS_STORAGE_CONF=$W/storage.conf CONTAINERS_CONF=$W/containers.conf

cleanup() {
  local rc=$?
  set +e
  if [ "${IMAGE_SMOKE_KEEP:-0}" = 1 ]; then
    say "kept $W (export CONTAINERS_STORAGE_CONF=$W/storage.conf CONTAINERS_CONF=$W/containers.conf)"
    exit $rc
  fi
  [ -z "${UP_PID:-}" ] || kill "$UP_PID" 2>/dev/null
  podman rm -f -v "$NAME" "$NAME-vol" >/dev/null 2>&1
  podman volume rm -f "$VOLUME" >/dev/null 2>&1
  podman rmi -a -f >/dev/null 2>&1
  # Overlay mounts left by an interrupted build would keep the folder busy.
  awk -v w="$W" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r | xargs -r umount -l 2>/dev/null
  rm -rf "$W"
  exit $rc
}
trap cleanup EXIT

podman info >/dev/null 2>"$W/podman-info.err" || skip "podman does not work here: $(tail -1 "$W/podman-info.err")"

# The host's tools build the seed model and drive the checks (compiled while debootstrap downloads).
[ -d node_modules ] || npm ci --no-audit --no-fund
TSC_PID=""
if [ ! -f dist/test/support/image-smoke.js ] || [ -n "$(find src test package.json -newer dist/test/support/image-smoke.js -print -quit)" ]; then
  npx tsc -p . >"$W/tsc.log" 2>&1 &
  TSC_PID=$!
fi
HELPER="node $ROOT/dist/test/support/image-smoke.js"
PORT=$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
VOLPORT=$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")

# 1. Node 22 base image, laid out like the official node:22-bookworm-slim (user node = uid 1000).
ARCH=$(uname -m); case "$ARCH" in x86_64) NODE_ARCH=x64 ;; aarch64) NODE_ARCH=arm64 ;; *) skip "no Node build for $ARCH" ;; esac
CACHE_TAR=""
if [ -n "${IMAGE_SMOKE_CACHE:-}" ]; then
  # Keyed by this script and the ISO week: Debian security updates and Node patch releases
  # reach the base within a week.
  KEY=$( (sed -n '/^# 1\. Node 22 base/,/^# 2\. /p' "$0"; uname -m; date +%G-W%V) | sha256sum | cut -c1-16)
  CACHE_TAR="$IMAGE_SMOKE_CACHE/node-base-$KEY.tar"
fi
T0=$(now)
if [ -n "$CACHE_TAR" ] && [ -f "$CACHE_TAR" ] && podman load -q -i "$CACHE_TAR" >/dev/null 2>&1; then
  say "Node base image loaded from $CACHE_TAR"
else
  mkdir -p "$W/nodebase"
  (cd "$W/nodebase" && npm pack --silent "node-linux-$NODE_ARCH@22" npm@10 >/dev/null 2>"$W/npm-pack.err") &
  PACK_PID=$!
  MIRROR=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$MIRROR" ] || MIRROR=$(awk '$1 == "deb" && $2 ~ /^http/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$MIRROR" ] || MIRROR=http://deb.debian.org/debian
  # .debs apt already holds are reused (debootstrap checks every checksum); the rest is downloaded.
  mkdir -p "$W/debs"
  find /var/cache/apt/archives -maxdepth 1 -name '*.deb' -exec ln -s {} "$W/debs/" \; 2>/dev/null || true
  debootstrap --variant=minbase --cache-dir="$W/debs" bookworm "$W/rootfs" "$MIRROR" >"$W/debootstrap.log" 2>&1 \
    || { tail -5 "$W/debootstrap.log"; exit 1; }
  (cd "$W/rootfs" && rm -rf var/cache/apt/archives/*.deb var/cache/apt/*.bin var/lib/apt/lists/* \
     usr/share/doc/* usr/share/man/* usr/share/locale/* usr/share/info/* var/log/*)
  tar --numeric-owner -C "$W/rootfs" -c . | podman import -q --change 'CMD ["bash"]' - localhost/debian:bookworm-slim >/dev/null
  rm -rf "$W/rootfs" "$W/debs"
  if ! podman run --rm localhost/debian:bookworm-slim true 2>"$W/run.err"; then
    skip "this machine cannot run containers (kernel or cgroup setup, not the project): $(tail -1 "$W/run.err")"
  fi
  say "Debian base: $(secs $(( $(now) - T0 ))) s"
  T1=$(now)
  wait $PACK_PID || { cat "$W/npm-pack.err"; exit 1; }
  cd "$W/nodebase"
  tar -xzf node-linux-*.tgz package/bin/node && mv package/bin/node node && rm -rf package node-linux-*.tgz
  mv npm-*.tgz npm.tgz
  cat > Containerfile <<'EOC'
FROM localhost/debian:bookworm-slim
COPY node /usr/local/bin/node
COPY npm.tgz /tmp/npm.tgz
RUN groupadd --gid 1000 node && useradd --uid 1000 --gid node --shell /bin/bash --create-home node \
 && mkdir -p /usr/local/lib/node_modules/npm \
 && tar -xzf /tmp/npm.tgz -C /usr/local/lib/node_modules/npm --strip-components=1 && rm /tmp/npm.tgz \
 && ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx
CMD ["node"]
EOC
  podman build -q -t localhost/node:22-bookworm-slim . >/dev/null
  cd "$ROOT"
  NODE_VERSION=$(podman run --rm localhost/node:22-bookworm-slim node --version)
  say "Node base: $(secs $(( $(now) - T1 ))) s ($NODE_VERSION)"
  if [ -n "$CACHE_TAR" ]; then
    mkdir -p "$IMAGE_SMOKE_CACHE"
    podman save -q -o "$CACHE_TAR.tmp" localhost/node:22-bookworm-slim && mv "$CACHE_TAR.tmp" "$CACHE_TAR"
  fi
fi
T_BASE=$(( $(now) - T0 ))
[ -z "$TSC_PID" ] || wait "$TSC_PID" || { cat "$W/tsc.log"; exit 1; }

# 2. The project's image, from the repository's Dockerfile. npm inside the build trusts the
# host's CA bundle (TLS-intercepting proxies), uses the host's npm registry, and shares the host's
# npm cache (content-addressed and verified, so the tests' `npm ci` already fetched everything);
# none of it enters the image.
printf 'cafile=/etc/ssl/certs/host-ca.crt\nregistry=%s\nupdate-notifier=false\n' "$(npm config get registry)" > "$W/npmrc"
NPM_CACHE=$(npm config get cache)
mkdir -p "$NPM_CACHE"
T0=$(now)
podman build -q --layers=false --format docker --build-arg BASE=localhost/node:22-bookworm-slim \
  -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/host-ca.crt:ro -v "$W/npmrc:/usr/local/etc/npmrc:ro" \
  -v "$NPM_CACHE:/root/.npm" -t "$IMAGE" . >/dev/null
T_BUILD=$(( $(now) - T0 ))
SIZE=$(podman image inspect --format '{{.Size}}' "$IMAGE")
say "project image: built in $(secs $T_BUILD) s, $(( SIZE / 1000000 )) MB"

# 3. Run it with a data folder holding a model, as `docker run -d -p 8080:8080 -v DIR:/data IMAGE`.
mkdir -p "$W/data"
$HELPER seed "$W/data" >/dev/null
chown -R 1000:1000 "$W/data"
T0=$(now)
# (podman logs errors about systemd health timers where systemd is not PID 1: they go to podman.log.)
podman run -d --name "$NAME" -p "127.0.0.1:$PORT:8080" -v "$W/data:/data" "$IMAGE" >/dev/null 2>>"$W/podman.log"
FIRST_MS=$($HELPER wait "http://127.0.0.1:$PORT/v2/" "$T0" 60)
podman logs "$NAME" >"$W/server.log" 2>&1
NODE_MS=$(awk -F'"startupMs":' 'NF > 1 { split($2, a, /[^0-9]/); print a[1]; exit }' "$W/server.log")
say "run → first answer: $FIRST_MS ms (of which node start → listening: ${NODE_MS:-?} ms)"
BASE_URL="http://127.0.0.1:$PORT"

OUT=$($HELPER pull "$BASE_URL" library/smoke:latest "$W/pulled" "$W/data")
say "$OUT"
OUT=$($HELPER web "$BASE_URL" library/smoke)
say "$OUT"
UIDS=$(podman exec "$NAME" grep '^Uid:' /proc/1/status | awk '{ print $2 $3 }')
[ "$UIDS" = 10001000 ] || { say "FAIL: the server runs as uid $UIDS, not 1000"; exit 1; }
[ "$(stat -c %u "$W/data/.ollama-registry")" = 1000 ] || { say "FAIL: files the server made are not owned by uid 1000"; exit 1; }
say "server process and its files: uid 1000"
podman healthcheck run "$NAME" >/dev/null 2>>"$W/podman.log" || { say "FAIL: healthcheck: $(podman healthcheck run "$NAME" 2>&1 | tail -1)"; exit 1; }
HEALTH=$(podman inspect --format '{{.State.Health.Status}}' "$NAME" 2>/dev/null || podman inspect --format '{{.State.Healthcheck.Status}}' "$NAME")
[ "$HEALTH" = healthy ] || { say "FAIL: health status is $HEALTH"; exit 1; }
say "healthcheck: $HEALTH"
$HELPER wait "$BASE_URL/readyz" "$(now)" 5 >/dev/null
node -e "fetch('$BASE_URL/metrics').then(r=>r.text()).then(t=>{if(!/ollama_registry_http_requests_total\{route=\"blob\",method=\"GET\",status=\"206\"\}/.test(t)||!/ollama_registry_disk_free_bytes \d/.test(t))process.exit(1)})" \
  || { say "FAIL: /metrics lacks the blob requests or disk gauges"; exit 1; }
say "/readyz 200; /metrics counts the pull"
podman logs "$NAME" >"$W/server.log" 2>&1
grep -q '^{"level":30,.*"route":"blob","status":206' "$W/server.log" || { say "FAIL: no JSON request log lines"; exit 1; }
OUT=$(podman exec "$NAME" ollama-registry --version)
say "exec: $OUT"

# 4. Stop (SIGTERM must end it: after the 10 s timeout podman kills it, exit code 137), start
# again, pull again.
T0=$(now)
podman stop -t 10 "$NAME" >/dev/null 2>>"$W/podman.log"
T_STOP=$(( $(now) - T0 ))
CODE=$(podman inspect --format '{{.State.ExitCode}}' "$NAME")
[ "$CODE" = 0 ] || { say "FAIL: exit code after SIGTERM is $CODE, not 0: SIGTERM is not handled"; exit 1; }
T0=$(now)
podman start "$NAME" >/dev/null 2>>"$W/podman.log"
RESTART_MS=$($HELPER wait "$BASE_URL/v2/" "$T0" 60)
OUT=$($HELPER pull "$BASE_URL" library/smoke:latest "$W/pulled-again" "$W/data")
say "stopped in $(secs $T_STOP) s (exit 0); start → first answer: $RESTART_MS ms; $OUT"

# 5. The documented one-liner with a named volume: uid 1000 must be able to write to it.
podman run -d --name "$NAME-vol" -p "127.0.0.1:$VOLPORT:8080" -v "$VOLUME:/data" "$IMAGE" >/dev/null 2>>"$W/podman.log"
$HELPER wait "http://127.0.0.1:$VOLPORT/readyz" "$(now)" 60 >/dev/null
# The README's one-off import of a host folder into the volume, then a pull of what it brought.
podman run --rm -v "$VOLUME:/data" -v "$W/data:/import:ro" "$IMAGE" import /import >"$W/import.log" 2>>"$W/podman.log" \
  || { cat "$W/import.log"; say "FAIL: import into the named volume"; exit 1; }
OUT=$($HELPER pull "http://127.0.0.1:$VOLPORT" library/smoke:latest "$W/pulled-vol" "$W/data")
say "named volume: /readyz 200 (writable by uid 1000); import, then $OUT"

# 6. `ollama-registry pull` in the image, with the upstream given by environment (as the README's
# `-e OLLAMA_REGISTRY_UPSTREAM=…`): a registry on the host's loopback (host network for the
# one-off container) holds library/upsmoke; pulled into the named volume, then served from it.
mkdir -p "$W/updata"
$HELPER seed "$W/updata" upsmoke >/dev/null
UPPORT=$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
node "$ROOT/dist/src/main.js" serve --data "$W/updata" --listen "127.0.0.1:$UPPORT" --log-level warn >"$W/upstream.log" 2>&1 &
UP_PID=$!
$HELPER wait "http://127.0.0.1:$UPPORT/v2/" "$(now)" 30 >/dev/null
podman run --rm --network host -v "$VOLUME:/data" -e "OLLAMA_REGISTRY_UPSTREAM=http://127.0.0.1:$UPPORT" "$IMAGE" pull library/upsmoke:latest >"$W/pull.log" 2>&1 \
  || { cat "$W/pull.log"; say "FAIL: ollama-registry pull in the image from OLLAMA_REGISTRY_UPSTREAM"; exit 1; }
kill "$UP_PID"; wait "$UP_PID" 2>/dev/null || true
OUT=$($HELPER pull "http://127.0.0.1:$VOLPORT" library/upsmoke:latest "$W/pulled-up" "$W/updata")
say "pull in the image from OLLAMA_REGISTRY_UPSTREAM (a loopback registry), then from the volume: $OUT"

say "PASS in $(secs $(( $(now) - T_START ))) s — image $(( SIZE / 1000000 )) MB; base $(secs $T_BASE) s, build $(secs $T_BUILD) s; run → first answer $FIRST_MS ms"
