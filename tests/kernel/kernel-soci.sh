#!/bin/bash
# soci-nbd tests: the nbdkit soci plugin as the NBD server of the QEMU
# guest tests of tests/kernel/kernel-nbd.sh (sourced, with its parameters set).
#
# The image (the 4 layers kernel-nbd.sh builds) is pushed to a real
# docker-registry with a v2 SOCI index (ztocs of L1..L3 at 64 KiB spans;
# L4 has none) and served lazily from there.  The guest attaches "flat"
# (the alias of the export "") and layer/0..2 with nbd-client, then as
# virtio disks, and compares the bytes with `soci-nbd mkfs` of the same
# layer files and the trees with the reference.  In boot 2 the host also
# kills and restarts the server (same arguments) under the attached virtio
# disks (QEMU's NBD client reconnects) and the guest reads the whole flat
# disk again.  The stats-file proves the indexed layers were read by spans,
# never fetched whole.
. "${top_srcdir:-$(dirname "$0")/../..}/tests/registry/lib.sh"

PLUGIN=$top_builddir/plugin/.libs/nbdkit-soci-plugin.so
IMGPY="python3 $top_srcdir/tests/helpers/plugin-image.py"
STATS=$TMP/stats.json
export PLUGIN STATS

nbdkit_asan_wrapper "$PLUGIN"
[ -f "$PLUGIN" ] || { echo "Bail out! $PLUGIN not built"; exit 1; }

# kernel-nbd.sh calls it once the layers $L1..$L4 exist.
kernel_nbd_setup() {
    reg_start R || { echo "Bail out! registry did not start"; exit 1; }
    for l in "$L1" "$L2" "$L3"; do
        "$SOCI_NBD" ztoc create -q -s 64K -o "$l.ztoc" "$l" ||
            { echo "Bail out! ztoc create $l"; exit 1; }
    done
    eval "$($IMGPY push "$R_URL" test/img "$L1" "$L2" "$L3" "$L4" \
            --ztoc "$L1=$L1.ztoc" --ztoc "$L2=$L2.ztoc" --ztoc "$L3=$L3.ztoc")" ||
        { echo "Bail out! push failed"; exit 1; }
    IMAGE=$R_HOST/test/img:v2
    export IMAGE
}
kernel_nbd_cleanup() { srv_cleanup; }

# stats_ok PYTHON-EXPR: the expression holds for the stats JSON (s).
stats_ok() {
    python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' "$STATS" "$1" ||
        { grep -v '"exports"\|bytes_read' "$STATS" | cut -c1-200 | sed 's/^/# /' >&2; return 1; }
}

# After both boots: the statistics of the server started at the restart
# (during boot 2, before the guest read the whole flat disk again), written
# at its exit.
kernel_nbd_checks() {
    kill "$(cat "$PIDFILE")" 2>/dev/null
    wait "$SPID" 2>/dev/null
    SPID=
    check "stats: the v2 index was found" \
        stats_ok "s['index_source'] == 'v2' and s['index'] == '$IDX2'"
    check "stats: layers 0-2 lazy (spans fetched and verified), layer 3 (no ztoc) fetched whole" \
        stats_ok "[l['lazy'] for l in s['layers']] == [True, True, True, False] and \
            all(l['spans_fetched'] >= 1 and l['whole_layer_bytes_fetched'] == 0 \
                for l in s['layers'][:3]) and \
            s['whole_layer_bytes_fetched'] == $(stat -c %s "$L4") and \
            s['spans_fetched'] == s['spans_verified'] and s['spans_failed'] == 0"
    check "stats: the restarted server served the guest's read of the whole flat export" \
        stats_ok "s['exports']['flat']['bytes_read'] >= $(stat -c %s "$EX/flat.sqfs")"
}

KERNEL_NBD_SERVER='nbdkit -U "$SOCK" -r -P "$PIDFILE" -f "$PLUGIN" "$IMAGE" stats-file="$STATS"'
KERNEL_NBD_FLAT=flat
KERNEL_NBD_LAYERS="layer/0 layer/1 layer/2"
KERNEL_NBD_RESTART=1
KERNEL_NBD_TIMEOUT=110
. "$top_srcdir/tests/kernel/kernel-nbd.sh"
