#!/usr/bin/env bash
# A throwaway one-node Ceph cluster (1 mon, 1 memstore OSD, 1 RADOS Gateway) on loopback, the real
# S3 the tests talk to (it checks SigV4 signatures, unlike S3 stand-ins).
#   scripts/s3-test-server.sh start DIR   wipes DIR, starts, prints the endpoint (http://127.0.0.2:PORT)
#   scripts/s3-test-server.sh stop DIR    stops the daemons by pid (SIGTERM, SIGKILL after 10 s)
#   scripts/s3-test-server.sh stop-rgw DIR / start-rgw DIR
#                                         stop or start only the gateway (the S3 endpoint); the
#                                         data stays with the OSD, for tests of a store outage
#   scripts/s3-test-server.sh restart DIR starts a stopped cluster again on its data (needs
#                                         CEPH_STORE=bluestore at start: memstore keeps nothing)
# Environment: RGW_HOST (127.0.0.2), RGW_PORT (40080), MON_PORT (40300), CEPH_STORE (memstore |
#              bluestore: a sparse 8 GiB file in DIR, slower to start, survives a restart),
#              S3_ACCESS_KEY / S3_SECRET_KEY (testaccess / testsecret).
# Settings that each cost a failed start: rgw must accept `ms mon client mode = crc secure` (with
# auth none it loops on "get_initial_auth_request returned -13"); 8 PGs per pool and
# `mon max pg per osd = 1000` (rgw makes ~8 pools); pool size 1 needs `mon allow pool size one`.
# memstore data survives a gateway restart (stop-rgw/start-rgw), not an OSD restart.
set -euo pipefail
cmd=${1:?start|stop}
DIR=${2:?dir}

stop() {
  for name in "$@"; do
    pid=$(awk -v n="$name" '$1==n{print $2}' "$DIR/pids" 2>/dev/null) || true
    [ -n "${pid:-}" ] || continue
    kill -CONT "$pid" 2>/dev/null || true # a test may have frozen it
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
    sed -i "/^$name /d" "$DIR/pids"
  done
}
start_rgw() {
  radosgw -c "$DIR/ceph.conf" -n client.rgw.a -f >>"$DIR/log/rgw.out" 2>&1 &
  echo "rgw $!" >> "$DIR/pids"
  up=0
  for _ in $(seq 1 240); do
    curl -fsS -m 2 -o /dev/null "$(cat "$DIR/endpoint")/" 2>/dev/null && { up=1; break; }
    sleep 0.25
  done
  [ $up = 1 ] || { echo "s3-test-server: radosgw did not come up" >&2; false; }
}
start_mon() {
  ceph-mon -c "$DIR/ceph.conf" -i a -f >>"$DIR/log/mon.a.out" 2>&1 &
  echo "mon $!" >> "$DIR/pids"
}
start_osd() {
  ceph-osd -c "$DIR/ceph.conf" -i 0 -f >>"$DIR/log/osd.0.out" 2>&1 &
  echo "osd $!" >> "$DIR/pids"
  up=0
  for _ in $(seq 1 120); do
    timeout 60 ceph -c "$DIR/ceph.conf" --connect-timeout 30 osd dump 2>/dev/null | grep -q '^osd.0 up' && { up=1; break; }
    sleep 0.5
  done
  [ $up = 1 ] || { echo "s3-test-server: the osd did not come up" >&2; false; }
}
case "$cmd" in
  stop) stop rgw osd mon; exit 0 ;;
  stop-rgw) stop rgw; exit 0 ;;
  start-rgw) start_rgw; exit 0 ;;
  restart)
    stop rgw osd mon
    trap 'echo "s3-test-server: restart failed; logs in $DIR/log" >&2; stop rgw osd mon' ERR
    start_mon; start_osd; start_rgw; exit 0 ;;
  start) ;;
  *) echo "usage: $0 start|stop|stop-rgw|start-rgw|restart DIR" >&2; exit 2 ;;
esac

for tool in ceph-mon ceph-osd radosgw radosgw-admin ceph-authtool monmaptool uuidgen curl; do
  command -v "$tool" >/dev/null || { echo "s3-test-server: $tool is missing (apt-get install radosgw ceph-mon ceph-osd uuid-runtime curl)" >&2; exit 1; }
done
MON_PORT=${MON_PORT:-40300}
RGW_PORT=${RGW_PORT:-40080}
RGW_HOST=${RGW_HOST:-127.0.0.2}
AK=${S3_ACCESS_KEY:-testaccess}
SK=${S3_SECRET_KEY:-testsecret}
rm -rf "$DIR"
mkdir -p "$DIR"/{run,log,mon.a,osd.0,rgw}
trap 'echo "s3-test-server: start failed; logs in $DIR/log" >&2; stop rgw osd mon' ERR
FSID=$(uuidgen)
CONF="$DIR/ceph.conf"
cat > "$CONF" <<CONF
[global]
fsid = $FSID
mon host = [v2:127.0.0.1:$MON_PORT,v1:127.0.0.1:$((MON_PORT + 1))]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind port min = $((MON_PORT + 10))
ms bind port max = $((MON_PORT + 99))
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = true
run dir = $DIR/run
admin socket = $DIR/run/\$name.asok
pid file = $DIR/run/\$name.pid
log file = $DIR/log/\$name.log
keyring = $DIR/keyring
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon max pg per osd = 1000
mon warn on pool no redundancy = false
mon data avail warn = 2
mon data avail crit = 1
[mon.a]
mon data = $DIR/mon.a
[osd.0]
osd data = $DIR/osd.0
osd objectstore = ${CEPH_STORE:-memstore}
memstore device bytes = 8589934592
bluestore block create = true
bluestore block size = 8589934592
bluestore block db create = false
bluestore block wal create = false
bluestore cache autotune = false
bluestore cache size = 134217728
osd memory target = 1073741824
[client.rgw.a]
rgw data = $DIR/rgw
rgw frontends = beast endpoint=$RGW_HOST:$RGW_PORT
rgw thread pool size = 64
ms mon client mode = crc secure
CONF
ceph-authtool --create-keyring "$DIR/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
monmaptool --create --fsid "$FSID" --addv a "[v2:127.0.0.1:$MON_PORT,v1:127.0.0.1:$((MON_PORT + 1))]" "$DIR/monmap" >/dev/null
ceph-mon -c "$CONF" -i a --mkfs --monmap "$DIR/monmap" --keyring "$DIR/keyring"
: > "$DIR/pids"
start_mon
OSD_UUID=$(uuidgen)
OSD_ID=$(timeout 60 ceph -c "$CONF" --connect-timeout 30 osd new "$OSD_UUID")
[ "$OSD_ID" = 0 ] || { echo "s3-test-server: expected osd id 0, got $OSD_ID" >&2; false; }
ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$OSD_UUID" >>"$DIR/log/osd.mkfs.out" 2>&1
start_osd
echo "http://$RGW_HOST:$RGW_PORT" > "$DIR/endpoint"
start_rgw
timeout 60 radosgw-admin -c "$CONF" user create --uid=test --display-name=test --access-key="$AK" --secret-key="$SK" >/dev/null
echo "http://$RGW_HOST:$RGW_PORT"
