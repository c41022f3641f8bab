#!/bin/sh
# /init of the native run: the same kernel and initramfs on QEMU alone, no hypervisor (put in the
# initramfs by xtask/src/kmod.rs). The smmu_hyp module must refuse to load, saying why, and the
# bench's instruction counter must work there (EL2 counted as 0; QEMU implements the PMU's
# instruction event only under -icount).
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
# shellcheck source=lib/hyp-test/common.sh
. /lib/hyp-test/common.sh
# shellcheck source=etc/hyp-test.env
. /etc/hyp-test.env

kmod_refuses_without_a_hypervisor() {
    if insmod /lib/modules/$KMOD.ko 2>/dev/null; then rmmod $KMOD; echo "loaded with no hypervisor below"; return 1; fi
    want="$KMOD: the CPU implements no EL2 (ID_AA64PFR0_EL1.EL2 = 0): no hypervisor to call, HVC would be UNDEFINED; not loading"
    dmesg | grep -qF "$want" || { echo "no '$want' in dmesg: $(dmesg | grep $KMOD)"; return 1; }
    [ ! -e /sys/hypervisor/$KMOD ] || { echo "/sys/hypervisor/$KMOD left behind"; return 1; }
}

pmu_counts_instructions() {
    out=$(icount run true) || { echo "icount: $out"; return 1; }
    set -- $out
    [ "$1 $3 $5 $7" = "instructions el2 el1 el0" ] || { echo "icount printed: $out"; return 1; }
    [ "$2" -gt 10000 ] && [ "$4" = 0 ] && [ "$2" = $(($4 + $6 + $8)) ] || { echo "counts: $out"; return 1; }
}

run kmod_refuses_without_a_hypervisor kmod_refuses_without_a_hypervisor
run pmu_counts_instructions pmu_counts_instructions
echo "$passed passed, $failed failed"
poweroff -f
