//! QEMU's `virt` board as started by xtask:
//! `-M virt,virtualization=on,gic-version=3,iommu=smmuv3 -cpu max -smp 3 -m 512M`.
//!
//! Addresses are QEMU's (hw/arm/virt.c memory map); the device tree QEMU generates is checked
//! against them at boot.

use crate::manifest::{Manifest, PciAddr, VmSpec};
use crate::{Board, MemRange, Platform};

const MIB: u64 = 1 << 20;

/// RAM starts here on `virt`; QEMU places the DTB at this address for an ELF kernel linked
/// above it.
pub const RAM_BASE: u64 = 0x4000_0000;
/// The hypervisor's link address (above the DTB at `RAM_BASE`).
pub const HYP_LOAD_ADDR: u64 = 0x4020_0000;
/// RAM given to QEMU with `-m`.
pub const QEMU_RAM_SIZE: u64 = 512 * MIB;
/// CPUs given to QEMU with `-smp`: one per VM.
pub const QEMU_CPUS: u32 = 3;

/// The `virt` board.
pub const BOARD: Board = Board {
    name: "qemu-virt",
    ram_base: RAM_BASE,
    ram_min_size: 0x4a00_0000 - RAM_BASE,
    hyp: MemRange::new(RAM_BASE, 64 * MIB),
    uart: MemRange::new(0x0900_0000, 0x1000),
    smmu: MemRange::new(0x0905_0000, 0x2_0000),
    gicd: MemRange::new(0x0800_0000, 0x1_0000),
    gicr: MemRange::new(0x080A_0000, 0xF6_0000),
    pcie_ecam: MemRange::new(0x40_1000_0000, 0x1000_0000),
    pcie_mmio32: MemRange::new(0x1000_0000, 0x2eff_0000),
    cpu_count: QEMU_CPUS,
    smmu_gbpa_reset: crate::power::GbpaReset::Abort,
};

/// QEMU `edu` devices xtask attaches (`-device edu,addr=SLOT,dma_mask=...`): one per VM.
pub const EDU_SLOTS: [u8; 3] = [2, 3, 4];

/// The VMs: the host and two guests, 32 MiB each, each pinned to its own CPU and owning one
/// `edu` PCI device (distinct slots, so distinct stream IDs). A VM's RAM is
/// mapped at IPA == PA, so "another VM's memory" has the same address for everyone.
pub const MANIFEST: Manifest = Manifest {
    vms: &[
        VmSpec {
            id: 0,
            name: "host",
            mem: MemRange::new(0x4400_0000, 32 * MIB),
            cpu: 0,
            devices: &[PciAddr::slot(2, 0)],
        },
        VmSpec {
            id: 1,
            name: "guest1",
            mem: MemRange::new(0x4600_0000, 32 * MIB),
            cpu: 1,
            devices: &[PciAddr::slot(3, 0)],
        },
        VmSpec {
            id: 2,
            name: "guest2",
            mem: MemRange::new(0x4800_0000, 32 * MIB),
            cpu: 2,
            devices: &[PciAddr::slot(4, 0)],
        },
    ],
};

/// The QEMU `virt` platform.
#[derive(Clone, Copy, Debug, Default)]
pub struct QemuVirt;

impl Platform for QemuVirt {
    type PowerController = crate::power::SimulatedPowerController;
    fn board(&self) -> &'static Board {
        &BOARD
    }
    fn manifest(&self) -> &'static Manifest {
        &MANIFEST
    }
    fn power_controller(&self, gbpa_reset: crate::power::GbpaReset) -> Self::PowerController {
        crate::power::SimulatedPowerController::new(gbpa_reset)
    }
}
