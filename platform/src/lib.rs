//! Board descriptions behind the [`Platform`] trait, and the VM manifest.
//!
//! The hypervisor never hard-codes an address: it asks its `Platform` for the board's memory
//! map and the manifest of VMs, checks the manifest ([`Manifest::validate`]) and cross-checks
//! the board against the device tree the firmware passed ([`Board::check_against`]).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

#[cfg(feature = "dtgen")]
extern crate alloc;

pub mod gic;
pub mod linux;
pub mod manifest;
pub mod power;
pub mod qemu_virt;
pub mod regs;

pub use manifest::{Cpus, Manifest, ManifestError, PciAddr, VmSpec};

/// A half-open physical (or intermediate-physical) address range `[base, base + size)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemRange {
    /// First byte.
    pub base: u64,
    /// Length in bytes.
    pub size: u64,
}

impl MemRange {
    /// A range.
    pub const fn new(base: u64, size: u64) -> Self {
        Self { base, size }
    }

    /// One past the last byte (saturating).
    pub const fn end(&self) -> u64 {
        self.base.saturating_add(self.size)
    }

    /// Whether `[addr, addr + len)` lies entirely inside this range (and does not wrap).
    pub const fn contains_range(&self, addr: u64, len: u64) -> bool {
        match addr.checked_add(len) {
            Some(end) => addr >= self.base && end <= self.end(),
            None => false,
        }
    }

    /// Whether the two ranges share at least one byte.
    pub const fn overlaps(&self, other: &MemRange) -> bool {
        self.base < other.end() && other.base < self.end()
    }
}

/// The fixed memory map of a board: what the hypervisor needs before it has parsed anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Board {
    /// Board name for logs.
    pub name: &'static str,
    /// Base of RAM; the device tree gives its size.
    pub ram_base: u64,
    /// The smallest RAM size the manifest needs.
    pub ram_min_size: u64,
    /// Memory reserved for the hypervisor (DTB, image, heap, page tables, stacks): mapped in no
    /// VM's stage-2 and reachable by no device.
    pub hyp: MemRange,
    /// PL011 UART registers.
    pub uart: MemRange,
    /// SMMUv3 registers (both 64 KiB pages).
    pub smmu: MemRange,
    /// GICv3 distributor.
    pub gicd: MemRange,
    /// GICv3 redistributors (one 128 KiB frame pair per CPU).
    pub gicr: MemRange,
    /// GICv3 ITS (MSI translation): the hypervisor's alone; its tables are written by the ITS
    /// itself, outside any SMMU translation, so no VM gets it.
    pub gic_its: MemRange,
    /// PCIe ECAM.
    pub pcie_ecam: MemRange,
    /// PCIe 32-bit MMIO window (memory BARs are assigned here).
    pub pcie_mmio32: MemRange,
    /// PCIe I/O window: CPU physical addresses where PCI I/O space `0..size` decodes (I/O BARs,
    /// such as a PCI 16550's, are assigned here).
    pub pcie_pio: MemRange,
    /// Number of CPUs the board is started with.
    pub cpu_count: u32,
    /// What SMMU_GBPA comes back as after the SMMU's power domain is powered on (the boot
    /// option `gbpa_reset=` overrides it on the simulated QEMU domain).
    pub smmu_gbpa_reset: power::GbpaReset,
    /// The SMMU's wired interrupts (SPI numbers) the hypervisor takes at EL2.
    pub smmu_irqs: SmmuIrqs,
    /// Whether the SMMU's accesses to memory (its table walks, queue reads, event writes) are
    /// coherent with the CPUs' caches: the interconnect snoops them. `false` on many mobile and
    /// automotive SoCs; then the driver cleans what it writes to the point of coherency and
    /// invalidates what the SMMU wrote before reading it (the boot option `smmu_coherent=0`
    /// forces that path on a coherent board). A coherent board whose SMMU does not report
    /// coherent access (IDR0.COHACC = 0) is refused at boot.
    pub smmu_coherent: bool,
}

/// The SMMU's wired (edge-triggered) interrupts, as SPI numbers (INTID = SPI + 32).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmmuIrqs {
    /// The event queue became non-empty.
    pub eventq: u32,
    /// A global error was raised.
    pub gerror: u32,
}

/// Facts read from the device tree, to be cross-checked against the [`Board`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DtFacts {
    /// The first `/memory` node's range.
    pub memory: Option<MemRange>,
    /// Number of `/cpus/cpu@*` nodes.
    pub cpu_count: u32,
    /// `reg` of the `pci-host-ecam-generic` node.
    pub pcie_ecam: Option<MemRange>,
    /// The 32-bit non-prefetchable MMIO window from the PCIe node's `ranges`.
    pub pcie_mmio32: Option<MemRange>,
    /// The I/O window (CPU address, size) from the PCIe node's `ranges`.
    pub pcie_pio: Option<MemRange>,
    /// `reg` of the `arm,smmu-v3` node.
    pub smmu: Option<MemRange>,
    /// `reg` of the `arm,pl011` node.
    pub uart: Option<MemRange>,
    /// `reg` of the `arm,gic-v3-its` node.
    pub gic_its: Option<MemRange>,
    /// The `eventq` and `gerror` SPIs of the `arm,smmu-v3` node (`interrupts` with
    /// `interrupt-names`).
    pub smmu_irqs: Option<SmmuIrqs>,
}

/// How the device tree disagrees with the board description.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BoardMismatch {
    /// No `/memory` node, or it does not start at the board's RAM base.
    MemoryBase {
        /// What the DT says (0 if absent).
        found: u64,
    },
    /// RAM is smaller than the manifest needs.
    MemoryTooSmall {
        /// RAM size in the DT.
        found: u64,
        /// What the board needs.
        needed: u64,
    },
    /// The SMMU's interrupts are not the board's (or not named `eventq` and `gerror`).
    SmmuIrqs {
        /// What the DT says, if it names both.
        found: Option<SmmuIrqs>,
        /// What the board says.
        expected: SmmuIrqs,
    },
    /// Fewer CPUs than the board needs.
    TooFewCpus {
        /// CPUs in the DT.
        found: u32,
        /// CPUs needed.
        needed: u32,
    },
    /// A device is missing or at another address than the board says.
    Device {
        /// Which device.
        what: &'static str,
        /// What the DT says (0 if absent).
        found: u64,
        /// What the board says.
        expected: u64,
    },
}

impl core::fmt::Display for BoardMismatch {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            BoardMismatch::MemoryBase { found } => {
                write!(f, "device tree RAM starts at {found:#x}, not at the board's RAM base")
            }
            BoardMismatch::MemoryTooSmall { found, needed } => {
                write!(f, "device tree RAM is {found:#x} bytes, the manifest needs {needed:#x}")
            }
            BoardMismatch::TooFewCpus { found, needed } => {
                write!(f, "device tree has {found} CPUs, the manifest needs {needed}")
            }
            BoardMismatch::SmmuIrqs { found, expected } => match found {
                Some(d) => write!(
                    f,
                    "device tree gives the SMMU eventq SPI {} and gerror SPI {}, the board description says {} and {}",
                    d.eventq, d.gerror, expected.eventq, expected.gerror
                ),
                None => write!(f, "device tree names no SMMU eventq and gerror interrupts"),
            },
            BoardMismatch::Device { what, found, expected } => write!(
                f,
                "device tree puts {what} at {found:#x}, the board description says {expected:#x}"
            ),
        }
    }
}

impl Board {
    /// Checks the device tree against this description. The DT may have more RAM and CPUs than
    /// needed, but every device must be exactly where the board says.
    pub fn check_against(&self, dt: &DtFacts) -> Result<(), BoardMismatch> {
        let mem = dt.memory.ok_or(BoardMismatch::MemoryBase { found: 0 })?;
        if mem.base != self.ram_base {
            return Err(BoardMismatch::MemoryBase { found: mem.base });
        }
        if mem.size < self.ram_min_size {
            return Err(BoardMismatch::MemoryTooSmall {
                found: mem.size,
                needed: self.ram_min_size,
            });
        }
        if dt.cpu_count < self.cpu_count {
            return Err(BoardMismatch::TooFewCpus { found: dt.cpu_count, needed: self.cpu_count });
        }
        let devices = [
            ("the PCIe ECAM", dt.pcie_ecam, self.pcie_ecam),
            ("the PCIe 32-bit MMIO window", dt.pcie_mmio32, self.pcie_mmio32),
            ("the PCIe I/O window", dt.pcie_pio, self.pcie_pio),
            ("the SMMUv3", dt.smmu, self.smmu),
            ("the PL011 UART", dt.uart, self.uart),
            ("the GIC ITS", dt.gic_its, self.gic_its),
        ];
        for (what, found, expected) in devices {
            match found {
                Some(r) if r.base == expected.base && r.size >= expected.size => {}
                other => {
                    return Err(BoardMismatch::Device {
                        what,
                        found: other.map_or(0, |r| r.base),
                        expected: expected.base,
                    })
                }
            }
        }
        if dt.smmu_irqs != Some(self.smmu_irqs) {
            return Err(BoardMismatch::SmmuIrqs { found: dt.smmu_irqs, expected: self.smmu_irqs });
        }
        Ok(())
    }
}

/// A platform: its board, its VM manifest and the controller of its SMMU's power domain. A
/// real SoC port implements this.
pub trait Platform {
    /// The SMMU power controller (QEMU: a simulation; a SoC: SCMI, a PMIC driver...).
    type PowerController: power::SmmuPowerController + Send + 'static;
    /// The board's fixed memory map.
    fn board(&self) -> &'static Board;
    /// The VMs to run.
    fn manifest(&self) -> &'static Manifest;
    /// The SMMU's power controller; `gbpa_reset` is what GBPA comes back as after power-on
    /// where the platform lets a run choose it (the QEMU simulation), ignored otherwise.
    fn power_controller(&self, gbpa_reset: power::GbpaReset) -> Self::PowerController;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qemu_virt::{QemuVirt, BOARD};

    fn good_dt() -> DtFacts {
        DtFacts {
            memory: Some(MemRange::new(0x4000_0000, 0x2000_0000)),
            cpu_count: 4,
            pcie_ecam: Some(BOARD.pcie_ecam),
            pcie_mmio32: Some(BOARD.pcie_mmio32),
            pcie_pio: Some(BOARD.pcie_pio),
            smmu: Some(BOARD.smmu),
            uart: Some(BOARD.uart),
            gic_its: Some(BOARD.gic_its),
            smmu_irqs: Some(BOARD.smmu_irqs),
        }
    }

    #[test]
    fn ranges() {
        let r = MemRange::new(0x1000, 0x1000);
        assert!(r.contains_range(0x1000, 0x1000));
        assert!(!r.contains_range(0x1000, 0x1001));
        assert!(!r.contains_range(0xfff, 1));
        assert!(!r.contains_range(u64::MAX, 2));
        assert!(r.overlaps(&MemRange::new(0x1fff, 1)));
        assert!(!r.overlaps(&MemRange::new(0x2000, 1)));
    }

    #[test]
    fn qemu_dt_matches_board() {
        assert_eq!(QemuVirt.board().check_against(&good_dt()), Ok(()));
    }

    #[test]
    fn mismatches_are_reported() {
        let b = QemuVirt.board();
        let mut dt = good_dt();
        dt.memory = Some(MemRange::new(0x4000_0000, 0x100_0000));
        assert!(matches!(b.check_against(&dt), Err(BoardMismatch::MemoryTooSmall { .. })));
        let mut dt = good_dt();
        dt.cpu_count = 1;
        assert_eq!(b.check_against(&dt), Err(BoardMismatch::TooFewCpus { found: 1, needed: 4 }));
        let mut dt = good_dt();
        dt.smmu_irqs = Some(SmmuIrqs { eventq: 74, gerror: 76 });
        let e = b.check_against(&dt).unwrap_err();
        assert_eq!(e, BoardMismatch::SmmuIrqs { found: dt.smmu_irqs, expected: BOARD.smmu_irqs });
        assert!(std::format!("{e}").contains("gerror SPI 76"));
        dt.smmu_irqs = None;
        assert!(matches!(b.check_against(&dt), Err(BoardMismatch::SmmuIrqs { found: None, .. })));
        let mut dt = good_dt();
        dt.smmu = None;
        assert!(matches!(
            b.check_against(&dt),
            Err(BoardMismatch::Device { what: "the SMMUv3", .. })
        ));
        let mut dt = good_dt();
        dt.pcie_pio = None;
        assert!(matches!(
            b.check_against(&dt),
            Err(BoardMismatch::Device { what: "the PCIe I/O window", .. })
        ));
        let mut dt = good_dt();
        dt.memory = None;
        assert_eq!(b.check_against(&dt), Err(BoardMismatch::MemoryBase { found: 0 }));
    }
}
