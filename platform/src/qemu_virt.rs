//! QEMU's `virt` board as started by xtask:
//! `-M virt,virtualization=on,gic-version=3,iommu=smmuv3 -cpu max -smp 4 -m 512M`.
//!
//! Addresses are QEMU's (hw/arm/virt.c memory map); the device tree QEMU generates is checked
//! against them at boot.

use crate::manifest::{Cpus, Manifest, PciAddr, Sealed, VmSpec};
use crate::{Board, MemRange, Platform};

const MIB: u64 = 1 << 20;

/// RAM starts here on `virt`; QEMU places the DTB at this address for an ELF kernel linked
/// above it.
pub const RAM_BASE: u64 = 0x4000_0000;
/// The hypervisor's link address (above the DTB at `RAM_BASE`).
pub const HYP_LOAD_ADDR: u64 = 0x4020_0000;
/// RAM given to QEMU with `-m`.
pub const QEMU_RAM_SIZE: u64 = 512 * MIB;
/// CPUs given to QEMU with `-smp`: the manifest's (two for the host, one per guest).
pub const QEMU_CPUS: u32 = 4;

/// The `virt` board.
pub const BOARD: Board = Board {
    name: "qemu-virt",
    ram_base: RAM_BASE,
    ram_min_size: 0x5e00_0000 - RAM_BASE,
    hyp: MemRange::new(RAM_BASE, 64 * MIB),
    uart: MemRange::new(0x0900_0000, 0x1000),
    smmu: MemRange::new(0x0905_0000, 0x2_0000),
    gicd: MemRange::new(0x0800_0000, 0x1_0000),
    gicr: MemRange::new(0x080A_0000, 0xF6_0000),
    gic_its: MemRange::new(0x0808_0000, 0x2_0000),
    pcie_ecam: MemRange::new(0x40_1000_0000, 0x1000_0000),
    pcie_mmio32: MemRange::new(0x1000_0000, 0x2eff_0000),
    pcie_pio: MemRange::new(0x3eff_0000, 0x1_0000),
    cpu_count: QEMU_CPUS,
    smmu_gbpa_reset: crate::power::GbpaReset::Abort,
    // `virt` wires the SMMU to SPIs 74..77: eventq, priq, cmdq-sync, gerror.
    smmu_irqs: crate::SmmuIrqs { eventq: 74, gerror: 77 },
    // QEMU's SMMU reads and writes guest memory directly: coherent (IDR0.COHACC = 1).
    smmu_coherent: true,
};

/// QEMU `edu` devices xtask attaches (`-device edu,addr=SLOT,dma_mask=...`): one per VM.
pub const EDU_SLOTS: [u8; 3] = [2, 3, 4];
/// The host's PCI 16550 (`-device pci-serial,addr=5`): a Linux host's console (ttyS0).
pub const HOST_SERIAL_SLOT: u8 = 5;
/// The host's disk (`-device virtio-blk-pci,addr=6`), backed by a small raw image xtask creates.
pub const HOST_DISK_SLOT: u8 = 6;
/// guest1's disk (`-device virtio-blk-pci,addr=7,iommu_platform=on`, in every run): a Linux
/// guest1's. Slot 7's INTA is the line of slot 3 (guest1's edu): no other VM's function raises
/// it, so the line is guest1's alone (see `VmSpec::intx_lines`).
pub const GUEST1_DISK_SLOT: u8 = 7;

/// The VMs: the host (256 MiB, enough for a Linux kernel and its initramfs) and two guests
/// (guest1 128 MiB, enough for the same kernel as a Linux guest; guest2 32 MiB), each pinned to its own CPUs (the host to CPUs 0 and 1, each guest to one)
/// and owning one `edu` PCI device (distinct slots, so
/// distinct stream IDs); the host also owns a PCI serial port and a virtio disk, guest1 a virtio
/// disk (used when it is Linux). A VM's RAM is
/// mapped at IPA == PA, so "another VM's memory" has the same address for everyone. The same
/// manifest serves both kinds of host (the bare-metal test image and Linux): the bare-metal
/// host simply leaves the serial port and the disk alone.
pub const MANIFEST: Manifest = Manifest {
    vms: &[
        VmSpec {
            id: 0,
            name: "host",
            mem: MemRange::new(0x4400_0000, 256 * MIB),
            // Linux's SMP: it starts CPU 1 itself (PSCI CPU_ON), and may stop and restart it.
            cpus: Cpus::range(0, 2),
            devices: &[
                PciAddr::slot(EDU_SLOTS[0], 0),
                PciAddr::slot(HOST_SERIAL_SLOT, 0),
                PciAddr::slot(HOST_DISK_SLOT, 0),
            ],
            sealed: Sealed,
        },
        VmSpec {
            id: 1,
            name: "guest1",
            mem: MemRange::new(0x5400_0000, 128 * MIB),
            cpus: Cpus::one(2),
            devices: &[PciAddr::slot(EDU_SLOTS[1], 0), PciAddr::slot(GUEST1_DISK_SLOT, 0)],
            sealed: Sealed,
        },
        VmSpec {
            id: 2,
            name: "guest2",
            mem: MemRange::new(0x5c00_0000, 32 * MIB),
            cpus: Cpus::one(3),
            devices: &[PciAddr::slot(EDU_SLOTS[2], 0)],
            sealed: Sealed,
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
