# shellcheck shell=bash
# soci-nbd tests: real registries for integration tests.  Source it from a
# bash TAP test (it sources tests/helpers/lib.sh itself when needed):
#
#   . "$top_srcdir/tests/registry/lib.sh"
#   reg_start R1                          # plain HTTP     → R1_HOST R1_URL ...
#   reg_start R2 --tls                    # TLS (CA in $REG_CA)
#   reg_start R3 --tls --htpasswd alice s3cret
#   tok_start T1 --user alice:s3cret --expiry 5
#   reg_start R4 --token T1               # token auth through T1
#   reg_start M1 --proxy "$R1_URL"        # pull-through mirror of R1
#   fault_start F1 "$R1_URL"              # fault proxy → F1_HOST, F1_CONTROL
#   fault_set F1 '{"rules":[{"action":"status","code":500,"times":2}]}'
#
# Every server listens on 127.0.0.1 only, on an ephemeral port, runs under
# `timeout` (REG_LIFETIME seconds, default 600) and is stopped by the EXIT
# trap installed here (which also removes $TMP).  For each NAME the
# functions set NAME_PORT, NAME_HOST (127.0.0.1:PORT), NAME_URL
# (scheme://HOST), NAME_LOG (its log file), NAME_DIR; registries also
# NAME_ROOT (storage), token servers NAME_CERT (signing cert), fault
# proxies NAME_CONTROL and NAME_REDIRECT_PORT.
#
# Logs: the registry's log has one access-log line per request ("GET
# /v2/r/blobs/sha256:… HTTP/1.1" 206 BYTES) and logrus lines with
# http.request.* fields; the Range header itself is only visible in a
# fault proxy's JSON log (put one in pass-through mode in front when a test
# must see the ranges).  When a test fails (TAP_FAILED > 0) or
# SN_KEEP_LOGS=1, the tail of every log is printed as TAP comments at exit;
# SN_KEEP_TMP=1 keeps the whole directory.

: "${top_srcdir:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
if [ -z "${TAP_N+x}" ]; then
    # shellcheck source=../lib.sh
    . "$top_srcdir/tests/helpers/lib.sh"
fi

REG_SRC="$top_srcdir/tests/registry"
REG_BASE="$TMP/servers"
REG_CA="$REG_BASE/pki/ca.pem"          # the test CA (for --cacert)
REG_CERT_DIR="$REG_BASE/pki/certs.d"    # skopeo --*-cert-dir (ca.crt)
: "${REG_LIFETIME:=600}"
REG_NAMES=""
mkdir -p "$REG_BASE"

trap 'srv_cleanup' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

_reg_name_ok() {
    case $1 in
        ''|[0-9]*|*[!A-Za-z0-9_]*) echo "registry lib: bad name '$1'" >&2; return 1 ;;
    esac
}

_reg_set() { printf -v "$1" '%s' "$2"; export "${1?}"; }

# A free TCP port on 127.0.0.1 (the kernel's choice; may race: callers retry).
reg_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Wait until CMD... succeeds, polling every 0.1 s for at most $1 seconds.
_reg_wait_for() {
    local limit=$1 i=0; shift
    while ! "$@" 2>/dev/null; do
        i=$((i + 1))
        [ $i -ge $((limit * 10)) ] && return 1
        sleep 0.1
    done
}

_reg_alive() { kill -0 "$1" 2>/dev/null; }

# The CA and the server certificate (SAN IP:127.0.0.1, DNS:localhost),
# made once per test.
reg_pki() {
    local d="$REG_BASE/pki"
    [ -f "$d/server.pem" ] && return 0
    mkdir -p "$d" "$REG_CERT_DIR"
    (
        cd "$d" || exit 1
        openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 2 \
            -keyout ca.key -out ca.pem -subj "/CN=soci-nbd test CA" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" &&
        openssl req -newkey rsa:2048 -nodes -sha256 -keyout server.key \
            -out server.csr -subj "/CN=localhost" &&
        # (10.0.2.100: the host as QEMU guests reach it, tests/kernel/qemu/run.sh -p)
        printf '%s\n' "subjectAltName=IP:127.0.0.1,IP:10.0.2.100,DNS:localhost" \
            "basicConstraints=CA:FALSE" "keyUsage=digitalSignature,keyEncipherment" \
            "extendedKeyUsage=serverAuth" > server.ext &&
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key \
            -CAcreateserial -days 2 -sha256 -extfile server.ext -out server.pem &&
        cp ca.pem "$REG_CERT_DIR/ca.crt"
    ) >"$d/openssl.log" 2>&1 || { cat "$d/openssl.log" >&2; return 1; }
}

# reg_start NAME [--tls] [--htpasswd USER PASS] [--token TOKNAME [--realm-host H]]
#                [--proxy URL [--proxy-creds USER PASS]]
reg_start() {
    local name=$1; shift
    _reg_name_ok "$name" || return 1
    local tls=0 htuser="" htpass="" tok="" proxy="" pxuser="" pxpass="" realm_host=""
    while [ $# -gt 0 ]; do
        case $1 in
            --tls) tls=1 ;;
            --htpasswd) htuser=$2; htpass=$3; shift 2 ;;
            --token) tok=$2; shift ;;
            --realm-host) realm_host=$2; shift ;;
            --proxy) proxy=$2; shift ;;
            --proxy-creds) pxuser=$2; pxpass=$3; shift 2 ;;
            *) echo "reg_start: unknown option $1" >&2; return 1 ;;
        esac
        shift
    done
    local d="$REG_BASE/$name" scheme=http cafile=""
    mkdir -p "$d/data"
    case $proxy in https:*) reg_pki || return 1 ;; esac
    if [ $tls = 1 ]; then
        reg_pki || return 1
        scheme=https
        cafile=$REG_CA
    fi
    if [ -n "$htuser" ]; then
        htpasswd -Bbn "$htuser" "$htpass" > "$d/htpasswd" || return 1
    fi

    local attempt port pid
    for attempt in 1 2 3 4 5; do
        port=$(reg_free_port) || return 1
        {
            echo "version: 0.1"
            echo "log:"
            echo "  level: info"
            echo "  formatter: text"
            echo "  accesslog:"
            echo "    disabled: false"
            echo "storage:"
            echo "  filesystem:"
            echo "    rootdirectory: $d/data"
            echo "  delete:"
            echo "    enabled: true"
            echo "  maintenance:"
            echo "    uploadpurging:"
            echo "      enabled: false"
            echo "http:"
            echo "  addr: 127.0.0.1:$port"
            echo "  secret: soci-nbd-test-secret-$name"
            echo "  headers:"
            echo "    X-Content-Type-Options: [nosniff]"
            if [ $tls = 1 ]; then
                echo "  tls:"
                echo "    certificate: $REG_BASE/pki/server.pem"
                echo "    key: $REG_BASE/pki/server.key"
            fi
            if [ -n "$htuser" ]; then
                echo "auth:"
                echo "  htpasswd:"
                echo "    realm: soci-nbd-test"
                echo "    path: $d/htpasswd"
            elif [ -n "$tok" ]; then
                local turl tcert
                turl=$(eval "echo \"\${${tok}_URL}\"") || return 1
                # --realm-host: advertise the token server under another
                # host name (same server): a realm on another site.
                [ -n "$realm_host" ] && turl=${turl/127.0.0.1/$realm_host}
                tcert=$(eval "echo \"\${${tok}_CERT}\"") || return 1
                echo "auth:"
                echo "  token:"
                echo "    realm: $turl/token"
                echo "    service: soci-nbd-test-registry"
                echo "    issuer: soci-nbd-test-issuer"
                echo "    rootcertbundle: $tcert"
            fi
            if [ -n "$proxy" ]; then
                echo "proxy:"
                echo "  remoteurl: $proxy"
                if [ -n "$pxuser" ]; then
                    echo "  username: $pxuser"
                    echo "  password: $pxpass"
                fi
            fi
        } > "$d/config.yml"
        : > "$d/registry.log"
        # REGISTRY_* variables would override the file: drop them.  The
        # mirror trusts the test CA (Go reads SSL_CERT_FILE).
        local unset_env=()
        while read -r v; do unset_env+=(-u "$v"); done \
            < <(env | sed -n 's/^\(REGISTRY_[A-Za-z0-9_]*\)=.*/\1/p')
        [ -f "$REG_CA" ] && unset_env+=(SSL_CERT_FILE="$REG_CA")
        env "${unset_env[@]}" \
            timeout -k 5 "$REG_LIFETIME" \
            /usr/bin/docker-registry serve "$d/config.yml" \
            >> "$d/registry.log" 2>&1 </dev/null &
        pid=$!
        echo "$pid" > "$d/pid"
        REG_NAMES="$REG_NAMES $name"
        if _reg_wait_for 20 _reg_ready "$pid" "$scheme://127.0.0.1:$port/v2/" "$cafile" &&
           _reg_alive "$pid"; then
            break
        fi
        _reg_kill "$pid"
        if grep -q "address already in use" "$d/registry.log" && [ $attempt -lt 5 ]; then
            continue
        fi
        echo "reg_start $name: registry did not start:" >&2
        tail -20 "$d/registry.log" >&2
        return 1
    done
    _reg_set "${name}_PORT" "$port"
    _reg_set "${name}_HOST" "127.0.0.1:$port"
    _reg_set "${name}_URL" "$scheme://127.0.0.1:$port"
    _reg_set "${name}_LOG" "$d/registry.log"
    _reg_set "${name}_ROOT" "$d/data"
    _reg_set "${name}_DIR" "$d"
}

# reg_http URL [CAFILE]: GET URL (python3, no curl needed), discard the
# body, print the HTTP status (000 when there is no HTTP answer).
reg_http() {
    python3 - "$1" "${2:-}" <<'PY'
import ssl, sys, urllib.error, urllib.request
url, ca = sys.argv[1], sys.argv[2]
ctx = ssl.create_default_context(cafile=ca) if ca else None
# Never through a proxy from the environment: 127.0.0.1 only.
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                     urllib.request.HTTPSHandler(context=ctx))
try:
    with opener.open(url, timeout=5) as r:
        r.read()
        print(r.status)
except urllib.error.HTTPError as e:
    print(e.code)
except Exception:
    print("000")
PY
}

# Ready when /v2/ answers with any HTTP status (401 with auth); stops
# waiting at once if the process died (the caller checks).
_reg_ready() {
    local pid=$1 url=$2 ca=$3 code
    _reg_alive "$pid" || return 0
    code=$(reg_http "$url" "$ca")
    [ "$code" != "000" ] && [ -n "$code" ]
}

_reg_kill() {
    local pid=$1 i
    _reg_alive "$pid" || { wait "$pid" 2>/dev/null; return 0; }
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 50); do
        _reg_alive "$pid" || break
        sleep 0.1
    done
    if _reg_alive "$pid"; then
        # The server under timeout(1): its children, from /proc.
        # shellcheck disable=SC2046
        kill -KILL $(cat "/proc/$pid/task/$pid/children" 2>/dev/null) 2>/dev/null
        kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
    return 0
}

# reg_stop NAME: stop one server (registry, token server or proxy).
reg_stop() {
    local d="$REG_BASE/$1"
    [ -f "$d/pid" ] && _reg_kill "$(cat "$d/pid")"
    rm -f "$d/pid"
}

# tok_start NAME [--user U:P]... [--expiry S] [--anonymous] [--tls]
tok_start() {
    local name=$1; shift
    _reg_name_ok "$name" || return 1
    local d="$REG_BASE/$name" tls=0 args=()
    while [ $# -gt 0 ]; do
        case $1 in
            --user) args+=(--user "$2"); shift ;;
            --expiry) args+=(--expiry "$2"); shift ;;
            --anonymous) args+=(--anonymous) ;;
            --tls) tls=1 ;;
            *) echo "tok_start: unknown option $1" >&2; return 1 ;;
        esac
        shift
    done
    mkdir -p "$d"
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 2 \
        -keyout "$d/sign.key" -out "$d/sign.pem" -subj "/CN=soci-nbd token signer" \
        >"$d/openssl.log" 2>&1 || { cat "$d/openssl.log" >&2; return 1; }
    local scheme=http
    if [ $tls = 1 ]; then
        reg_pki || return 1
        args+=(--tls-cert "$REG_BASE/pki/server.pem" --tls-key "$REG_BASE/pki/server.key")
        scheme=https
    fi
    rm -f "$d/port"
    : > "$d/token.log"
    timeout -k 5 "$REG_LIFETIME" python3 "$REG_SRC/token-server.py" \
        --cert "$d/sign.pem" --key "$d/sign.key" \
        --issuer soci-nbd-test-issuer --service soci-nbd-test-registry \
        --port-file "$d/port" --log "$d/token.log" \
        --lifetime "$REG_LIFETIME" "${args[@]}" \
        > "$d/stderr.log" 2>&1 </dev/null &
    echo $! > "$d/pid"
    REG_NAMES="$REG_NAMES $name"
    _reg_wait_for 10 test -s "$d/port" ||
        { echo "tok_start $name: did not start" >&2; cat "$d/stderr.log" >&2; return 1; }
    local port; port=$(cat "$d/port")
    _reg_set "${name}_PORT" "$port"
    _reg_set "${name}_HOST" "127.0.0.1:$port"
    _reg_set "${name}_URL" "$scheme://127.0.0.1:$port"
    _reg_set "${name}_LOG" "$d/token.log"
    _reg_set "${name}_CERT" "$d/sign.pem"
    _reg_set "${name}_DIR" "$d"
}

# fault_start NAME UPSTREAM_URL [fault-proxy.py options...]
fault_start() {
    local name=$1 up=$2; shift 2
    _reg_name_ok "$name" || return 1
    local d="$REG_BASE/$name" extra=()
    mkdir -p "$d"
    case $up in https:*) reg_pki && extra=(--upstream-cacert "$REG_CA") ;; esac
    rm -f "$d/port" "$d/rport"
    : > "$d/proxy.log"
    echo '{"rules": []}' > "$d/control.json"
    timeout -k 5 "$REG_LIFETIME" python3 "$REG_SRC/fault-proxy.py" \
        --upstream "$up" --port-file "$d/port" --redirect-port-file "$d/rport" \
        --control "$d/control.json" --log "$d/proxy.log" \
        --lifetime "$REG_LIFETIME" "${extra[@]}" "$@" \
        > "$d/stderr.log" 2>&1 </dev/null &
    echo $! > "$d/pid"
    REG_NAMES="$REG_NAMES $name"
    _reg_wait_for 10 test -s "$d/port" ||
        { echo "fault_start $name: did not start" >&2; cat "$d/stderr.log" >&2; return 1; }
    local port; port=$(cat "$d/port")
    _reg_set "${name}_PORT" "$port"
    _reg_set "${name}_HOST" "127.0.0.1:$port"
    _reg_set "${name}_URL" "http://127.0.0.1:$port"
    _reg_set "${name}_LOG" "$d/proxy.log"
    _reg_set "${name}_CONTROL" "$d/control.json"
    _reg_set "${name}_REDIRECT_PORT" "$(cat "$d/rport")"
    _reg_set "${name}_DIR" "$d"
}

# fault_set NAME JSON: replace the proxy's rules (atomically).
fault_set() {
    local f="$REG_BASE/$1/control.json"
    printf '%s\n' "$2" > "$f.tmp" && mv -f "$f.tmp" "$f"
}

# reg_log_count NAME PATTERN: number of log lines matching (grep -E).
reg_log_count() {
    local f
    f=$(eval "echo \"\${${1}_LOG}\"")
    grep -cE -- "$2" "$f" 2>/dev/null || true
}

# img_build: build the test images once (tests/registry/mkimage.sh) into
# $IMG_DIR and load their description (IMG_* variables, see mkimage.sh).
IMG_DIR="$TMP/images"
img_build() {
    [ -f "$IMG_DIR/info.sh" ] || "$REG_SRC/mkimage.sh" build "$IMG_DIR" || return 1
    # shellcheck source=/dev/null
    . "$IMG_DIR/info.sh"
}

# img_push HOST:PORT [skopeo copy options]: push the test images there
# (test/multi:v1, test/multiarch:v1, test/docker:v1, test/dockerlist:v1)
# and load PUSHED_* (digests of the converted Docker variants).
img_push() {
    img_build || return 1
    "$REG_SRC/mkimage.sh" push "$IMG_DIR" "$@" ||
        { tail -20 "$IMG_DIR/skopeo.log" >&2; return 1; }
    # shellcheck source=/dev/null
    . "$IMG_DIR/pushed.sh"
}

# tap_run DESCRIPTION COMMAND...: run a TAP-producing command (a C test
# program) and fold its results into this script's numbering; its exit
# status or a "Bail out!" is one more failing test.
tap_run() {
    local desc=$1; shift
    "$@" > "$TMP/.tap" 2>&1
    tap_fold "$desc" "$TMP/.tap" $?
}

# tap_fold DESCRIPTION FILE STATUS: fold the TAP output FILE of a command
# that exited with STATUS into this script's numbering, as tap_run does
# (for a command run in the background).
tap_fold() {
    local desc=$1 file=$2 st=$3 line
    while IFS= read -r line; do
        case $line in
            "ok "*)
                TAP_N=$((TAP_N + 1))
                echo "ok $TAP_N - $desc:${line#ok * -}" ;;
            "not ok "*)
                TAP_N=$((TAP_N + 1)); TAP_FAILED=$((TAP_FAILED + 1))
                echo "not ok $TAP_N - $desc:${line#not ok * -}" ;;
            1..*) ;;
            "Bail out!"*)
                TAP_N=$((TAP_N + 1)); TAP_FAILED=$((TAP_FAILED + 1))
                echo "not ok $TAP_N - $desc: ${line#Bail out! }" ;;
            *) echo "# $line" ;;
        esac
    done < "$file"
    if [ "$st" -ne 0 ] && ! grep -q '^not ok\|^Bail out!' "$file"; then
        TAP_N=$((TAP_N + 1)); TAP_FAILED=$((TAP_FAILED + 1))
        echo "not ok $TAP_N - $desc: exit status $st"
    fi
}

# plugin_start SOCK ARGS...: nbdkit with the soci plugin ($PLUGIN) in the
# foreground on the Unix socket SOCK (log SOCK.log, pidfile SOCK.pid), read
# only, with nbdkit's own options $NBDKIT_OPTS (split on spaces) if set;
# its pid is added to NBDKIT_PIDS.  Waits START_WAIT seconds (default
# 30) for the pidfile, which nbdkit writes once the plugin is ready.
# Call it from a shell that outlives the server: Debian's nbdkit (1.32.5,
# measured with strace) sets PR_SET_PDEATHSIG to SIGTERM even without
# --exit-with-parent, so a server started from a subshell that then exits
# stops at once, cleanly and without a word in its log.
plugin_start() {
    local sock=$1; shift
    rm -f "$sock" "$sock.pid"
    # shellcheck disable=SC2086
    nbdkit -f --log=stderr -U "$sock" -P "$sock.pid" -r ${NBDKIT_OPTS:-} \
        "$PLUGIN" "$@" 2> "$sock.log" &
    NBDKIT_PIDS="${NBDKIT_PIDS:-} $!"
    _reg_wait_for "${START_WAIT:-30}" test -s "$sock.pid"
}

# mounts_cleanup: unmount MOUNTS (innermost first), kill PIDS and
# NBDKIT_PIDS (an EXIT trap, before srv_cleanup).
mounts_cleanup() {
    local m p
    for m in ${MOUNTS:-}; do umount "$m" 2>/dev/null; done
    for p in ${PIDS:-} ${NBDKIT_PIDS:-}; do kill "$p" 2>/dev/null; done
}

# mnt TYPE SOURCE DIR OPTIONS: mount and remember it in MOUNTS (innermost
# first; the caller unmounts them in that order).
mnt() {
    mkdir -p "$3" && mount -t "$1" -o "$4" "$2" "$3" && MOUNTS="$3 $MOUNTS"
}
# fuse_export URI DIR: the export as the file DIR/img (nbdfuse, live); its
# pid joins PIDS and DIR joins MOUNTS.
fuse_export() {
    local i
    mkdir -p "$2"
    nbdfuse -r "$2/img" "$1" & PIDS="$PIDS $!"
    MOUNTS="$2 $MOUNTS"
    for i in $(seq 100); do [ -s "$2/img" ] && return 0; sleep 0.1; done
    return 1
}

# umoci_tree LAYOUT OUT.json: umoci unpack of LAYOUT:img, scanned and
# normalized (tests/helpers/mkfs-tree.py scan, oci-layout.py umoci-norm).
umoci_tree() {
    rm -rf "$TMP/bundle" &&
    umoci unpack --image "$1:img" "$TMP/bundle" > /dev/null &&
    python3 "$top_srcdir/tests/helpers/mkfs-tree.py" scan "$TMP/bundle/rootfs" > "$2.raw" &&
    python3 "$top_srcdir/tests/helpers/oci-layout.py" umoci-norm "$2.raw" "$2" &&
    rm -rf "$TMP/bundle" "$2.raw"
}

# export_trees IMAGE DIR EXPORTS [KEY=VALUE...]: each export ("" for the
# flat one, layer/N) copied with nbdcopy from a fresh server, read back
# with sqfs2tar, its tree in DIR/t<export with - for />.json and the
# server's stats in DIR/st<same>.json.
export_trees() {
    local img=$1 dir=$2 exports=$3 e; shift 3
    mkdir -p "$dir"
    for e in $exports; do
        [ "$e" = flat ] && e=""
        nbdkit -U - -r "$PLUGIN" "$img" "$@" stats-file="$dir/st${e//\//-}.json" \
            --run "nbdcopy \"nbd+unix:///$e?socket=\$unixsocket\" '$dir/x.img'" &&
            sqfs2tar "$dir/x.img" > "$dir/x.tar" &&
            python3 "$top_srcdir/tests/helpers/mkfs-tree.py" tar "$dir/x.tar" \
                > "$dir/t${e//\//-}.json" || return 1
    done
    rm -f "$dir/x.img" "$dir/x.tar"
}

# buildah_push ROOT FORMAT LAYOUT: an image of the directory ROOT (copied
# into a container from scratch, committed) pushed by buildah with
# --compression-format FORMAT to the OCI layout LAYOUT:img.  buildah's
# storage (vfs) is in $TMP/buildah and emptied after.
buildah_push() {
    local b="buildah --root $TMP/buildah/root --runroot $TMP/buildah/run --storage-driver vfs" c r
    c=$($b from scratch) && $b copy "$c" "$1/" / > /dev/null &&
        $b commit -q "$c" sn-test > /dev/null &&
        $b push -q --compression-format "$2" sn-test "oci:$3:img"
    r=$?
    $b rm -a > /dev/null 2>&1; $b rmi -a -f > /dev/null 2>&1
    return $r
}

# tree_has_files DIR TREE.json: every entry under DIR is in TREE (a
# tests/helpers/mkfs-tree.py tree) with the same type, bytes, mode and link.
tree_has_files() {
    python3 "$top_srcdir/tests/helpers/mkfs-tree.py" scan "$1" > "$TMP/src.json" &&
    python3 - "$TMP/src.json" "$2" <<'PY'
import json, sys
src, got = (json.load(open(p)) for p in sys.argv[1:])
bad = [p for p, r in src.items() if p and (p not in got or
       any(r.get(k) != got[p].get(k) for k in ('type', 'sha', 'size', 'mode', 'link')))]
assert not bad, bad[:5]
PY
}

# wait_stats FILE EXPR [SECONDS]: until the stats expression holds (as
# stats_ok, which says why when it never does).
wait_stats() {
    local i
    for i in $(seq $(( ${3:-60} * 10 ))); do
        python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' \
            "$1" "$2" 2>/dev/null && return 0
        sleep 0.1
    done
    stats_ok "$1" "$2"
}

# fault_corrupt NAME DIGEST [PASS]: the fault proxy NAME flips a byte of
# every response for blob DIGEST, after PASS responses passed unchanged.
fault_corrupt() {
    local m="{\"path\": \"/blobs/$2\"}" pass=""
    [ -n "${3:-}" ] && pass="{\"match\": $m, \"action\": \"pass\", \"times\": $3},"
    fault_set "$1" "{\"rules\": [$pass {\"match\": $m, \"action\": \"corrupt\"}]}"
}

# lazy_reads_checks SOCK IMAGE PROXY_LOG PATH SIZE TAR: the TAP checks a
# layer served from its own TOC owes (tests/plugin/estargz.sh,
# zstd-chunked.sh): on a server for IMAGE (stats in SOCK.json), describing
# the whole tree through nbdfuse fetches no chunk and no range passes the
# proxy; then the SIZE bytes of file PATH (whose bytes `tar -xO PATH` of
# TAR gives), read at its place in the flat export (from its inode:
# metadata only; nbdfuse would add the kernel's readahead), are its bytes.
# The server is stopped after; PATH_START is left set (its data's offset).
lazy_reads_checks() {
    local sock=$1 img=$2 plog=$3 path=$4 size=$5 tarf=$6 p0 m
    check "server on the image, stats-file" plugin_start "$sock" "$img" stats-file="$sock.json"
    p0=$(wc -l < "$plog")
    check "nbdfuse: the flat export as a file" fuse_export "nbd+unix:///?socket=$sock" "$TMP/ff"
    check "rdsquashfs -d: the whole tree described" bash -c "
        rdsquashfs -d '$TMP/ff/img' > '$TMP/desc' && grep -q '$path' '$TMP/desc'"
    sleep 1.5   # the stats file is rewritten within a second of a change
    check "... fetched no chunk (stats), no range request after start (proxy log)" bash -c "
        python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); sys.exit(not (s[\"bytes_fetched\"] == 0 and s[\"spans_fetched\"] == 0))' '$sock.json' &&
        ! tail -n +\$(( $p0 + 1 )) '$plog' | grep -q '\"Range\"'"
    PATH_START=$(rdsquashfs -s "/$path" "$TMP/ff/img" | sed -n 's/^Blocks start: //p')
    for m in $MOUNTS; do umount "$m"; done; MOUNTS=""
    check "a $size-byte file's data, read at its place in the export: its bytes" bash -c "
        [ -n '$PATH_START' ] &&
        '$top_builddir/tests/helpers/nbd-read' 'nbd+unix:///?socket=$sock' '$PATH_START' '$size' > '$TMP/file' &&
        tar -xOf '$tarf' '$path' | cmp - '$TMP/file'"
    sleep 1.5
    plugin_stop "$sock"
}

# plugin_stop SOCK [SECONDS]: a TAP check that the nbdkit plugin_start
# started on SOCK stops: SIGTERM, then at most SECONDS (default STOP_WAIT,
# or 20) for it to exit with status 0.  A server still alive is "not ok",
# with the state, wait channel and kernel stack of each of its threads
# and their user stacks from gdb, and is then killed.
plugin_stop() {
    local sock=$1 limit=${2:-${STOP_WAIT:-20}} pid st=0 t
    TAP_N=$((TAP_N + 1))
    pid=$(cat "$sock.pid" 2>/dev/null)
    if [ -z "$pid" ] || ! _reg_running "$pid"; then
        echo "not ok $TAP_N - server on ${sock##*/} stops: it was not running"
        TAP_FAILED=$((TAP_FAILED + 1))
        return 1
    fi
    kill -TERM "$pid"
    if ! _reg_wait_for "$limit" _reg_stopped "$pid"; then
        local diag="" todo=""
        for t in /proc/"$pid"/task/*; do
            diag+="thread ${t##*/} ($(cat "$t/comm" 2>/dev/null)): state $(awk '{print $3}' "$t/stat" 2>/dev/null), wchan $(cat "$t/wchan" 2>/dev/null)"$'\n'
            diag+="$(sed 's/^/    /' "$t/stack" 2>/dev/null)"$'\n'
        done
        if command -v gdb >/dev/null; then
            # (and glibc's locale lock: exit has been seen waiting on it)
            diag+="$(timeout 60 gdb -p "$pid" -batch -ex 'thread apply all bt' \
                -ex 'p __libc_setlocale_lock' 2>&1 |
                grep -E '^(Thread|#|\$1 )' | head -200)"$'\n'
        fi
        # A known fault of the ASan runs only (nbdkit with libasan
        # preloaded): glibc's locale lock has lost a reader (its count
        # wrapped below zero) while curl and the plugin called strerror on
        # many threads, so exit, with every other thread gone, waits
        # forever in a library destructor (freelocale).  Reported as a TODO,
        # with the evidence; any other hang fails.
        if grep -q libasan "/proc/$pid/maps" 2>/dev/null &&
           [ "$(ls /proc/"$pid"/task | wc -l)" = 1 ] &&
           grep -q '__run_exit_handlers' <<< "$diag" &&
           grep -q '__readers = 42949672' <<< "$diag"; then
            todo=" # TODO ASan only: glibc's locale lock count wrapped, exit hangs in freelocale"
        fi
        echo "not ok $TAP_N - server on ${sock##*/} stops: pid $pid still alive ${limit}s after SIGTERM$todo"
        sed 's/^/# /' <<< "$diag"
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        [ -n "$todo" ] && return 0
        TAP_FAILED=$((TAP_FAILED + 1))
        return 1
    fi
    # Its exit status, when it is a child of this shell (plugin_start).
    case " ${NBDKIT_PIDS:-} " in
        *" $pid "*) wait "$pid" 2>/dev/null; st=$? ;;
    esac
    if [ "$st" -ne 0 ]; then
        echo "not ok $TAP_N - server on ${sock##*/} stops: exit status $st"
        tail -5 "$sock.log" 2>/dev/null | sed 's/^/# /'
        TAP_FAILED=$((TAP_FAILED + 1))
        return 1
    fi
    echo "ok $TAP_N - server on ${sock##*/} stops on SIGTERM"
}

# A process that exists and is not a zombie (kill -0 succeeds on zombies).
_reg_running() {
    local s
    s=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) && [ -n "$s" ] && [ "$s" != Z ]
}
_reg_stopped() { ! _reg_running "$1"; }

srv_cleanup() {
    local st=$? n d
    for n in $REG_NAMES; do
        reg_stop "$n"
    done
    if [ "${TAP_FAILED:-0}" -gt 0 ] || [ "${SN_KEEP_LOGS:-0}" = 1 ]; then
        for d in "$REG_BASE"/*/; do
            for f in "$d"*.log; do
                [ -s "$f" ] || continue
                case $f in */openssl.log) continue ;; esac
                echo "# ---- ${f#"$REG_BASE"/} (last 25 lines)"
                tail -25 "$f" | cut -c1-300 | sed 's/^/# /'
            done
        done
    fi
    if [ "${SN_KEEP_TMP:-0}" = 1 ]; then
        echo "# kept $TMP"
    else
        rm -rf "$TMP"
    fi
    return $st
}
