//! A Linux kernel as the host VM: found in the host's RAM (an arm64 `Image` header at the
//! 2 MiB-aligned base plus its text offset), its device tree checked against the manifest before
//! anything runs (`hyp::host::tree`), and the emulated devices of its MMIO path (its PCI
//! configuration space, the GIC distributor and its redistributor's control frame).

use super::pcie::Ecam;
use super::PLATFORM;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use hyp::host::gicd::{self, DistFilter, Kind, OthersConfig};
use hyp::host::gicr::RedistFilter;
use hyp::host::mmio::{Device, Frame, Region};
use hyp::host::pci_filter::{ConfigFilter, EcamFilter};
use hyp::host::tree;
use hyp::pci::Configured;
use log::{info, warn};
use platform::linux::{image_header, HostTree, Layout, GICR_FRAME_SIZE, IMAGE_HEADER_SIZE};
use platform::{MemRange, Platform, VmSpec};
use spin::mutex::SpinMutex;
use spin::Once;

/// How a Linux host is entered.
#[derive(Clone, Copy, Debug)]
pub struct LinuxBoot {
    /// Where the kernel image starts (its first instruction).
    pub entry: u64,
    /// IPA of its device tree (`x0` at entry).
    pub dtb: u64,
}

/// A slice of the host's RAM, read from EL2 before the host runs.
fn host_bytes(addr: u64, len: usize) -> &'static [u8] {
    // SAFETY: callers only pass ranges inside the host VM's RAM, which EL2 identity-maps; the VM
    // has not been entered yet, so nothing writes it while it is read.
    unsafe { core::slice::from_raw_parts(addr as *const u8, len) }
}

/// Looks for a Linux `Image` in `vm`'s RAM; if there is one, checks its device tree and returns
/// how to enter it. A tree that disagrees with the manifest (or whose SMMU node's
/// `dma-coherent` disagrees with `smmu_coherent`, the boot option) stops the boot with the
/// reason.
pub fn probe(vm: &'static VmSpec, smmu_coherent: bool) -> Option<LinuxBoot> {
    let layout = Layout::for_vm(vm).ok()?;
    // The header is at base + text_offset, for a text offset (a multiple of 4 KiB below 2 MiB)
    // the header itself states.
    let (kernel, header) = (0..platform::linux::ALIGN)
        .step_by(4096)
        .find_map(|off| {
            let h = image_header(host_bytes(vm.mem.base + off, IMAGE_HEADER_SIZE))?;
            (h.text_offset == off).then_some(h)
        })
        .map(|h| (layout.kernel(&h), h))?;
    let kernel = kernel.unwrap_or_else(|e| crate::fatal(format_args!("vm {}: {e}", vm.name)));
    let mut head = [0u8; 8];
    head.copy_from_slice(host_bytes(layout.dtb.base, 8));
    let size = match hyp::dt::blob_size(&head) {
        Some(s) if s as u64 <= layout.dtb.size => s,
        _ => crate::fatal(format_args!(
            "vm {}: a Linux Image but no device tree at {:#x} (xtask puts it there)",
            vm.name, layout.dtb.base
        )),
    };
    let blob = host_bytes(layout.dtb.base, size);
    let facts = tree::parse(blob).unwrap_or_else(|e| {
        crate::fatal(format_args!("vm {}: device tree at {:#x}: {e}", vm.name, layout.dtb.base))
    });
    let board = PLATFORM.board();
    let want = HostTree::new(board, vm, "", facts.initrd, smmu_coherent);
    if let Err(e) = tree::check(&want, &facts, kernel, MemRange::new(layout.dtb.base, size as u64))
    {
        crate::fatal(format_args!(
            "vm {}: refusing to boot Linux: its device tree disagrees with the manifest: {e}",
            vm.name
        ));
    }
    info!(
        "vm {}: Linux Image at {:#x} (text offset {:#x}, {} KiB with BSS, flags {:#x})",
        vm.name,
        kernel.base,
        header.text_offset,
        kernel.size >> 10,
        header.flags
    );
    info!(
        "vm {}: device tree at {:#x} ({size} bytes) matches the manifest: RAM {:#x}+{:#x}, CPUs \
         {}..={} (PSCI), GICD + their redistributors, PCIe, its emulated SMMU ({}), no ITS/PL011",
        vm.name,
        layout.dtb.base,
        vm.mem.base,
        vm.mem.size,
        vm.cpus.first,
        vm.cpus.end() - 1,
        if smmu_coherent { "dma-coherent" } else { "not dma-coherent" }
    );
    super::front_door::init_host_smmu(
        vm,
        want.smmu.eventq_spi,
        want.smmu.gerror_spi,
        smmu_coherent,
    );
    if let Some(i) = facts.initrd {
        info!("vm {}: initramfs {:#x}..{:#x} ({} KiB)", vm.name, i.base, i.end(), i.size >> 10);
    }
    info!("vm {}: command line \"{}\"", vm.name, facts.bootargs.unwrap_or(""));
    Some(LinuxBoot { entry: kernel.base, dtb: layout.dtb.base })
}

/// The redistributor frames of CPU `cpu`: (RD control frame, emulated for the Linux host;
/// SGI/PPI frame, mapped).
pub fn gicr_frames(cpu: u32) -> (MemRange, MemRange) {
    let board = PLATFORM.board();
    let base = board.gicr.base + cpu as u64 * GICR_FRAME_SIZE;
    let half = GICR_FRAME_SIZE / 2;
    (MemRange::new(base, half), MemRange::new(base + half, half))
}

/// Device memory the Linux host reaches directly besides its BARs: its CPUs' SGI/PPI frames
/// (it drives its GIC interrupts itself, as under pKVM: enables, priorities and pending state
/// of its SGIs and PPIs, on each of its CPUs). The distributor is shared with the hypervisor
/// and the other VMs: it is emulated ([`HostGicd`]).
pub fn direct_mmio(vm: &VmSpec) -> alloc::vec::Vec<MemRange> {
    vm.cpus.iter().map(|cpu| gicr_frames(cpu).1).collect()
}

/// A redistributor frame through MMIO.
struct RdFrame(usize);

impl Frame for RdFrame {
    fn read32(&self, offset: u64) -> u32 {
        // SAFETY: an architected register of this CPU's RD frame (the filter only passes those),
        // identity-mapped as device memory at EL2.
        unsafe { ((self.0 + offset as usize) as *const u32).read_volatile() }
    }
    fn write32(&self, offset: u64, value: u32) {
        // SAFETY: as for `read32`; the filter only writes CTLR (LPIs masked), STATUSR and WAKER.
        unsafe { ((self.0 + offset as usize) as *mut u32).write_volatile(value) }
    }
}

/// The distributor through MMIO.
struct GicdFrame(usize);

impl Frame for GicdFrame {
    fn read32(&self, offset: u64) -> u32 {
        // SAFETY: a word-aligned offset inside the distributor's 64 KiB frame (the filter only
        // reads architected registers), identity-mapped as device memory at EL2.
        unsafe { ((self.0 + offset as usize) as *const u32).read_volatile() }
    }
    fn write32(&self, offset: u64, value: u32) {
        // SAFETY: as for `read32`; the filter writes only the host's own bits and fields (its
        // INTIDs' enable, pending, active, group, trigger, priority and route, SETSPI/CLRSPI of
        // its INTIDs), never CTLR.
        unsafe { ((self.0 + offset as usize) as *mut u32).write_volatile(value) }
    }
}

/// The host's distributor: [`DistFilter`] plus what the EL2 side adds, the first refusal of
/// each register kind logged, the accesses counted, and the configuration of every interrupt
/// not the host's read before its first access and compared when it stops.
pub struct HostGicd {
    filter: DistFilter<GicdFrame>,
    vm: &'static str,
    /// Configuration of the others' interrupts before the host's first access (or since the
    /// hypervisor last changed its own).
    before: SpinMutex<Option<OthersConfig>>,
    /// `before` was taken.
    snapped: AtomicBool,
    /// Accesses (from any of the host's CPUs).
    accesses: AtomicU64,
}

impl HostGicd {
    #[inline]
    fn access(&self) {
        if !self.snapped.load(Ordering::Acquire) {
            self.before.lock().get_or_insert_with(|| self.filter.others_config());
            self.snapped.store(true, Ordering::Release);
        }
        self.accesses.fetch_add(1, Ordering::Relaxed);
    }
}

impl Device for HostGicd {
    fn name(&self) -> &'static str {
        "GIC distributor"
    }
    fn read(&self, offset: u64, size: u8) -> u64 {
        self.access();
        self.filter.read(offset, size)
    }
    fn write(&self, offset: u64, size: u8, value: u64) {
        self.access();
        if let Some(r) = self.filter.write(offset, size, value) {
            if r.first {
                refused(self.vm, &r);
            }
        }
    }
}

#[cold]
#[inline(never)]
fn refused(vm: &str, r: &gicd::DroppedWrite) {
    warn!("vm {vm}: GIC distributor: {r} (logged once per register)");
}

/// The Linux host's distributor, for its summary when it stops.
static HOST_GICD: Once<&'static HostGicd> = Once::new();

/// The hypervisor changed the configuration of interrupts of its own (it moved its SPIs to
/// another CPU): the audit of the host's distributor accesses starts again from here.
pub fn hypervisor_reconfigured_gic() {
    if let Some(g) = HOST_GICD.get() {
        let mut b = g.before.lock();
        if b.is_some() {
            *b = Some(g.filter.others_config());
        }
    }
}

/// The host stopped: its distributor accesses, what was refused, and whether every interrupt
/// not its own still has the configuration it had before the host's first access.
pub fn host_stopped(vm: &VmSpec) {
    let Some(g) = HOST_GICD.get() else { return };
    let f = &g.filter;
    let mut counts = alloc::string::String::new();
    for k in Kind::ALL {
        let n = f.refused(k);
        if n > 0 {
            let sep = if counts.is_empty() { "" } else { ", " };
            counts += &alloc::format!("{sep}{} {n}", k.name());
        }
    }
    if counts.is_empty() {
        counts += "none";
    }
    info!(
        "vm {}: GIC distributor: {} accesses; writes refused: {counts}",
        vm.name,
        g.accesses.load(Ordering::Relaxed)
    );
    let before = g.before.lock();
    let Some(before) = before.as_ref() else { return };
    match f.changed_since(before) {
        None => info!(
            "vm {}: GIC distributor: every interrupt not its own (INTIDs 32..{} but {}) kept its \
             enable, group, trigger, priority and route while it ran",
            vm.name,
            before.lines() - 1,
            f.owned()
        ),
        Some((kind, intid)) => warn!(
            "vm {}: GIC distributor: the {} of INTID {intid}, not its interrupt, changed while \
             it ran (a hole in the filter, or the hypervisor's own doing)",
            vm.name,
            kind.name()
        ),
    }
}

/// The Linux host's emulated MMIO: its view of PCI configuration space (its own functions
/// only), the GIC distributor (its own interrupts only: `hyp::host::gicd`), its CPUs'
/// redistributors' RD frames (`GICR_TYPER.Last` on its last CPU's, no LPIs), and its SMMU
/// (emulated: `hyp::iommu::emulated`). Each is safe under the host's CPUs at once: the ECAM
/// filter and the emulated SMMU sit behind their locks, the distributor filter serialises its
/// read-modify-writes, and each RD frame is its own CPU's (written as the hardware's).
pub fn emulated_devices(vm: &VmSpec, functions: &[Configured]) -> alloc::vec::Vec<Region<'static>> {
    let board = PLATFORM.board();
    let ecam: &'static EcamFilter<Ecam> = alloc::boxed::Box::leak(alloc::boxed::Box::new(
        // SAFETY: the board's ECAM, mapped at EL2; boot's instances are gone, and from now on
        // only the host's filter uses configuration space (from its CPU's traps).
        EcamFilter::new(ConfigFilter::new(unsafe { Ecam::new(board) }, functions)),
    ));
    let last = vm.cpus.end() - 1;
    let rds = vm.cpus.iter().map(|cpu| {
        let range = gicr_frames(cpu).0;
        let rd: &'static RedistFilter<RdFrame> = alloc::boxed::Box::leak(alloc::boxed::Box::new(
            RedistFilter::new(RdFrame(range.base as usize), cpu == last),
        ));
        Region { range, device: rd }
    });
    // Its interrupts: the INTx lines its tree's interrupt-map names and its emulated SMMU's,
    // routed to its CPUs (MPIDR affinities as its tree's CPU nodes say).
    // (Only its interrupts are read here: the SMMU's coherency does not matter.)
    let tree = HostTree::new(board, vm, "", None, board.smmu_coherent);
    let owned = gicd::host_intids(&tree);
    let mpidrs: alloc::vec::Vec<u64> = tree.cpu_mpidrs().collect();
    let gicd: &'static HostGicd = alloc::boxed::Box::leak(alloc::boxed::Box::new(HostGicd {
        filter: DistFilter::new(GicdFrame(board.gicd.base as usize), owned, &mpidrs),
        vm: vm.name,
        before: SpinMutex::new(None),
        snapped: AtomicBool::new(false),
        accesses: AtomicU64::new(0),
    }));
    HOST_GICD.call_once(|| gicd);
    info!(
        "vm {}: GIC distributor: its interrupts are INTIDs {owned} (PCI INTx lines, shared by \
         every slot on this board, and its emulated SMMU's), routed to affinities {:#x?} (its \
         CPUs), {:#x} unless it says otherwise",
        vm.name,
        gicd.filter.affinities(),
        gicd.filter.affinity()
    );
    // The emulated SMMU first: its CMDQ_PROD writes are the trapped accesses of every strict
    // DMA unmap (the regions are searched in order on each trap).
    let mut regions = alloc::vec![
        Region { range: board.smmu, device: &super::front_door::HostSmmuDevice },
        Region { range: board.pcie_ecam, device: ecam },
        Region { range: board.gicd, device: gicd },
    ];
    regions.extend(rds);
    regions
}
