//! A Linux kernel as a VM (the host, VM 0, or a guest): found in its RAM (an arm64 `Image`
//! header at the 2 MiB-aligned base plus its text offset), its device tree checked against the
//! manifest before anything runs (`hyp::host::tree`), and the emulated devices of its MMIO path
//! (its PCI configuration space, the GIC distributor and its redistributors' control frames;
//! the host's emulated SMMU, a guest's PL011).

use super::pcie::Ecam;
use super::PLATFORM;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use hyp::host::gicd::{self, DistFilter, Kind, OthersConfig};
use hyp::host::gicr::RedistFilter;
use hyp::host::gicr_sgi::{off as sgi_off, SgiFrameFilter, Shaped};
use hyp::host::mmio::{Device, Frame, Region};
use hyp::host::pci_filter::{ConfigFilter, EcamFilter};
use hyp::host::tree;
use hyp::pci::Configured;
use hyp::vm::pl011::Pl011;
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
    /// A guest whose tree names the paravirtual IOMMU: its driver attaches its streams (else
    /// the hypervisor attaches them to the identity domain at boot).
    pub pv_iommu: bool,
}

/// A slice of the host's RAM, read from EL2 before the host runs.
fn host_bytes(addr: u64, len: usize) -> &'static [u8] {
    // SAFETY: callers only pass ranges inside the host VM's RAM, which EL2 identity-maps; the VM
    // has not been entered yet, so nothing writes it while it is read.
    unsafe { core::slice::from_raw_parts(addr as *const u8, len) }
}

/// The description of Linux VM `vm`'s tree: the host's (VM 0: its emulated SMMU) or a
/// guest's (its emulated PL011, no SMMU).
fn tree_of(vm: &VmSpec, initrd: Option<MemRange>, smmu_coherent: bool) -> HostTree<'static> {
    let board = PLATFORM.board();
    if vm.id == 0 {
        HostTree::new(board, vm, "", initrd, smmu_coherent)
    } else {
        HostTree::guest(board, vm, "", initrd)
    }
}

/// The INTIDs Linux VM `vm` configures through its distributor filter.
pub fn intids_of(vm: &VmSpec) -> gicd::IntidSet {
    gicd::host_intids(&tree_of(vm, None, PLATFORM.board().smmu_coherent))
}

/// Looks for a Linux `Image` in `vm`'s RAM; if there is one, checks its device tree and returns
/// how to enter it. A tree that disagrees with the manifest (or, the host's, whose SMMU node's
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
    let mut want = tree_of(vm, facts.initrd, smmu_coherent);
    // A guest's paravirtual IOMMU is the launcher's choice, as its initramfs is: the tree is
    // checked to be one of the two consistent shapes (the node and its iommu-map, or neither).
    want.pv_iommu = vm.id != 0 && !facts.pv_iommus.is_empty();
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
    let emulated = match (want.smmu, want.uart) {
        (Some(_), _) if smmu_coherent => "its emulated SMMU (dma-coherent), no ITS/PL011",
        (Some(_), _) => "its emulated SMMU (not dma-coherent), no ITS/PL011",
        (None, _) if want.pv_iommu => "its emulated PL011, its paravirtual IOMMU, no SMMU/ITS",
        (None, _) => "its emulated PL011, no SMMU/ITS/IOMMU",
    };
    info!(
        "vm {}: device tree at {:#x} ({size} bytes) matches the manifest: RAM {:#x}+{:#x}, CPUs \
         {}..={} (PSCI), GICD + their redistributors, PCIe, {emulated}",
        vm.name,
        layout.dtb.base,
        vm.mem.base,
        vm.mem.size,
        vm.cpus.first,
        vm.cpus.end() - 1,
    );
    if let Some(smmu) = want.smmu {
        super::front_door::init_host_smmu(vm, smmu.eventq_spi, smmu.gerror_spi, smmu_coherent);
    }
    if let Some(i) = facts.initrd {
        info!("vm {}: initramfs {:#x}..{:#x} ({} KiB)", vm.name, i.base, i.end(), i.size >> 10);
    }
    info!("vm {}: command line \"{}\"", vm.name, facts.bootargs.unwrap_or(""));
    Some(LinuxBoot { entry: kernel.base, dtb: layout.dtb.base, pv_iommu: want.pv_iommu })
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
/// but their register page (reserved space: the registers, through which it drives its SGIs and
/// PPIs itself as under pKVM, are filtered by [`SgiFrameFilter`], see [`sgi_register_page`]).
/// The distributor is shared with the hypervisor and the other VMs: it is emulated
/// ([`HostGicd`]).
pub fn direct_mmio(vm: &VmSpec) -> alloc::vec::Vec<MemRange> {
    vm.cpus
        .iter()
        .map(|cpu| {
            let sgi = gicr_frames(cpu).1;
            MemRange::new(sgi.base + sgi_off::PAGE, sgi.size - sgi_off::PAGE)
        })
        .collect()
}

/// The register page of CPU `cpu`'s SGI frame (trapped for the Linux host).
pub fn sgi_register_page(cpu: u32) -> MemRange {
    MemRange::new(gicr_frames(cpu).1.base, sgi_off::PAGE)
}

/// A GIC register frame through MMIO, as a filter reaches it: 32-bit volatile accesses at
/// offsets from its base. Made only by [`GicFrame::at`], whose caller vouches for the frame;
/// the filter over it ([`RedistFilter`], [`SgiFrameFilter`], [`DistFilter`]) reads only the
/// architected registers of its frame and writes only what it allows the VM.
struct GicFrame(usize);

impl GicFrame {
    /// The frame at `base`.
    ///
    /// # Safety
    ///
    /// `base` is a GIC register frame (the distributor, or one CPU's RD frame or SGI-frame
    /// register page) identity-mapped as device memory at EL2, with no other user that could
    /// be confused by the accesses of the filter this frame is given to.
    unsafe fn at(base: u64) -> GicFrame {
        GicFrame(base as usize)
    }
}

impl Frame for GicFrame {
    fn read32(&self, offset: u64) -> u32 {
        // SAFETY: a word-aligned offset inside the frame (the filters only read architected
        // registers of their frame), which `GicFrame::at`'s caller vouched for.
        unsafe { ((self.0 + offset as usize) as *const u32).read_volatile() }
    }
    fn write32(&self, offset: u64, value: u32) {
        // SAFETY: as for `read32`; what is written is what the filter allows the VM (its own
        // bits and fields, LPIs masked, priorities raised, groups kept).
        unsafe { ((self.0 + offset as usize) as *mut u32).write_volatile(value) }
    }
}

/// The host's SGI-frame register page: [`SgiFrameFilter`], and the first write of each kind
/// that asked for more than it got logged.
struct HostSgiPage {
    filter: SgiFrameFilter<GicFrame>,
    vm: &'static str,
    cpu: u32,
}

impl Device for HostSgiPage {
    fn name(&self) -> &'static str {
        "GIC redistributor (SGI frame registers)"
    }
    fn read(&self, offset: u64, size: u8) -> u64 {
        self.filter.read(offset, size)
    }
    fn write(&self, offset: u64, size: u8, value: u64) {
        if let Some(kind) = self.filter.write(offset, size, value) {
            if self.filter.shaped(kind) == 1 {
                shaped(self.vm, self.cpu, kind, offset, size, value);
            }
        }
    }
}

#[cold]
#[inline(never)]
fn shaped(vm: &str, cpu: u32, kind: Shaped, offset: u64, size: u8, value: u64) {
    let what = match kind {
        Shaped::Priority => "a priority above the hypervisor's floor (raised to 0x80)",
        Shaped::Group => "group 0 or a group modifier (its interrupts stay group 1)",
        Shaped::Other => "a register it does not get (NSACR, reserved, or that size): ignored",
    };
    warn!(
        "vm {vm}: cpu {cpu}'s SGI frame: write of {value:#x} ({size} bytes) at {offset:#x} asked for {what} (logged once per kind and CPU)"
    );
}

/// The host's distributor: [`DistFilter`] plus what the EL2 side adds, the first refusal of
/// each register kind logged, the accesses counted, and the configuration of every interrupt
/// not the host's read before its first access and compared when it stops.
pub struct HostGicd {
    filter: DistFilter<GicFrame>,
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

/// A Linux VM's emulated MMIO: its view of PCI configuration space (its own functions
/// only), the GIC distributor (its own interrupts only: `hyp::host::gicd`), its CPUs'
/// redistributors' RD frames (`GICR_TYPER.Last` on its last CPU's, no LPIs), and the host's
/// SMMU (emulated: `hyp::iommu::emulated`) or a guest's PL011 (`hyp::vm::pl011`). Each is safe
/// under the VM's CPUs at once, and beside the other VMs': the ECAM filter, the emulated SMMU
/// and the PL011 sit behind their locks, the distributor filters serialise their
/// read-modify-writes under one lock (`gicd::DIST_RMW`), and each RD frame is its own CPU's
/// (written as the hardware's).
///
/// `others` are the INTIDs of the other Linux VMs (each configures them through its own
/// filter): the host's audit of everyone else's interrupts leaves them out.
pub fn emulated_devices(
    vm: &'static VmSpec,
    functions: &[Configured],
    others: gicd::IntidSet,
) -> alloc::vec::Vec<Region<'static>> {
    let board = PLATFORM.board();
    let ecam: &'static EcamFilter<Ecam> = alloc::boxed::Box::leak(alloc::boxed::Box::new(
        // SAFETY: the board's ECAM, mapped at EL2; boot's instances are gone. From now on each
        // Linux VM's filter uses configuration space from its CPUs' traps, each only its own
        // functions' (a configuration access is one load or store of the function's own
        // space: two filters never share a register).
        EcamFilter::new(ConfigFilter::new(unsafe { Ecam::new(board) }, functions)),
    ));
    let last = vm.cpus.end() - 1;
    let rds = vm.cpus.iter().map(|cpu| {
        let range = gicr_frames(cpu).0;
        let rd: &'static RedistFilter<GicFrame> = alloc::boxed::Box::leak(alloc::boxed::Box::new(
            // SAFETY: this CPU's RD frame, mapped at EL2; only this filter uses it.
            RedistFilter::new(unsafe { GicFrame::at(range.base) }, cpu == last),
        ));
        Region { range, device: rd }
    });
    // Its interrupts: the INTx lines its functions raise and its emulated SMMU's or PL011's,
    // routed to its CPUs (MPIDR affinities as its tree's CPU nodes say).
    // (Only its interrupts are read here: the SMMU's coherency does not matter.)
    let tree = tree_of(vm, None, board.smmu_coherent);
    let owned = gicd::host_intids(&tree);
    let mpidrs: alloc::vec::Vec<u64> = tree.cpu_mpidrs().collect();
    let gicd: &'static HostGicd = alloc::boxed::Box::leak(alloc::boxed::Box::new(HostGicd {
        // SAFETY: the distributor, mapped at EL2; the hypervisor's own configuration goes
        // through the write-one registers or is done before any VM runs (see `gicd`).
        filter: DistFilter::new(unsafe { GicFrame::at(board.gicd.base) }, owned, &mpidrs)
            .not_auditing(others),
        vm: vm.name,
        before: SpinMutex::new(None),
        snapped: AtomicBool::new(false),
        accesses: AtomicU64::new(0),
    }));
    if vm.id == 0 {
        HOST_GICD.call_once(|| gicd);
    }
    info!(
        "vm {}: GIC distributor: its interrupts are INTIDs {owned} (the PCI INTx lines its \
         functions raise, its emulated {}'s), routed to affinities {:#x?} (its CPUs), {:#x} \
         unless it says otherwise",
        vm.name,
        if tree.smmu.is_some() { "SMMU" } else { "PL011" },
        gicd.filter.affinities(),
        gicd.filter.affinity()
    );
    // The emulated SMMU first (the host's): its accesses (a CMDQ_PROD write per strict unmap)
    // are by far the most frequent, and the regions are searched in order.
    let mut regions = alloc::vec::Vec::new();
    if tree.smmu.is_some() {
        regions.push(Region { range: board.smmu, device: &super::front_door::HostSmmuDevice });
    }
    regions.push(Region { range: board.pcie_ecam, device: ecam });
    regions.push(Region { range: board.gicd, device: gicd });
    regions.extend(rds);
    for cpu in vm.cpus.iter() {
        let range = sgi_register_page(cpu);
        let page: &'static HostSgiPage =
            alloc::boxed::Box::leak(alloc::boxed::Box::new(HostSgiPage {
                // SAFETY: this CPU's SGI-frame register page, mapped at EL2; only this filter
                // and the hypervisor's disabling of an unexpected SGI/PPI (`irq`) touch it.
                filter: SgiFrameFilter::new(unsafe { GicFrame::at(range.base) }),
                vm: vm.name,
                cpu,
            }));
        regions.push(Region { range, device: page });
    }
    if let Some(uart) = tree.uart {
        let pl011 = alloc::boxed::Box::leak(alloc::boxed::Box::new(Pl011::new(move |b: u8| {
            use hyp::hypercall::ConsoleSink;
            super::vm::Console.vm_text(vm, &[b]);
        })));
        regions.push(Region { range: uart.regs, device: pl011 });
    }
    regions
}
