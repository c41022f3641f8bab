//! The EL2 stage-1 translation (identity map of RAM and the devices the hypervisor drives) and
//! the per-VM stage-2 translations, both built with aarch64-paging over static page pools.

use super::sysreg::{self, mair_el2, sctlr_el2, tcr_el2};
use aarch64_paging::descriptor::{El23Attributes, PhysicalAddress, Stage2Attributes};
use aarch64_paging::paging::{Constraints, El2, Stage2};
use aarch64_paging::Mapping;
use core::sync::atomic::{AtomicU64, Ordering};
use hyp::pagepool::{Page, PagePool};
use hyp::pci::Function;
use hyp::vm::stage2::{region, S2_RAM};
use platform::{Board, MemRange, VmSpec};

/// MAIR_EL2: attribute 0 = Device-nGnRE, attribute 1 = Normal write-back read/write-allocate.
const MAIR: u64 = 0x04 | (0xff << 8);
/// SCTLR_EL2: RES1 bits, plus M (MMU), C (data cache), SA (SP alignment check), I (icache).
const SCTLR: u64 = 0x30c5_0830 | (1 << 0) | (1 << 2) | (1 << 3) | (1 << 12);
/// Root of the EL2 table, published (with the MMU still off) for secondary CPUs.
static EL2_ROOT: AtomicU64 = AtomicU64::new(0);

/// Pages for the EL2 stage-1 tables.
const EL2_POOL_PAGES: usize = 32;
/// Pages for each VM's stage-2 tables (the CPU's: RAM, BARs, GIC frames).
pub const VM_POOL_PAGES: usize = 16;
/// Pages for each VM's DMA stage-2 tables (the SMMU's: RAM only).
pub const DMA_POOL_PAGES: usize = 4;
/// The VMs the pools provide for: exactly the manifest's (at most `platform`'s `MAX_VMS`, which
/// the manifest's validation enforces; checked again here at compile time).
pub const VMS: usize = super::PLATFORM_MANIFEST.vms.len();
const _: () = assert!(VMS >= 1 && VMS <= platform::manifest::MAX_VMS);

const POOL_PAGES: usize = EL2_POOL_PAGES + VMS * (VM_POOL_PAGES + DMA_POOL_PAGES);

struct Pool(core::cell::UnsafeCell<[Page; POOL_PAGES]>);
// SAFETY: the pool is split into disjoint slices exactly once, by `take_pools` on the boot CPU.
unsafe impl Sync for Pool {}
static TABLE_PAGES: Pool =
    Pool(core::cell::UnsafeCell::new([const { Page([0; 4096]) }; POOL_PAGES]));

/// The EL2 pool and two pools per VM.
pub struct Pools {
    /// For the EL2 stage-1.
    pub el2: PagePool,
    /// For the VMs' CPU stage-2s, by VM id.
    pub vms: [Option<PagePool>; VMS],
    /// For the VMs' DMA stage-2s (what their devices reach through the SMMU), by VM id.
    pub dma: [Option<PagePool>; VMS],
}

/// Splits the static table pages into pools.
///
/// # Safety
///
/// Call once, on the boot CPU.
pub unsafe fn take_pools() -> Pools {
    // SAFETY: called once (the caller's promise), so this is the only reference to the pages.
    let all: &'static mut [Page] = unsafe { &mut *TABLE_PAGES.0.get() };
    let (el2, mut rest) = all.split_at_mut(EL2_POOL_PAGES);
    let mut vms: [Option<PagePool>; VMS] = [const { None }; VMS];
    let mut dma: [Option<PagePool>; VMS] = [const { None }; VMS];
    for (cpu, d) in vms.iter_mut().zip(dma.iter_mut()) {
        let (mine, tail) = rest.split_at_mut(VM_POOL_PAGES);
        let (theirs, tail) = tail.split_at_mut(DMA_POOL_PAGES);
        *cpu = Some(PagePool::new(mine));
        *d = Some(PagePool::new(theirs));
        rest = tail;
    }
    Pools { el2: PagePool::new(el2), vms, dma }
}

unsafe extern "C" {
    static __image_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
}

/// Builds the EL2 identity map: all of RAM as normal, non-executable, writable memory except the
/// hypervisor's code (read-only, executable) and read-only data (read-only); the board's devices
/// as device memory. Runs with the MMU off.
pub fn build_el2(pool: PagePool, board: &Board, ram: MemRange) -> Mapping<PagePool, El2> {
    let mut m = Mapping::new(pool, 1, El2);
    let normal = El23Attributes::VALID
        | El23Attributes::ACCESSED
        | El23Attributes::USER_RES1
        | El23Attributes::INNER_SHAREABLE
        | El23Attributes::ATTRIBUTE_INDEX_1;
    let (text, text_end, rodata_end) = (
        core::ptr::addr_of!(__image_start) as u64,
        core::ptr::addr_of!(__text_end) as u64,
        core::ptr::addr_of!(__rodata_end) as u64,
    );
    let device = El23Attributes::VALID
        | El23Attributes::ACCESSED
        | El23Attributes::USER_RES1
        | El23Attributes::ATTRIBUTE_INDEX_0
        | El23Attributes::XN;
    let mut map = |r: MemRange, flags| {
        m.map_range(&region(r), PhysicalAddress(r.base as usize), flags, Constraints::empty())
            .expect("EL2 map_range");
    };
    map(ram, normal | El23Attributes::XN);
    map(MemRange::new(text, text_end - text), normal | El23Attributes::READ_ONLY);
    map(
        MemRange::new(text_end, rodata_end - text_end),
        normal | El23Attributes::READ_ONLY | El23Attributes::XN,
    );
    for dev in [board.uart, board.smmu, board.gicd, board.gicr, board.pcie_ecam] {
        map(dev, device);
    }
    m
}

/// Loads the EL2 translation on this CPU and turns the MMU and caches on.
///
/// # Safety
///
/// `root` must be the root of a table that identity-maps everything the hypervisor uses.
unsafe fn enable(root: u64) {
    // SAFETY: per the caller, the new map keeps every address we use at the same place.
    unsafe {
        mair_el2::write(MAIR);
        tcr_el2::write(hyp::el2_controls::TCR_EL2);
        sysreg::ttbr0_el2::write(root);
        sysreg::dsb_isb();
        sysreg::tlbi_all();
        sctlr_el2::write(SCTLR);
    }
    sysreg::dsb_isb();
}

/// Boot CPU: publishes the root for the secondaries, then enables the MMU.
///
/// # Safety
///
/// As for [`enable`]; `m` must never be dropped.
pub unsafe fn enable_boot(m: &Mapping<PagePool, El2>) {
    let root = m.root_address().0 as u64;
    EL2_ROOT.store(root, Ordering::Release);
    m.mark_active();
    // SAFETY: forwarded to the caller.
    unsafe { enable(root) };
}

/// Secondary CPU: enables the MMU with the table the boot CPU published.
///
/// # Safety
///
/// The boot CPU must have called [`enable_boot`].
pub unsafe fn enable_secondary() {
    // SAFETY: the published root identity-maps the hypervisor (boot CPU's promise).
    unsafe { enable(EL2_ROOT.load(Ordering::Acquire)) };
}

/// Builds a VM's stage-2: its RAM (less its shadow CD pages) at IPA == PA as normal write-back
/// memory, its devices' BARs
/// and the `direct` device ranges (a Linux host's GIC frames) at IPA == PA as device memory;
/// nothing else.
pub fn build_stage2(
    pool: PagePool,
    vm: &VmSpec,
    devices: &[Function],
    direct: &[MemRange],
) -> Mapping<PagePool, Stage2> {
    let mut m = Mapping::new(pool, 1, Stage2);
    // Its RAM but the shadow CDs, which only the hypervisor writes.
    for r in hyp::vm::stage2::ram_around_shadow(vm).into_iter().filter(|r| r.size > 0) {
        m.map_range(&region(r), PhysicalAddress(r.base as usize), S2_RAM, Constraints::empty())
            .expect("stage-2 map_range");
    }
    let mmio = Stage2Attributes::VALID
        | Stage2Attributes::ACCESS_FLAG
        | Stage2Attributes::S2AP_ACCESS_RW
        | Stage2Attributes::MEMATTR_DEVICE_nGnRE
        | Stage2Attributes::XN;
    let bars =
        devices.iter().flat_map(|f| f.bars.iter().flatten()).map(|b| MemRange::new(b.base, b.size));
    for r in bars.chain(direct.iter().copied()) {
        m.map_range(&region(r), PhysicalAddress(r.base as usize), mmio, Constraints::empty())
            .expect("stage-2 device map_range");
    }
    m
}
