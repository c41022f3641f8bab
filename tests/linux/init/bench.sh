#!/bin/sh
# /init of `cargo xtask bench`'s Linux runs (put in the initramfs by xtask/src/initscript.rs,
# with its values in /etc/hyp-test.env). Prints `linuxbench ...` lines, which
# xtask/src/bench.rs reads.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
# shellcheck source=etc/hyp-test.env
. /etc/hyp-test.env
# shellcheck source=lib/hyp-test/benchlib.sh
. /lib/hyp-test/benchlib.sh
for m in $MODULES; do insmod /lib/modules/$m.ko || echo "linuxbench note: insmod $m failed"; done
wait_for_disk smmu
g=$DISK_DEV/iommu_group/type
echo "linuxbench iommu $(cat $g 2>/dev/null || echo none) $(cat /proc/cmdline)"
if insmod /lib/modules/smmu_hyp.ko 2>/dev/null; then
    H=/sys/hypervisor/smmu_hyp/smmu
else
    H=
    echo "linuxbench module $(dmesg | grep smmu_hyp: | tail -1 | sed 's/^\[[ 0-9.]*\] //')"
fi
smmu() { [ -n "$H" ] && echo "$(cat $H/commands) $(cat $H/syncs)" || echo "- -"; }
warm_up
# Every 4 KiB I/O this /init makes on the disk (the warm-up's included): the hypervisor's
# counts of trapped SMMU accesses over the whole run are divided by it.
ios_total=$((2 * N2))
# One dd (`read`, `write`), then two at once on different blocks (`read2`, `write2`: the
# count printed is what both moved together).
for op in read write read2 write2; do
    before=$(smmu)
    for _ in $(seq $REPS); do
        for n in $N $N2; do
            c=$(measure $op $n)
            case $op in
            *2) blocks=$((2 * n)) ;;
            *) blocks=$n ;;
            esac
            out="$out
linuxbench $op $blocks $c"
        done
    done
    case $op in
    *2) ios=$((2 * IOS)) ;;
    *) ios=$IOS ;;
    esac
    ios_total=$((ios_total + ios))
    out="$out
linuxbench smmu $op $before $(smmu) $ios"
done
out="$out
linuxbench ios $ios_total"
print_kept
done_
