# shellcheck shell=bash
# soci-nbd benchmarks: what bench/cold-start and bench/netboot share.  Source
# it after setting $work (the run's directory) and $pids (the background
# processes the caller's cleanup kills; the servers started here are added).

wait_for() { # TEST TIMEOUT_S: poll every 10 ms
    local i
    for i in $(seq $(($2 * 100))); do eval "$1" && return 0; sleep 0.01; done
    return 1
}
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }

# bench_registry: a docker-registry on 127.0.0.1 storing in $work/registry
# (log $work/registry.log); sets R to its HOST:PORT.
bench_registry() {
    local rport
    rport=$(freeport)
    cat > "$work/registry.yml" <<EOC
version: 0.1
log: { level: warn }
storage: { filesystem: { rootdirectory: $work/registry } }
http: { addr: 127.0.0.1:$rport }
EOC
    docker-registry serve "$work/registry.yml" > "$work/registry.log" 2>&1 & pids="$pids $!"
    wait_for "curl -sf -o /dev/null http://127.0.0.1:$rport/v2/" 10 ||
        { cat "$work/registry.log" >&2; exit 1; }
    R=127.0.0.1:$rport
}

# bench_proxy NAME LATENCY_MS MBIT: the WAN-shaped link (bench/wan-proxy.py)
# in front of $R, logging a line per request to $work/proxy.log (created
# here); sets P to its HOST:PORT.  NAME prefixes the error message.
bench_proxy() {
    python3 "$(dirname "${BASH_SOURCE[0]}")/wan-proxy.py" --upstream "$R" \
        --latency-ms "$2" --mbit "$3" \
        --log "$work/proxy.log" --port-file "$work/proxy.port" & pids="$pids $!"
    wait_for "[ -s '$work/proxy.port' ]" 10 || { echo "$1: proxy did not start" >&2; exit 1; }
    P=127.0.0.1:$(cat "$work/proxy.port")
    touch "$work/proxy.log"
}
