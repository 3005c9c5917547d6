#!/bin/bash
# relay-hop.sh: what one TURN relay hop costs the machine per round trip,
# coturn against mediaedge with fast_path "on" and "off", at several
# allocation counts (issue 16, "Performance").
#
# For each N in $ALLOCS, size in $SIZES and repetition 1..$REPS it runs
# `mediaedge bench turn` four times, interleaved: --direct (the same N
# client sockets straight to bench's echo peer, no server: the baseline),
# coturn, mediaedge fast_path "on", mediaedge fast_path "off", at the same
# fixed rate. Each run reports the whole machine's busy CPU per round trip
# (/proc/stat: kernel softirq work is charged to whoever runs, so a server
# forwarding in the kernel shows little CPU of its own). The hop's cost is
# that figure minus the direct run's of the same repetition. The table
# holds medians over the repetitions.
#
# Everything runs in a network namespace of its own (mehop) with lo up and
# the ephemeral port range moved off the relay ports; the servers are
# pinned to CPU 1, bench and its echo peer to CPU 0, all under
# prlimit --nofile=20000:20000. Needs root, coturn (turnserver), util-linux
# (taskset, prlimit), iproute2 and Go (unless BIN and HOPTABLE are given).
#
# Environment (defaults in brackets):
#   ALLOCS    allocation counts                   ["100 1000 10000"]
#   SIZES     payload sizes in bytes              ["160 1200"]
#   RATE      round trips per second, aggregate   [20000]
#   DURATION  send phase of each run              [5s]
#   REPS      repetitions                         [3]
#   BIN       mediaedge binary                    [built from this checkout]
#   HOPTABLE  the table program                   [built from this checkout]
#   OUT       where the JSON reports and logs go  [a new /tmp/relay-hop.* directory]
#
# Example: sudo REPS=1 SIZES=160 tools/perf/relay-hop.sh
set -euo pipefail

ALLOCS=${ALLOCS:-"100 1000 10000"}
SIZES=${SIZES:-"160 1200"}
RATE=${RATE:-20000}
DURATION=${DURATION:-5s}
REPS=${REPS:-3}
NS=mehop

die() { echo "relay-hop.sh: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (a network namespace, BPF for fast_path \"on\", taskset, prlimit): run it with sudo"
for t in turnserver ip nsenter taskset prlimit ss; do
	command -v "$t" >/dev/null || die "$t not found (Debian packages: coturn, iproute2, util-linux)"
done

repo=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${OUT:-$(mktemp -d /tmp/relay-hop.XXXXXX)}
mkdir -p "$OUT/runs"
if [ -z "${BIN:-}" ] || [ -z "${HOPTABLE:-}" ]; then
	command -v go >/dev/null || die "go not found: build mediaedge and hoptable, and give BIN and HOPTABLE"
fi
if [ -z "${BIN:-}" ]; then
	BIN=$OUT/mediaedge
	(cd "$repo" && go build -o "$BIN" ./cmd/mediaedge) || die "building mediaedge failed"
fi
if [ -z "${HOPTABLE:-}" ]; then
	HOPTABLE=$OUT/hoptable
	(cd "$repo" && go build -o "$HOPTABLE" ./tools/perf/hoptable) || die "building hoptable failed"
fi

pids=()
cleanup() {
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	for p in "${pids[@]}"; do
		# bounded: a server that ignores SIGTERM for 10 s gets SIGKILL
		for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$p" 2>/dev/null || true
	done
	ip netns del "$NS" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# nsenter execs the command (ip netns exec forks and waits), so that $!
# of a server started through it is the server.
ns() { nsenter --net="/run/netns/$NS" "$@"; }

ip netns del "$NS" 2>/dev/null || true
ip netns add "$NS"
ns ip link set lo up
# bench's client sockets and echo peer take ephemeral ports; the relay
# ports of the three servers lie above them.
ns sysctl -qw net.ipv4.ip_local_port_range="10000 29999"

printf 'bench:benchpass\n' >"$OUT/users"
printf 'benchpass\n' >"$OUT/pw"
chmod 600 "$OUT/users" "$OUT/pw"

cat >"$OUT/turnserver.conf" <<EOF
listening-ip=127.0.0.1
listening-port=3478
relay-ip=127.0.0.1
min-port=30000
max-port=41999
lt-cred-mech
user=bench:benchpass
realm=bench.local
allow-loopback-peers
no-tls
no-dtls
no-cli
no-tcp-relay
no-multicast-peers
no-stdout-log
simple-log
log-file=$OUT/coturn.log
pidfile=$OUT/coturn.pid
EOF

# mediaedge_config NAME PORT RANGE FAST_PATH METRICS
mediaedge_config() {
	cat >"$OUT/$1.yaml" <<EOF
relay:
  enabled: true
  realm: mediaedge.local
  listeners:
    - transport: udp
      addr: 127.0.0.1:$2
  relay_ip: 127.0.0.1
  ports: $3
  fast_path: "$4"
  allowed_peers: [127.0.0.1/32]
  auth:
    users_file: $OUT/users
    generate_user: ""
  limits:
    max_allocations: 30000
    max_allocations_per_user: 30000
    # every bench client comes from 127.0.0.1: the default 200 challenges
    # per second and source would drop most of 10,000 first Allocates
    challenges_per_source: 0
gateway:
  enabled: false
policy:
  enabled: false
control:
  socket: $OUT/$1.sock
metrics:
  listen: 127.0.0.1:$5
EOF
}
mediaedge_config on 3500 42000-53999 on 9481
mediaedge_config off 3502 54000-65535 off 9482

# start NAME CMD...: a server pinned to CPU 1; nsenter, prlimit and
# taskset exec in turn, so $! is the server's own PID.
start() {
	local name=$1
	shift
	# not through ns(): a shell function in the background is a subshell
	nsenter --net="/run/netns/$NS" prlimit --nofile=20000:20000 taskset -c 1 "$@" >"$OUT/$name.out" 2>&1 &
	pids+=($!)
	eval "pid_$name=$!"
}

# wait_udp PORT PID: until something listens on the port (10 s at most).
wait_udp() {
	for _ in $(seq 100); do
		kill -0 "$2" 2>/dev/null || return 1
		[ -n "$(ns ss -Hlun "sport = :$1")" ] && return 0
		sleep 0.1
	done
	return 1
}

start coturn turnserver -c "$OUT/turnserver.conf"
start on "$BIN" run --config "$OUT/on.yaml"
start off "$BIN" run --config "$OUT/off.yaml"
wait_udp 3478 "$pid_coturn" || die "coturn did not start: $(tail -5 "$OUT/coturn.out" "$OUT/coturn.log" 2>/dev/null)"
wait_udp 3500 "$pid_on" || die "mediaedge fast_path on did not start: $(tail -5 "$OUT/on.out")"
wait_udp 3502 "$pid_off" || die "mediaedge fast_path off did not start: $(tail -5 "$OUT/off.out")"
for p in "$pid_coturn" "$pid_on" "$pid_off"; do
	case $(cat "/proc/$p/comm" 2>/dev/null) in
	turnserver | "$(basename "$BIN" | cut -c1-15)") ;;
	*) die "pid $p is not a server but $(cat "/proc/$p/comm" 2>/dev/null)" ;;
	esac
done
echo "relay-hop.sh: coturn pid $pid_coturn, mediaedge on $pid_on, off $pid_off; reports in $OUT" >&2

# udp_rcvbuf_errors: datagrams the namespace dropped on a full socket
# receive buffer (/proc/net/snmp, Udp RcvbufErrors).
udp_rcvbuf_errors() {
	ns awk '/^Udp:/ { if (!h) { for (i = 1; i <= NF; i++) if ($i == "RcvbufErrors") c = i; h = 1 } else print $c }' /proc/net/snmp
}

# sched_ms PID: milliseconds the process's threads ran and waited
# runnable for a CPU (/proc/PID/task/*/schedstat), "run wait".
sched_ms() {
	cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ r += $1; w += $2 } END { printf "%d %d", r / 1e6, w / 1e6 }'
}

printf '%s\n' "allocations size rep target rcvbuf_drops server_run_ms server_wait_ms" >"$OUT/diag.txt"

# bench TARGET FILE PID ARGS...: one run, pinned to CPU 0, bounded in
# time; PID (0 for none) is the server whose scheduling is noted.
bench() {
	local target=$1 file=$2 pid=$3
	shift 3
	local d0 s0 d1 s1
	d0=$(udp_rcvbuf_errors)
	s0=$( [ "$pid" = 0 ] && echo "0 0" || sched_ms "$pid")
	if ! ns prlimit --nofile=20000:20000 timeout 600 taskset -c 0 "$BIN" bench turn --json --quiet \
		--label "$target" "$@" >"$file" 2>>"$OUT/bench.log"; then
		# exit 2 = loss or failed set-ups, still a report; anything else
		# leaves no JSON and the table shows the run as failed.
		[ -s "$file" ] || echo "relay-hop.sh: $target run failed, see $OUT/bench.log" >&2
	fi
	d1=$(udp_rcvbuf_errors)
	s1=$( [ "$pid" = 0 ] && echo "0 0" || sched_ms "$pid")
	local r0 w0 r1 w1
	read -r r0 w0 <<<"$s0"
	read -r r1 w1 <<<"$s1"
	# n, size and rep are the loop's below
	echo "$n $size $rep $target $((d1 - d0)) $((r1 - r0)) $((w1 - w0))" >>"$OUT/diag.txt"
}

for rep in $(seq "$REPS"); do
	for n in $ALLOCS; do
		for size in $SIZES; do
			base="$OUT/runs/n$n-s$size-r$rep"
			common=(--allocations "$n" --size "$size" --rate "$RATE" --duration "$DURATION")
			echo "relay-hop.sh: rep $rep, $n allocations, $size B" >&2
			bench direct "$base-direct.json" 0 --direct "${common[@]}"
			bench coturn "$base-coturn.json" "$pid_coturn" --server 127.0.0.1:3478 --user bench --password-file "$OUT/pw" \
				--pid "$pid_coturn" "${common[@]}"
			bench fastpath-on "$base-fastpath-on.json" "$pid_on" --server 127.0.0.1:3500 --user bench --password-file "$OUT/pw" \
				--pid "$pid_on" "${common[@]}"
			bench fastpath-off "$base-fastpath-off.json" "$pid_off" --server 127.0.0.1:3502 --user bench --password-file "$OUT/pw" \
				--pid "$pid_off" "${common[@]}"
		done
	done
done

{
	echo "relay hop per round trip: $RATE rt/s, $DURATION per run, medians of $REPS, $(date -u +%FT%TZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"
	echo
	"$HOPTABLE" "$OUT"/runs/*.json
	echo
	echo "Per run: UDP datagrams dropped on full receive buffers in the namespace (any socket),"
	echo "and the server's threads' time running and waiting runnable for a CPU (schedstat):"
	echo
	column -t "$OUT/diag.txt"
} | tee "$OUT/table.md"
