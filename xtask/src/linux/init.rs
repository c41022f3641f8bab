//! The host's `/init` tests: what they check, from the platform description
//! ([`ScriptFacts`]), and the script itself ([`init_script`]).

use super::PANIC_ARG;
use platform::gic::gicd as gic;
use platform::linux::GUEST_CANARY_OFFSET;
use platform::qemu_virt::{
    BOARD, EDU_SLOTS, HOST_DISK_SLOT, HOST_SERIAL_SLOT, HYP_LOAD_ADDR, MANIFEST,
};
use platform::{MemRange, PciAddr};

/// The SPI (INTID) the host tries to route to guest1's CPU, enable and pend: no VM's, so the
/// hypervisor's distributor filter ignores every write (and logs the first SETSPI refusal).
pub const TEST_SPI: u32 = 100;
/// The real SMMU's event-queue and global-error INTIDs on QEMU `virt` (SPIs 74 and 77): the
/// hypervisor's. The host tries to steal, disable and pend them.
pub const HYP_SMMU_INTIDS: [u32; 2] = [106, 109];
/// The INTID of INTA of PCI slot `slot` on QEMU `virt`: the four INTx lines are shared by
/// every slot, swizzled (`PCI_INTX_SPI_BASE + (slot + pin) % 4`).
pub fn inta_intid(slot: u8) -> u32 {
    32 + platform::linux::PCI_INTX_SPI_BASE + slot as u32 % 4
}

/// What the test script checks, from the platform description.
pub struct ScriptFacts {
    /// Host RAM.
    pub ram: MemRange,
    /// The pages of it that hold the hypervisor's shadow CDs (reserved, `no-map`, in its tree).
    pub shadow_cds: MemRange,
    /// The host's PCI functions, as `bus:dev.fn vendor device`.
    pub functions: Vec<(PciAddr, u16, u16)>,
    /// Addresses `devmem` must not reach (each must fault at stage 2).
    pub faults: Vec<(u64, &'static str)>,
    /// ECAM addresses of functions the host does not own (read as all ones).
    pub absent_config: Vec<u64>,
    /// Where the test moves the host edu's BAR0 to (in config space only).
    pub moved_bar: u64,
    /// Modules to load, in order.
    pub modules: Vec<String>,
    /// What the `smmu_hyp` module's tests expect.
    pub kmod: crate::kmod::Facts,
    /// Where the host's attacks aim in the hypervisor's memory (its image).
    pub hyp_target: u64,
    /// The guests' canary pages (the guests check them after the host stopped).
    pub canaries: Vec<u64>,
}

/// The attacks `smmu-attack reprogram` makes, as host test names and the helper's case names.
pub const REPROGRAM_CASES: &[(&str, &str)] = &[
    ("host_bypass_ste_is_identity_over_its_own_memory", "bypass"),
    ("host_stage2_ste_is_refused", "stage2"),
    ("host_cd_table_in_hypervisor_memory_is_refused", "cd-in-hyp"),
    ("host_cd_table_in_guest_memory_is_refused", "cd-in-guest"),
    ("host_stage1_cannot_reach_beyond_its_stage2", "s1-maps-out"),
    ("host_stream_table_in_guest_memory_is_not_read", "strtab-in-guest"),
    ("host_stream_table_in_hypervisor_memory_is_not_read", "strtab-in-hyp"),
    ("host_illegal_command_stops_its_queue", "illegal-command"),
    ("host_command_queue_in_hypervisor_memory_aborts", "cmdq-in-hyp"),
    ("host_cds_the_smmu_cannot_walk_are_refused", "bad-cds"),
    ("host_command_queue_flood_is_consumed_a_bounded_amount_per_access", "flood"),
    ("host_illegal_command_flood_restarts_every_time", "illegal-flood"),
];

fn ecam(a: PciAddr, off: u64) -> u64 {
    BOARD.pcie_ecam.base
        + ((a.bus as u64) << 20)
        + ((a.dev as u64) << 15)
        + ((a.func as u64) << 12)
        + off
}

impl ScriptFacts {
    /// The facts for this board and manifest.
    pub fn new(modules: Vec<String>) -> Self {
        let host = &MANIFEST.vms[0];
        let guests: Vec<_> = MANIFEST.vms.iter().filter(|v| v.id != 0).collect();
        let unowned_ram = MANIFEST.vms.iter().map(|v| v.mem.end()).max().unwrap_or(0);
        let mut faults = vec![
            (BOARD.hyp.base, "the hypervisor's memory (the board's device tree)"),
            (HYP_LOAD_ADDR, "the hypervisor's image"),
            (BOARD.hyp.end() - 0x1000, "the hypervisor's memory (stacks, heap)"),
        ];
        for g in &guests {
            faults.push((g.mem.base, "a guest's RAM"));
        }
        faults.extend([
            (unowned_ram, "RAM no VM owns"),
            (BOARD.gic_its.base, "the GIC ITS"),
            (BOARD.uart.base, "the PL011"),
            (BOARD.gicr.base + platform::linux::GICR_FRAME_SIZE, "guest1's CPU's redistributor"),
        ]);
        let functions = vec![
            (PciAddr::slot(EDU_SLOTS[0], 0), 0x1234, 0x11e8),
            (PciAddr::slot(HOST_SERIAL_SLOT, 0), 0x1b36, 0x0002),
            // Modern-only virtio-blk (1af4:1042): see qemu.rs, iommu_platform.
            (PciAddr::slot(HOST_DISK_SLOT, 0), 0x1af4, 0x1042),
        ];
        let absent_config =
            [PciAddr::slot(0, 0), PciAddr::slot(EDU_SLOTS[1], 0), PciAddr::slot(EDU_SLOTS[2], 0)]
                .iter()
                .map(|a| ecam(*a, 0))
                .collect();
        let kmod = crate::kmod::Facts {
            abi: format!("{}.{}", host_abi::ABI_VERSION_MAJOR, host_abi::ABI_VERSION_MINOR),
            host,
            vm_count: MANIFEST.vms.len(),
            functions: functions.clone(),
            inject: false,
            gbpa_reset: "abort",
        };
        let canaries = guests.iter().map(|g| g.mem.base + GUEST_CANARY_OFFSET).collect();
        Self {
            ram: host.mem,
            shadow_cds: host.shadow_cds(),
            functions,
            faults,
            absent_config,
            moved_bar: 0x1050_0000,
            modules,
            kmod,
            hyp_target: HYP_LOAD_ADDR,
            canaries,
        }
    }
}

/// The `/init` script: mounts, then the tests, each printing `test NAME ... ok` or
/// `test NAME ... FAILED: why`, then `N passed, M failed`, then `poweroff -f`.
pub fn init_script(f: &ScriptFacts) -> String {
    let ram_node = format!("/sys/firmware/devicetree/base/memory@{:x}", f.ram.base);
    let ram_reg = format!("{:016x}{:016x}", f.ram.base, f.ram.size);
    // Its RAM is all System RAM but the shadow CD pages, which the tree reserves with `no-map`:
    // Linux lists them as "reserved" between the two pieces (and never maps them).
    let (sh, ram) = (f.shadow_cds, f.ram);
    let ram_iomem = format!(
        "{:08x}-{:08x} : System RAM {:08x}-{:08x} : System RAM",
        ram.base,
        sh.base - 1,
        sh.end(),
        ram.end() - 1
    );
    let shadow_iomem = format!("{:08x}-{:08x} : reserved", sh.base, sh.end() - 1);
    let pci_list: Vec<String> = f
        .functions
        .iter()
        .map(|(a, _, _)| format!("0000:{:02x}:{:02x}.{}", a.bus, a.dev, a.func))
        .collect();
    let pci_ids: Vec<String> = f
        .functions
        .iter()
        .zip(&pci_list)
        .map(|((_, v, d), name)| format!("{name}:0x{v:04x}:0x{d:04x}"))
        .collect();
    let faults: Vec<String> = f.faults.iter().map(|(a, _)| format!("{a:#x}")).collect();
    let absent: Vec<String> = f.absent_config.iter().map(|a| format!("{a:#x}")).collect();
    let guest_cmd = ecam(PciAddr::slot(EDU_SLOTS[1], 0), 4);
    let spi = TEST_SPI;
    let gicd = BOARD.gicd.base;
    let irouter = gicd + gic::irouter(spi);
    let isenabler = gicd + gic::bit_word(gic::ISENABLER, spi);
    let ispendr = gicd + gic::bit_word(gic::ISPENDR, spi);
    let setspi = gicd + gic::SETSPI_NSR;
    let gicd_ctlr = gicd + gic::CTLR;
    // Per hypervisor INTID: IROUTER, ISENABLER, ICENABLER, ISPENDR, IGROUPR, ICFGR, IPRIORITYR
    // (its byte).
    let hyp_regs: Vec<String> = HYP_SMMU_INTIDS
        .iter()
        .map(|&i| {
            format!(
                "{i}:{:#x}:{:#x}:{:#x}:{:#x}:{:#x}:{:#x}:{:#x}:{:#x}",
                gicd + gic::irouter(i),
                gicd + gic::bit_word(gic::ISENABLER, i),
                gicd + gic::bit_word(gic::ICENABLER, i),
                gicd + gic::bit_word(gic::ISPENDR, i),
                gicd + gic::bit_word(gic::IGROUPR, i),
                gicd + gic::icfgr(i),
                gicd + gic::ipriorityr(i),
                gic::bit(i),
            )
        })
        .collect();
    let own = inta_intid(HOST_SERIAL_SLOT);
    let disk_intid = inta_intid(HOST_DISK_SLOT);
    // Its serial port's and disk's lines, both in ISENABLER1.
    let own_lines = gic::bit(own) | gic::bit(disk_intid);
    let own_irouter = gicd + gic::irouter(own);
    let own_isenabler = gicd + gic::bit_word(gic::ISENABLER, own);
    let own_bit = gic::bit(own);
    // What GICD_CTLR reads with the hypervisor's configuration: affinity routing, group 1.
    let ctlr_on = gic::CTLR_ARE | gic::CTLR_ENABLE_GRP1;
    let moved = f.moved_bar;
    let modules = f.modules.join(" ");
    let edu_sid = PciAddr::slot(EDU_SLOTS[0], 0).rid();
    let attack_targets: Vec<String> =
        [f.hyp_target].iter().chain(&f.canaries).map(|a| format!("{a:#x}")).collect();
    format!(
        r#"#!/bin/sh
# The Linux host's tests, generated by xtask (xtask/src/linux.rs) from the platform description.
# Each prints `test NAME ... ok` or `test NAME ... FAILED: why`; the last line is the summary.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
{mounts}echo "host: Linux $(uname -r) reached userspace after $(cut -d' ' -f1 /proc/uptime) s"
if grep -q "{panic_arg}" /proc/cmdline; then
    echo "host: panicking on purpose: with panic=-1 the kernel resets (PSCI SYSTEM_RESET)"
    echo c > /proc/sysrq-trigger
fi
{run_fn}# Runs devmem in a child: prints its exit status (135 = killed by SIGBUS: the access faulted).
probe() {{
    (devmem "$@") >/dev/null 2>&1
    echo $?
}}
# Dword N (0-based) of a function's configuration space, as 8 hex digits.
config_dword() {{
    dd if=$1/config bs=4 skip=$2 count=1 2>/dev/null | hexdump -v -e '1/4 "%08x"'
}}
# Writes dword N of a function's configuration space (one 4-byte write: the kernel makes one
# configuration write of it).
set_config_dword() {{
    v=$(($3))
    printf "\\$(printf %03o $((v & 255)))\\$(printf %03o $(((v >> 8) & 255)))\\$(printf %03o $(((v >> 16) & 255)))\\$(printf %03o $(((v >> 24) & 255)))" |
        dd of=$1/config bs=4 seek=$2 count=1 conv=notrunc 2>/dev/null
}}

memory_is_exactly_ours() {{
    nodes=$(ls -d /sys/firmware/devicetree/base/memory@*)
    [ "$nodes" = "{ram_node}" ] || {{ echo "memory nodes: $nodes"; return 1; }}
    reg=$(hexdump -v -e '1/1 "%02x"' "$nodes/reg")
    [ "$reg" = "{ram_reg}" ] || {{ echo "memory reg $reg"; return 1; }}
    ram=$(grep "System RAM" /proc/iomem | grep -v "^ " | tr '\n' ' ')
    [ "$ram" = "{ram_iomem} " ] || {{ echo "/proc/iomem: $ram"; return 1; }}
    grep -qx "{shadow_iomem}" /proc/iomem || {{ echo "/proc/iomem: no {shadow_iomem}"; return 1; }}
}}

one_cpu() {{
    n=$(grep -c ^processor /proc/cpuinfo)
    [ "$n" = 1 ] || {{ echo "$n processors"; return 1; }}
    [ "$(cat /sys/devices/system/cpu/possible)" = 0 ] || {{ echo "possible CPUs $(cat /sys/devices/system/cpu/possible)"; return 1; }}
    cpus=$(ls -d /sys/firmware/devicetree/base/cpus/cpu@*)
    [ "$cpus" = /sys/firmware/devicetree/base/cpus/cpu@0 ] || {{ echo "CPU nodes $cpus"; return 1; }}
}}

exactly_our_pci_functions() {{
    got=$(ls /sys/bus/pci/devices | tr '\n' ' ')
    [ "$got" = "{pci_list} " ] || {{ echo "functions: $got"; return 1; }}
    for f in {pci_ids}; do
        d=/sys/bus/pci/devices/$(echo $f | cut -d: -f1-3)
        v=$(echo $f | cut -d: -f4)
        i=$(echo $f | cut -d: -f5)
        [ "$(cat $d/vendor)" = $v ] && [ "$(cat $d/device)" = $i ] || {{ echo "$d is $(cat $d/vendor):$(cat $d/device)"; return 1; }}
    done
}}

others_config_space_reads_absent() {{
    for a in {absent}; do
        v=$(devmem $a 32)
        [ "$v" = 0xFFFFFFFF ] || {{ echo "ECAM $a reads $v"; return 1; }}
    done
    # Writing another VM's function's command register: dropped, still absent.
    devmem {guest_cmd:#x} 16 0
    [ "$(devmem {guest_cmd:#x} 16)" = 0xFFFF ] || {{ echo "guest1's edu command register is visible"; return 1; }}
}}

bar_cannot_move() {{
    d=/sys/bus/pci/devices/0000:00:{edu_slot:02x}.0
    bar=$(head -1 $d/resource | cut -d' ' -f1)
    [ "$(devmem $bar 32)" = 0x010000ED ] || {{ echo "edu ID at $bar reads $(devmem $bar 32)"; return 1; }}
    orig=$(config_dword $d 4)
    set_config_dword $d 4 {moved:#x}
    back=$(config_dword $d 4)
    still=$(devmem $bar 32)
    moved=$(probe {moved:#x} 32)
    set_config_dword $d 4 0x$orig
    [ "$back" = {moved:08x} ] || {{ echo "BAR0 reads $back after writing {moved:#x}"; return 1; }}
    [ "$still" = 0x010000ED ] || {{ echo "edu no longer answers at $bar ($still)"; return 1; }}
    [ "$moved" = 135 ] || {{ echo "reading {moved:#x} did not fault (exit $moved)"; return 1; }}
    now=$(config_dword $d 4)
    [ "$now" = "$orig" ] || {{ echo "BAR0 not restored: $now"; return 1; }}
}}

devmem_outside_the_host_faults() {{
    for a in {faults}; do
        rc=$(probe $a 32)
        [ "$rc" = 135 ] || {{ echo "devmem $a exited $rc, not killed by SIGBUS"; return 1; }}
    done
}}

# The GIC distributor is the hypervisor's, filtered: the host configures only its own
# interrupts (its INTx lines and its emulated SMMU's); it reads nothing of the others.
gicd_foreign_spi_cannot_be_routed_enabled_or_pended() {{
    # INTID {spi} is no VM's: route it to CPU 1 (guest1's), set it pending, enable it.
    devmem {setspi:#x} 32 {spi}
    devmem {irouter:#x} 64 1
    devmem {irouter:#x} 32 1
    devmem {isenabler:#x} 32 0xffffffff
    devmem {ispendr:#x} 32 0xffffffff
    sleep 1
    r=$(devmem {irouter:#x} 64)
    en=$(devmem {isenabler:#x} 32)
    pend=$(devmem {ispendr:#x} 32)
    [ $((r)) = 0 ] || {{ echo "IROUTER of {spi} reads $r"; return 1; }}
    [ $((en)) = 0 ] || {{ echo "ISENABLER of INTIDs {spi_word}.. reads $en"; return 1; }}
    [ $((pend)) = 0 ] || {{ echo "ISPENDR of INTIDs {spi_word}.. reads $pend"; return 1; }}
}}

gicd_hypervisor_smmu_spis_cannot_be_taken() {{
    # The real SMMU's event-queue and global-error interrupts are the hypervisor's: steal the
    # route (to this CPU), pend, disable (not readable here: the hypervisor's audit when the
    # host stops says whether any of it changed), regroup, retrigger, reprioritise.
    for e in {hyp_regs}; do
        set -- $(echo $e | tr : ' ')
        i=$1
        devmem {setspi:#x} 32 $i
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
            [ $((v)) = 0 ] || {{ echo "INTID $i: $a reads $v"; return 1; }}
        done
        v=$(devmem $8 8)
        [ $((v)) = 0 ] || {{ echo "INTID $i: priority reads $v"; return 1; }}
    done
}}

gicd_ctlr_write_is_dropped() {{
    c=$(devmem {gicd_ctlr:#x} 32)
    # Affinity routing (ARE) and group 1 on, as the hypervisor set them.
    [ $((c & {ctlr_on:#x})) = $(({ctlr_on:#x})) ] || {{ echo "GICD_CTLR reads $c"; return 1; }}
    devmem {gicd_ctlr:#x} 32 0
    n=$(devmem {gicd_ctlr:#x} 32)
    [ "$n" = "$c" ] || {{ echo "GICD_CTLR reads $n after writing 0 (was $c)"; return 1; }}
}}

gicd_own_spi_stays_on_its_cpu() {{
    # INTID {own} (its serial port): it configures it, but routes it only to its own CPU.
    en=$(devmem {own_isenabler:#x} 32)
    [ $((en & {own_bit:#x})) != 0 ] || {{ echo "INTID {own} not enabled ($en)"; return 1; }}
    for v in 1 0x80000000 0x100000000; do
        devmem {own_irouter:#x} 64 $v
        r=$(devmem {own_irouter:#x} 64)
        [ $((r)) = 0 ] || {{ echo "IROUTER of {own} reads $r after writing $v"; return 1; }}
    done
    s1=$(grep ttyS0 /proc/interrupts | awk '{{print $2}}')
    echo "host: its serial port's INTx still interrupts after the route writes" > /dev/console
    sleep 1
    s2=$(grep ttyS0 /proc/interrupts | awk '{{print $2}}')
    [ -n "$s1" ] && [ "$s2" -gt "$s1" ] || {{ echo "ttyS0 interrupts $s1 -> $s2"; return 1; }}
}}

own_interrupts_keep_working() {{
    # Run once its disk is bound: its INTx lines, configured through the distributor filter,
    # still interrupt (the disk's virtio0 and the serial port's counts grow), and it reads both
    # lines enabled.
    d1=$(grep virtio0 /proc/interrupts | awk '{{print $2}}')
    s1=$(grep ttyS0 /proc/interrupts | awk '{{print $2}}')
    dd if=/dev/vda of=/dev/null bs=4096 count=64 iflag=direct 2>/dev/null || {{ echo "disk read failed"; return 1; }}
    echo "host: its disk and serial interrupts after the filter" > /dev/console
    sleep 1
    d2=$(grep virtio0 /proc/interrupts | awk '{{print $2}}')
    s2=$(grep ttyS0 /proc/interrupts | awk '{{print $2}}')
    [ -n "$d1" ] && [ "$d2" -gt "$d1" ] || {{ echo "virtio0 interrupts $d1 -> $d2"; return 1; }}
    [ -n "$s1" ] && [ "$s2" -gt "$s1" ] || {{ echo "ttyS0 interrupts $s1 -> $s2"; return 1; }}
    en=$(devmem {own_isenabler:#x} 32)
    [ $((en & {own_lines:#x})) = $(({own_lines:#x})) ] || {{ echo "ISENABLER1 reads $en"; return 1; }}
}}

psci_and_smccc_as_linux_sees_them() {{
    dmesg | grep -q "psci: PSCIv1.1 detected in firmware" || {{ echo "no PSCIv1.1 in dmesg"; return 1; }}
    dmesg | grep -q "psci: SMC Calling Convention v1.1" || {{ echo "no SMCCC v1.1 in dmesg"; return 1; }}
    [ "$(cat /sys/firmware/devicetree/base/psci/method)" = smc ] || return 1
    # What the CPU's ID registers and SMCCC_ARCH_FEATURES made of Spectre (for the log).
    for v in spectre_v2 spec_store_bypass; do
        echo "host: $v: $(cat /sys/devices/system/cpu/vulnerabilities/$v)" > /dev/console
    done
}}

interrupts_and_timer() {{
    t1=$(grep arch_timer /proc/interrupts | awk '{{print $2}}')
    sleep 1
    t2=$(grep arch_timer /proc/interrupts | awk '{{print $2}}')
    [ -n "$t1" ] && [ "$t2" -gt "$t1" ] || {{ echo "timer interrupts $t1 -> $t2"; return 1; }}
    s=$(grep ttyS0 /proc/interrupts | awk '{{print $2}}')
    [ -n "$s" ] && [ "$s" -gt 0 ] || {{ echo "no ttyS0 (PCI INTx) interrupts: $(grep -i serial /proc/interrupts)"; return 1; }}
}}

no_its() {{
    dmesg | grep -q "No ITS available" || {{ echo "the kernel found an ITS"; return 1; }}
}}

smmu_is_the_emulated_one() {{
    # Exactly one IOMMU, at the SMMU's address, probed by the stock driver; what it reads there
    # is the hypervisor's emulation (its ID registers, GBPA always ABORT), not the real SMMU.
    got=$(ls /sys/class/iommu | tr '\n' ' ')
    [ "$got" = "smmu3.{smmu:#018x} " ] || {{ echo "IOMMUs: $got"; return 1; }}
    dmesg | grep -q "arm-smmu-v3 {smmu:x}.iommu: ias 36-bit, oas 36-bit" || {{ echo "no arm-smmu-v3 probe line"; return 1; }}
    [ "$(devmem {smmu:#x} 32)" = {idr0:#010X} ] || {{ echo "IDR0 reads $(devmem {smmu:#x} 32)"; return 1; }}
    [ "$(devmem {gbpa:#x} 32)" = {gbpa_abort:#010X} ] || {{ echo "GBPA reads $(devmem {gbpa:#x} 32)"; return 1; }}
    # Writing GBPA (bypass, no abort) is ignored: the emulated SMMU never bypasses.
    devmem {gbpa:#x} 32 0x80000000
    sleep 1
    [ "$(devmem {gbpa:#x} 32)" = {gbpa_abort:#010X} ] || {{ echo "GBPA reads $(devmem {gbpa:#x} 32) after a bypass write"; return 1; }}
}}

modules_load() {{
    # The disk's DMA is blocked until the host drives its (emulated) SMMU: no driver binds yet.
    echo 0 > /sys/bus/virtio/drivers_autoprobe
    for m in {modules}; do
        insmod /lib/modules/$m.ko || {{ echo "insmod $m failed"; return 1; }}
    done
    [ -d /sys/bus/virtio/drivers/virtio_blk ] || {{ echo "virtio_blk did not register"; return 1; }}
    [ "$(cat /sys/bus/virtio/devices/virtio0/device)" = 0x0002 ] || {{ echo "virtio0 is not a block device"; return 1; }}
}}

# The host's own edu device, bound to uio_pci_generic (so its driver gives it a DMA domain),
# aims DMA at the hypervisor and at the guests' canary pages from user space.
edu_dma_from_host_root_faults() {{
    d={edu_dev}
    echo 1234 11e8 > /sys/bus/pci/drivers/uio_pci_generic/new_id
    sleep 1
    [ "$(basename "$(readlink $d/driver)")" = uio_pci_generic ] || {{ echo "uio_pci_generic did not bind the edu device"; return 1; }}
    [ -e $d/iommu_group ] || {{ echo "the edu device is in no IOMMU group"; return 1; }}
    ev="arm-smmu-v3 {smmu:x}.iommu: event 0x10 received"
    before=$(dmesg | grep -c "$ev")
    out=$(smmu-attack dma $d {attack_targets}) || {{ echo "$out"; return 1; }}
    sleep 2
    after=$(dmesg | grep -c "$ev")
    [ "$after" -gt "$before" ] || {{ echo "Linux's SMMU driver printed no translation fault"; return 1; }}
    # Each first (4-byte) DMA's fault names the device's stream and the address.
    dmesg | grep -q "0x{edu_sid_word0:016x}" || {{ echo "no event names stream {edu_sid:#x}"; return 1; }}
    for a in {attack_targets}; do
        w=$(printf "0x%016x" $a)
        dmesg | grep -q "$w" || {{ echo "no event names $a"; return 1; }}
    done
}}

# SGIs go through ICC_SGI1R_EL1, which the hypervisor does not trap: the kernel sends 32 x 4 of
# them to the guests' CPUs. Their redistributors keep SGIs disabled, so nothing reaches them
# (xtask checks that no interrupt of the host's reached a guest's CPU at EL2), and the guests
# carry on (their tests pass in this run, after this one).
sgis_to_other_cpus_stop_nobody() {{
    insmod /lib/modules/sgi_to_others.ko rounds=4 || {{ echo "insmod sgi_to_others failed"; return 1; }}
    dmesg | grep -q "sgi_to_others: sent SGIs 0..15 to all other CPUs and to CPUs 1 and 2, 4 round" || {{ echo "the module did not say it sent them"; return 1; }}
    sleep 1
    rmmod sgi_to_others || return 1
}}

# Takes the emulated SMMU from Linux's driver, tries one thing with tables of its own, gives the
# SMMU back (see tests/linux/smmu-attack.c).
reprogram() {{
    smmu-attack reprogram {edu_dev} {edu_sid:#x} $1 {hyp_target:#x} {canaries}
}}

disk_io_after_the_attacks() {{
    # The driver has its SMMU back exactly as it was: disk DMA through it works again.
    echo 3 > /proc/sys/vm/drop_caches
    s=$(dd if=/dev/vda bs=512 skip=4099 count=1 iflag=direct 2>/dev/null | head -n 1)
    [ "$s" = "smmu-hyp test disk sector 4099" ] || {{ echo "sector 4099 reads '$s'"; return 1; }}
    dd if=/dev/urandom of=/tmp/pattern2 bs=4096 count=8 2>/dev/null
    dd if=/tmp/pattern2 of=/dev/vda bs=4096 seek=512 count=8 oflag=direct conv=fsync 2>/dev/null || {{ echo "write failed"; return 1; }}
    dd if=/dev/vda of=/tmp/back2 bs=4096 skip=512 count=8 iflag=direct 2>/dev/null || {{ echo "read back failed"; return 1; }}
    [ "$(md5sum < /tmp/pattern2)" = "$(md5sum < /tmp/back2)" ] || {{ echo "read back differs"; return 1; }}
}}

disk_dma_through_the_smmu() {{
    # The disk's driver binds now: every block it reads or writes is DMA through the stream the
    # host's SMMU driver configured (a shadow STE: its stage 1 nested on the host's stage 2, or
    # the host's stage 2 alone when it asked for bypass).
    d=/sys/bus/pci/devices/0000:00:{disk_slot:02x}.0
    want=DMA
    grep -q "iommu.passthrough=1" /proc/cmdline && want=identity
    type=$(cat $d/iommu_group/type)
    case "$type" in $want|$want-FQ) ;; *) echo "iommu group type $type, not $want"; return 1 ;; esac
    echo 1 > /sys/bus/virtio/drivers_autoprobe
    echo virtio0 > /sys/bus/virtio/drivers/virtio_blk/bind
    for i in 1 2 3 4 5 6 7 8 9 10; do [ -b /dev/vda ] && break; sleep 1; done
    [ -b /dev/vda ] || {{ echo "no /dev/vda: $(dmesg | grep -i -e virtio -e smmu | tail -3)"; return 1; }}
    s=$(dd if=/dev/vda bs=512 skip=4097 count=1 iflag=direct 2>/dev/null | head -n 1)
    [ "$s" = "smmu-hyp test disk sector 4097" ] || {{ echo "sector 4097 reads '$s'"; return 1; }}
    dd if=/dev/urandom of=/tmp/pattern bs=65536 count=4 2>/dev/null
    dd if=/tmp/pattern of=/dev/vda bs=65536 seek=16 count=4 oflag=direct conv=fsync 2>/dev/null || {{ echo "write failed"; return 1; }}
    echo 3 > /proc/sys/vm/drop_caches
    dd if=/dev/vda of=/tmp/back bs=65536 skip=16 count=4 iflag=direct 2>/dev/null || {{ echo "read back failed"; return 1; }}
    [ "$(md5sum < /tmp/pattern)" = "$(md5sum < /tmp/back)" ] || {{ echo "read back differs from what was written"; return 1; }}
    if dmesg | grep -q "arm-smmu-v3.*event"; then echo "SMMU events: $(dmesg | grep arm-smmu-v3 | grep event | head -2)"; return 1; fi
}}

run memory_is_exactly_ours memory_is_exactly_ours
run one_cpu one_cpu
run exactly_our_pci_functions exactly_our_pci_functions
run others_config_space_reads_absent others_config_space_reads_absent
run bar_cannot_move bar_cannot_move
run devmem_outside_the_host_faults devmem_outside_the_host_faults
run gicd_foreign_spi_cannot_be_routed_enabled_or_pended gicd_foreign_spi_cannot_be_routed_enabled_or_pended
run gicd_hypervisor_smmu_spis_cannot_be_taken gicd_hypervisor_smmu_spis_cannot_be_taken
run gicd_ctlr_write_is_dropped gicd_ctlr_write_is_dropped
run gicd_own_spi_stays_on_its_cpu gicd_own_spi_stays_on_its_cpu
run psci_and_smccc_as_linux_sees_them psci_and_smccc_as_linux_sees_them
run interrupts_and_timer interrupts_and_timer
run no_its no_its
run smmu_is_the_emulated_one smmu_is_the_emulated_one
run modules_load modules_load
run disk_dma_through_the_smmu disk_dma_through_the_smmu
run own_interrupts_keep_working own_interrupts_keep_working
run sgis_to_other_cpus_stop_nobody sgis_to_other_cpus_stop_nobody
run edu_dma_from_host_root_faults edu_dma_from_host_root_faults
{reprogram_runs}run disk_io_after_the_attacks disk_io_after_the_attacks
# The host kernel's side of the hypercall ABI: the smmu_hyp module and its sysfs files.
{kmod_functions}
{kmod_runs}
echo "$passed passed, $failed failed"
poweroff -f
"#,
        mounts = crate::initscript::INIT_MOUNTS,
        run_fn = crate::initscript::INIT_RUN_FN,
        pci_list = pci_list.join(" "),
        pci_ids = pci_ids.join(" "),
        faults = faults.join(" "),
        absent = absent.join(" "),
        edu_slot = EDU_SLOTS[0],
        disk_slot = HOST_DISK_SLOT,
        panic_arg = PANIC_ARG,
        smmu = BOARD.smmu.base,
        gbpa = BOARD.smmu.base + host_abi::smmu::regs::off::GBPA as u64,
        gbpa_abort = host_abi::smmu::regs::Gbpa::ABORT,
        idr0 = host_abi::smmu::regs::EMULATED_IDR0,
        edu_dev = format!("/sys/bus/pci/devices/0000:00:{:02x}.0", EDU_SLOTS[0]),
        edu_sid = edu_sid,
        edu_sid_word0 = 0x10u64 | (edu_sid as u64) << 32,
        attack_targets = attack_targets.join(" "),
        hyp_target = f.hyp_target,
        canaries = f.canaries.iter().map(|c| format!("{c:#x}")).collect::<Vec<_>>().join(" "),
        reprogram_runs = REPROGRAM_CASES
            .iter()
            .map(|(name, case)| format!("run {name} reprogram {case}\n"))
            .collect::<String>(),
        spi_word = spi / 32 * 32,
        hyp_regs = hyp_regs.join(" "),
        kmod_functions = crate::kmod::script(&f.kmod),
        kmod_runs = crate::kmod::TESTS
            .iter()
            .map(|t| format!("run {t} {t}"))
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_knows_the_platform() {
        let f = ScriptFacts::new(vec!["uio".into(), "uio_pci_generic".into()]);
        let s = init_script(&f);
        assert!(s.contains("memory@44000000"));
        assert!(s.contains("0000000044000000") && s.contains("0000000010000000"));
        assert!(s.contains("44000000-53ffcfff : System RAM 53fff000-53ffffff : System RAM"));
        assert!(s.contains("53ffd000-53ffefff : reserved"));
        assert!(s.contains("0000:00:02.0 0000:00:05.0 0000:00:06.0 "));
        for (a, _) in &f.faults {
            assert!(s.contains(&format!("{a:#x}")), "{a:#x}");
        }
        assert!(f.faults.iter().any(|(a, _)| *a == MANIFEST.vms[1].mem.base));
        assert!(s.contains("insmod") && s.contains("uio uio_pci_generic"));
        // GICD_IROUTER of INTID 100 and its enable/pending registers; the hypervisor's SMMU
        // INTIDs' (IROUTER of 106, 109); IROUTER of the serial port's INTID 36.
        assert!(s.contains("0x8006320") && s.contains("0x800010c") && s.contains("0x800020c"));
        assert!(s.contains("106:0x8006350:") && s.contains("109:0x8006368:"));
        assert!(s.contains("0x8006120") && s.contains("& 0x30)")); // 36 and 37 in ISENABLER1
        assert_eq!((inta_intid(HOST_SERIAL_SLOT), inta_intid(HOST_DISK_SLOT)), (36, 37));
        assert!(!s.contains("spi_routed_to_a_guest_cpu"));
        assert!(s.ends_with("poweroff -f\n"));
    }
}
