#!/bin/sh
# The Linux host's tests: /init of the Linux-host runs (xtask/src/linux/init.rs puts it in the
# initramfs). What they expect, computed by xtask from the platform description and the ABI, is
# in /etc/hyp-test.env, written for each run. Each test prints `test NAME ... ok` or
# `test NAME ... FAILED: why`; the last line is the summary.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
# shellcheck source=lib/hyp-test/common.sh
. /lib/hyp-test/common.sh
# shellcheck source=etc/hyp-test.env
. /etc/hyp-test.env
# The host kernel's side of the hypercall ABI: the smmu_hyp module's tests.
# shellcheck source=lib/hyp-test/kmod.sh
. /lib/hyp-test/kmod.sh
echo "host: Linux $(uname -r) reached userspace after $(cut -d' ' -f1 /proc/uptime) s"
if grep -q "$PANIC_ARG" /proc/cmdline; then
    echo "host: panicking on purpose: with panic=-1 the kernel resets (PSCI SYSTEM_RESET)"
    echo c > /proc/sysrq-trigger
fi
# Runs devmem in a child: prints its exit status (135 = killed by SIGBUS: the access faulted).
probe() {
    (devmem "$@") >/dev/null 2>&1
    echo $?
}
# Dword N (0-based) of a function's configuration space, as 8 hex digits.
config_dword() {
    dd if=$1/config bs=4 skip=$2 count=1 2>/dev/null | hexdump -v -e '1/4 "%08x"'
}
# Writes dword N of a function's configuration space (one 4-byte write: the kernel makes one
# configuration write of it).
set_config_dword() {
    v=$(($3))
    printf "\\$(printf %03o $((v & 255)))\\$(printf %03o $(((v >> 8) & 255)))\\$(printf %03o $(((v >> 16) & 255)))\\$(printf %03o $(((v >> 24) & 255)))" |
        dd of=$1/config bs=4 seek=$2 count=1 conv=notrunc 2>/dev/null
}

memory_is_exactly_ours() {
    nodes=$(ls -d /sys/firmware/devicetree/base/memory@*)
    [ "$nodes" = "$RAM_NODE" ] || { echo "memory nodes: $nodes"; return 1; }
    reg=$(hexdump -v -e '1/1 "%02x"' "$nodes/reg")
    [ "$reg" = "$RAM_REG" ] || { echo "memory reg $reg"; return 1; }
    ram=$(grep "System RAM" /proc/iomem | grep -v "^ " | tr '\n' ' ')
    [ "$ram" = "$RAM_IOMEM " ] || { echo "/proc/iomem: $ram"; return 1; }
    grep -qx "$SHADOW_IOMEM" /proc/iomem || { echo "/proc/iomem: no $SHADOW_IOMEM"; return 1; }
}

# Its CPUs, as its tree names them and PSCI started them: all online.
its_cpus() {
    n=$(grep -c ^processor /proc/cpuinfo)
    [ "$n" = "$HOST_CPU_COUNT" ] || { echo "$n processors"; return 1; }
    [ "$(nproc)" = "$HOST_CPU_COUNT" ] || { echo "nproc says $(nproc)"; return 1; }
    for f in possible present online; do
        [ "$(cat /sys/devices/system/cpu/$f)" = "$HOST_CPU_LIST" ] || { echo "$f CPUs $(cat /sys/devices/system/cpu/$f)"; return 1; }
    done
    cpus=$(cd /sys/firmware/devicetree/base/cpus && echo cpu@*)
    [ "$cpus" = "$HOST_CPU_NODES" ] || { echo "CPU nodes $cpus"; return 1; }
    dmesg | grep -q "CPU$SECOND_CPU: Booted secondary processor" || { echo "no 'CPU$SECOND_CPU: Booted secondary processor' in dmesg"; return 1; }
}

# The interrupt counts of /proc/interrupts rows matching $1, summed per CPU: "cpu0 cpu1".
per_cpu() {
    grep "$1" /proc/interrupts | awk '{a += $2; b += $3} END {print a + 0, b + 0}'
}

# Its CPUs interrupt each other (SGIs through ICC_SGI1R_EL1, trapped since FMO is set on its
# CPUs and sent by the hypervisor to its own CPUs): making tasks run on
# the other CPU and wait for each other raises IPIs on both.
ipis_between_its_cpus() {
    # shellcheck disable=SC2046
    set -- $(per_cpu "^ *IPI")
    for i in 1 2 3 4 5 6 7 8 9 10; do
        taskset $SECOND_CPU_MASK true
        taskset 0x1 true
        : $i
    done
    # shellcheck disable=SC2046
    set -- "$@" $(per_cpu "^ *IPI")
    [ "$3" -gt "$1" ] && [ "$4" -gt "$2" ] || { echo "IPIs per CPU $1 $2 -> $3 $4"; return 1; }
}

# Its own SPI (the serial port's INTx) routed to its second CPU through Linux's affinity: the
# distributor filter lets the route through, and the interrupt is taken there.
own_spi_on_its_second_cpu() {
    irq=$(grep ttyS0 /proc/interrupts | cut -d: -f1 | tr -d ' ')
    echo $SECOND_CPU > /proc/irq/$irq/smp_affinity_list || { echo "affinity of IRQ $irq refused"; return 1; }
    r=$(devmem $OWN_IROUTER 64)
    s1=$(grep ttyS0 /proc/interrupts | awk '{print $3}')
    echo "host: its serial port's interrupt now on CPU $SECOND_CPU" > /dev/console
    sleep 1
    s2=$(grep ttyS0 /proc/interrupts | awk '{print $3}')
    echo $FIRST_CPU > /proc/irq/$irq/smp_affinity_list
    [ $((r)) = $((SECOND_CPU_AFFINITY)) ] || { echo "IROUTER of $OWN_INTID reads $r"; return 1; }
    [ -n "$s1" ] && [ "$s2" -gt "$s1" ] || { echo "ttyS0 interrupts on CPU $SECOND_CPU $s1 -> $s2"; return 1; }
}

# What psci_checks logged for CALL on CPU: must be $3.
psci_said() {
    dmesg | grep -qF "psci_checks: $1 cpu=$2 -> $3" || { echo "not '$1 cpu=$2 -> $3': $(dmesg | grep "psci_checks: $1 cpu=$2 " | tail -1)"; return 1; }
}

# PSCI naming a CPU that is not its own (the guests', one the board does not have): CPU_ON and
# AFFINITY_INFO, SMC64 and SMC32, INVALID_PARAMETERS, an entry point in its own RAM given.
# (CPU_OFF and CPU_SUSPEND name no CPU: they act on the caller's.) Its own running CPU: on.
psci_refused_for_cpus_not_its_own() {
    insmod /lib/modules/psci_checks.ko foreign="$(echo $FOREIGN_CPUS | tr ' ' ,)" entry=$HOST_ENTRY || { echo "insmod psci_checks failed"; return 1; }
    rmmod psci_checks
    dmesg | grep -q "psci_checks: done" || { echo "psci_checks did not finish"; return 1; }
    for c in $FOREIGN_CPUS; do
        for call in CPU_ON CPU_ON32 AFFINITY_INFO AFFINITY_INFO32; do
            psci_said $call $c $PSCI_INVALID_PARAMETERS || return 1
        done
    done
    psci_said CPU_ON $FIRST_CPU $PSCI_ALREADY_ON || return 1
    psci_said AFFINITY_INFO $FIRST_CPU $PSCI_AFFINITY_ON || return 1
}

# CPU hotplug: its second CPU goes off (PSCI CPU_OFF: the physical CPU powers off), PSCI reports
# it off and will not start it at an entry point outside its RAM, then it comes back (PSCI
# CPU_ON at Linux's entry point) and a task runs on it.
second_cpu_hotplug_off_and_on() {
    online=/sys/devices/system/cpu/cpu$SECOND_CPU/online
    t1=$(per_cpu arch_timer)
    echo 0 > $online || { echo "offlining CPU $SECOND_CPU failed"; return 1; }
    [ "$(cat /sys/devices/system/cpu/online)" = "$FIRST_CPU" ] || { echo "online CPUs $(cat /sys/devices/system/cpu/online)"; return 1; }
    dmesg | grep -q "psci: CPU$SECOND_CPU killed" || { echo "no 'psci: CPU$SECOND_CPU killed': $(dmesg | grep -i cpu$SECOND_CPU | tail -2)"; return 1; }
    insmod /lib/modules/psci_checks.ko foreign="$(echo $FOREIGN_CPUS | cut -d" " -f1)" offline=$SECOND_CPU entry=$HOST_ENTRY outside=$HOST_OUTSIDE || { echo "insmod psci_checks failed"; return 1; }
    rmmod psci_checks
    psci_said AFFINITY_INFO $SECOND_CPU $PSCI_AFFINITY_OFF || return 1
    psci_said CPU_ON_OUTSIDE $SECOND_CPU $PSCI_INVALID_ADDRESS || return 1
    echo 1 > $online || { echo "onlining CPU $SECOND_CPU failed: $(dmesg | tail -3)"; return 1; }
    [ "$(cat /sys/devices/system/cpu/online)" = "$HOST_CPU_LIST" ] || { echo "online CPUs $(cat /sys/devices/system/cpu/online) after onlining"; return 1; }
    [ "$(dmesg | grep -c "CPU$SECOND_CPU: Booted secondary processor")" -ge 2 ] || { echo "CPU $SECOND_CPU did not boot again"; return 1; }
    where=$(taskset $SECOND_CPU_MASK sh -c 'cut -d" " -f39 /proc/self/stat')
    [ "$where" = "$SECOND_CPU" ] || { echo "a task pinned to CPU $SECOND_CPU ran on CPU $where"; return 1; }
    sleep 1
    # shellcheck disable=SC2046
    set -- $t1 $(per_cpu arch_timer)
    [ "$4" -gt "$2" ] || { echo "CPU $SECOND_CPU's timer interrupts $2 -> $4"; return 1; }
}

exactly_our_pci_functions() {
    got=$(ls /sys/bus/pci/devices | tr '\n' ' ')
    [ "$got" = "$PCI_LIST " ] || { echo "functions: $got"; return 1; }
    for f in $PCI_IDS; do
        d=/sys/bus/pci/devices/$(echo $f | cut -d: -f1-3)
        v=$(echo $f | cut -d: -f4)
        i=$(echo $f | cut -d: -f5)
        [ "$(cat $d/vendor)" = $v ] && [ "$(cat $d/device)" = $i ] || { echo "$d is $(cat $d/vendor):$(cat $d/device)"; return 1; }
    done
}

others_config_space_reads_absent() {
    for a in $ABSENT_CONFIG; do
        v=$(devmem $a 32)
        [ "$v" = 0xFFFFFFFF ] || { echo "ECAM $a reads $v"; return 1; }
    done
    # Writing another VM's function's command register: dropped, still absent.
    devmem $GUEST_EDU_COMMAND 16 0
    [ "$(devmem $GUEST_EDU_COMMAND 16)" = 0xFFFF ] || { echo "guest1's edu command register is visible"; return 1; }
}

bar_cannot_move() {
    d=$EDU_DEV
    bar=$(head -1 $d/resource | cut -d' ' -f1)
    [ "$(devmem $bar 32)" = 0x010000ED ] || { echo "edu ID at $bar reads $(devmem $bar 32)"; return 1; }
    orig=$(config_dword $d 4)
    set_config_dword $d 4 $MOVED_BAR
    back=$(config_dword $d 4)
    still=$(devmem $bar 32)
    moved=$(probe $MOVED_BAR 32)
    set_config_dword $d 4 0x$orig
    [ "$back" = $MOVED_BAR_DWORD ] || { echo "BAR0 reads $back after writing $MOVED_BAR"; return 1; }
    [ "$still" = 0x010000ED ] || { echo "edu no longer answers at $bar ($still)"; return 1; }
    [ "$moved" = 135 ] || { echo "reading $MOVED_BAR did not fault (exit $moved)"; return 1; }
    now=$(config_dword $d 4)
    [ "$now" = "$orig" ] || { echo "BAR0 not restored: $now"; return 1; }
}

devmem_outside_the_host_faults() {
    for a in $FAULTS; do
        rc=$(probe $a 32)
        [ "$rc" = 135 ] || { echo "devmem $a exited $rc, not killed by SIGBUS"; return 1; }
    done
}

# The GIC distributor is the hypervisor's, filtered: the host configures only its own
# interrupts (its INTx lines and its emulated SMMU's); it reads nothing of the others.
gicd_foreign_spi_cannot_be_routed_enabled_or_pended() {
    # INTID $TEST_SPI is no VM's: route it to guest1's CPU, and to its own second CPU, set it
    # pending, enable it.
    devmem $GICD_SETSPI 32 $TEST_SPI
    devmem $TEST_SPI_IROUTER 64 $GUEST1_AFFINITY
    devmem $TEST_SPI_IROUTER 32 $GUEST1_AFFINITY
    devmem $TEST_SPI_IROUTER 64 $SECOND_CPU_AFFINITY
    devmem $TEST_SPI_ISENABLER 32 0xffffffff
    devmem $TEST_SPI_ISPENDR 32 0xffffffff
    sleep 1
    r=$(devmem $TEST_SPI_IROUTER 64)
    en=$(devmem $TEST_SPI_ISENABLER 32)
    pend=$(devmem $TEST_SPI_ISPENDR 32)
    [ $((r)) = 0 ] || { echo "IROUTER of $TEST_SPI reads $r"; return 1; }
    [ $((en)) = 0 ] || { echo "ISENABLER of INTIDs $TEST_SPI_WORD.. reads $en"; return 1; }
    [ $((pend)) = 0 ] || { echo "ISPENDR of INTIDs $TEST_SPI_WORD.. reads $pend"; return 1; }
}

gicd_hypervisor_smmu_spis_cannot_be_taken() {
    # The real SMMU's event-queue and global-error interrupts are the hypervisor's: steal the
    # route (to this CPU), pend, disable (not readable here: the hypervisor's audit when the
    # host stops says whether any of it changed), regroup, retrigger, reprioritise.
    for e in $HYP_SPI_REGS; do
        # The fields, split on purpose.
        # shellcheck disable=SC2046
        set -- $(echo $e | tr : ' ')
        i=$1
        devmem $GICD_SETSPI 32 $i
        devmem $2 64 0
        devmem $2 64 0x80000000
        devmem $3 32 $9
        devmem $5 32 $9
        devmem $4 32 $9
        devmem $6 32 0
        devmem $7 32 0xffffffff
        devmem $8 8 0
        for a in $2 $3 $5 $6 $7; do
            v=$(devmem $a 32)
            [ $((v)) = 0 ] || { echo "INTID $i: $a reads $v"; return 1; }
        done
        v=$(devmem $8 8)
        [ $((v)) = 0 ] || { echo "INTID $i: priority reads $v"; return 1; }
    done
}

gicd_ctlr_write_is_dropped() {
    c=$(devmem $GICD_CTLR 32)
    # Affinity routing (ARE) and group 1 on, as the hypervisor set them.
    [ $((c & $GICD_CTLR_ON)) = $(($GICD_CTLR_ON)) ] || { echo "GICD_CTLR reads $c"; return 1; }
    devmem $GICD_CTLR 32 0
    n=$(devmem $GICD_CTLR 32)
    [ "$n" = "$c" ] || { echo "GICD_CTLR reads $n after writing 0 (was $c)"; return 1; }
}

gicd_own_spi_stays_on_its_cpus() {
    # INTID $OWN_INTID (its serial port): it configures it, but routes it only to its own CPUs;
    # a guest's CPU, 1-of-N or Aff3 = 1 become its first CPU.
    en=$(devmem $OWN_ISENABLER 32)
    [ $((en & $OWN_BIT)) != 0 ] || { echo "INTID $OWN_INTID not enabled ($en)"; return 1; }
    for v in $GUEST1_AFFINITY 0x80000000 0x100000000; do
        devmem $OWN_IROUTER 64 $SECOND_CPU_AFFINITY
        devmem $OWN_IROUTER 64 $v
        r=$(devmem $OWN_IROUTER 64)
        [ $((r)) = $((FIRST_CPU)) ] || { echo "IROUTER of $OWN_INTID reads $r after writing $v"; return 1; }
    done
    s1=$(grep ttyS0 /proc/interrupts | awk '{print $2}')
    echo "host: its serial port's INTx still interrupts after the route writes" > /dev/console
    sleep 1
    s2=$(grep ttyS0 /proc/interrupts | awk '{print $2}')
    [ -n "$s1" ] && [ "$s2" -gt "$s1" ] || { echo "ttyS0 interrupts $s1 -> $s2"; return 1; }
}

# Its interrupts cannot reach the hypervisor's priority (0x00: one of its own there, taken and
# never ended, would hold the hypervisor's FIQs off): every priority it writes is raised to the
# floor, in the distributor (its serial port's SPI) and in its CPU's SGI frame (an unused PPI),
# and its SGIs and PPIs stay group 1. Each is put back as Linux had it.
interrupts_stay_below_the_hypervisors() {
    for a in $OWN_IPRIORITYR $SGI_PPI_IPRIORITYR; do
        old=$(devmem $a 8)
        devmem $a 8 0
        v=$(devmem $a 8)
        devmem $a 8 $old
        [ $((v)) = $(($PRIORITY_FLOOR)) ] || { echo "priority at $a reads $v after writing 0"; return 1; }
        back=$(devmem $a 8)
        [ "$back" = "$old" ] || { echo "priority at $a reads $back, not $old, once restored"; return 1; }
    done
    g=$(devmem $SGI_IGROUPR0 32)
    devmem $SGI_IGROUPR0 32 0
    n=$(devmem $SGI_IGROUPR0 32)
    [ $((n)) = $((0xffffffff)) ] || { echo "IGROUPR0 reads $n after writing 0 (was $g)"; return 1; }
}

own_interrupts_keep_working() {
    # Run once its disk is bound: its INTx lines, configured through the distributor filter,
    # still interrupt (the disk's virtio0 and the serial port's counts grow), and it reads both
    # lines enabled.
    d1=$(grep virtio0 /proc/interrupts | awk '{print $2}')
    s1=$(grep ttyS0 /proc/interrupts | awk '{print $2}')
    dd if=/dev/vda of=/dev/null bs=4096 count=64 iflag=direct 2>/dev/null || { echo "disk read failed"; return 1; }
    echo "host: its disk and serial interrupts after the filter" > /dev/console
    sleep 1
    d2=$(grep virtio0 /proc/interrupts | awk '{print $2}')
    s2=$(grep ttyS0 /proc/interrupts | awk '{print $2}')
    [ -n "$d1" ] && [ "$d2" -gt "$d1" ] || { echo "virtio0 interrupts $d1 -> $d2"; return 1; }
    [ -n "$s1" ] && [ "$s2" -gt "$s1" ] || { echo "ttyS0 interrupts $s1 -> $s2"; return 1; }
    en=$(devmem $OWN_ISENABLER 32)
    [ $((en & $OWN_LINES)) = $(($OWN_LINES)) ] || { echo "ISENABLER1 reads $en"; return 1; }
}

psci_and_smccc_as_linux_sees_them() {
    dmesg | grep -q "psci: PSCIv1.1 detected in firmware" || { echo "no PSCIv1.1 in dmesg"; return 1; }
    dmesg | grep -q "psci: SMC Calling Convention v1.1" || { echo "no SMCCC v1.1 in dmesg"; return 1; }
    [ "$(cat /sys/firmware/devicetree/base/psci/method)" = smc ] || return 1
    # What the CPU's ID registers and SMCCC_ARCH_FEATURES made of Spectre (for the log).
    for v in spectre_v2 spec_store_bypass; do
        echo "host: $v: $(cat /sys/devices/system/cpu/vulnerabilities/$v)" > /dev/console
    done
}

interrupts_and_timer() {
    t1=$(grep arch_timer /proc/interrupts | awk '{print $2}')
    sleep 1
    t2=$(grep arch_timer /proc/interrupts | awk '{print $2}')
    [ -n "$t1" ] && [ "$t2" -gt "$t1" ] || { echo "timer interrupts $t1 -> $t2"; return 1; }
    s=$(grep ttyS0 /proc/interrupts | awk '{print $2}')
    [ -n "$s" ] && [ "$s" -gt 0 ] || { echo "no ttyS0 (PCI INTx) interrupts: $(grep -i serial /proc/interrupts)"; return 1; }
}

no_its() {
    dmesg | grep -q "No ITS available" || { echo "the kernel found an ITS"; return 1; }
}

smmu_is_the_emulated_one() {
    # Exactly one IOMMU, at the SMMU's address, probed by the stock driver; what it reads there
    # is the hypervisor's emulation (its ID registers, GBPA always ABORT), not the real SMMU.
    got=$(ls /sys/class/iommu | tr '\n' ' ')
    [ "$got" = "$SMMU_IOMMU " ] || { echo "IOMMUs: $got"; return 1; }
    dmesg | grep -q "arm-smmu-v3 $SMMU_PDEV: ias 36-bit, oas 36-bit" || { echo "no arm-smmu-v3 probe line"; return 1; }
    [ "$(devmem $SMMU_BASE 32)" = $SMMU_IDR0 ] || { echo "IDR0 reads $(devmem $SMMU_BASE 32)"; return 1; }
    [ "$(devmem $SMMU_GBPA 32)" = $SMMU_GBPA_ABORT ] || { echo "GBPA reads $(devmem $SMMU_GBPA 32)"; return 1; }
    # Writing GBPA (bypass, no abort) is ignored: the emulated SMMU never bypasses.
    devmem $SMMU_GBPA 32 0x80000000
    sleep 1
    [ "$(devmem $SMMU_GBPA 32)" = $SMMU_GBPA_ABORT ] || { echo "GBPA reads $(devmem $SMMU_GBPA 32) after a bypass write"; return 1; }
}

smmu_coherency_is_the_hypervisors() {
    # The SMMU node says dma-coherent exactly when the hypervisor drives the real SMMU as
    # coherent (its boot option smmu_coherent), and the driver found IDR0.COHACC saying the same
    # (it warns "IDR0.COHACC overridden by FW configuration" when the tree and IDR0 disagree).
    [ -e "$SMMU_NODE/compatible" ] || { echo "no SMMU node at $SMMU_NODE"; return 1; }
    if [ -e "$SMMU_NODE/dma-coherent" ]; then c=1; else c=0; fi
    [ "$c" = "$SMMU_DMA_COHERENT" ] || { echo "dma-coherent on the SMMU node: $c, expected $SMMU_DMA_COHERENT"; return 1; }
    if dmesg | grep -q "IDR0.COHACC overridden"; then
        dmesg | grep "IDR0.COHACC"
        return 1
    fi
    # The driver's own verdict: ARM_SMMU_FEAT_COHERENCY in the features it prints at probe.
    f=$(dmesg | sed -n 's/.*arm-smmu-v3 .*(features \(0x[0-9a-f]*\)).*/\1/p' | head -n 1)
    [ -n "$f" ] || { echo "no features in the arm-smmu-v3 probe line"; return 1; }
    [ $(((f & $SMMU_FEAT_COHERENCY) != 0)) = "$SMMU_DMA_COHERENT" ] || { echo "driver features $f, coherency expected $SMMU_DMA_COHERENT"; return 1; }
}

modules_load() {
    # The disk's DMA is blocked until the host drives its (emulated) SMMU: no driver binds yet.
    echo 0 > /sys/bus/virtio/drivers_autoprobe
    for m in $MODULES; do
        insmod /lib/modules/$m.ko || { echo "insmod $m failed"; return 1; }
    done
    [ -d /sys/bus/virtio/drivers/virtio_blk ] || { echo "virtio_blk did not register"; return 1; }
    [ "$(cat /sys/bus/virtio/devices/virtio0/device)" = 0x0002 ] || { echo "virtio0 is not a block device"; return 1; }
}

# The host's own edu device, bound to uio_pci_generic (so its driver gives it a DMA domain),
# aims DMA at the hypervisor and at the guests' canary pages from user space.
edu_dma_from_host_root_faults() {
    d=$EDU_DEV
    echo 1234 11e8 > /sys/bus/pci/drivers/uio_pci_generic/new_id
    sleep 1
    [ "$(basename "$(readlink $d/driver)")" = uio_pci_generic ] || { echo "uio_pci_generic did not bind the edu device"; return 1; }
    [ -e $d/iommu_group ] || { echo "the edu device is in no IOMMU group"; return 1; }
    ev="arm-smmu-v3 $SMMU_PDEV: event 0x10 received"
    before=$(dmesg | grep -c "$ev")
    out=$(smmu-attack dma $d $ATTACK_TARGETS) || { echo "$out"; return 1; }
    sleep 2
    after=$(dmesg | grep -c "$ev")
    [ "$after" -gt "$before" ] || { echo "Linux's SMMU driver printed no translation fault"; return 1; }
    # Each first (4-byte) DMA's fault names the device's stream and the address.
    dmesg | grep -q "$EDU_EVENT_SID_WORD" || { echo "no event names stream $EDU_SID"; return 1; }
    for a in $ATTACK_TARGETS; do
        w=$(printf "0x%016x" $a)
        dmesg | grep -q "$w" || { echo "no event names $a"; return 1; }
    done
}

# SGIs go through ICC_SGI1R_EL1, which traps (HCR_EL2.FMO is set on the host's CPUs): the kernel
# sends 24 x 4 of them to the guests' CPUs, the hypervisor sends none of them there (and counts
# the drops); even if it did, their redistributors keep SGIs disabled (xtask checks that no
# interrupt of the host's reached a guest's CPU at EL2), and the guests
# carry on (their tests pass in this run, after this one).
sgis_to_other_cpus_stop_nobody() {
    insmod /lib/modules/sgi_to_others.ko rounds=4 targets=$GUEST_CPU_MASK || { echo "insmod sgi_to_others failed"; return 1; }
    dmesg | grep -q "sgi_to_others: sent SGIs 0..15 to target list $GUEST_CPU_MASK and SGIs 8..15 to all other CPUs, 4 round" || { echo "the module did not say it sent them"; return 1; }
    sleep 1
    rmmod sgi_to_others || return 1
}

# Its second CPU's IPI0 count (Rescheduling interrupts) in /proc/interrupts.
resched_ipis_of_second_cpu() {
    awk -v c=$((SECOND_CPU + 2)) '/^ *IPI0:/ {print $c}' /proc/interrupts
}

# An SGI written from x19: from its first CPU the module (resched_from_x19) writes 200
# rescheduling IPIs (SGI 0) for its second CPU to ICC_SGI1R_EL1 from x19, each once the one
# before was counted there. The trap's syndrome names x19, which the hypervisor reads from the
# trap frame: x19..x29 are callee-saved, so entry.S must save them for system-register traps
# (it once did so for aborts only, and the SGI named whatever the last abort left in the frame).
# The second CPU's IPI0 count must grow by at least 200.
sgi_written_from_x19_reaches_its_second_cpu() {
    n=200
    before=$(resched_ipis_of_second_cpu)
    taskset "$(printf %#x $((1 << FIRST_CPU)))" insmod /lib/modules/sgi_to_others.ko rounds=0 resched_from_x19=$n ||
        { echo "insmod sgi_to_others resched_from_x19=$n failed: $(dmesg | grep sgi_to_others | tail -1)"; return 1; }
    after=$(resched_ipis_of_second_cpu)
    said=$(dmesg | grep "sgi_to_others: CPU " | tail -1)
    rmmod sgi_to_others || { echo "rmmod sgi_to_others failed"; return 1; }
    [ $((after - before)) -ge $n ] || { echo "IPI0 on CPU $SECOND_CPU: $before -> $after, not +$n; ${said#*] }"; return 1; }
    case "$said" in
        *"CPU $FIRST_CPU: $n rescheduling IPIs written from x19 "*" to CPU $SECOND_CPU "*) ;;
        *) echo "the module said: ${said#*] }"; return 1 ;;
    esac
    echo "host: $n rescheduling IPIs written from x19 on CPU $FIRST_CPU; CPU $SECOND_CPU's IPI0 count $before -> $after" > /dev/console
}

# Takes the emulated SMMU from Linux's driver, tries one thing with tables of its own, gives the
# SMMU back (see tests/linux/smmu-attack.c).
reprogram() {
    smmu-attack reprogram $EDU_DEV $EDU_SID $1 $HYP_TARGET $CANARIES
}

disk_io_after_the_attacks() {
    # The driver has its SMMU back exactly as it was: disk DMA through it works again.
    echo 3 > /proc/sys/vm/drop_caches
    s=$(dd if=/dev/vda bs=512 skip=4099 count=1 iflag=direct 2>/dev/null | head -n 1)
    [ "$s" = "smmu-hyp test disk sector 4099" ] || { echo "sector 4099 reads '$s'"; return 1; }
    dd if=/dev/urandom of=/tmp/pattern2 bs=4096 count=8 2>/dev/null
    dd if=/tmp/pattern2 of=/dev/vda bs=4096 seek=512 count=8 oflag=direct conv=fsync 2>/dev/null || { echo "write failed"; return 1; }
    dd if=/dev/vda of=/tmp/back2 bs=4096 skip=512 count=8 iflag=direct 2>/dev/null || { echo "read back failed"; return 1; }
    [ "$(md5sum < /tmp/pattern2)" = "$(md5sum < /tmp/back2)" ] || { echo "read back differs"; return 1; }
}

disk_dma_through_the_smmu() {
    # The disk's driver binds now: every block it reads or writes is DMA through the stream the
    # host's SMMU driver configured (a shadow STE: its stage 1 nested on the host's stage 2, or
    # the host's stage 2 alone when it asked for bypass).
    d=$DISK_DEV
    want=DMA
    grep -q "iommu.passthrough=1" /proc/cmdline && want=identity
    type=$(cat $d/iommu_group/type)
    case "$type" in "$want"|"$want"-FQ) ;; *) echo "iommu group type $type, not $want"; return 1 ;; esac
    echo 1 > /sys/bus/virtio/drivers_autoprobe
    echo virtio0 > /sys/bus/virtio/drivers/virtio_blk/bind
    for i in 1 2 3 4 5 6 7 8 9 10; do [ -b /dev/vda ] && break; sleep 1; done
    [ -b /dev/vda ] || { echo "no /dev/vda: $(dmesg | grep -i -e virtio -e smmu | tail -3)"; return 1; }
    s=$(dd if=/dev/vda bs=512 skip=4097 count=1 iflag=direct 2>/dev/null | head -n 1)
    [ "$s" = "smmu-hyp test disk sector 4097" ] || { echo "sector 4097 reads '$s'"; return 1; }
    dd if=/dev/urandom of=/tmp/pattern bs=65536 count=4 2>/dev/null
    dd if=/tmp/pattern of=/dev/vda bs=65536 seek=16 count=4 oflag=direct conv=fsync 2>/dev/null || { echo "write failed"; return 1; }
    echo 3 > /proc/sys/vm/drop_caches
    dd if=/dev/vda of=/tmp/back bs=65536 skip=16 count=4 iflag=direct 2>/dev/null || { echo "read back failed"; return 1; }
    [ "$(md5sum < /tmp/pattern)" = "$(md5sum < /tmp/back)" ] || { echo "read back differs from what was written"; return 1; }
    if dmesg | grep -q "arm-smmu-v3.*event"; then echo "SMMU events: $(dmesg | grep arm-smmu-v3 | grep event | head -2)"; return 1; fi
}

# The run where every guest powers off first (the hypervisor's guests_off=1, and
# $GUESTS_OFF_ARG on this command line): the host waits until both are off (the smmu_hyp
# module's vms/N/state), then its edu makes the SMMU fault. Nothing but the SMMU's interrupt
# can bring that event to Linux: no guest runs, and the host does not touch its SMMU.
every_guest_is_off() {
    insmod $KO || { echo "insmod $KO failed"; return 1; }
    for _ in $(seq 1 240); do
        off=1
        for v in $GUEST_VM_IDS; do [ "$(cat $H/vms/$v/state)" = stopped ] || off=0; done
        [ $off = 1 ] && return 0
        sleep 0.5
    done
    echo "the guests still run after 2 min: $(for v in $GUEST_VM_IDS; do cat $H/vms/$v/state; done)"
    return 1
}

# Centiseconds since boot.
uptime_cs() {
    awk '{ printf "%d", $1 * 100 }' /proc/uptime
}

# With every guest off, the host's edu DMAs (4 bytes, then a page: 1 + 1024 fault records) to
# the hypervisor's image. The real SMMU's event interrupt is taken at EL2 on the host's CPU
# (group 0, FIQ), its records go into the host's event queue and its emulated SMMU's interrupt is
# raised: Linux's driver prints the event within 2 s. In between, nothing went through the
# SMMU's command queue: the real SMMU's command and CMD_SYNC counts (SMMU_STATS) do not move
# (no guest runs, and the host's driver, whose edu is bound to uio_pci_generic, has nothing to
# invalidate). Without the interrupt, the record would wait in the real SMMU's queue for the
# host's next access to its SMMU.
smmu_event_reaches_the_host_with_every_guest_off() {
    d=$EDU_DEV
    echo 1234 11e8 > /sys/bus/pci/drivers/uio_pci_generic/new_id
    sleep 1
    [ "$(basename "$(readlink $d/driver)")" = uio_pci_generic ] || { echo "uio_pci_generic did not bind the edu device"; return 1; }
    ev="arm-smmu-v3 $SMMU_PDEV: event 0x10 received"
    before=$(dmesg | grep -c "$ev")
    cmds=$(cat $H/smmu/commands)
    syncs=$(cat $H/smmu/syncs)
    start=$(uptime_cs)
    smmu-attack dma $d $HYP_TARGET > /tmp/dma.out 2>&1 &
    pid=$!
    seen=
    while [ $(($(uptime_cs) - start)) -lt 200 ]; do
        if [ "$(dmesg | grep -c "$ev")" -gt "$before" ]; then
            seen=$(($(uptime_cs) - start))
            break
        fi
        sleep 0.05
    done
    wait $pid || { echo "smmu-attack dma failed: $(cat /tmp/dma.out)"; return 1; }
    [ -n "$seen" ] || { echo "Linux's SMMU driver printed no event within 2 s of the DMA"; return 1; }
    dmesg | grep -q "$EDU_EVENT_SID_WORD" || { echo "no event names stream $EDU_SID"; return 1; }
    [ "$(cat $H/smmu/commands) $(cat $H/smmu/syncs)" = "$cmds $syncs" ] || { echo "the SMMU's command queue was used: commands $cmds -> $(cat $H/smmu/commands), syncs $syncs -> $(cat $H/smmu/syncs)"; return 1; }
    echo "host: with every guest off, Linux printed the SMMU event $((seen * 10)) ms after its edu's DMA started; no SMMU command in between" > /dev/console
}

if grep -q "$GUESTS_OFF_ARG" /proc/cmdline; then
    run modules_load modules_load
    run every_guest_is_off every_guest_is_off
    run smmu_event_reaches_the_host_with_every_guest_off smmu_event_reaches_the_host_with_every_guest_off
    echo "$passed passed, $failed failed"
    # The summary must leave the 16550 before the power goes (it was once lost).
    icount drain
    poweroff -f
fi

run memory_is_exactly_ours memory_is_exactly_ours
run its_cpus its_cpus
run exactly_our_pci_functions exactly_our_pci_functions
run others_config_space_reads_absent others_config_space_reads_absent
run bar_cannot_move bar_cannot_move
run devmem_outside_the_host_faults devmem_outside_the_host_faults
run gicd_foreign_spi_cannot_be_routed_enabled_or_pended gicd_foreign_spi_cannot_be_routed_enabled_or_pended
run gicd_hypervisor_smmu_spis_cannot_be_taken gicd_hypervisor_smmu_spis_cannot_be_taken
run gicd_ctlr_write_is_dropped gicd_ctlr_write_is_dropped
run gicd_own_spi_stays_on_its_cpus gicd_own_spi_stays_on_its_cpus
run own_spi_on_its_second_cpu own_spi_on_its_second_cpu
run psci_and_smccc_as_linux_sees_them psci_and_smccc_as_linux_sees_them
run interrupts_and_timer interrupts_and_timer
run ipis_between_its_cpus ipis_between_its_cpus
run psci_refused_for_cpus_not_its_own psci_refused_for_cpus_not_its_own
run second_cpu_hotplug_off_and_on second_cpu_hotplug_off_and_on
run no_its no_its
run smmu_is_the_emulated_one smmu_is_the_emulated_one
run smmu_coherency_is_the_hypervisors smmu_coherency_is_the_hypervisors
run modules_load modules_load
run disk_dma_through_the_smmu disk_dma_through_the_smmu
run interrupts_stay_below_the_hypervisors interrupts_stay_below_the_hypervisors
run own_interrupts_keep_working own_interrupts_keep_working
run sgis_to_other_cpus_stop_nobody sgis_to_other_cpus_stop_nobody
run sgi_written_from_x19_reaches_its_second_cpu sgi_written_from_x19_reaches_its_second_cpu
run edu_dma_from_host_root_faults edu_dma_from_host_root_faults
# What smmu-attack reprogram tries, one case each.
run host_bypass_ste_is_identity_over_its_own_memory reprogram bypass
run host_stage2_ste_is_refused reprogram stage2
run host_cd_table_in_hypervisor_memory_is_refused reprogram cd-in-hyp
run host_cd_table_in_guest_memory_is_refused reprogram cd-in-guest
run host_stage1_cannot_reach_beyond_its_stage2 reprogram s1-maps-out
run host_stream_table_in_guest_memory_is_not_read reprogram strtab-in-guest
run host_stream_table_in_hypervisor_memory_is_not_read reprogram strtab-in-hyp
run host_illegal_command_stops_its_queue reprogram illegal-command
run host_command_queue_in_hypervisor_memory_aborts reprogram cmdq-in-hyp
run host_cds_the_smmu_cannot_walk_are_refused reprogram bad-cds
run host_command_queue_flood_is_consumed_a_bounded_amount_per_access reprogram flood
run host_msi_flood_is_finished_by_the_hypervisor_without_cons_reads reprogram flood-msi
run host_illegal_command_flood_restarts_every_time reprogram illegal-flood
run disk_io_after_the_attacks disk_io_after_the_attacks
# The host kernel's side of the hypercall ABI: the smmu_hyp module and its sysfs files (kmod.sh).
run kmod_loads_and_finds_the_hypervisor kmod_loads_and_finds_the_hypervisor
run kmod_vm_table kmod_vm_table
run kmod_devices kmod_devices
run kmod_smmu_counters kmod_smmu_counters
run kmod_events kmod_events
run kmod_errors_map_to_errno kmod_errors_map_to_errno
run kmod_pm_status_and_vote kmod_pm_status_and_vote
run kmod_vote_cycle_with_disk_io kmod_vote_cycle_with_disk_io
run kmod_power_loss_injection kmod_power_loss_injection
run kmod_unload_and_refusal kmod_unload_and_refusal
echo "$passed passed, $failed failed"
icount drain
poweroff -f
