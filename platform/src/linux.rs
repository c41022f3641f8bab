//! A Linux kernel as a VM: where its pieces go in its RAM (the arm64 boot protocol,
//! `Documentation/arch/arm64/booting.rst`), the kernel `Image` header, and the single
//! description of the device tree a Linux VM is given ([`HostTree`]: the host's, or a guest's
//! from [`HostTree::guest`]). xtask writes the tree from this description (feature `dtgen`);
//! the hypervisor reads the tree it finds back and checks it against the same description
//! before entering the kernel (`hyp::host::tree::check`).
//!
//! What the host's tree contains, and nothing else: its RAM, its CPUs, PSCI (conduit `smc`,
//! trapped), the architected timer, the GICv3 distributor and its own CPUs' redistributors (no
//! ITS: host PCI functions use INTx), the PCIe host bridge (ECAM, I/O and 32-bit memory windows,
//! INTx map, `linux,pci-probe-only`: the hypervisor assigned the BARs), and `/chosen` (boot
//! arguments, initramfs), and the SMMU the hypervisor emulates for it ([`HostSmmu`], at the
//! real SMMU's address, with `iommu-map` on the bridge). No PL011 (the hypervisor's console), no
//! other VM's memory.
//!
//! A Linux guest's tree is the same but for two things: no SMMU (its DMA goes through the
//! hypercalls, or through the identity domain the hypervisor attaches its functions to until it
//! makes them), and a PL011 the hypervisor emulates ([`VmUart`]: its lines are printed as
//! `[name]` on the hypervisor's console), with the fixed clock the AMBA bus needs.

use crate::manifest::VmSpec;
use crate::{Board, MemRange};

const MIB: u64 = 1 << 20;

/// `Image` header magic ("ARM\x64", little-endian, at offset 56).
pub const IMAGE_MAGIC: u32 = 0x644d_5241;
/// Size of the `Image` header.
pub const IMAGE_HEADER_SIZE: usize = 64;
/// The kernel's base (and the initramfs) are 2 MiB aligned.
pub const ALIGN: u64 = 2 * MIB;
/// The device tree blob may not exceed 2 MiB (boot protocol); it gets the last 2 MiB block of the
/// host's RAM.
pub const DTB_MAX: u64 = 2 * MIB;

/// The fields of an arm64 `Image` header the loader needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageHeader {
    /// Offset of the image from a 2 MiB-aligned base (0 for every kernel since 5.8).
    pub text_offset: u64,
    /// Bytes the kernel occupies from its load address, BSS included.
    pub image_size: u64,
    /// Flags: bit 0 big-endian, bits 2:1 page size, bit 3 "may be placed anywhere".
    pub flags: u64,
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// The header of an arm64 `Image`, if `head` (its first 64 bytes) is one.
pub fn image_header(head: &[u8]) -> Option<ImageHeader> {
    if head.len() < IMAGE_HEADER_SIZE {
        return None;
    }
    let magic = u32::from_le_bytes([head[56], head[57], head[58], head[59]]);
    (magic == IMAGE_MAGIC).then(|| ImageHeader {
        text_offset: le64(head, 8),
        image_size: le64(head, 16),
        flags: le64(head, 24),
    })
}

/// Where the kernel, its device tree and its initramfs go in the host's RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The host's RAM.
    pub ram: MemRange,
    /// The 2 MiB-aligned base the kernel is placed relative to (`ram.base`).
    pub kernel_base: u64,
    /// The device tree blob: the last 2 MiB block of RAM up to the hypervisor's shadow CDs
    /// ([`VmSpec::shadow_cds`], just below the last page); the blob itself is smaller.
    pub dtb: MemRange,
}

/// Why the pieces do not fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// The host's RAM is not 2 MiB aligned or too small for a DTB block.
    Ram,
    /// The kernel is not a little-endian 4 KiB-page image, or its text offset is not a
    /// multiple of 4 KiB below 2 MiB.
    Kernel,
    /// The kernel and the initramfs do not fit below the DTB.
    TooBig {
        /// Bytes needed.
        needed: u64,
        /// Bytes available.
        available: u64,
    },
}

impl core::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            LayoutError::Ram => f.write_str("the host's RAM is not 2 MiB aligned or too small"),
            LayoutError::Kernel => {
                f.write_str("not a little-endian, 4 KiB-page arm64 Image with a usable text offset")
            }
            LayoutError::TooBig { needed, available } => write!(
                f,
                "kernel and initramfs need {needed:#x} bytes, the host has {available:#x} below its device tree"
            ),
        }
    }
}

impl Layout {
    /// The layout for host VM `vm`.
    pub fn for_vm(vm: &VmSpec) -> Result<Self, LayoutError> {
        let ram = vm.mem;
        if (ram.base | ram.size) & (ALIGN - 1) != 0 || ram.size < 4 * DTB_MAX {
            return Err(LayoutError::Ram);
        }
        let dtb = ram.end() - DTB_MAX;
        let shadow = vm.shadow_cds();
        if shadow.base <= dtb {
            return Err(LayoutError::Ram);
        }
        Ok(Self { ram, kernel_base: ram.base, dtb: MemRange::new(dtb, shadow.base - dtb) })
    }

    /// Where the kernel `Image` is loaded (and entered): the base plus its text offset.
    pub fn kernel(&self, h: &ImageHeader) -> Result<MemRange, LayoutError> {
        let le_4k = h.flags & 1 == 0 && matches!((h.flags >> 1) & 3, 0 | 1);
        if !le_4k || h.text_offset & 0xfff != 0 || h.text_offset >= ALIGN || h.image_size == 0 {
            return Err(LayoutError::Kernel);
        }
        Ok(MemRange::new(self.kernel_base + h.text_offset, h.image_size))
    }

    /// Where an initramfs of `len` bytes goes: the highest 2 MiB-aligned place below the DTB
    /// block, which must stay above the kernel's whole image (BSS included).
    pub fn initrd(&self, kernel: MemRange, len: u64) -> Result<MemRange, LayoutError> {
        let top = self.dtb.base;
        let base = top.checked_sub(len).map(|b| b & !(ALIGN - 1));
        match base {
            Some(b) if b >= kernel.end() => Ok(MemRange::new(b, len)),
            _ => Err(LayoutError::TooBig {
                needed: (kernel.end() - self.ram.base) + len,
                available: top - self.ram.base,
            }),
        }
    }
}

/// PCI INTx: `virt` wires INTA..INTD of slot `s`, pin `p` (0..3) to SPI `base + (s + p) % 4`.
pub const PCI_INTX_SPI_BASE: u32 = 3;
/// Redistributor frames per CPU (RD and SGI, 64 KiB each).
pub const GICR_FRAME_SIZE: u64 = crate::gic::gicr::FRAMES_SIZE;

/// The SPI the emulated SMMU raises for the host's event queue (wired by no QEMU device).
pub const HOST_SMMU_EVENTQ_SPI: u32 = 240;
/// The SPI the emulated SMMU raises for the host's global errors.
pub const HOST_SMMU_GERROR_SPI: u32 = 241;

/// Offset in each guest's RAM of the page the guests fill with a known pattern and check after
/// the Linux host has stopped: the host's DMA attacks aim at it (they must not land).
pub const GUEST_CANARY_OFFSET: u64 = 0x100_0000;

/// The byte at offset `i` of guest `vm`'s canary page.
pub const fn canary_byte(vm: u32, i: u64) -> u8 {
    (i as u8).wrapping_mul(7) ^ (0xa5 ^ vm as u8)
}

/// The SMMU the host is given: emulated by the hypervisor at the real SMMU's address (the real
/// one's register page is absent from the host's stage-2), edge-triggered event-queue and
/// global-error interrupts, one stream-ID cell; PCI requester IDs map to stream IDs one to one;
/// `dma-coherent` exactly when the hypervisor drives the real SMMU as coherent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostSmmu {
    /// Its register space (both 64 KiB pages).
    pub regs: MemRange,
    /// Event-queue SPI.
    pub eventq_spi: u32,
    /// Global-error SPI.
    pub gerror_spi: u32,
    /// Its node has `dma-coherent`: the real SMMU is driven as coherent (the hypervisor's boot
    /// option `smmu_coherent`, by default the board's), and the emulated one says so in
    /// IDR0.COHACC. Without it Linux maps its stream table, CDs, queues and page tables
    /// non-cacheable (and cleans its page-table updates), as a non-coherent SMMU needs.
    pub coherent: bool,
}

/// The PL011 a Linux guest is given: emulated by the hypervisor on a page absent from its
/// stage-2, at the board's UART address (the real one is the hypervisor's and in no VM's
/// stage-2); its interrupt an SPI no device raises, the guest's alone (the emulated UART never
/// asserts it: transmission never waits, there is no input).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmUart {
    /// Its register page.
    pub regs: MemRange,
    /// Its SPI.
    pub spi: u32,
}

/// The SPI of VM `vm`'s emulated PL011 (wired by no QEMU device; 240 and 241 are the host's
/// emulated SMMU's).
pub const fn vm_uart_spi(vm: &VmSpec) -> u32 {
    HOST_SMMU_GERROR_SPI + vm.id
}

/// The `compatible` of a Linux guest's paravirtual IOMMU node (no registers, `#iommu-cells =
/// <1>`: a stream ID; the bridge's `iommu-map` maps requester ID n to stream ID n). Its driver
/// (`host-abi/linux/pviommu/`) turns Linux's IOMMU domains into SET_STE, CLEAR_STE and
/// INVALIDATE on the guest's own streams.
pub const PV_IOMMU_COMPATIBLE: &str = "smmu-hyp,pv-iommu";

/// The APB clock a PL011 node names (`uartclk` and `apb_pclk`): a fixed clock, the frequency of
/// QEMU's `virt` (24 MHz; only the baud-rate divisors the guest computes depend on it).
pub const UART_CLOCK_HZ: u32 = 24_000_000;

/// A Linux VM's device tree, as data: what xtask writes and what the hypervisor checks. The
/// host's ([`HostTree::new`]) has the emulated SMMU; a guest's ([`HostTree::guest`]) has an
/// emulated PL011 instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostTree<'a> {
    /// The host's RAM (its only memory node).
    pub ram: MemRange,
    /// Its CPUs: one CPU node each, `reg` = the CPU's MPIDR affinity ([`HostTree::mpidr`]),
    /// started through PSCI.
    pub cpus: crate::Cpus,
    /// GICv3 distributor.
    pub gicd: MemRange,
    /// Its CPUs' redistributor frames (consecutive: one region).
    pub gicr: MemRange,
    /// PCIe ECAM (buses `0..=ecam.size >> 20 - 1`).
    pub pcie_ecam: MemRange,
    /// PCIe 32-bit memory window (PCI address == CPU address).
    pub pcie_mmio32: MemRange,
    /// PCIe I/O window (CPU range; I/O addresses from 0).
    pub pcie_pio: MemRange,
    /// Kernel command line.
    pub bootargs: &'a str,
    /// The initramfs, if any.
    pub initrd: Option<MemRange>,
    /// Its SMMU (emulated): the host's only.
    pub smmu: Option<HostSmmu>,
    /// Its PL011 (emulated): a guest's only.
    pub uart: Option<VmUart>,
    /// A guest's paravirtual IOMMU node ([`PV_IOMMU_COMPATIBLE`], with the bridge's
    /// `iommu-map` onto it): its driver attaches its streams through the hypercalls. Without
    /// it the hypervisor attaches them to the identity domain at boot.
    pub pv_iommu: bool,
    /// The PCI INTx lines its functions raise ([`VmSpec::intx_lines`]): the ones of the
    /// board's `interrupt-map` the distributor lets it configure.
    pub intx_lines: u8,
    /// The pages of its RAM that hold the hypervisor's shadow context descriptors
    /// ([`VmSpec::shadow_cds`]): a `/reserved-memory` node with `no-map`, so that Linux neither
    /// uses nor maps them (its stage 2 does not map them).
    pub shadow_cds: MemRange,
}

impl<'a> HostTree<'a> {
    /// The tree for host VM `vm` on `board`, its SMMU `smmu_coherent` or not (what the
    /// hypervisor is told with its boot option `smmu_coherent`: both sides decide from it, and
    /// the hypervisor refuses a tree that disagrees).
    pub fn new(
        board: &Board,
        vm: &VmSpec,
        bootargs: &'a str,
        initrd: Option<MemRange>,
        smmu_coherent: bool,
    ) -> Self {
        Self {
            ram: vm.mem,
            cpus: vm.cpus,
            gicd: board.gicd,
            gicr: MemRange::new(
                board.gicr.base + vm.cpus.first as u64 * GICR_FRAME_SIZE,
                vm.cpus.count as u64 * GICR_FRAME_SIZE,
            ),
            pcie_ecam: board.pcie_ecam,
            pcie_mmio32: board.pcie_mmio32,
            pcie_pio: board.pcie_pio,
            bootargs,
            initrd,
            smmu: Some(HostSmmu {
                regs: board.smmu,
                eventq_spi: HOST_SMMU_EVENTQ_SPI,
                gerror_spi: HOST_SMMU_GERROR_SPI,
                coherent: smmu_coherent,
            }),
            uart: None,
            pv_iommu: false,
            intx_lines: vm.intx_lines(),
            shadow_cds: vm.shadow_cds(),
        }
    }

    /// The tree for Linux guest `vm` on `board`: as a host's, without the SMMU, with an
    /// emulated PL011 at the board's UART address.
    pub fn guest(board: &Board, vm: &VmSpec, bootargs: &'a str, initrd: Option<MemRange>) -> Self {
        Self {
            smmu: None,
            uart: Some(VmUart { regs: board.uart, spi: vm_uart_spi(vm) }),
            ..Self::new(board, vm, bootargs, initrd, board.smmu_coherent)
        }
    }

    /// The SPIs of the INTx lines its functions raise.
    pub fn intx_spis(&self) -> impl Iterator<Item = u32> + use<'a> {
        let lines = self.intx_lines;
        (0..4u32).filter(move |l| lines & (1 << l) != 0).map(|l| PCI_INTX_SPI_BASE + l)
    }

    /// The MPIDR affinity of CPU `cpu` (a linear index): `Aff0` = the index on `virt` (QEMU
    /// puts up to 16 CPUs in affinity cluster 0 with GICv3).
    pub const fn mpidr(cpu: u32) -> u64 {
        cpu as u64
    }

    /// The MPIDR affinities of its CPUs, in order (the `reg` of its CPU nodes).
    pub fn cpu_mpidrs(&self) -> impl Iterator<Item = u64> + use<'a> {
        self.cpus.iter().map(Self::mpidr)
    }

    /// The last PCI bus the ECAM window covers.
    pub fn last_bus(&self) -> u32 {
        ((self.pcie_ecam.size >> 20).max(1) - 1) as u32
    }

    /// The PCI `interrupt-map` (mask `0x1800 0 0 7`): for slots 0..3 and pins 1..4, the child
    /// unit address and pin, then the GIC SPI it raises.
    pub fn intx_map(&self) -> [(u32, u32, u32); 16] {
        let mut m = [(0, 0, 0); 16];
        for slot in 0..4u32 {
            for pin in 1..=4u32 {
                let spi = PCI_INTX_SPI_BASE + (slot + pin - 1) % 4;
                m[(slot * 4 + pin - 1) as usize] = (slot << 11, pin, spi);
            }
        }
        m
    }
}

/// Device-tree writing (xtask and tests: needs `alloc`).
#[cfg(feature = "dtgen")]
pub mod dtgen {
    use super::HostTree;
    use alloc::vec::Vec;
    use vm_fdt::{Error, FdtWriter};

    /// The GIC's phandle.
    pub const GIC_PHANDLE: u32 = 1;
    /// The SMMU's phandle.
    pub const SMMU_PHANDLE: u32 = 2;
    /// The UART clock's phandle (a guest's tree).
    pub const CLOCK_PHANDLE: u32 = 3;
    /// GIC interrupt specifier: rising edge.
    const EDGE_RISING: u32 = 1;
    /// GIC interrupt specifier: PPI.
    const PPI: u32 = 1;
    /// GIC interrupt specifier: SPI.
    const SPI: u32 = 0;
    /// GIC interrupt specifier: level-triggered, active high.
    const LEVEL_HIGH: u32 = 4;
    /// The PMU's overflow interrupt: PPI 7 (INTID 23), as on QEMU `virt`.
    const PMU_PPI: u32 = 7;

    fn reg(r: crate::MemRange) -> [u64; 2] {
        [r.base, r.size]
    }

    /// The flattened device tree blob of `t`.
    pub fn write(t: &HostTree<'_>) -> Result<Vec<u8>, Error> {
        let mut f = FdtWriter::new()?;
        let root = f.begin_node("")?;
        f.property_string("compatible", "linux,dummy-virt")?;
        let role = if t.smmu.is_some() { "host" } else { "guest" };
        f.property_string("model", &alloc::format!("smmu-hyp {role} VM on QEMU virt"))?;
        f.property_u32("#address-cells", 2)?;
        f.property_u32("#size-cells", 2)?;
        f.property_u32("interrupt-parent", GIC_PHANDLE)?;

        let chosen = f.begin_node("chosen")?;
        f.property_string("bootargs", t.bootargs)?;
        if let Some(i) = t.initrd {
            f.property_u64("linux,initrd-start", i.base)?;
            f.property_u64("linux,initrd-end", i.end())?;
        }
        f.end_node(chosen)?;

        let mem = f.begin_node(&alloc::format!("memory@{:x}", t.ram.base))?;
        f.property_string("device_type", "memory")?;
        f.property_array_u64("reg", &reg(t.ram))?;
        f.end_node(mem)?;

        // The hypervisor's shadow CDs: part of its RAM, never Linux's to use or map.
        let reserved = f.begin_node("reserved-memory")?;
        f.property_u32("#address-cells", 2)?;
        f.property_u32("#size-cells", 2)?;
        f.property_null("ranges")?;
        let shadow = f.begin_node(&alloc::format!("shadow-cds@{:x}", t.shadow_cds.base))?;
        f.property_array_u64("reg", &reg(t.shadow_cds))?;
        f.property_null("no-map")?;
        f.end_node(shadow)?;
        f.end_node(reserved)?;

        let cpus = f.begin_node("cpus")?;
        f.property_u32("#address-cells", 1)?;
        f.property_u32("#size-cells", 0)?;
        for mpidr in t.cpu_mpidrs() {
            let cpu = f.begin_node(&alloc::format!("cpu@{mpidr:x}"))?;
            f.property_string("device_type", "cpu")?;
            f.property_string("compatible", "arm,armv8")?;
            f.property_u32("reg", mpidr as u32)?;
            f.property_string("enable-method", "psci")?;
            f.end_node(cpu)?;
        }
        f.end_node(cpus)?;

        let psci = f.begin_node("psci")?;
        f.property_string_list(
            "compatible",
            alloc::vec!["arm,psci-1.0".into(), "arm,psci-0.2".into()],
        )?;
        f.property_string("method", "smc")?;
        f.end_node(psci)?;

        let timer = f.begin_node("timer")?;
        f.property_string("compatible", "arm,armv8-timer")?;
        // Secure physical, non-secure physical, virtual, hypervisor physical timer PPIs.
        let mut irqs = Vec::new();
        for ppi in [13, 14, 11, 10] {
            irqs.extend([PPI, ppi, LEVEL_HIGH]);
        }
        f.property_array_u32("interrupts", &irqs)?;
        f.property_null("always-on")?;
        f.end_node(timer)?;

        // The CPU's PMU: its event counters are the VM's (MDCR_EL2.HPMN = all of them), so
        // Linux's perf can count instructions (the bench does: `tests/linux/icount.c`).
        let pmu = f.begin_node("pmu")?;
        f.property_string("compatible", "arm,armv8-pmuv3")?;
        f.property_array_u32("interrupts", &[PPI, PMU_PPI, LEVEL_HIGH])?;
        f.end_node(pmu)?;

        let gic = f.begin_node(&alloc::format!("intc@{:x}", t.gicd.base))?;
        f.property_string("compatible", "arm,gic-v3")?;
        f.property_null("interrupt-controller")?;
        f.property_u32("#interrupt-cells", 3)?;
        // As in QEMU's own tree: the PCI interrupt-map carries two parent address cells.
        f.property_u32("#address-cells", 2)?;
        f.property_u32("#size-cells", 2)?;
        f.property_null("ranges")?;
        f.property_u32("#redistributor-regions", 1)?;
        f.property_array_u64("reg", &[t.gicd.base, t.gicd.size, t.gicr.base, t.gicr.size])?;
        f.property_phandle(GIC_PHANDLE)?;
        f.end_node(gic)?;

        if let Some(s) = t.smmu {
            let smmu = f.begin_node(&alloc::format!("iommu@{:x}", s.regs.base))?;
            f.property_string("compatible", "arm,smmu-v3")?;
            f.property_array_u64("reg", &reg(s.regs))?;
            f.property_array_u32(
                "interrupts",
                &[SPI, s.eventq_spi, EDGE_RISING, SPI, s.gerror_spi, EDGE_RISING],
            )?;
            f.property_string_list(
                "interrupt-names",
                alloc::vec!["eventq".into(), "gerror".into()],
            )?;
            if s.coherent {
                f.property_null("dma-coherent")?;
            }
            f.property_u32("#iommu-cells", 1)?;
            f.property_phandle(SMMU_PHANDLE)?;
            f.end_node(smmu)?;
        }
        if t.pv_iommu {
            let pv = f.begin_node("pviommu")?;
            f.property_string("compatible", super::PV_IOMMU_COMPATIBLE)?;
            f.property_u32("#iommu-cells", 1)?;
            f.property_phandle(SMMU_PHANDLE)?;
            f.end_node(pv)?;
        }
        if let Some(uart) = t.uart {
            let clk = f.begin_node("apb-pclk")?;
            f.property_string("compatible", "fixed-clock")?;
            f.property_u32("#clock-cells", 0)?;
            f.property_u32("clock-frequency", super::UART_CLOCK_HZ)?;
            f.property_string("clock-output-names", "clk24mhz")?;
            f.property_phandle(CLOCK_PHANDLE)?;
            f.end_node(clk)?;
            let pl011 = f.begin_node(&alloc::format!("pl011@{:x}", uart.regs.base))?;
            f.property_string_list(
                "compatible",
                alloc::vec!["arm,pl011".into(), "arm,primecell".into()],
            )?;
            f.property_array_u64("reg", &reg(uart.regs))?;
            f.property_array_u32("interrupts", &[SPI, uart.spi, LEVEL_HIGH])?;
            f.property_array_u32("clocks", &[CLOCK_PHANDLE, CLOCK_PHANDLE])?;
            f.property_string_list(
                "clock-names",
                alloc::vec!["uartclk".into(), "apb_pclk".into()],
            )?;
            f.end_node(pl011)?;
        }

        let pcie = f.begin_node(&alloc::format!("pcie@{:x}", t.pcie_mmio32.base))?;
        f.property_string("compatible", "pci-host-ecam-generic")?;
        f.property_string("device_type", "pci")?;
        f.property_u32("#address-cells", 3)?;
        f.property_u32("#size-cells", 2)?;
        f.property_u32("#interrupt-cells", 1)?;
        f.property_u32("linux,pci-domain", 0)?;
        // The hypervisor assigned every BAR: Linux must keep them where they are.
        f.property_u32("linux,pci-probe-only", 1)?;
        // The devices' DMA (through the SMMU's translation, not its table walks) is coherent on
        // this board whatever the SMMU's own accesses are: QEMU's devices write memory
        // directly. Forcing the SMMU non-coherent (`smmu_coherent=0`) leaves this alone: it is
        // a fact about the interconnect path of the devices' transactions, not about the SMMU's
        // walks and queues. (A board with non-coherent device DMA would need its own fact.)
        f.property_null("dma-coherent")?;
        f.property_array_u32("bus-range", &[0, t.last_bus()])?;
        f.property_array_u64("reg", &reg(t.pcie_ecam))?;
        let hi = |v: u64| (v >> 32) as u32;
        let lo = |v: u64| v as u32;
        let (io, m32) = (t.pcie_pio, t.pcie_mmio32);
        f.property_array_u32(
            "ranges",
            &[
                0x0100_0000,
                0,
                0,
                hi(io.base),
                lo(io.base),
                hi(io.size),
                lo(io.size),
                0x0200_0000,
                hi(m32.base),
                lo(m32.base),
                hi(m32.base),
                lo(m32.base),
                hi(m32.size),
                lo(m32.size),
            ],
        )?;
        f.property_array_u32("interrupt-map-mask", &[0x1800, 0, 0, 7])?;
        let mut map = Vec::new();
        for (addr, pin, spi) in t.intx_map() {
            map.extend([addr, 0, 0, pin, GIC_PHANDLE, 0, 0, SPI, spi, LEVEL_HIGH]);
        }
        f.property_array_u32("interrupt-map", &map)?;
        // Requester ID n is stream ID n, for every RID (on the host's emulated SMMU, or a
        // guest's paravirtual IOMMU).
        if t.smmu.is_some() || t.pv_iommu {
            f.property_array_u32("iommu-map", &[0, SMMU_PHANDLE, 0, 0x1_0000])?;
        }
        f.end_node(pcie)?;

        f.end_node(root)?;
        f.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qemu_virt::{BOARD, MANIFEST};

    fn header(text_offset: u64, image_size: u64, flags: u64) -> [u8; 64] {
        let mut h = [0u8; 64];
        h[0..4].copy_from_slice(b"MZ@\xfa");
        h[8..16].copy_from_slice(&text_offset.to_le_bytes());
        h[16..24].copy_from_slice(&image_size.to_le_bytes());
        h[24..32].copy_from_slice(&flags.to_le_bytes());
        h[56..60].copy_from_slice(b"ARMd");
        h
    }

    #[test]
    fn reads_the_image_header() {
        // Debian's 6.12 arm64 Image: text_offset 0, image_size 0x2b20000, flags 0xa.
        let h = image_header(&header(0, 0x2b2_0000, 0xa)).unwrap();
        assert_eq!(h, ImageHeader { text_offset: 0, image_size: 0x2b2_0000, flags: 0xa });
        let mut bad = header(0, 1, 0);
        bad[56] = b'X';
        assert_eq!(image_header(&bad), None);
        assert_eq!(image_header(&[0; 10]), None);
    }

    #[test]
    fn places_kernel_initrd_and_dtb_in_the_host() {
        let host = &MANIFEST.vms[0];
        let l = Layout::for_vm(host).unwrap();
        let to_shadow = DTB_MAX - 0x3000;
        assert_eq!(l.dtb, MemRange::new(host.mem.end() - DTB_MAX, to_shadow));
        assert_eq!(l.dtb.end(), host.shadow_cds().base);
        let k = l.kernel(&image_header(&header(0, 0x2b2_0000, 0xa)).unwrap()).unwrap();
        assert_eq!(k, MemRange::new(0x4400_0000, 0x2b2_0000));
        let old = l.kernel(&image_header(&header(0x8_0000, 0x100_0000, 0xa)).unwrap()).unwrap();
        assert_eq!(old.base, 0x4408_0000, "a pre-5.8 kernel's text offset");
        let i = l.initrd(k, 3 << 20).unwrap();
        assert_eq!(i.base % ALIGN, 0);
        assert!(i.end() <= l.dtb.base && i.base >= k.end());
        assert!(matches!(l.initrd(k, 250 << 20), Err(LayoutError::TooBig { .. })));
        for bad in [(0, 1, 1), (0, 1, 0b110), (0x123, 1, 0), (ALIGN, 1, 0), (0, 0, 0)] {
            let h = image_header(&header(bad.0, bad.1, bad.2)).unwrap();
            assert_eq!(l.kernel(&h), Err(LayoutError::Kernel), "{bad:?}");
        }
    }

    #[test]
    fn describes_only_the_hosts_share_of_the_board() {
        let host = &MANIFEST.vms[0];
        let t = HostTree::new(&BOARD, host, "console=ttyS0", None, BOARD.smmu_coherent);
        assert_eq!(t.smmu.unwrap().coherent, BOARD.smmu_coherent);
        assert_eq!(t.uart, None);
        assert_eq!(t.intx_spis().collect::<std::vec::Vec<_>>(), [4, 5], "slots 2, 5, 6");
        assert_eq!(t.ram, host.mem);
        assert_eq!(t.gicr, MemRange::new(BOARD.gicr.base, 2 * GICR_FRAME_SIZE), "CPUs 0 and 1");
        assert_eq!(t.cpu_mpidrs().collect::<std::vec::Vec<_>>(), [0, 1]);
        assert_eq!(t.last_bus(), 255);
        let m = t.intx_map();
        assert_eq!(m[0], (0, 1, 3), "slot 0 INTA");
        assert_eq!(m[5], (1 << 11, 2, 5), "slot 1 INTB");
        assert_eq!(m[15], (3 << 11, 4, 5), "slot 3 INTD");
        let g = HostTree::new(&BOARD, &MANIFEST.vms[2], "", None, false);
        assert!(!g.smmu.unwrap().coherent, "as asked");
        assert_eq!(g.gicr, MemRange::new(BOARD.gicr.base + 3 * GICR_FRAME_SIZE, GICR_FRAME_SIZE));
    }

    #[test]
    fn a_guest_gets_a_uart_and_no_smmu() {
        let g1 = &MANIFEST.vms[1];
        let t = HostTree::guest(&BOARD, g1, "console=ttyAMA0", None);
        assert_eq!(t.smmu, None);
        assert_eq!(t.uart, Some(VmUart { regs: BOARD.uart, spi: 242 }));
        assert_eq!(t.ram, g1.mem);
        assert_eq!(t.gicr, MemRange::new(BOARD.gicr.base + 2 * GICR_FRAME_SIZE, GICR_FRAME_SIZE));
        assert_eq!(t.intx_spis().collect::<std::vec::Vec<_>>(), [6], "slots 3 and 7: line 3");
        assert_eq!(vm_uart_spi(&MANIFEST.vms[2]), 243);
        assert!(g1.mem.size >= 128 << 20, "enough for Debian's kernel");
        let l = Layout::for_vm(g1).unwrap();
        assert_eq!(l.dtb.end(), g1.shadow_cds().base);
    }
}
