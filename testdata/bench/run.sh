#!/usr/bin/env bash
# Side-by-side WebSocket proxy benchmark: wsedge against nginx (ip_hash and
# hash consistent), HAProxy (balance source) and Caddy (ip_hash), all on
# loopback on this machine, with `wsedge bench` as the load generator and
# the echo backends, and for the broadcast figure a chat room whose three
# servers (`wsedge demo backends`) fan out through Redis. See BENCHMARKS.md
# for what each figure means.
#
#   testdata/bench/run.sh [--quick] [--rounds N] [--idle-conns N]
#                         [--proxies "wsedge nginx-ip_hash ..."]
#                         [--figures "echo-1000x64 ..."] [--out FILE]
#                         [--tls [--tls-curves LIST] | --proxy-protocol]
#
# Run as root on Debian 12 with Go installed: it installs the anchors with
# apt-get when missing (their packaged services are kept from starting),
# builds wsedge from this checkout, then for every round visits every proxy
# and every figure: start the proxy with its config here, run the load,
# stop it. It prints a markdown table of medians and writes every raw
# result to --out (default bench-results.json). All traffic stays on
# 127.0.0.0/8. --quick: one round, short durations, for development.
# broadcast-1000: 1,000 clients in a chat room on three servers (one
# process on 127.0.101.1:9001-9003, fanning out through redis-server on
# 127.0.101.100:6379, both started here), one 64-byte message every 100 ms,
# each timed from its send to its arrival at every client.
# --tls: every proxy terminates TLS (wss://) with one self-signed ECDSA
# P-256 certificate made here, from its *-tls config; full handshakes
# only; --tls-curves pins the key exchanges the client offers (default:
# Go's). --proxy-protocol: every connection opens with a PROXY protocol v1
# header, each proxy on its *-proxyproto config (Caddy only where it has
# the proxy_protocol listener wrapper, which Debian's 2.6.2 lacks).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)

rounds=3
idle_conns=9000
proxies="wsedge nginx-ip_hash nginx-consistent haproxy caddy"
figures=
out=$PWD/bench-results.json
mode=plain # or tls, proxy-protocol
tls_curves=
idle_conns_set=
echo_duration=4s
echo_warmup=1s
hs_duration=4s
hs_warmup=1s
bc_warmup=2s
idle_hold=3s
idle_ramp=5000/s
while [ $# -gt 0 ]; do
	case $1 in
	--quick) rounds=1 echo_duration=2s echo_warmup=0.5s hs_duration=2s hs_warmup=0.5s bc_warmup=1s idle_hold=1s ;;
	--rounds) rounds=$2; shift ;;
	--idle-conns) idle_conns=$2 idle_conns_set=1; shift ;;
	--proxies) proxies=$2; shift ;;
	--figures) figures=$2; shift ;;
	--out) out=$2; shift ;;
	--tls | --proxy-protocol)
		# Both at once (a PROXY header, then TLS) would need configs of
		# its own; `wsedge bench` itself can send it.
		[ $mode = plain ] || { echo "run.sh: --tls and --proxy-protocol are measured apart" >&2; exit 2; }
		mode=${1#--} ;;
	--tls-curves) tls_curves=$2; shift ;;
	-h | --help) sed -n '2,30p' "$0"; exit 0 ;;
	*) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
if [ -n "$tls_curves" ] && [ $mode != tls ]; then
	echo "run.sh: --tls-curves goes with --tls" >&2
	exit 2
fi

# What each mode measures by default, the config of each proxy in it (a
# proxy with none is left out), what the client puts beneath the
# WebSocket handshake and the title over the table.
scheme=ws
client_args=() # added to every `wsedge bench` client run
declare -A config=([wsedge]=wsedge.toml [nginx-ip_hash]=nginx-ip_hash.conf [nginx-consistent]=nginx-consistent.conf
	[haproxy]=haproxy.cfg [caddy]=Caddyfile)
case $mode in
plain)
	default_figures="idle echo-1000x64 echo-1000x4k echo-100x64 echo-100x64-10k handshake-50 broadcast-1000"
	title= ;;
tls)
	# Idle: 5,000 held wss connections are enough, the TLS state per
	# connection being what is measured.
	default_figures="idle echo-1000x64 echo-100x4k echo-100x64 handshake-50"
	[ -n "$idle_conns_set" ] || idle_conns=5000
	scheme=wss
	config=([wsedge]=wsedge-tls.toml [nginx-ip_hash]=nginx-ip_hash-tls.conf [nginx-consistent]=nginx-consistent-tls.conf
		[haproxy]=haproxy-tls.cfg [caddy]=Caddyfile.tls)
	title="Over TLS: every proxy terminates wss:// with one self-signed ECDSA P-256 certificate, backends plain;"
	title+=" every handshake a full one (no resumption); key exchanges offered: ${tls_curves:-crypto/tls defaults}" ;;
proxy-protocol)
	default_figures="idle echo-1000x64 echo-1000x4k echo-100x64 echo-100x64-10k handshake-50"
	client_args=(--proxy-protocol v1)
	config=([wsedge]=wsedge-proxyproto.toml [nginx-ip_hash]=nginx-ip_hash-proxyproto.conf
		[nginx-consistent]=nginx-consistent-proxyproto.conf [haproxy]=haproxy-proxyproto.cfg)
	title="Behind a PROXY protocol balancer: every connection opens with a PROXY v1 header naming the client's address" ;;
esac
figures=${figures:-$default_figures}
kept=() left_out=()
for name in $proxies; do
	if [ -n "${config[$name]:-}" ] && [ -e "$here/${config[$name]}" ]; then
		kept+=("$name")
	else
		left_out+=("$name")
	fi
done
if [ ${#left_out[@]} -gt 0 ]; then
	echo "run.sh: no $mode config for ${left_out[*]}, left out" >&2
	[ $mode = proxy-protocol ] && [[ " ${left_out[*]} " == *" caddy "* ]] &&
		echo "run.sh: Caddy takes PROXY headers only through its proxy_protocol listener wrapper, which Debian's Caddy 2.6.2 lacks" >&2
	title+="; left out: ${left_out[*]} (no config for this mode)"
fi
[ ${#kept[@]} -gt 0 ] || { echo "run.sh: no proxy to measure" >&2; exit 2; }
proxies="${kept[*]}"

# One proxy process holds ~9,900 proxied connections under the 20,000 fd
# limit; more idle connections take more instances, each with its own
# listen port (+100 per instance) and its own backend address
# (127.0.100.<instance+1>), as the anchors were measured.
per_instance=9000
instances=$(((idle_conns + per_instance - 1) / per_instance))

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# --- anchors --------------------------------------------------------------
install_anchors() {
	local missing=()
	command -v nginx >/dev/null || missing+=(nginx)
	command -v haproxy >/dev/null || missing+=(haproxy)
	command -v caddy >/dev/null || missing+=(caddy)
	command -v jq >/dev/null || missing+=(jq)
	[ $mode != tls ] || command -v openssl >/dev/null || missing+=(openssl)
	[[ " $figures " != *" broadcast-"* ]] || command -v redis-server >/dev/null || missing+=(redis-server)
	[ ${#missing[@]} -eq 0 ] && return
	log "installing ${missing[*]}"
	# Packaged services must not start: they would take ports and CPU.
	local policy=/usr/sbin/policy-rc.d created=
	if [ ! -e $policy ]; then
		printf '#!/bin/sh\nexit 101\n' >$policy
		chmod +x $policy
		created=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	[ -n "$created" ] && rm -f $policy
	return 0
}

install_anchors
work=$(mktemp -d /tmp/wsedge-bench.XXXXXX)
log "building wsedge into $work"
(cd "$root" && go build -o "$work/wsedge" ./cmd/wsedge)
wsedge=$work/wsedge

# One certificate for every proxy under --tls, trusted by the client.
tls_dir=
if [ $mode = tls ]; then
	tls_dir=$work/tls
	mkdir -p "$tls_dir"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=wsedge-bench \
		-addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout "$tls_dir/key.pem" -out "$tls_dir/cert.pem" 2>/dev/null
	cat "$tls_dir/cert.pem" "$tls_dir/key.pem" >"$tls_dir/both.pem" # HAProxy's crt
	client_args=(--ca "$tls_dir/cert.pem")
	[ -z "$tls_curves" ] || client_args+=(--tls-curves "$tls_curves")
fi

started=() # every process this script started, to stop on exit
cleanup() {
	for pid in "${started[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT

# children PID: direct children of PID, from /proc (no procps needed).
children() {
	local f
	for f in /proc/[0-9]*/stat; do
		# Field 4 is the parent. A command name with spaces shifts the
		# fields, so such a process never matches a numeric PID; nginx's do
		# not have any. A process may vanish between the glob and the read.
		{ read -r cpid _ _ ppid _ <"$f"; } 2>/dev/null || continue
		[ "$ppid" = "$1" ] && echo "$cpid"
	done
	return 0
}

# --- backends ---------------------------------------------------------------
# Three echo backend processes per pair of proxy instances: instance k's
# backends listen on 127.0.100.<k+1>:9001-9003.
backend_pids=()
start_backends() {
	local set j k args
	for ((set = 0; set < (instances + 1) / 2; set++)); do
		for j in 1 2 3; do
			args=()
			for ((k = 2 * set; k < instances && k < 2 * set + 2; k++)); do
				args+=(--listen "127.0.100.$((k + 1)):900$j")
			done
			"$wsedge" bench backend "${args[@]}" --duration 2h --json >"$work/backend-$set-$j.json" 2>"$work/backend-$set-$j.log" &
			started+=($!)
			backend_pids+=($!)
		done
	done
}
start_backends
first_backends=$(IFS=,; echo "${backend_pids[*]:0:3}")

# The chat room of the broadcast figures: redis-server, and three chat
# servers in one process on 127.0.101.1, where the proxies' configs point
# for those figures (see start_proxy). Their CPU and Redis's count as the
# backends'.
chat_pids=
start_chat() {
	local redis_addr=127.0.101.100 tries pid
	redis-server --bind $redis_addr --port 6379 --save "" --appendonly no --dir "$work" \
		--loglevel warning >"$work/redis.log" 2>&1 &
	pid=$!
	started+=($pid)
	chat_pids=$pid
	for ((tries = 0; tries < 50; tries++)); do
		redis-cli -h $redis_addr -p 6379 ping >/dev/null 2>&1 && break
		sleep 0.1
	done
	"$wsedge" demo backends --redis $redis_addr:6379 --duration 2h \
		--listen 127.0.101.1:9001 --listen 127.0.101.1:9002 --listen 127.0.101.1:9003 \
		>"$work/chat.out" 2>"$work/chat.log" &
	pid=$!
	started+=($pid)
	chat_pids+=,$pid
	for ((tries = 0; tries < 50; tries++)); do
		[ -s "$work/chat.out" ] && return
		kill -0 $pid 2>/dev/null || break
		sleep 0.1
	done
	log "the chat servers did not start: $(tail -n 3 "$work/chat.log")"
	exit 1
}
[[ " $figures " != *" broadcast-"* ]] || start_chat

# --- proxies ----------------------------------------------------------------
declare -A base_port=([wsedge]=8080 [nginx-ip_hash]=8081 [nginx-consistent]=8082 [haproxy]=8083 [caddy]=8084)

proxy_pids=() # every process of every running instance
proxy_main=() # the process started per instance
targets=()

# start_proxy NAME COUNT [NET]: COUNT instances of NAME, configs rewritten
# for each instance's port and backend address (and where the certificate
# is); the backends are on NET.<instance+1> (default 127.0.100).
start_proxy() {
	local name=$1 count=$2 net=${3:-127.0.100} k dir port pid cfg=${config[$1]}
	proxy_pids=() proxy_main=() targets=()
	for ((k = 0; k < count; k++)); do
		dir=$work/$name-$k
		rm -rf "$dir"
		mkdir -p "$dir/tmp" "$dir/home"
		port=$((base_port[$name] + 100 * k))
		sed -e "s/127\.0\.0\.1:${base_port[$name]}/127.0.0.1:$port/" \
			-e "s/127\.0\.0\.1:9090/127.0.0.1:$((9090 + 100 * k))/" \
			-e "s/127\.0\.100\.1:/$net.$((k + 1)):/g" \
			-e "s|@TLS_DIR@|$tls_dir|g" \
			"$here/$cfg" >"$dir/$cfg"
		case $name in
		wsedge) "$wsedge" serve --config "$dir/$cfg" 2>"$dir/log" & ;;
		nginx-*) nginx -p "$dir/" -e "$dir/error.log" -c "$dir/$cfg" -g 'daemon off;' 2>"$dir/log" & ;;
		haproxy) haproxy -db -f "$dir/$cfg" 2>"$dir/log" & ;;
		caddy) HOME=$dir/home XDG_DATA_HOME=$dir/home XDG_CONFIG_HOME=$dir/home \
			caddy run --adapter caddyfile --config "$dir/$cfg" 2>"$dir/log" & ;;
		esac
		pid=$!
		started+=("$pid")
		proxy_main+=("$pid")
		proxy_pids+=("$pid")
		targets+=(--target "$scheme://127.0.0.1:$port/")
	done
	# nginx's workers are the master's children; they exist once it is up.
	if [[ $name == nginx-* ]]; then
		for pid in "${proxy_main[@]}"; do
			local kids=() tries
			for ((tries = 0; tries < 50 && ${#kids[@]} < 2; tries++)); do
				sleep 0.1
				mapfile -t kids < <(children "$pid")
			done
			[ ${#kids[@]} -eq 2 ] || { log "nginx $pid has ${#kids[@]} workers, want 2"; cat "$work/$name-0/log" >&2; exit 1; }
			proxy_pids+=("${kids[@]}")
		done
	fi
}

stop_proxy() {
	local pid tries
	for pid in "${proxy_main[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${proxy_main[@]}"; do
		for ((tries = 0; tries < 50; tries++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
}

# --- figures ----------------------------------------------------------------

# run_figure NAME FIGURE: the load for one figure against the running proxy,
# JSON on stdout.
run_figure() {
	local pids
	pids=$(IFS=,; echo "${proxy_pids[*]}")
	case $2 in
	idle)
		"$wsedge" bench idle "${targets[@]}" "${client_args[@]}" --conns "$idle_conns" --hold "$idle_hold" \
			--ramp "$idle_ramp" --pids "$pids" --json ;;
	echo-1000x64) "$wsedge" bench echo "${targets[@]:0:2}" "${client_args[@]}" --conns 1000 --size 64 \
		--duration "$echo_duration" --warmup "$echo_warmup" --pids "$pids" --backend-pids "$first_backends" --json ;;
	echo-1000x4k) "$wsedge" bench echo "${targets[@]:0:2}" "${client_args[@]}" --conns 1000 --size 4KiB \
		--duration "$echo_duration" --warmup "$echo_warmup" --pids "$pids" --backend-pids "$first_backends" --json ;;
	echo-100x4k) "$wsedge" bench echo "${targets[@]:0:2}" "${client_args[@]}" --conns 100 --size 4KiB \
		--duration "$echo_duration" --warmup "$echo_warmup" --pids "$pids" --backend-pids "$first_backends" --json ;;
	echo-100x64) "$wsedge" bench echo "${targets[@]:0:2}" "${client_args[@]}" --conns 100 --size 64 \
		--duration "$echo_duration" --warmup "$echo_warmup" --pids "$pids" --backend-pids "$first_backends" --json ;;
	# The same connections at a fixed offered load that every proxy here
	# sustains: latency and CPU for the same work.
	echo-100x64-10k) "$wsedge" bench echo "${targets[@]:0:2}" "${client_args[@]}" --conns 100 --size 64 --rate 10000 \
		--duration "$echo_duration" --warmup "$echo_warmup" --pids "$pids" --backend-pids "$first_backends" --json ;;
	handshake-50) "$wsedge" bench handshake "${targets[@]:0:2}" "${client_args[@]}" --workers 50 \
		--duration "$hs_duration" --warmup "$hs_warmup" --pids "$pids" --backend-pids "$first_backends" --json ;;
	# The room's servers serve WebSockets on /ws.
	broadcast-1000) "$wsedge" bench broadcast --target "${targets[1]}ws" "${client_args[@]}" --conns 1000 --size 64 \
		--interval 100ms --duration "$echo_duration" --warmup "$bc_warmup" --pids "$pids" --backend-pids "$chat_pids" --json ;;
	*) echo "unknown figure $2" >&2; return 2 ;;
	esac
}

mkdir -p "$work/results"
read -r -a order <<<"$proxies"
for ((round = 1; round <= rounds; round++)); do
	# Every round runs each figure on every proxy back to back, so that
	# the figures compared are seconds apart on a shared machine whose
	# speed drifts by tens of percent over minutes; the order of the
	# proxies turns each round, so none is always first.
	for fig in $figures; do
		for name in "${order[@]}"; do
			count=1 net=127.0.100
			[ "$fig" = idle ] && count=$instances
			[[ $fig != broadcast-* ]] || net=127.0.101
			start_proxy "$name" "$count" "$net"
			f=$work/results/$name.$fig.$round.json
			if ! run_figure "$name" "$fig" >"$f.raw" 2>"$f.err"; then
				log "$name $fig round $round failed: $(tail -n 3 "$f.err")"
				stop_proxy
				continue
			fi
			stop_proxy
			jq -c --arg p "$name" --arg f "$fig" --argjson r "$round" \
				'{proxy: $p, figure: $f, round: $r, result: .}' "$f.raw" >"$f"
			log "$name $fig round $round: $(jq -r '.result |
				if .rss_per_conn_kib != null then "\(.opened) conns, \(.rss_per_conn_kib * 10 | round / 10) KiB/conn"
				elif .deliveries_per_proxy_cpu_s != null then "\(.deliveries) deliveries, \(.missing) missing, \(.deliveries_per_proxy_cpu_s | round) per proxy cpu-s, p50 \(.latency.p50_ns / 1e4 | round / 100) ms, p99 \(.latency.p99_ns / 1e4 | round / 100) ms"
				elif .msgs_per_proxy_cpu_s != null then "\(.msgs_per_s | round) msg/s, \(.msgs_per_proxy_cpu_s | round) per proxy cpu-s, p99 \(.latency.p99_ns / 1e4 | round / 100) ms"
				else "\(.handshakes_per_s | round) hs/s, \(.handshakes_per_proxy_cpu_s | round) per proxy cpu-s" +
					(.key_exchange // {} | to_entries | map(", \(.value) by \(.key)") | add // "") end' "$f")"
		done
	done
	order=("${order[@]:1}" "${order[0]}")
done

for pid in "${backend_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
for pid in "${backend_pids[@]}"; do wait "$pid" 2>/dev/null || true; done

# --- report -----------------------------------------------------------------
shopt -s nullglob
results=("$work"/results/*.json)
jq -s --arg machine "$(nproc) cores, $(awk '/^MemTotal:/{printf "%.0f", $2 / 1048576}' /proc/meminfo) GiB, $(uname -r)" \
	--arg idle "$idle_conns" --arg rounds "$rounds" --arg echo "$echo_duration after $echo_warmup warmup" \
	--arg hs "$hs_duration after $hs_warmup warmup" --arg hold "$idle_hold at $idle_ramp" --arg mode "$mode" \
	'{machine: $machine, mode: $mode, idle_conns: ($idle | tonumber), rounds: ($rounds | tonumber),
	  echo_window: $echo, handshake_window: $hs, idle_hold: $hold, runs: .}' \
	"${results[@]}" >"$out"

# median PROXY FIGURE JQ-PATH: the median over rounds, or "" if none ran.
median() {
	jq -r --arg p "$1" --arg f "$2" "[.runs[] | select(.proxy == \$p and .figure == \$f) | .result | $3]
		| sort | if length == 0 then \"\" else .[(length - 1) / 2 | floor] end" "$out"
}

# ratio ANCHOR FIGURE JQ-PATH high|low: the median over rounds of how many
# times better wsedge was than ANCHOR in the same round, or "".
ratio() {
	jq -r --arg a "$1" --arg f "$2" --arg b "$4" "[.runs[] | select(.figure == \$f and (.proxy == \"wsedge\" or .proxy == \$a))]
		| group_by(.round) | map(select(length == 2) | (map(select(.proxy == \"wsedge\"))[0].result | $3) as \$w
			| (map(select(.proxy == \$a))[0].result | $3) as \$x
			| select(\$w > 0 and \$x > 0) | if \$b == \"high\" then \$w / \$x else \$x / \$w end)
		| sort | if length == 0 then \"\" else .[(length - 1) / 2 | floor] end" "$out"
}

# key_exchanges PROXY: the TLS key exchanges its handshakes negotiated over
# every round, as shares ("X25519 100%"), or "".
key_exchanges() {
	jq -r --arg p "$1" '[.runs[] | select(.proxy == $p and .figure == "handshake-50") | .result.key_exchange // {}
		| to_entries[]] | group_by(.key) | map({key: .[0].key, value: (map(.value) | add)})
		| (map(.value) | add) as $total | sort_by(-.value)
		| map("\(.key) \(.value * 100 / $total | round)%") | join(", ")' "$out"
}

hs_label="handshakes per proxy CPU-s (50 workers)"
[ $mode != tls ] || hs_label="TLS handshakes per proxy CPU-s (50 workers, full handshakes, each with its upgrade)"
# Every row the figures give. A row of one of the mode's own figures is
# always shown, another when its figure was asked for.
rows=(
	"idle proxy RSS per proxied connection, KiB (lower is better)|idle|.rss_per_conn_kib|low|%.1f"
	"echo msgs per proxy CPU-s, 1,000 conns × 64 B|echo-1000x64|.msgs_per_proxy_cpu_s|high|%.0f"
	"echo msgs per proxy CPU-s, 1,000 conns × 4 KiB|echo-1000x4k|.msgs_per_proxy_cpu_s|high|%.0f"
	"echo msgs per proxy CPU-s, 100 conns × 4 KiB|echo-100x4k|.msgs_per_proxy_cpu_s|high|%.0f"
	"echo msgs per proxy CPU-s, 100 conns × 64 B|echo-100x64|.msgs_per_proxy_cpu_s|high|%.0f"
	"p99 latency, 100 conns × 64 B closed loop, ms (lower is better)|echo-100x64|.latency.p99_ns / 1e6|low|%.2f"
	"p99 latency, 100 conns × 64 B at 10,000 msgs/s offered, ms (lower is better)|echo-100x64-10k|.latency.p99_ns / 1e6|low|%.2f"
	"echo msgs per proxy CPU-s, 100 conns × 64 B at 10,000 msgs/s offered|echo-100x64-10k|.msgs_per_proxy_cpu_s|high|%.0f"
	"$hs_label|handshake-50|.handshakes_per_proxy_cpu_s|high|%.0f"
	"broadcast p50 latency, 1,000 clients, 64 B every 100 ms through Redis fan-out, ms (lower is better)|broadcast-1000|.latency.p50_ns / 1e6|low|%.2f"
	"broadcast p99 latency, same, ms (lower is better)|broadcast-1000|.latency.p99_ns / 1e6|low|%.2f"
	"broadcast max latency, same, ms (lower is better)|broadcast-1000|.latency.max_ns / 1e6|low|%.2f"
	"broadcast deliveries per proxy CPU-s, same|broadcast-1000|.deliveries_per_proxy_cpu_s|high|%.0f"
	"broadcast deliveries missing, same (lower is better)|broadcast-1000|.missing|low|%.0f"
)
anchors=()
for name in $proxies; do [ "$name" != wsedge ] && anchors+=("$name"); done

{
	[ -z "$title" ] || printf '**%s**\n\n' "$title"
	printf '| figure (median of %s) |' "$rounds"
	for name in $proxies; do printf ' %s |' "$name"; done
	for a in "${anchors[@]}"; do printf ' wsedge vs %s |' "$a"; done
	printf '\n|---|'
	for _ in $proxies "${anchors[@]}"; do printf -- '---|'; done
	printf '\n'
	for row in "${rows[@]}"; do
		IFS='|' read -r label fig path better fmt <<<"$row"
		[[ " $default_figures $figures " == *" $fig "* ]] || continue
		printf '| %s |' "$label"
		declare -A val=()
		for name in $proxies; do
			val[$name]=$(median "$name" "$fig" "$path")
			if [ -n "${val[$name]}" ]; then printf " $fmt |" "${val[$name]}"; else printf ' – |'; fi
		done
		for a in "${anchors[@]}"; do
			# How many times better wsedge is (above 1 wsedge wins), in
			# each round, where the two ran seconds apart: the median.
			r=$(ratio "$a" "$fig" "$path" "$better")
			if [ -n "$r" ]; then printf ' %.2f× |' "$r"; else printf ' – |'; fi
		done
		printf '\n'
		unset val
		if [ $mode = tls ] && [ "$fig" = handshake-50 ]; then
			printf '| key exchange negotiated in those handshakes |'
			for name in $proxies; do
				kx=$(key_exchanges "$name")
				printf ' %s |' "${kx:-–}"
			done
			for _ in "${anchors[@]}"; do printf ' |'; done
			printf '\n'
		fi
	done
	printf '\nRatios: how many times better wsedge is than the anchor on that row (above 1: wsedge wins), the median of the\nratios of the rounds, in each of which the two ran seconds apart.\n'
	printf '\nCPU seconds in the window of echo 1,000 × 64 B (medians; the client and the backends share the cores):\n\n'
	printf '| | proxy | backends | client | msgs/s |\n|---|---|---|---|---|\n'
	for name in $proxies; do
		printf '| %s | %s | %s | %s | %s |\n' "$name" \
			"$(median "$name" echo-1000x64 '.cpu.proxy_cpu_s * 100 | round / 100')" \
			"$(median "$name" echo-1000x64 '.cpu.backend_cpu_s * 100 | round / 100')" \
			"$(median "$name" echo-1000x64 '.cpu.client_cpu_s * 100 | round / 100')" \
			"$(median "$name" echo-1000x64 '.msgs_per_s | round')"
	done
} | tee "$work/table.md"
log "raw results: $out; logs and configs: $work"
