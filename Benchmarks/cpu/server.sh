# Shared by enroll-cpu and checkin-cpu (sourced, not run): a release `devid serve` as its own process in a temporary
# data directory, rate limits off, one tenant and a minted, imported lot; and the bare-handshake baseline.
BIN=${BIN:-.build-release/release}
WORK=$(mktemp -d /tmp/devid-cpu.XXXXXX)
SERVER=
cleanup() {
    if [ -n "$SERVER" ]; then kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

export DEVID_CA_PASSPHRASE=devid-cpu-benchmark
for scope in SOURCE DEVICE CLAIM_TOKEN TENANT GLOBAL; do export "DEVID_LIMITS_${scope}_PER_SECOND=0"; done
export DEVID_LIMITS_ENROLLMENTS_IN_FLIGHT=0

ticks_per_second=$(getconf CLK_TCK)
# utime + stime of a process, in clock ticks (fields 14 and 15 of /proc/PID/stat).
cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }

# start_server LOT_SIZE: starts the server, sets SERVER (pid) and PORT, mints and imports LOT_SIZE devices into
# $WORK/lot (tenant "bench").
start_server() {
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)   ($(date -u +%FT%TZ), commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- Sources || echo ' + uncommitted changes'))"
    "$BIN/devid" serve --data-dir "$WORK/data" --est-host 127.0.0.1 --est-port 0 --ops-host 127.0.0.1 --ops-port 0 \
        --log-level error >"$WORK/serve.log" 2>&1 &
    SERVER=$!
    for _ in $(seq 1 600); do [ -s "$WORK/data/server.json" ] && break; sleep 0.1; done
    [ -s "$WORK/data/server.json" ] || { cat "$WORK/serve.log"; echo "server did not start" >&2; exit 1; }
    PORT=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["estURL"].rsplit(":",1)[1])' \
        "$WORK/data/server.json")
    "$BIN/devid" tenant create bench --data-dir "$WORK/data" >/dev/null
    "$BIN/devid" factory mint --data-dir "$WORK/data" --lot L-CPU --tenant bench --count "$1" --out "$WORK/lot" >/dev/null
    "$BIN/devid" device import "$WORK/lot/manifest.json" --data-dir "$WORK/data" >/dev/null
}

# handshake LABEL [s_time arguments]: 5 s of `openssl s_time -new` (a full handshake per connection, no request)
# against the EST listener; the server's CPU ÷ handshakes.
handshake() {
    local before after count
    before=$(cpu_ticks "$SERVER")
    count=$(openssl s_time -connect "127.0.0.1:$PORT" -new -time 5 "${@:2}" 2>/dev/null \
        | awk '/connections in/ && /real/ { print $1; exit }')
    after=$(cpu_ticks "$SERVER")
    awk -v l="$1" -v c="$count" -v t=$((after - before)) -v hz="$ticks_per_second" \
        'BEGIN { printf "%-44s %6d handshakes, server CPU %.2f s = %.3f ms per handshake\n", l, c, t/hz, t*1000/hz/c }'
}

# device_at INDEX: the device id of the INDEX-th minted device (from 0; -1 is the last).
device_at() {
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["devices"][int(sys.argv[2])]["deviceID"])' \
        "$WORK/lot/manifest.json" "$1"
}
