#!/bin/bash
# soci-nbd tests: `soci-nbd ztoc create` reproduces every ztoc the reference
# soci implementation made (tests/data, digests in SHA256SUMS), byte for byte.
. "${top_srcdir:-$(dirname "$0")/../..}/tests/helpers/lib.sh"

ref() { awk -v f="$1" '$2 == f { print $1 }' "$DATA/SHA256SUMS"; }
REF="AWS SOCI CLI v0.2"

create() { # LAYER SPAN OUT [ENV...]
    layer=$1 span=$2 out=$3; shift 3
    env "$@" "$SOCI_NBD" ztoc create -q --build-tool-id "$REF" \
        --span-size "$span" -o "$TMP/$out" "$DATA/$layer"
}

check "A.tar.gz, span 4M"          create A.tar.gz 4194304 A.ztoc
check "  digest matches reference" test "$(sha "$TMP/A.ztoc")" = "$(ref A.ztoc)"
check "A.tar.gz, span 4096"        create A.tar.gz 4096 A4096.ztoc
check "  digest matches reference" test "$(sha "$TMP/A4096.ztoc")" = "$(ref A4096.ztoc)"
check "A.tar (uncompressed)"       create A.tar 4096 Atar.ztoc
check "  digest matches reference" test "$(sha "$TMP/Atar.ztoc")" = "$(ref Atar.ztoc)"
check "B.tar.gz, span 4096"        create B.tar.gz 4096 B.ztoc
check "  digest matches reference" test "$(sha "$TMP/B.ztoc")" = "$(ref B.ztoc)"
# mod_time is written in UTC whatever the builder's time zone.
check "A.tar.gz under TZ=America/Los_Angeles" \
    create A.tar.gz 4194304 A_la.ztoc TZ=America/Los_Angeles
check "  still equals the UTC reference" \
    test "$(sha "$TMP/A_la.ztoc")" = "$(ref A.ztoc)"
check "  and differs from the reference's local-time ztoc" \
    test "$(sha "$TMP/A_la.ztoc")" != "$(ref A_la.ztoc)"
# The default build tool id is ours, which changes the digest.
check "default build tool id" \
    "$SOCI_NBD" ztoc create -q -s 4096 -o "$TMP/own.ztoc" "$DATA/A.tar.gz"
check "  is soci-nbd's own" grep -q "soci-nbd" "$TMP/own.ztoc"
check "  so the digest differs" \
    test "$(sha "$TMP/own.ztoc")" != "$(ref A4096.ztoc)"
# Output names the digest and size.
check "create prints digest and size" \
    bash -c "'$SOCI_NBD' ztoc create -b '$REF' -s 4096 -o '$TMP/x.ztoc' '$DATA/B.tar.gz' |
             grep -qx 'sha256:$(ref B.ztoc) 230912 $TMP/x.ztoc'"
finish
