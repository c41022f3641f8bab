#!/bin/sh
# /init of a Linux guest (guest1: the same Debian kernel as the host, unmodified), put in its
# initramfs by xtask/src/linux/guest.rs. Its console is the PL011 the hypervisor emulates: every
# line appears as `[guest1] ...` in the hypervisor's log. It checks what it was given (its own
# PCI functions only, its disk through the SMMU, its timer), then powers off with PSCI
# SYSTEM_OFF, which stops this VM alone.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
# shellcheck source=lib/hyp-test/common.sh
. /lib/hyp-test/common.sh
# shellcheck source=etc/hyp-test.env
. /etc/hyp-test.env

echo "$GUEST_HELLO"

# Its configuration space shows its own functions and nothing else (the hypervisor's filter).
sees_only_its_own_functions() {
    got=$(cd /sys/bus/pci/devices && echo *)
    [ "$got" = "$FUNCTIONS" ] || { echo "PCI functions: $got, expected $FUNCTIONS"; return 1; }
    for f in $FUNCTIONS; do
        v=$(cat "/sys/bus/pci/devices/$f/vendor"):$(cat "/sys/bus/pci/devices/$f/device")
        case " $IDS " in *" $f=$v "*) ;; *) echo "$f is $v"; return 1 ;; esac
    done
}

# Its paravirtual IOMMU driver loads and takes its functions: the disk's driver (built-in
# virtio-pci), which waited for it, probes, in a group whose default domain is a DMA domain
# ($DOMAIN_TYPE: the driver's io-pgtable stage 1, attached with SET_STE and nested by the
# hypervisor on the guest's stage 2; with iommu.passthrough=1 an identity domain).
pviommu_takes_its_functions() {
    insmod "/lib/modules/$PVIOMMU.ko" || { echo "insmod $PVIOMMU failed"; return 1; }
    i=0
    while [ ! -e "/sys/bus/pci/devices/$DISK_FN/iommu_group" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    t=$(cat "/sys/bus/pci/devices/$DISK_FN/iommu_group/type" 2>&1)
    [ "$t" = "$DOMAIN_TYPE" ] || { echo "disk's group type: $t; $(dmesg | grep -i -E 'iommu|pviommu' | tail -n 3)"; return 1; }
    dmesg | grep -q "stream $DISK_SID: $ATTACH_LINE" || { echo "no '$ATTACH_LINE' in dmesg: $(dmesg | grep -E 'stream|pviommu' | tail -n 3)"; return 1; }
}

# Its virtio disk (iommu_platform=on: its DMA goes through the SMMU, on the identity domain its
# driver attached) reads what the image holds, with direct I/O.
reads_its_disk_through_the_smmu() {
    for m in $MODULES; do insmod "/lib/modules/$m.ko" || { echo "insmod $m failed"; return 1; }; done
    i=0
    while [ ! -b /dev/vda ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    [ -b /dev/vda ] || { echo "no /dev/vda: $(dmesg | grep -i virtio | tail -n 3)"; return 1; }
    got=$(dd if=/dev/vda bs=512 skip=4097 count=1 iflag=direct 2>/dev/null | head -n 1)
    [ "$got" = "smmu-hyp test disk sector 4097" ] || { echo "sector 4097 reads '$got'"; return 1; }
    sum=$(dd if=/dev/vda bs=4096 count=256 iflag=direct 2>/dev/null | md5sum)
    sum2=$(dd if=/dev/vda bs=4096 count=256 iflag=direct 2>/dev/null | md5sum)
    [ "$sum" = "$sum2" ] || { echo "two direct reads of 1 MiB differ: $sum / $sum2"; return 1; }
}

# Its virtual timer (PPI 27, in its own redistributor) ticks: a sleep ends.
its_timer_interrupts_arrive() {
    before=$(grep -E '^ *[0-9]+:.*arch_timer' /proc/interrupts | awk '{print $2}')
    sleep 0.2
    after=$(grep -E '^ *[0-9]+:.*arch_timer' /proc/interrupts | awk '{print $2}')
    if [ -z "$before" ] || [ "$after" -le "$before" ]; then echo "timer count $before -> $after"; return 1; fi
}

run sees_only_its_own_functions sees_only_its_own_functions
run pviommu_takes_its_functions pviommu_takes_its_functions
run reads_its_disk_through_the_smmu reads_its_disk_through_the_smmu
run its_timer_interrupts_arrive its_timer_interrupts_arrive
echo "$passed passed, $failed failed"
poweroff -f
