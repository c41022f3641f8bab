//! The check of a Linux host's device tree before the hypervisor enters the kernel: the tree
//! (written by xtask from `platform::linux::HostTree`, loaded into the host's RAM) is read back
//! with the `fdt` crate and compared with what the same description says the host is given. A
//! disagreement stops the boot with the reason: a tree that offers the host something it does
//! not own (other RAM, another CPU or redistributor, the ITS, the real SMMU, the PL011), or
//! that leaves out something the host needs, is never handed to it. The one SMMU node allowed
//! is exactly the emulated one the description names, with `iommu-map` on the bridge; the
//! bridge's `interrupt-map` names exactly the INTx SPIs the distributor filter lets the host
//! configure (`hyp::host::gicd::host_intids` reads the same description).

use alloc::vec::Vec;
use fdt::node::FdtNode;
use fdt::Fdt;
use platform::linux::HostTree;
use platform::MemRange;

/// What the tree says (the parts that are checked).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostTreeFacts<'a> {
    /// `reg` of every `device_type = "memory"` node.
    pub memory: Vec<MemRange>,
    /// `reg` of every `/reserved-memory` child with `no-map` (others are not collected: a
    /// region Linux may map is its RAM like the rest).
    pub no_map: Vec<MemRange>,
    /// `reg` of every `/cpus/cpu@*` node.
    pub cpus: Vec<u64>,
    /// `enable-method` of the CPUs, if all say the same.
    pub cpu_enable_method: Option<&'a str>,
    /// `/psci` `method`.
    pub psci_method: Option<&'a str>,
    /// `reg` of the `arm,gic-v3` node.
    pub gic: Vec<MemRange>,
    /// `phandle` of the `arm,gic-v3` node.
    pub gic_phandle: Option<u32>,
    /// A `arm,armv8-timer` node exists.
    pub timer: bool,
    /// `reg` of the `pci-host-ecam-generic` node.
    pub pcie_ecam: Option<MemRange>,
    /// Its `ranges` as (PCI space code, PCI address, CPU address, size).
    pub pcie_ranges: Vec<(u32, u64, u64, u64)>,
    /// Its `linux,pci-probe-only` value.
    pub pcie_probe_only: Option<u32>,
    /// It has `msi-map` or `msi-parent`.
    pub pcie_msi: bool,
    /// Its `iommu-map` cells, if any.
    pub pcie_iommu_map: Option<Vec<u32>>,
    /// Its `interrupt-map-mask` cells, if any.
    pub pcie_interrupt_map_mask: Option<Vec<u32>>,
    /// Its `interrupt-map` cells, if any.
    pub pcie_interrupt_map: Option<Vec<u32>>,
    /// Every `arm,smmu-v3` node.
    pub smmus: Vec<SmmuNode>,
    /// Every `arm,pl011` node: (`reg`, `interrupts` cells).
    pub uarts: Vec<(Vec<MemRange>, Vec<u32>)>,
    /// Every paravirtual IOMMU node (`platform::linux::PV_IOMMU_COMPATIBLE`): (`#iommu-cells`,
    /// `phandle`).
    pub pv_iommus: Vec<(Option<u32>, Option<u32>)>,
    /// Compatible strings of nodes the host must not be given.
    pub forbidden: Vec<&'a str>,
    /// `/chosen` `linux,initrd-start` .. `linux,initrd-end`.
    pub initrd: Option<MemRange>,
    /// `/chosen` `bootargs`.
    pub bootargs: Option<&'a str>,
    /// (node name, range) of every `reg` entry of a device node (not memory, not CPUs, not PCI
    /// functions): each must be something the host is given.
    pub device_regs: Vec<(&'a str, MemRange)>,
}

/// An `arm,smmu-v3` node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SmmuNode {
    /// `reg`.
    pub reg: Vec<MemRange>,
    /// `interrupts` cells.
    pub interrupts: Vec<u32>,
    /// `interrupt-names`, joined with `,`.
    pub interrupt_names: alloc::string::String,
    /// `#iommu-cells`.
    pub iommu_cells: Option<u32>,
    /// `dma-coherent` is present.
    pub coherent: bool,
    /// `phandle`.
    pub phandle: Option<u32>,
}

/// Compatible strings of devices the host must not see: the ITS writes memory no SMMU checks,
/// the PL011 is the hypervisor's console. (An SMMU node is allowed only as the host's emulated
/// one, a PL011 node only as a guest's emulated one.)
pub const FORBIDDEN: [&str; 3] = ["arm,gic-v3-its", "arm,pl011", "arm,primecell"];

fn is_memory(n: &FdtNode<'_, '_>) -> bool {
    n.property("device_type").and_then(|p| p.as_str()) == Some("memory")
}

fn regs(n: &FdtNode<'_, '_>) -> Vec<MemRange> {
    n.reg()
        .map(|r| {
            r.map(|m| MemRange::new(m.starting_address as u64, m.size.unwrap_or(0) as u64))
                .collect()
        })
        .unwrap_or_default()
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be64(b: &[u8]) -> u64 {
    ((be32(&b[0..4]) as u64) << 32) | be32(&b[4..8]) as u64
}

fn cells(n: &FdtNode<'_, '_>, prop: &str) -> Option<Vec<u32>> {
    n.property(prop).map(|p| p.value.chunks_exact(4).map(be32).collect())
}

fn has_compatible(n: &FdtNode<'_, '_>, c: &str) -> bool {
    n.compatible().is_some_and(|list| list.all().any(|x| x == c))
}

/// Reads the facts of a host tree. `Err` if the blob is not a flattened device tree.
pub fn parse(blob: &[u8]) -> Result<HostTreeFacts<'_>, crate::dt::DtError> {
    let fdt = Fdt::new(blob).map_err(|_| crate::dt::DtError::Invalid)?;
    let mut f = HostTreeFacts::default();
    let root = fdt.find_node("/").ok_or(crate::dt::DtError::Invalid)?;
    for node in fdt.all_nodes() {
        if let Some(list) = node.compatible() {
            for c in list.all() {
                if FORBIDDEN.contains(&c) && !f.forbidden.contains(&c) {
                    f.forbidden.push(c);
                }
            }
        }
    }
    for n in root.children() {
        let name = n.name;
        if is_memory(&n) {
            f.memory.extend(regs(&n));
            continue;
        }
        match name {
            "reserved-memory" => {
                for c in n.children().filter(|c| c.property("no-map").is_some()) {
                    f.no_map.extend(regs(&c));
                }
                continue;
            }
            "cpus" => {
                for cpu in n.children().filter(|c| c.name.split('@').next() == Some("cpu")) {
                    let reg = cpu.property("reg").and_then(|p| p.as_usize()).unwrap_or(usize::MAX);
                    f.cpus.push(reg as u64);
                    let method = cpu.property("enable-method").and_then(|p| p.as_str());
                    f.cpu_enable_method = match (f.cpus.len(), f.cpu_enable_method) {
                        (1, _) => method,
                        (_, m) if m == method => m,
                        _ => None,
                    };
                }
                continue;
            }
            "chosen" => {
                f.bootargs = n.property("bootargs").and_then(|p| p.as_str());
                let start = n.property("linux,initrd-start").and_then(|p| p.as_usize());
                let end = n.property("linux,initrd-end").and_then(|p| p.as_usize());
                if let (Some(s), Some(e)) = (start, end) {
                    f.initrd = Some(MemRange::new(s as u64, (e as u64).saturating_sub(s as u64)));
                }
                continue;
            }
            _ => {}
        }
        if name == "psci" {
            f.psci_method = n.property("method").and_then(|p| p.as_str());
        }
        if has_compatible(&n, "arm,armv8-timer") {
            f.timer = true;
        }
        if has_compatible(&n, "arm,gic-v3") {
            f.gic = regs(&n);
            f.gic_phandle = n.property("phandle").and_then(|p| p.as_usize()).map(|v| v as u32);
        }
        if has_compatible(&n, "arm,smmu-v3") {
            let names = n
                .property("interrupt-names")
                .map(|p| {
                    p.value
                        .split(|&b| b == 0)
                        .filter(|s| !s.is_empty())
                        .map(|s| core::str::from_utf8(s).unwrap_or("?"))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            f.smmus.push(SmmuNode {
                reg: regs(&n),
                interrupts: cells(&n, "interrupts").unwrap_or_default(),
                interrupt_names: names,
                iommu_cells: n
                    .property("#iommu-cells")
                    .and_then(|p| p.as_usize())
                    .map(|v| v as u32),
                coherent: n.property("dma-coherent").is_some(),
                phandle: n.property("phandle").and_then(|p| p.as_usize()).map(|v| v as u32),
            });
        }
        if has_compatible(&n, platform::linux::PV_IOMMU_COMPATIBLE) {
            let cell = |p: &str| n.property(p).and_then(|p| p.as_usize()).map(|v| v as u32);
            f.pv_iommus.push((cell("#iommu-cells"), cell("phandle")));
        }
        if has_compatible(&n, "arm,pl011") {
            f.uarts.push((regs(&n), cells(&n, "interrupts").unwrap_or_default()));
        }
        if has_compatible(&n, "pci-host-ecam-generic") {
            f.pcie_ecam = regs(&n).first().copied();
            if let Some(r) = n.property("ranges") {
                for e in r.value.chunks_exact(28) {
                    let space = (be32(&e[0..4]) >> 24) & 3;
                    f.pcie_ranges.push((
                        space,
                        be64(&e[4..12]),
                        be64(&e[12..20]),
                        be64(&e[20..28]),
                    ));
                }
            }
            f.pcie_probe_only =
                n.property("linux,pci-probe-only").and_then(|p| p.as_usize()).map(|v| v as u32);
            f.pcie_msi = ["msi-map", "msi-parent"].iter().any(|p| n.property(p).is_some());
            f.pcie_iommu_map = cells(&n, "iommu-map");
            f.pcie_interrupt_map_mask = cells(&n, "interrupt-map-mask");
            f.pcie_interrupt_map = cells(&n, "interrupt-map");
        }
        // Every device's registers (and its children's, e.g. an ITS under the GIC), except the
        // PCI bridge's children, whose `reg` is a PCI address.
        for r in regs(&n) {
            f.device_regs.push((name, r));
        }
        if !has_compatible(&n, "pci-host-ecam-generic") {
            for c in n.children() {
                for r in regs(&c) {
                    f.device_regs.push((c.name, r));
                }
            }
        }
    }
    Ok(f)
}

/// How the tree disagrees with what the host is given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostTreeError {
    /// Memory other than exactly the host's RAM.
    Memory(Vec<MemRange>),
    /// The `no-map` reserved memory is not exactly the hypervisor's shadow CDs (Linux would
    /// use pages its stage 2 does not map).
    ShadowCds(Vec<MemRange>),
    /// Not exactly the host's one CPU (the `reg` values found).
    Cpus(Vec<u64>),
    /// CPUs not started through PSCI.
    EnableMethod,
    /// No `/psci` node with `method = "smc"` (the conduit the hypervisor traps).
    Psci,
    /// The GIC node is missing or not (distributor, this CPU's redistributor).
    Gic(Vec<MemRange>),
    /// No architected timer.
    Timer,
    /// The PCIe host bridge is missing, elsewhere, or its windows are not the board's.
    Pcie(&'static str),
    /// A device the host must not have.
    Forbidden(&'static str),
    /// The SMMU node is not exactly the emulated SMMU, or the bridge's `iommu-map` is not the
    /// identity onto it (or, for a guest, there is an SMMU node or an `iommu-map`).
    Smmu(&'static str),
    /// A guest's PL011 node is not exactly its emulated UART.
    Uart(&'static str),
    /// A node whose registers are not the host's.
    Device(alloc::string::String, MemRange),
    /// The initramfs is not inside the host's RAM, or overlaps the kernel or the tree.
    Initrd(MemRange),
    /// The initramfs is not where the description says.
    InitrdMismatch,
    /// No command line.
    Bootargs,
}

/// Ranges in words: `[0x8000000+0x10000, 0x80a0000+0x20000]`.
struct Ranges<'a>(&'a [MemRange]);

impl core::fmt::Display for Ranges<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("[")?;
        for (i, r) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{:#x}+{:#x}", r.base, r.size)?;
        }
        f.write_str("]")
    }
}

impl core::fmt::Display for HostTreeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            HostTreeError::Memory(m) => {
                write!(f, "memory nodes {} are not exactly the host's RAM", Ranges(m))
            }
            HostTreeError::ShadowCds(m) => write!(
                f,
                "no-map reserved memory {} is not exactly the hypervisor's shadow CDs",
                Ranges(m)
            ),
            HostTreeError::Cpus(c) => write!(f, "CPU nodes {c:#x?} are not exactly the host's CPUs"),
            HostTreeError::EnableMethod => f.write_str("the CPU is not started through PSCI"),
            HostTreeError::Psci => f.write_str("no /psci node with method \"smc\""),
            HostTreeError::Gic(r) => write!(
                f,
                "GIC registers {} are not the distributor and the host CPU's redistributor",
                Ranges(r)
            ),
            HostTreeError::Timer => f.write_str("no architected timer node"),
            HostTreeError::Pcie(why) => write!(f, "PCIe host bridge: {why}"),
            HostTreeError::Forbidden(c) => write!(f, "a `{c}` node: not the host's to have"),
            HostTreeError::Smmu(why) => write!(f, "SMMU: {why}"),
            HostTreeError::Uart(why) => write!(f, "PL011: {why}"),
            HostTreeError::Device(n, r) => {
                write!(f, "node `{n}` has registers at {:#x}+{:#x}, not the host's", r.base, r.size)
            }
            HostTreeError::Initrd(r) => write!(
                f,
                "initramfs {:#x}..{:#x} is outside the host's RAM or overlaps the kernel or the tree",
                r.base,
                r.end()
            ),
            HostTreeError::InitrdMismatch => f.write_str("initramfs is not where the layout puts it"),
            HostTreeError::Bootargs => f.write_str("no /chosen bootargs"),
        }
    }
}

/// Checks the facts of a tree against the description `want` (whose `bootargs` are not
/// compared: any command line will do). `kernel` and `dtb` are where the kernel image (BSS
/// included) and the blob itself lie: the initramfs may not overlap them.
pub fn check(
    want: &HostTree<'_>,
    got: &HostTreeFacts<'_>,
    kernel: MemRange,
    dtb: MemRange,
) -> Result<(), HostTreeError> {
    if got.memory != [want.ram] {
        return Err(HostTreeError::Memory(got.memory.clone()));
    }
    if got.no_map != [want.shadow_cds] {
        return Err(HostTreeError::ShadowCds(got.no_map.clone()));
    }
    if !got.cpus.iter().copied().eq(want.cpu_mpidrs()) {
        return Err(HostTreeError::Cpus(got.cpus.clone()));
    }
    if got.cpu_enable_method != Some("psci") {
        return Err(HostTreeError::EnableMethod);
    }
    if got.psci_method != Some("smc") {
        return Err(HostTreeError::Psci);
    }
    // A guest's one PL011 is its emulated UART; the host has none.
    let uart_ok = |c: &&str| want.uart.is_some() && matches!(*c, "arm,pl011" | "arm,primecell");
    if let Some(c) = got.forbidden.iter().find(|c| !uart_ok(c)) {
        let c = FORBIDDEN.iter().find(|f| *f == c).copied().unwrap_or("forbidden");
        return Err(HostTreeError::Forbidden(c));
    }
    check_uart(want, got)?;
    if got.gic != [want.gicd, want.gicr] {
        return Err(HostTreeError::Gic(got.gic.clone()));
    }
    if !got.timer {
        return Err(HostTreeError::Timer);
    }
    if got.pcie_ecam != Some(want.pcie_ecam) {
        return Err(HostTreeError::Pcie("ECAM is not the board's"));
    }
    let want_ranges = [
        (0b01, 0, want.pcie_pio.base, want.pcie_pio.size),
        (0b10, want.pcie_mmio32.base, want.pcie_mmio32.base, want.pcie_mmio32.size),
    ];
    if got.pcie_ranges != want_ranges {
        return Err(HostTreeError::Pcie("windows are not the board's I/O and 32-bit windows"));
    }
    if got.pcie_probe_only != Some(1) {
        return Err(HostTreeError::Pcie("no linux,pci-probe-only = 1: Linux would move BARs"));
    }
    if got.pcie_msi {
        return Err(HostTreeError::Pcie("msi-map/msi-parent: the host has no MSI controller"));
    }
    if !intx_is_the_boards(want, got) {
        return Err(HostTreeError::Pcie(
            "interrupt-map is not the board's INTx wiring onto the GIC (the SPIs the \
             distributor lets the host configure)",
        ));
    }
    check_smmu(want, got)?;
    let given = [want.gicd, want.gicr, want.pcie_ecam];
    let emulated = want.smmu.map(|s| s.regs).into_iter().chain(want.uart.map(|u| u.regs));
    let given: Vec<MemRange> = given.into_iter().chain(emulated).collect();
    for (name, r) in &got.device_regs {
        if !given.iter().any(|g| g.contains_range(r.base, r.size.max(1))) {
            return Err(HostTreeError::Device((*name).into(), *r));
        }
    }
    match (got.initrd, want.initrd) {
        (Some(i), Some(w)) if i == w => {
            let inside = want.ram.contains_range(i.base, i.size) && i.size > 0;
            if !inside || i.overlaps(&kernel) || i.overlaps(&dtb) {
                return Err(HostTreeError::Initrd(i));
            }
        }
        (None, None) => {}
        _ => return Err(HostTreeError::InitrdMismatch),
    }
    if got.bootargs.is_none() {
        return Err(HostTreeError::Bootargs);
    }
    Ok(())
}

/// The bridge's `interrupt-map` is exactly `HostTree::intx_map` onto the GIC node, level-high
/// SPIs: the INTx SPIs the hypervisor's distributor filter gives the host (`hyp::host::gicd`) are the
/// ones its drivers will use.
fn intx_is_the_boards(want: &HostTree<'_>, got: &HostTreeFacts<'_>) -> bool {
    /// GIC interrupt specifier: SPI, level-triggered active high.
    const SPI: u32 = 0;
    const LEVEL_HIGH: u32 = 4;
    let Some(gic) = got.gic_phandle else { return false };
    let map: Vec<u32> = want
        .intx_map()
        .iter()
        .flat_map(|&(addr, pin, spi)| [addr, 0, 0, pin, gic, 0, 0, SPI, spi, LEVEL_HIGH])
        .collect();
    got.pcie_interrupt_map_mask.as_deref() == Some(&[0x1800, 0, 0, 7][..])
        && got.pcie_interrupt_map.as_deref() == Some(&map[..])
}

/// A guest's tree has exactly one paravirtual IOMMU node, with one stream-ID cell, and the
/// bridge maps every requester ID to the same stream ID on it, when its description says so;
/// else neither the node nor an `iommu-map`.
fn check_pv_iommu(want: &HostTree<'_>, got: &HostTreeFacts<'_>) -> Result<(), HostTreeError> {
    let map = got.pcie_iommu_map.as_deref();
    if !want.pv_iommu {
        if !got.pv_iommus.is_empty() || map.is_some() {
            return Err(HostTreeError::Smmu(
                "a paravirtual IOMMU node or an iommu-map not asked for",
            ));
        }
        return Ok(());
    }
    let [(cells, phandle)] = got.pv_iommus.as_slice() else {
        return Err(HostTreeError::Smmu("not exactly one paravirtual IOMMU node"));
    };
    if *cells != Some(1) {
        return Err(HostTreeError::Smmu("the paravirtual IOMMU's #iommu-cells must be 1"));
    }
    match (phandle, map) {
        (Some(p), Some(m)) if m == [0, *p, 0, 0x1_0000] => Ok(()),
        _ => Err(HostTreeError::Smmu(
            "the bridge's iommu-map is not RID == SID onto the paravirtual IOMMU",
        )),
    }
}

/// A guest's tree has exactly its emulated PL011 (its page, its SPI, level-high), a host's
/// none (refused as forbidden before this).
fn check_uart(want: &HostTree<'_>, got: &HostTreeFacts<'_>) -> Result<(), HostTreeError> {
    let Some(uart) = want.uart else { return Ok(()) };
    let [(reg, irqs)] = got.uarts.as_slice() else {
        return Err(HostTreeError::Uart("not exactly one arm,pl011 node"));
    };
    if reg.as_slice() != [uart.regs] {
        return Err(HostTreeError::Uart("registers are not its emulated UART's page"));
    }
    if irqs.as_slice() != [0, uart.spi, 4] {
        return Err(HostTreeError::Uart("interrupt is not its own level-high SPI"));
    }
    Ok(())
}

/// The one SMMU node is the emulated SMMU the description names, and the bridge maps every
/// requester ID to the same stream ID on it; a guest's tree (no SMMU in its description) has
/// neither an SMMU node nor an `iommu-map`.
fn check_smmu(want: &HostTree<'_>, got: &HostTreeFacts<'_>) -> Result<(), HostTreeError> {
    let Some(want_smmu) = want.smmu else {
        if !got.smmus.is_empty() {
            return Err(HostTreeError::Smmu("a guest is given no SMMU node"));
        }
        return check_pv_iommu(want, got);
    };
    if !got.pv_iommus.is_empty() {
        return Err(HostTreeError::Smmu("the host is given no paravirtual IOMMU"));
    }
    let [smmu] = got.smmus.as_slice() else {
        return Err(HostTreeError::Smmu("not exactly one arm,smmu-v3 node"));
    };
    if smmu.reg != [want_smmu.regs] {
        return Err(HostTreeError::Smmu("registers are not the emulated SMMU's"));
    }
    let (e, g) = (want_smmu.eventq_spi, want_smmu.gerror_spi);
    if smmu.interrupts != [0, e, 1, 0, g, 1] || smmu.interrupt_names != "eventq,gerror" {
        return Err(HostTreeError::Smmu("interrupts are not its eventq and gerror SPIs"));
    }
    if smmu.iommu_cells != Some(1) {
        return Err(HostTreeError::Smmu("#iommu-cells must be 1"));
    }
    // What the emulated SMMU advertises (IDR0.COHACC) and how the host then maps its
    // structures: its tree must say the same, or the host would not clean what a non-coherent
    // SMMU walks.
    if smmu.coherent != want_smmu.coherent {
        return Err(HostTreeError::Smmu(if want_smmu.coherent {
            "dma-coherent missing, but the SMMU is driven as coherent (smmu_coherent)"
        } else {
            "dma-coherent present, but the SMMU is driven as non-coherent (smmu_coherent=0)"
        }));
    }
    let map = got.pcie_iommu_map.as_deref();
    if smmu.phandle.is_none() || map != Some(&[0, smmu.phandle.unwrap_or(0), 0, 0x1_0000]) {
        return Err(HostTreeError::Smmu("the bridge's iommu-map is not RID == SID onto it"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::linux::{dtgen, HostTree, Layout};
    use platform::qemu_virt::{BOARD, MANIFEST};
    use platform::Cpus;
    use std::string::ToString;

    fn host() -> (HostTree<'static>, MemRange, MemRange) {
        let vm = &MANIFEST.vms[0];
        let l = Layout::for_vm(vm).unwrap();
        let kernel = MemRange::new(vm.mem.base, 0x2b2_0000);
        let initrd = l.initrd(kernel, 3 << 20).unwrap();
        (HostTree::new(&BOARD, vm, "console=ttyS0 panic=-1", Some(initrd), true), kernel, l.dtb)
    }

    fn check_blob(t: &HostTree<'_>, blob: &[u8]) -> Result<(), HostTreeError> {
        let (want, kernel, dtb) = host();
        let _ = t;
        check(&want, &parse(blob).unwrap(), kernel, dtb)
    }

    #[test]
    fn reasons_read_well() {
        let e = HostTreeError::Gic(std::vec![BOARD.gicd, BOARD.gicr]);
        assert_eq!(
            std::format!("{e}"),
            "GIC registers [0x8000000+0x10000, 0x80a0000+0xf60000] are not the distributor and \
             the host CPU's redistributor"
        );
    }

    #[test]
    fn the_generated_tree_passes() {
        let (t, kernel, dtb) = host();
        let blob = dtgen::write(&t).unwrap();
        let f = parse(&blob).unwrap();
        assert_eq!(f.memory, [t.ram]);
        assert_eq!(f.no_map, [MANIFEST.vms[0].shadow_cds()]);
        assert_eq!(f.cpus, [0, 1]);
        assert_eq!(f.gic, [BOARD.gicd, MemRange::new(BOARD.gicr.base, 0x4_0000)]);
        assert_eq!(f.pcie_probe_only, Some(1));
        assert_eq!(f.initrd, t.initrd);
        assert_eq!(f.bootargs, Some("console=ttyS0 panic=-1"));
        assert!(f.forbidden.is_empty());
        assert_eq!(f.smmus.len(), 1);
        assert_eq!(f.smmus[0].reg, [BOARD.smmu]);
        assert_eq!(f.pcie_iommu_map, Some(std::vec![0, 2, 0, 0x1_0000]));
        assert_eq!(check(&t, &f, kernel, dtb), Ok(()));
    }

    /// Each variation of the description gives a tree that the check refuses.
    #[test]
    fn every_disagreement_is_refused_with_its_reason() {
        let (t, _, _) = host();
        let refuse = |bad: HostTree<'_>| check_blob(&t, &dtgen::write(&bad).unwrap()).unwrap_err();
        let guest1 = MANIFEST.vms[1].mem;
        assert!(matches!(refuse(HostTree { ram: guest1, ..t }), HostTreeError::Memory(_)));
        let bigger = MemRange::new(t.ram.base, t.ram.size + (32 << 20));
        assert!(matches!(refuse(HostTree { ram: bigger, ..t }), HostTreeError::Memory(_)));
        // Another VM's CPU, one CPU fewer, one more.
        for cpus in [Cpus::range(1, 2), Cpus::one(0), Cpus::range(0, 3)] {
            assert!(matches!(refuse(HostTree { cpus, ..t }), HostTreeError::Cpus(_)), "{cpus:?}");
        }
        // The shadow CDs not reserved (no-map) exactly: Linux would touch unmapped pages.
        let moved = MemRange::new(t.shadow_cds.base - 0x1000, t.shadow_cds.size);
        let e = refuse(HostTree { shadow_cds: moved, ..t });
        assert_eq!(e, HostTreeError::ShadowCds(std::vec![moved]));
        assert!(e.to_string().contains("shadow CDs"));
        let all_gicr = BOARD.gicr;
        assert!(matches!(refuse(HostTree { gicr: all_gicr, ..t }), HostTreeError::Gic(_)));
        let guest_gicr = MemRange::new(BOARD.gicr.base + 0x4_0000, 0x2_0000);
        assert!(matches!(refuse(HostTree { gicr: guest_gicr, ..t }), HostTreeError::Gic(_)));
        let with_guest1 = MemRange::new(BOARD.gicr.base, 0x6_0000);
        assert!(matches!(refuse(HostTree { gicr: with_guest1, ..t }), HostTreeError::Gic(_)));
        let cpu0_only = MemRange::new(BOARD.gicr.base, 0x2_0000);
        assert!(matches!(refuse(HostTree { gicr: cpu0_only, ..t }), HostTreeError::Gic(_)));
        let wide = MemRange::new(BOARD.pcie_mmio32.base, BOARD.pcie_mmio32.size + 0x1000);
        assert!(matches!(refuse(HostTree { pcie_mmio32: wide, ..t }), HostTreeError::Pcie(_)));
        let ecam = MemRange::new(0x3f00_0000, 0x100_0000);
        assert!(matches!(refuse(HostTree { pcie_ecam: ecam, ..t }), HostTreeError::Pcie(_)));
        // An initramfs over the kernel, outside RAM, or absent where the layout puts one.
        let over_kernel = MemRange::new(t.ram.base + 0x10_0000, 0x1000);
        assert!(matches!(
            refuse(HostTree { initrd: Some(over_kernel), ..t }),
            HostTreeError::InitrdMismatch
        ));
        assert!(matches!(refuse(HostTree { initrd: None, ..t }), HostTreeError::InitrdMismatch));
        let (_, kernel, dtb) = host();
        let blob = dtgen::write(&t).unwrap();
        let mut f = parse(&blob).unwrap();
        f.initrd = Some(over_kernel);
        let w = HostTree { initrd: Some(over_kernel), ..t };
        assert_eq!(check(&w, &f, kernel, dtb), Err(HostTreeError::Initrd(over_kernel)));
        let outside = MemRange::new(guest1.base, 0x1000);
        f.initrd = Some(outside);
        let w = HostTree { initrd: Some(outside), ..t };
        assert_eq!(check(&w, &f, kernel, dtb), Err(HostTreeError::Initrd(outside)));
    }

    /// A `reg` is accepted only when every byte of it lies inside one thing the host is given:
    /// one whose first byte is inside and whose end is outside (or the reverse), one that wraps,
    /// and an empty one just past a range are refused; the exact ranges and their edges pass.
    #[test]
    fn device_registers_must_lie_wholly_inside_what_the_host_is_given() {
        let (t, kernel, dtb) = host();
        let blob = dtgen::write(&t).unwrap();
        let base = parse(&blob).unwrap();
        let with_reg = |r: MemRange| {
            let mut f = base.clone();
            f.device_regs.push(("dev@0", r));
            check(&t, &f, kernel, dtb)
        };
        let refused = |r: MemRange| Err(HostTreeError::Device("dev@0".to_string(), r));
        for g in [t.gicd, t.gicr, t.pcie_ecam, t.smmu.unwrap().regs] {
            for ok in [
                g,
                MemRange::new(g.base, 0),
                MemRange::new(g.base, 1),
                MemRange::new(g.end() - 1, 1),
                MemRange::new(g.base + 0x100, g.size - 0x200),
            ] {
                assert_eq!(with_reg(ok), Ok(()), "{ok:x?} inside {g:x?}");
            }
            for bad in [
                // First byte inside, the rest past the end.
                MemRange::new(g.end() - 1, 2),
                MemRange::new(g.base, g.size + 1),
                MemRange::new(g.end() - 0x1000, 0x2000),
                // Last byte inside, the first before the start.
                MemRange::new(g.base - 1, 2),
                MemRange::new(g.base - 0x1000, g.size),
                // Empty, just past the end (checked as one byte).
                MemRange::new(g.end(), 0),
                // Wrapping around the address space from inside.
                MemRange::new(g.base, u64::MAX),
                MemRange::new(g.end() - 1, u64::MAX - g.end() + 3),
            ] {
                assert_eq!(with_reg(bad), refused(bad), "{bad:x?} against {g:x?}");
            }
        }
        // Two given ranges that a reg spans from one to the other (the ITS lies between the
        // distributor and the redistributors).
        let span = MemRange::new(t.gicd.base, t.gicr.end() - t.gicd.base);
        assert_eq!(with_reg(span), refused(span));

        // The same through a real blob: parse keeps each reg's size.
        let mut w = vm_fdt::FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        let n = w.begin_node("dev@0").unwrap();
        w.property_array_u64("reg", &[t.smmu.unwrap().regs.end() - 0x1000, 0x2000]).unwrap();
        w.end_node(n).unwrap();
        w.end_node(root).unwrap();
        let blob = w.finish().unwrap();
        let regs = parse(&blob).unwrap().device_regs;
        let r = MemRange::new(t.smmu.unwrap().regs.end() - 0x1000, 0x2000);
        assert_eq!(regs, [("dev@0", r)]);
        assert_eq!(with_reg(r), refused(r));
    }

    /// The bridge's `ranges` are read with their full 64-bit addresses and sizes: the board's
    /// 64-bit window (above 4 GiB) added to the tree is seen as such and refused.
    #[test]
    fn pcie_ranges_keep_their_high_halves() {
        let mut w = vm_fdt::FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        let n = w.begin_node("pcie@10000000").unwrap();
        w.property_string("compatible", "pci-host-ecam-generic").unwrap();
        w.property_u32("#address-cells", 3).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        #[rustfmt::skip]
        w.property_array_u32("ranges", &[
            // Prefetchable 64-bit memory (code 3): PCI 0x80_0000_0000, CPU 0x81_2345_6789,
            // size 0x7f_0000_1000.
            0x4300_0000, 0x80, 0, 0x81, 0x2345_6789, 0x7f, 0x1000,
        ])
        .unwrap();
        w.end_node(n).unwrap();
        w.end_node(root).unwrap();
        let blob = w.finish().unwrap();
        let f = parse(&blob).unwrap();
        assert_eq!(f.pcie_ranges, [(3, 0x80_0000_0000, 0x81_2345_6789, 0x7f_0000_1000)]);
        let (t, kernel, dtb) = host();
        let good = dtgen::write(&t).unwrap();
        let mut g = parse(&good).unwrap();
        g.pcie_ranges.extend(f.pcie_ranges);
        assert!(
            matches!(check(&t, &g, kernel, dtb), Err(HostTreeError::Pcie(w)) if w.contains("windows"))
        );
    }

    /// A host booted without an initramfs: the tree names none, the description neither.
    #[test]
    fn a_tree_without_an_initramfs_passes() {
        let (t, kernel, dtb) = host();
        let none = HostTree { initrd: None, ..t };
        let blob = dtgen::write(&none).unwrap();
        let f = parse(&blob).unwrap();
        assert_eq!(f.initrd, None);
        assert_eq!(check(&none, &f, kernel, dtb), Ok(()));
        // Named in the tree but not in the description, and the reverse.
        assert_eq!(check(&t, &f, kernel, dtb), Err(HostTreeError::InitrdMismatch));
    }

    /// The refusal names the forbidden node found, the first one in the tree.
    #[test]
    fn a_forbidden_node_is_named() {
        let (t, kernel, dtb) = host();
        let blob = dtgen::write(&t).unwrap();
        let base = parse(&blob).unwrap();
        for (found, named) in [
            (&["arm,pl011", "arm,primecell"][..], "arm,pl011"),
            (&["arm,primecell"][..], "arm,primecell"),
            (&["arm,gic-v3-its", "arm,pl011"][..], "arm,gic-v3-its"),
        ] {
            let mut f = base.clone();
            f.forbidden = found.to_vec();
            assert_eq!(check(&t, &f, kernel, dtb), Err(HostTreeError::Forbidden(named)));
        }
    }

    /// `cpu_enable_method` is the CPUs' method only if every CPU names the same one.
    #[test]
    fn the_enable_method_is_read_only_when_every_cpu_agrees() {
        let tree = |methods: &[&str]| {
            let mut w = vm_fdt::FdtWriter::new().unwrap();
            let root = w.begin_node("").unwrap();
            let cpus = w.begin_node("cpus").unwrap();
            w.property_u32("#address-cells", 1).unwrap();
            w.property_u32("#size-cells", 0).unwrap();
            for (i, m) in methods.iter().enumerate() {
                let c = w.begin_node(&std::format!("cpu@{i}")).unwrap();
                w.property_u32("reg", i as u32).unwrap();
                w.property_string("enable-method", m).unwrap();
                w.end_node(c).unwrap();
            }
            w.end_node(cpus).unwrap();
            w.end_node(root).unwrap();
            w.finish().unwrap()
        };
        let method = |methods: &[&str]| {
            let blob = tree(methods);
            let f = parse(&blob).unwrap();
            assert_eq!(f.cpus.len(), methods.len());
            f.cpu_enable_method.map(std::string::String::from)
        };
        assert_eq!(method(&["psci"]).as_deref(), Some("psci"));
        assert_eq!(method(&["psci", "psci", "psci"]).as_deref(), Some("psci"));
        assert_eq!(method(&["psci", "spin-table"]), None);
        assert_eq!(method(&["spin-table", "psci"]), None);
        assert_eq!(method(&["psci", "psci", "spin-table"]), None);
        assert_eq!(method(&["psci", "spin-table", "psci"]), None);
    }

    /// The initramfs must lie inside the host's RAM, be non-empty, and share no byte with the
    /// kernel or the tree (the blob itself, as the hypervisor passes it); touching either is
    /// fine.
    #[test]
    fn the_initramfs_may_not_overlap_the_tree_or_the_kernel() {
        let (t, kernel, _) = host();
        let blob = dtgen::write(&t).unwrap();
        let dtb = MemRange::new(t.ram.end() - (2 << 20), blob.len() as u64);
        let checked = |i: MemRange| {
            // As the hypervisor does: the description takes the initramfs the tree names.
            let mut f = parse(&blob).unwrap();
            f.initrd = Some(i);
            check(&HostTree { initrd: Some(i), ..t }, &f, kernel, dtb)
        };
        let refused = |i: MemRange| Err(HostTreeError::Initrd(i));
        let mib = 1 << 20;
        for ok in [
            MemRange::new(dtb.base - mib, mib),
            MemRange::new(kernel.end(), mib),
            MemRange::new(kernel.end(), dtb.base - kernel.end()),
            // Above the blob, still in the host's RAM.
            MemRange::new(dtb.end(), t.ram.end() - dtb.end()),
        ] {
            assert_eq!(checked(ok), Ok(()), "{ok:x?}");
        }
        for bad in [
            // Over the tree: its last byte is the tree's first, or it covers the tree, or it
            // starts inside the tree.
            MemRange::new(dtb.base - mib, mib + 1),
            MemRange::new(dtb.base - mib, 2 * mib),
            MemRange::new(dtb.base + 0x10, 0x100),
            MemRange::new(dtb.end() - 1, 0x1000),
            // Over the kernel's last byte.
            MemRange::new(kernel.end() - 1, mib),
            // Starting in the host's RAM, ending past it; wholly past it; empty.
            MemRange::new(t.ram.end() - 0x1000, 0x2000),
            MemRange::new(t.ram.end(), 0x1000),
            MemRange::new(dtb.base - mib, 0),
            // Below the host's RAM, ending inside it.
            MemRange::new(t.ram.base - 0x1000, 0x2000),
        ] {
            assert_eq!(checked(bad), refused(bad), "{bad:x?}");
        }
        // initrd-end below initrd-start reads as an empty initramfs: refused.
        let mut w = vm_fdt::FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        let c = w.begin_node("chosen").unwrap();
        w.property_u64("linux,initrd-start", dtb.base - mib).unwrap();
        w.property_u64("linux,initrd-end", dtb.base - 2 * mib).unwrap();
        w.end_node(c).unwrap();
        w.end_node(root).unwrap();
        let blob = w.finish().unwrap();
        let backwards = parse(&blob).unwrap().initrd.unwrap();
        assert_eq!(backwards, MemRange::new(dtb.base - mib, 0));
        assert_eq!(checked(backwards), refused(backwards));
    }

    /// The SMMU node's `dma-coherent` says what the hypervisor drives the SMMU as (its boot
    /// option `smmu_coherent`), both ways: the tree written for either mode passes only that
    /// mode's check.
    #[test]
    fn dma_coherent_is_exactly_the_smmus_mode() {
        let (t, kernel, dtb) = host();
        for (written, wanted) in [(true, true), (false, false), (true, false), (false, true)] {
            let w = HostTree {
                smmu: Some(platform::linux::HostSmmu { coherent: written, ..t.smmu.unwrap() }),
                ..t
            };
            let want = HostTree {
                smmu: Some(platform::linux::HostSmmu { coherent: wanted, ..t.smmu.unwrap() }),
                ..t
            };
            let blob = dtgen::write(&w).unwrap();
            let facts = parse(&blob).unwrap();
            assert_eq!(facts.smmus[0].coherent, written);
            let r = check(&want, &facts, kernel, dtb);
            if written == wanted {
                assert_eq!(r, Ok(()), "{written}");
            } else {
                assert!(matches!(r, Err(HostTreeError::Smmu(_))), "{written} {wanted}");
            }
        }
    }

    /// Trees written by hand with one thing added or changed (what a stale or tampered tree
    /// would contain).
    #[test]
    fn extra_nodes_and_properties_are_refused() {
        use vm_fdt::FdtWriter;
        let (t, kernel, dtb) = host();
        let blob = dtgen::write(&t).unwrap();
        let base = parse(&blob).unwrap();
        let with = |edit: &dyn Fn(&mut HostTreeFacts<'_>)| {
            let mut f = base.clone();
            edit(&mut f);
            check(&t, &f, kernel, dtb)
        };
        assert!(matches!(
            with(&|f| f.memory.push(MANIFEST.vms[2].mem)),
            Err(HostTreeError::Memory(_))
        ));
        assert!(matches!(with(&|f| f.cpus.push(2)), Err(HostTreeError::Cpus(_))));
        assert!(matches!(with(&|f| f.cpus.reverse()), Err(HostTreeError::Cpus(_))));
        assert_eq!(with(&|f| f.psci_method = Some("hvc")), Err(HostTreeError::Psci));
        assert_eq!(with(&|f| f.timer = false), Err(HostTreeError::Timer));
        assert!(matches!(with(&|f| f.pcie_probe_only = None), Err(HostTreeError::Pcie(_))));
        assert!(matches!(with(&|f| f.pcie_msi = true), Err(HostTreeError::Pcie(_))));
        // An interrupt-map naming other SPIs (here the real SMMU's event queue, SPI 74), another
        // parent, edge, or no map at all: the host would use lines the distributor denies it.
        let intx = base.pcie_interrupt_map.clone().unwrap();
        assert_eq!(intx.len(), 160);
        for (cell, v) in [(8, 74), (4, 7), (9, 1)] {
            let mut m = intx.clone();
            m[cell] = v;
            let e = with(&|f| f.pcie_interrupt_map = Some(m.clone()));
            assert!(
                matches!(e, Err(HostTreeError::Pcie(w)) if w.contains("interrupt-map")),
                "{cell}"
            );
        }
        assert!(matches!(with(&|f| f.pcie_interrupt_map = None), Err(HostTreeError::Pcie(_))));
        assert!(matches!(
            with(&|f| f.pcie_interrupt_map_mask = Some(std::vec![0xf800, 0, 0, 7])),
            Err(HostTreeError::Pcie(_))
        ));
        assert!(matches!(with(&|f| f.gic_phandle = None), Err(HostTreeError::Pcie(_))));
        assert!(matches!(with(&|f| f.pcie_iommu_map = None), Err(HostTreeError::Smmu(_))));
        assert!(matches!(
            with(&|f| f.pcie_iommu_map = Some(std::vec![0, 2, 0x100, 0x1_0000])),
            Err(HostTreeError::Smmu(_))
        ));
        assert!(matches!(with(&|f| f.smmus.clear()), Err(HostTreeError::Smmu(_))));
        assert!(matches!(with(&|f| f.smmus.push(f.smmus[0].clone())), Err(HostTreeError::Smmu(_))));
        for edit in [
            (|n: &mut SmmuNode| n.reg = std::vec![MemRange::new(0x4020_0000, 0x2_0000)])
                as fn(&mut SmmuNode),
            |n| n.interrupts[1] = 74,
            |n| n.interrupt_names = "combined".into(),
            |n| n.iommu_cells = Some(2),
            |n| n.coherent = false,
        ] {
            assert!(matches!(with(&|f| edit(&mut f.smmus[0])), Err(HostTreeError::Smmu(_))));
        }
        assert_eq!(with(&|f| f.bootargs = None), Err(HostTreeError::Bootargs));
        assert_eq!(
            with(&|f| f.device_regs.push(("pl011@9000000", BOARD.uart))),
            Err(HostTreeError::Device("pl011@9000000".to_string(), BOARD.uart))
        );

        // Real blobs: an SMMU node, an ITS under the GIC, hypervisor memory as a device.
        let blob_with = |extra: &dyn Fn(&mut FdtWriter)| {
            let mut w = FdtWriter::new().unwrap();
            let root = w.begin_node("").unwrap();
            w.property_u32("#address-cells", 2).unwrap();
            w.property_u32("#size-cells", 2).unwrap();
            extra(&mut w);
            w.end_node(root).unwrap();
            w.finish().unwrap()
        };
        let smmu = blob_with(&|w| {
            let n = w.begin_node("iommu@9050000").unwrap();
            w.property_string("compatible", "arm,smmu-v3").unwrap();
            w.property_array_u64("reg", &[BOARD.smmu.base, BOARD.smmu.size]).unwrap();
            w.end_node(n).unwrap();
        });
        let f = parse(&smmu).unwrap();
        assert_eq!(f.smmus.len(), 1);
        assert!(f.smmus[0].interrupts.is_empty(), "a bare SMMU node is not the emulated one");
        let its = blob_with(&|w| {
            let g = w.begin_node("intc@8000000").unwrap();
            w.property_string("compatible", "arm,gic-v3").unwrap();
            w.property_u32("#address-cells", 2).unwrap();
            w.property_u32("#size-cells", 2).unwrap();
            let n = w.begin_node("its@8080000").unwrap();
            w.property_string("compatible", "arm,gic-v3-its").unwrap();
            w.property_array_u64("reg", &[0x0808_0000, 0x2_0000]).unwrap();
            w.end_node(n).unwrap();
            w.end_node(g).unwrap();
        });
        let f = parse(&its).unwrap();
        assert_eq!(f.forbidden, ["arm,gic-v3-its"]);
        assert_eq!(f.device_regs, [("its@8080000", MemRange::new(0x0808_0000, 0x2_0000))]);
        let hyp = blob_with(&|w| {
            let n = w.begin_node("ram@40000000").unwrap();
            w.property_array_u64("reg", &[BOARD.hyp.base, BOARD.hyp.size]).unwrap();
            w.end_node(n).unwrap();
        });
        let mut f = base.clone();
        let hyp_facts = parse(&hyp).unwrap();
        f.device_regs.extend(hyp_facts.device_regs);
        assert!(matches!(check(&t, &f, kernel, dtb), Err(HostTreeError::Device(..))));
        // A second memory node.
        let mem = blob_with(&|w| {
            let n = w.begin_node("memory@54000000").unwrap();
            w.property_string("device_type", "memory").unwrap();
            w.property_array_u64("reg", &[0x5400_0000, 0x200_0000]).unwrap();
            w.end_node(n).unwrap();
        });
        assert_eq!(parse(&mem).unwrap().memory, [MemRange::new(0x5400_0000, 0x200_0000)]);
    }

    fn guest() -> (HostTree<'static>, MemRange, MemRange) {
        let vm = &MANIFEST.vms[1];
        let l = Layout::for_vm(vm).unwrap();
        let kernel = MemRange::new(vm.mem.base, 0x2b2_0000);
        let initrd = l.initrd(kernel, 2 << 20).unwrap();
        let t = HostTree::guest(&BOARD, vm, "console=ttyAMA0", Some(initrd));
        (t, kernel, MemRange::new(l.dtb.base, 0x1000))
    }

    /// A guest's tree passes with its PL011 and without an SMMU; every way its UART or the
    /// absence of an SMMU can be wrong is refused, with its reason; and the host's tree is not
    /// a guest's (nor the reverse).
    #[test]
    fn a_guests_tree_has_its_uart_and_no_smmu() {
        let (t, kernel, dtb) = guest();
        let blob = dtgen::write(&t).unwrap();
        let f = parse(&blob).unwrap();
        assert_eq!(check(&t, &f, kernel, dtb), Ok(()));
        assert_eq!(f.uarts, [(std::vec![BOARD.uart], std::vec![0, 242, 4])]);
        assert!(f.smmus.is_empty() && f.pcie_iommu_map.is_none());
        let with = |edit: &dyn Fn(&mut HostTreeFacts<'_>)| {
            let mut g = f.clone();
            edit(&mut g);
            check(&t, &g, kernel, dtb)
        };
        assert!(matches!(with(&|g| g.uarts.clear()), Err(HostTreeError::Uart(_))));
        assert!(matches!(with(&|g| g.uarts.push(g.uarts[0].clone())), Err(HostTreeError::Uart(_))));
        let other_page = MemRange::new(BOARD.uart.base + 0x1000, 0x1000);
        assert!(matches!(
            with(&|g| g.uarts[0].0 = std::vec![other_page]),
            Err(HostTreeError::Uart(_))
        ));
        // The host's emulated SMMU's SPI, another guest's UART SPI, an edge trigger.
        for irqs in [[0, 240, 4], [0, 243, 4], [0, 242, 1]] {
            let e = with(&|g| g.uarts[0].1 = irqs.to_vec());
            assert_eq!(e, Err(HostTreeError::Uart("interrupt is not its own level-high SPI")));
        }
        // An SMMU node, or an iommu-map, in a guest's tree.
        let (h, _, _) = host();
        let host_blob = dtgen::write(&h).unwrap();
        let host_facts = parse(&host_blob).unwrap();
        let smmu = host_facts.smmus[0].clone();
        assert!(matches!(with(&|g| g.smmus.push(smmu.clone())), Err(HostTreeError::Smmu(_))));
        let map = host_facts.pcie_iommu_map.clone();
        assert!(matches!(with(&|g| g.pcie_iommu_map = map.clone()), Err(HostTreeError::Smmu(_))));
        // The ITS stays forbidden in a guest's tree; a PL011 in the host's is refused.
        let e = with(&|g| g.forbidden.push("arm,gic-v3-its"));
        assert_eq!(e, Err(HostTreeError::Forbidden("arm,gic-v3-its")));
        let mut hf = host_facts.clone();
        hf.forbidden.push("arm,pl011");
        let (_, hk, hd) = host();
        assert_eq!(check(&h, &hf, hk, hd), Err(HostTreeError::Forbidden("arm,pl011")));
        // The host's tree is not a guest's: other RAM first of all.
        assert!(matches!(check(&t, &host_facts, kernel, dtb), Err(HostTreeError::Memory(_))));
        // A guest's tree with the host's SMMU written in is refused.
        let with_smmu = HostTree { smmu: h.smmu, ..t };
        let smmu_blob = dtgen::write(&with_smmu).unwrap();
        let g = parse(&smmu_blob).unwrap();
        assert!(matches!(check(&t, &g, kernel, dtb), Err(HostTreeError::Smmu(_))));
        // A register outside what it is given (the real SMMU's page) is refused.
        let mut g = f.clone();
        g.device_regs.push(("dev@0", BOARD.smmu));
        assert_eq!(
            check(&t, &g, kernel, dtb),
            Err(HostTreeError::Device("dev@0".into(), BOARD.smmu))
        );
    }

    /// A guest's paravirtual IOMMU: the node and the bridge's RID == SID map onto it pass
    /// together; one without the other, two nodes, a wrong cell count or map, the node in the
    /// host's tree, or in a guest's whose description has none, are refused.
    #[test]
    fn a_guests_paravirtual_iommu_is_checked() {
        let (plain, kernel, dtb) = guest();
        let t = HostTree { pv_iommu: true, ..plain };
        let blob = dtgen::write(&t).unwrap();
        let f = parse(&blob).unwrap();
        assert_eq!(f.pv_iommus, [(Some(1), Some(2))]);
        assert_eq!(f.pcie_iommu_map.as_deref(), Some(&[0, 2, 0, 0x1_0000][..]));
        assert_eq!(check(&t, &f, kernel, dtb), Ok(()));
        let with = |edit: &dyn Fn(&mut HostTreeFacts<'_>)| {
            let mut g = f.clone();
            edit(&mut g);
            check(&t, &g, kernel, dtb)
        };
        let smmu = |r: Result<(), HostTreeError>| matches!(r, Err(HostTreeError::Smmu(_)));
        assert!(smmu(with(&|g| g.pv_iommus.clear())), "the map without the node");
        assert!(smmu(with(&|g| g.pcie_iommu_map = None)), "the node without the map");
        assert!(smmu(with(&|g| g.pv_iommus.push((Some(1), Some(5))))), "two nodes");
        assert!(smmu(with(&|g| g.pv_iommus[0].0 = Some(2))), "two cells");
        assert!(smmu(with(&|g| g.pv_iommus[0].1 = None)), "no phandle");
        assert!(smmu(with(&|g| g.pcie_iommu_map = Some(std::vec![0, 2, 0, 0x100]))), "part");
        assert!(smmu(with(&|g| g.pcie_iommu_map = Some(std::vec![0, 2, 8, 0x1_0000]))), "shifted");
        assert!(
            smmu(with(&|g| g.pcie_iommu_map = Some(std::vec![0, 3, 0, 0x1_0000]))),
            "elsewhere"
        );
        // Its description without one: the node and the map are both refused.
        assert!(smmu(check(&plain, &f, kernel, dtb)));
        // The host is never given one.
        let (h, hk, hd) = host();
        let hblob = dtgen::write(&h).unwrap();
        let mut hf = parse(&hblob).unwrap();
        hf.pv_iommus.push((Some(1), Some(9)));
        assert_eq!(
            check(&h, &hf, hk, hd),
            Err(HostTreeError::Smmu("the host is given no paravirtual IOMMU"))
        );
    }
}
