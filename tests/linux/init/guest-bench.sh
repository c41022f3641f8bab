#!/bin/sh
# /init of guest1 (a Linux guest) in `cargo xtask bench`'s guest run (put in its initramfs by
# xtask/src/linux/guest.rs, with its values in /etc/hyp-test.env): the host's 4 KiB direct-I/O
# measurement (tests/linux/init/bench.sh) on guest1's own disk, whose DMA goes through the
# paravirtual IOMMU driver (strict DMA domain: one INVALIDATE hypercall per iotlb_sync). Prints
# `linuxbench ...` lines (as `[guest1] ...` in the hypervisor's log), which xtask/src/bench.rs
# reads, then powers off (PSCI SYSTEM_OFF: this VM alone).
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
# shellcheck source=etc/hyp-test.env
. /etc/hyp-test.env
# shellcheck source=lib/hyp-test/benchlib.sh
. /lib/hyp-test/benchlib.sh
insmod "/lib/modules/$PVIOMMU.ko" || echo "linuxbench note: insmod $PVIOMMU failed"
for m in $MODULES; do insmod /lib/modules/$m.ko || echo "linuxbench note: insmod $m failed"; done
wait_for_disk pviommu
echo "linuxbench iommu $(cat "/sys/bus/pci/devices/$DISK_FN/iommu_group/type" 2>/dev/null || echo none) $(cat /proc/cmdline)"
# The driver's counts of its hypercalls: all of them, and the INVALIDATEs among them.
P=/sys/module/$PVIOMMU/parameters
calls() { echo "$(cat $P/hypercalls 2>/dev/null || echo -) $(cat $P/invalidates 2>/dev/null || echo -)"; }
warm_up
for op in read write; do
    before=$(calls)
    for _ in $(seq $REPS); do
        for n in $N $N2; do
            c=$(measure $op $n)
            out="$out
linuxbench $op $n $c"
        done
    done
    out="$out
linuxbench hypercalls $op $before $(calls) $IOS"
done
print_kept
done_
