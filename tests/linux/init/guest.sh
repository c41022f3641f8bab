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

# The disk's first MiB as the image holds it: sector N starts with `smmu-hyp test disk sector N`
# (the rest of each sector is zeros), read with direct I/O and compared whole.
disk_reads_right() {
    got=$(dd if=/dev/vda bs=4096 count=256 iflag=direct 2>/dev/null | tr -d '\000' | md5sum)
    want=$(seq 0 2047 | sed 's/^/smmu-hyp test disk sector /' | md5sum)
    [ "$got" = "$want" ] || { echo "the disk's first MiB reads wrong ($got, expected $want)"; return 1; }
}

# 64 KiB of random data written with direct I/O and read back the same (the overlay QEMU keeps
# for this run takes the writes).
disk_writes_right() {
    dd if=/dev/urandom of=/tmp/pattern bs=4096 count=16 2>/dev/null
    dd if=/tmp/pattern of=/dev/vda bs=4096 seek="$1" count=16 oflag=direct 2>/dev/null || { echo "write failed"; return 1; }
    a=$(md5sum < /tmp/pattern)
    b=$(dd if=/dev/vda bs=4096 skip="$1" count=16 iflag=direct 2>/dev/null | md5sum)
    [ "$a" = "$b" ] || { echo "wrote $a, read back $b"; return 1; }
}

wait_for_disk() {
    i=0
    while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    [ -b /dev/vda ] || { echo "no /dev/vda: $(dmesg | grep -i -E 'virtio|pviommu|stream' | tail -n 3)"; return 1; }
}

# Its virtio disk (iommu_platform=on: its DMA goes through the SMMU, in the DMA domain its
# driver attached) reads and writes with direct I/O, checksummed.
disk_io_through_its_dma_domain() {
    for m in $MODULES; do insmod "/lib/modules/$m.ko" || { echo "insmod $m failed"; return 1; }; done
    wait_for_disk || return 1
    disk_reads_right && disk_writes_right 512
}

# edu_dma_to ADDR: its edu writes 8 bytes of its buffer to device address ADDR (memory decoding
# and bus mastering turned on first, as a driver's pci_set_master() would, through the
# hypervisor's configuration-space filter), and the transfer ends.
edu_dma_to() {
    bar=$(head -n 1 "/sys/bus/pci/devices/$EDU_FN/resource" | cut -d ' ' -f 1)
    [ -n "$bar" ] || { echo "no BAR0 for $EDU_FN"; return 1; }
    # Memory decoding and bus mastering on, as a driver's pci_set_master() would (through the
    # hypervisor's configuration-space filter, which lets the command register through).
    cfg="/sys/bus/pci/devices/$EDU_FN/config"
    printf '\006\000' | dd of="$cfg" bs=1 seek=4 count=2 conv=notrunc 2>/dev/null
    cmd=$(dd if="$cfg" bs=1 skip=4 count=2 2>/dev/null | od -An -tx2 | tr -d ' ')
    [ $((0x$cmd & 6)) = 6 ] || { echo "edu command register $cmd: no bus mastering"; return 1; }
    devmem $((bar + 0x80)) 64 0x40000
    devmem $((bar + 0x88)) 64 "$1"
    devmem $((bar + 0x90)) 64 8
    devmem $((bar + 0x98)) 64 3
    i=0
    while [ $(( $(devmem $((bar + 0x98)) 64) & 1 )) = 1 ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
}

# DMA by its edu to an IOVA its domain never mapped: the SMMU aborts it, the hypervisor routes
# the event to this guest, the driver reads it (EVENT_READ) and reports it through Linux's
# fault reporting, with a line naming the stream and the IOVA.
unmapped_iova_faults_and_is_reported() {
    # Bound to a driver, the edu gets an IOMMU group and a DMA domain that maps nothing.
    echo "$EDU_IDS" > /sys/bus/pci/drivers/uio_pci_generic/new_id || { echo "cannot bind the edu"; return 1; }
    i=0
    while [ ! -e "/sys/bus/pci/devices/$EDU_FN/iommu_group" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    t=$(cat "/sys/bus/pci/devices/$EDU_FN/iommu_group/type" 2>&1)
    [ "$t" = "$DOMAIN_TYPE" ] || { echo "edu's group type: $t"; return 1; }
    edu_dma_to "$UNMAPPED_IOVA" || return 1
    fault_reported "$UNMAPPED_IOVA"
}

# fault_reported ADDR: the driver's fault line for a write by its edu to ADDR appears (event
# 0x10, F_TRANSLATION: at stage 1 in a DMA domain, at stage 2 in an identity domain).
fault_reported() {
    want="SMMU fault: stream $EDU_SID event 0x10 write at IOVA $1 "
    i=0
    while ! dmesg | grep -qF "$want" && [ $i -lt 40 ]; do sleep 0.05; i=$((i + 1)); done
    dmesg | grep -qF "$want" || { echo "no '$want' in dmesg: $(dmesg | grep -i fault | tail -n 2)"; return 1; }
}

# In an identity domain (its stage 2 alone) its edu's DMA to the host's RAM, guest2's RAM and
# the hypervisor's image faults at stage 2, is reported, and lands nowhere (QEMU's trace check:
# every translation stays in the stream owner's RAM).
identity_dma_cannot_leave_its_ram() {
    echo "$EDU_FN" > /sys/bus/pci/drivers/uio_pci_generic/unbind || { echo "unbind failed"; return 1; }
    echo identity > "/sys/bus/pci/devices/$EDU_FN/iommu_group/type" || { echo "cannot make the group identity"; return 1; }
    echo "$EDU_FN" > /sys/bus/pci/drivers/uio_pci_generic/bind || { echo "bind failed"; return 1; }
    for a in $FOREIGN; do
        edu_dma_to "$a" || return 1
        fault_reported "$a" || return 1
    done
}

# Unbound, its group switched to an identity domain (SET_STE bypass: its stage 2 alone) and
# bound again, the disk reads and writes the same through it.
disk_rebinds_in_an_identity_domain() {
    echo "$DISK_FN" > /sys/bus/pci/drivers/virtio-pci/unbind || { echo "unbind failed"; return 1; }
    [ ! -b /dev/vda ] || { echo "/dev/vda still there after unbind"; return 1; }
    echo identity > "/sys/bus/pci/devices/$DISK_FN/iommu_group/type" || { echo "cannot make the group identity"; return 1; }
    echo "$DISK_FN" > /sys/bus/pci/drivers/virtio-pci/bind || { echo "bind failed"; return 1; }
    wait_for_disk || return 1
    t=$(cat "/sys/bus/pci/devices/$DISK_FN/iommu_group/type")
    [ "$t" = identity ] || { echo "group type $t after the switch"; return 1; }
    dmesg | grep -q "stream $DISK_SID: identity domain (SET_STE bypass" || { echo "no identity SET_STE in dmesg"; return 1; }
    disk_reads_right && disk_writes_right 768
}

# Its SMMU power vote, cast by its IOMMU driver, follows its streams: need-on while its disk
# and edu are attached; once both functions are removed (the core attaches the driver's
# release domain, blocked: CLEAR_STE of every stream) it allows the SMMU off.
vote_follows_its_streams() {
    v=$(cat "$VOTE_PARAM")
    case "$v" in need-on*) ;; *) echo "vote with its streams attached: $v"; return 1 ;; esac
    for f in $FUNCTIONS; do echo 1 > "/sys/bus/pci/devices/$f/remove" || { echo "cannot remove $f"; return 1; }; done
    v=$(cat "$VOTE_PARAM")
    case "$v" in allow-off*) ;; *) echo "vote with every stream blocked: $v"; return 1 ;; esac
    n=$(dmesg | grep -c "blocked (CLEAR_STE)")
    [ "$n" -ge 2 ] || { echo "$n CLEAR_STEs in dmesg"; return 1; }
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
run disk_io_through_its_dma_domain disk_io_through_its_dma_domain
run unmapped_iova_faults_and_is_reported unmapped_iova_faults_and_is_reported
run disk_rebinds_in_an_identity_domain disk_rebinds_in_an_identity_domain
run identity_dma_cannot_leave_its_ram identity_dma_cannot_leave_its_ram
run its_timer_interrupts_arrive its_timer_interrupts_arrive
run vote_follows_its_streams vote_follows_its_streams
echo "$passed passed, $failed failed"
poweroff -f
