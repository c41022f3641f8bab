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

# Its virtio disk (iommu_platform=on: its DMA goes through the SMMU, in the $DOMAIN_TYPE domain
# its driver attached) reads and writes with direct I/O, checksummed. In a DMA domain each
# strict unmap was invalidated (INVALIDATE_INLINE: its one TLBI_NH_VA in registers), and the
# hypervisor refused none of them.
disk_io_through_its_default_domain() {
    for m in $MODULES; do insmod "/lib/modules/$m.ko" || { echo "insmod $m failed"; return 1; }; done
    wait_for_disk || return 1
    disk_reads_right && disk_writes_right 512 || return 1
    n=$(cat "/sys/module/$PVIOMMU/parameters/invalidates")
    if [ "$DOMAIN_TYPE" = DMA ] && [ "$n" -lt 100 ]; then echo "$n invalidations"; return 1; fi
    if dmesg | grep -q 'INVALIDATE of .* refused'; then dmesg | grep 'INVALIDATE of' | tail -n 1; return 1; fi
}

# edu_dma SRC DST CMD: one transfer of 8 bytes by its edu (CMD 3: from its buffer, at 0x40000,
# to device address DST; CMD 1: from device address SRC into its buffer), memory decoding and
# bus mastering turned on first, and waits for the transfer to end.
edu_dma() {
    bar=$(head -n 1 "/sys/bus/pci/devices/$EDU_FN/resource" | cut -d ' ' -f 1)
    [ -n "$bar" ] || { echo "no BAR0 for $EDU_FN"; return 1; }
    # Memory decoding and bus mastering on, as a driver's pci_set_master() would (through the
    # hypervisor's configuration-space filter, which lets the command register through).
    cfg="/sys/bus/pci/devices/$EDU_FN/config"
    printf '\006\000' | dd of="$cfg" bs=1 seek=4 count=2 conv=notrunc 2>/dev/null
    cmd=$(dd if="$cfg" bs=1 skip=4 count=2 2>/dev/null | od -An -tx2 | tr -d ' ')
    [ $((0x$cmd & 6)) = 6 ] || { echo "edu command register $cmd: no bus mastering"; return 1; }
    devmem $((bar + 0x80)) 64 "$1"
    devmem $((bar + 0x88)) 64 "$2"
    devmem $((bar + 0x90)) 64 8
    devmem $((bar + 0x98)) 64 "$3"
    i=0
    while [ $(( $(devmem $((bar + 0x98)) 64) & 1 )) = 1 ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
    [ $(( $(devmem $((bar + 0x98)) 64) & 1 )) = 0 ] || { echo "the edu's DMA never ended"; return 1; }
}

# edu_dma_to ADDR: its edu writes the 8 bytes of its buffer to device address ADDR.
edu_dma_to() { edu_dma 0x40000 "$1" 3; }

# edu_dma_from ADDR: its edu reads 8 bytes at device address ADDR into its buffer.
edu_dma_from() { edu_dma "$1" 0x40000 1; }

# fdt_bytes OFFSET: 8 bytes of its device tree's header, in hex, as its memory holds them now:
# /sys/firmware/fdt reads the blob where the hypervisor put it, at $DTB_IPA (Linux keeps it
# there, reserved, and never writes it after boot), so a DMA write there shows.
fdt_bytes() {
    dd if=/sys/firmware/fdt bs=1 skip="$1" count=8 2>/dev/null | od -An -tx1 | tr -d ' \n'
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

# Unbound, its group switched to the other domain type ($OTHER_TYPE: an identity domain, SET_STE
# bypass, its stage 2 alone, when it booted with DMA domains; a DMA domain when it booted in
# passthrough) and bound again, the disk reads and writes the same through it.
disk_rebinds_in_the_other_domain_type() {
    n=$(dmesg | grep -c "stream $DISK_SID: $OTHER_LINE")
    echo "$DISK_FN" > /sys/bus/pci/drivers/virtio-pci/unbind || { echo "unbind failed"; return 1; }
    [ ! -b /dev/vda ] || { echo "/dev/vda still there after unbind"; return 1; }
    echo "$OTHER_TYPE" > "/sys/bus/pci/devices/$DISK_FN/iommu_group/type" || { echo "cannot make the group $OTHER_TYPE"; return 1; }
    echo "$DISK_FN" > /sys/bus/pci/drivers/virtio-pci/bind || { echo "bind failed"; return 1; }
    wait_for_disk || return 1
    t=$(cat "/sys/bus/pci/devices/$DISK_FN/iommu_group/type")
    [ "$t" = "$OTHER_TYPE" ] || { echo "group type $t after the switch to $OTHER_TYPE"; return 1; }
    [ "$(dmesg | grep -c "stream $DISK_SID: $OTHER_LINE")" -gt "$n" ] || { echo "no new '$OTHER_LINE' in dmesg"; return 1; }
    disk_reads_right && disk_writes_right 768
}

# In the identity domain its edu reads and writes its own RAM at device address == IPA: it
# reads the first 8 bytes of its device tree (magic and size) and writes them 24 bytes further
# on, over the header's last_comp_version and boot_cpuid_phys, which nothing reads after boot
# (the check that the test below could see a DMA write that landed).
identity_dma_reaches_its_own_ram() {
    head=$(fdt_bytes 0)
    [ "$(fdt_bytes 24)" != "$head" ] || { echo "header bytes 24..31 already $head"; return 1; }
    edu_dma_from "$DTB_IPA" || return 1
    edu_dma_to $((DTB_IPA + 24)) || return 1
    got=$(fdt_bytes 24)
    [ "$got" = "$head" ] || { echo "its device tree's bytes 24..31 are $got after the edu wrote $head there"; return 1; }
}

# While the IOMMU core holds its devices (one module reference each: those in an IOMMU group),
# rmmod is refused and the module goes on working.
unload_refused_while_its_devices_are_probed() {
    n=$(ls -d /sys/bus/pci/devices/*/iommu_group 2>/dev/null | wc -l)
    refs=$(awk -v m="$PVIOMMU" '$1 == m { print $3 }' /proc/modules)
    [ "$n" -ge 1 ] && [ "$refs" = "$n" ] || { echo "$n devices in IOMMU groups, module references: $refs"; return 1; }
    if rmmod "$PVIOMMU" 2>/dev/null; then echo "rmmod succeeded with $n devices probed"; return 1; fi
    grep -q "^$PVIOMMU " /proc/modules || { echo "the module is gone after a refused rmmod"; return 1; }
    disk_reads_right
}

# Its SMMU power vote, cast by its IOMMU driver, follows its streams: need-on while its disk
# and edu are attached. Unbinding the IOMMU (its platform device's driver) releases their
# drivers and the core lets go of both, attaching the driver's blocked release domain
# (CLEAR_STE of each stream): the vote becomes allow-off, and the module's references go.
vote_follows_its_streams_and_the_iommu_lets_go() {
    v=$(cat "$VOTE_PARAM")
    case "$v" in need-on*) ;; *) echo "vote with its streams attached: $v"; return 1 ;; esac
    n=$(dmesg | grep -c "blocked (CLEAR_STE)")
    drv=/sys/bus/platform/drivers/$PVIOMMU_DRIVER
    [ -e "$drv/$PVIOMMU_DEV" ] || { echo "no $drv/$PVIOMMU_DEV"; return 1; }
    echo "$PVIOMMU_DEV" > "$drv/unbind" || { echo "unbinding $PVIOMMU_DEV failed"; return 1; }
    [ ! -b /dev/vda ] && [ ! -e "/sys/bus/pci/devices/$DISK_FN/driver" ] || { echo "the disk kept its driver"; return 1; }
    for f in $FUNCTIONS; do
        [ ! -e "/sys/bus/pci/devices/$f/iommu_group" ] || { echo "$f still in an IOMMU group"; return 1; }
    done
    v=$(cat "$VOTE_PARAM")
    case "$v" in allow-off*) ;; *) echo "vote with every stream blocked: $v"; return 1 ;; esac
    c=$(($(dmesg | grep -c "blocked (CLEAR_STE)") - n))
    [ "$c" -ge 2 ] || { echo "$c CLEAR_STEs in dmesg"; return 1; }
    dmesg | grep -q "paravirtual IOMMU unregistered, EVENT_READ poller stopped" || { echo "no unregistration in dmesg"; return 1; }
    refs=$(awk -v m="$PVIOMMU" '$1 == m { print $3 }' /proc/modules)
    [ "$refs" = 0 ] || { echo "module references after the release: $refs"; return 1; }
}

# With its devices released (the previous test), rmmod succeeds: the module blocks any stream
# still open (CLEAR_STE) and votes allow-off. A driver's probe now waits for it (the disk's is
# deferred: no /dev/vda), and its edu's DMA reaches nothing: the 8 bytes it holds (its device
# tree's first, read in the identity domain above), written over its device tree's header at
# $UNLOADED_DMA_OFFSET (size_dt_strings, size_dt_struct), leave it as it was (xtask checks in
# QEMU's trace that the SMMU aborted it).
module_unloads_and_every_stream_aborts() {
    rmmod "$PVIOMMU" || { echo "rmmod failed: $(grep "^$PVIOMMU " /proc/modules)"; return 1; }
    [ ! -d "/sys/module/$PVIOMMU" ] || { echo "/sys/module/$PVIOMMU still there"; return 1; }
    line=$(dmesg | grep "$PVIOMMU: unloaded after" | tail -n 1)
    case "$line" in *"blocked now; vote allow-off power"*) ;; *) echo "unload line: '$line'"; return 1 ;; esac
    for f in $FUNCTIONS; do echo "$f" > /sys/bus/pci/drivers_probe 2>/dev/null; done
    # Longer than the poller's period: a poll left queued would run code that is gone.
    sleep 0.5
    [ ! -b /dev/vda ] && [ ! -e "/sys/bus/pci/devices/$DISK_FN/driver" ] || { echo "the disk probed without its IOMMU"; return 1; }
    [ ! -e "/sys/bus/pci/devices/$EDU_FN/iommu_group" ] || { echo "the edu has an IOMMU group without the module"; return 1; }
    head=$(fdt_bytes 0)
    before=$(fdt_bytes "$UNLOADED_DMA_OFFSET")
    [ "$before" != "$head" ] || { echo "header bytes at $UNLOADED_DMA_OFFSET already $head"; return 1; }
    edu_dma_to $((DTB_IPA + UNLOADED_DMA_OFFSET)) || return 1
    after=$(fdt_bytes "$UNLOADED_DMA_OFFSET")
    [ "$after" = "$before" ] || { echo "the edu's DMA landed: its device tree's bytes at $UNLOADED_DMA_OFFSET went from $before to $after"; return 1; }
}

# Loaded again, the module takes the functions again: the disk's deferred probe goes through
# it, in a $DOMAIN_TYPE domain again, and its I/O checks pass; its vote is need-on again.
module_reloads_and_the_disk_probes_again() {
    n=$(dmesg | grep -c "stream $DISK_SID: $ATTACH_LINE")
    insmod "/lib/modules/$PVIOMMU.ko" || { echo "insmod $PVIOMMU failed"; return 1; }
    wait_for_disk || return 1
    t=$(cat "/sys/bus/pci/devices/$DISK_FN/iommu_group/type" 2>&1)
    [ "$t" = "$DOMAIN_TYPE" ] || { echo "disk's group type after the reload: $t"; return 1; }
    [ "$(dmesg | grep -c "stream $DISK_SID: $ATTACH_LINE")" -gt "$n" ] || { echo "no new '$ATTACH_LINE' in dmesg"; return 1; }
    v=$(cat "$VOTE_PARAM")
    case "$v" in need-on*) ;; *) echo "vote with the disk attached again: $v"; return 1 ;; esac
    disk_reads_right && disk_writes_right 896
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
run disk_io_through_its_default_domain disk_io_through_its_default_domain
run unmapped_iova_faults_and_is_reported unmapped_iova_faults_and_is_reported
run disk_rebinds_in_the_other_domain_type disk_rebinds_in_the_other_domain_type
run identity_dma_cannot_leave_its_ram identity_dma_cannot_leave_its_ram
run identity_dma_reaches_its_own_ram identity_dma_reaches_its_own_ram
run its_timer_interrupts_arrive its_timer_interrupts_arrive
run unload_refused_while_its_devices_are_probed unload_refused_while_its_devices_are_probed
run vote_follows_its_streams_and_the_iommu_lets_go vote_follows_its_streams_and_the_iommu_lets_go
run module_unloads_and_every_stream_aborts module_unloads_and_every_stream_aborts
run module_reloads_and_the_disk_probes_again module_reloads_and_the_disk_probes_again
echo "$passed passed, $failed failed"
poweroff -f
