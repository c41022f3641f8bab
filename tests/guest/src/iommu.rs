//! The guest side of the SMMU ABI: describing a stream's translation with a virtual STE,
//! building a stage-1 address space for a device (CD table plus page tables made with
//! aarch64-paging, all in this VM's memory and addressed by IPA), invalidating, reading events.

use crate::hv::call;
use aarch64_paging::descriptor::{El1Attributes, PhysicalAddress};
use aarch64_paging::paging::{Constraints, El1And0, MemoryRegion, PageTable, Translation, VaRange};
use aarch64_paging::Mapping;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};
use host_abi::smmu::{Cd, Command, EventRecord, Ste, SteConfig};
use host_abi::{HypCall, HypError};

/// A virtual STE asking for "bypass" (the hypervisor makes it identity over our memory).
pub fn vste_bypass() -> Ste {
    Ste::default().with_v(1).with_config(SteConfig::Bypass)
}

/// A virtual STE asking for stage-1 translation through the CD table at `cd_table` (an IPA).
pub fn vste_s1(cd_table: u64) -> Ste {
    Ste::default().with_v(1).with_config(SteConfig::S1).with_s1_context_ptr(cd_table)
}

/// SET_STE with the virtual STE `v` (copied to a buffer in our memory). Returns the domain.
pub fn set_ste(sid: u32, v: &Ste) -> Result<u64, HypError> {
    let buf = *v;
    let (st, r) = call(HypCall::SetSte { sid, ipa: &buf as *const Ste as u64 });
    st.map(|_| r[1])
}

/// CLEAR_STE.
pub fn clear_ste(sid: u32) -> Result<u64, HypError> {
    call(HypCall::ClearSte { sid }).0
}

/// INVALIDATE with `cmds`; on failure also the index of the first bad command.
pub fn invalidate(cmds: &[Command]) -> Result<u64, (HypError, u64)> {
    let (st, r) = call(HypCall::Invalidate { ipa: cmds.as_ptr() as u64, count: cmds.len() as u64 });
    match st {
        Ok(_) => Ok(r[1]),
        Err(e) => Err((e, r[1])),
    }
}

/// INVALIDATE_INLINE with `cmds` (1 to 3, in registers); on failure also the bad index.
pub fn invalidate_inline(cmds: &[Command]) -> Result<u64, (HypError, u64)> {
    let mut words = [[0u64; 2]; host_abi::INVALIDATE_INLINE_MAX as usize];
    for (w, c) in words.iter_mut().zip(cmds) {
        *w = c.0;
    }
    let (st, r) = call(HypCall::InvalidateInline { count: cmds.len() as u8, cmds: words });
    match st {
        Ok(_) => Ok(r[1]),
        Err(e) => Err((e, r[1])),
    }
}

/// Reads up to 16 of our event records; returns how many were written.
pub fn read_events(out: &mut [EventRecord; 16]) -> Result<usize, HypError> {
    let (st, r) = call(HypCall::EventRead { ipa: out.as_mut_ptr() as u64, len: 32 * 16 });
    st.map(|_| r[1] as usize)
}

/// What one EVENT_READ returned besides the records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventCounts {
    /// Records written.
    pub written: usize,
    /// Records still pending in our ring.
    pub pending: u64,
    /// Times the SMMU discarded records that could have been ours.
    pub lost_notices: u64,
    /// Records dropped so far because our ring was full.
    pub dropped: u64,
}

/// Reads up to 16 of our event records with every count EVENT_READ returns.
pub fn read_events_counted(out: &mut [EventRecord; 16]) -> Result<EventCounts, HypError> {
    let (st, r) = call(HypCall::EventRead { ipa: out.as_mut_ptr() as u64, len: 32 * 16 });
    st.map(|_| EventCounts {
        written: r[1] as usize,
        pending: r[2] & 0xffff_ffff,
        lost_notices: r[2] >> 32,
        dropped: r[3],
    })
}

/// Drains every pending event record and returns whether one matches `pred`.
pub fn saw_event(pred: impl Fn(&EventRecord) -> bool) -> Result<bool, HypError> {
    let mut buf = [EventRecord::default(); 16];
    let mut seen = false;
    loop {
        let n = read_events(&mut buf)?;
        seen |= buf[..n].iter().any(&pred);
        if n < 16 {
            return Ok(seen);
        }
    }
}

/// One 4 KiB page.
#[repr(C, align(4096))]
pub struct Page([u8; 4096]);

/// Pages for page tables and CD tables, in this VM's image (IPA == VA: the MMU is off), handed
/// out in [`POOL_CHUNKS`] chunks of [`CHUNK_PAGES`], each at most once.
const CHUNK_PAGES: usize = 8;
/// Number of chunks (device address spaces) a VM can build.
pub const POOL_CHUNKS: usize = 4;
struct PoolPages(core::cell::UnsafeCell<[Page; CHUNK_PAGES * POOL_CHUNKS]>);
// SAFETY: each chunk is handed out once by `TablePool::take` (guarded by POOL_NEXT); the guest
// is single-threaded.
unsafe impl Sync for PoolPages {}
static POOL: PoolPages =
    PoolPages(core::cell::UnsafeCell::new([const { Page([0; 4096]) }; CHUNK_PAGES * POOL_CHUNKS]));
static POOL_NEXT: AtomicUsize = AtomicUsize::new(0);

/// Bump allocator over the pool, as aarch64-paging's [`Translation`].
pub struct TablePool {
    pages: &'static mut [Page],
    next: usize,
}

impl TablePool {
    /// A fresh chunk of the pool, or `None` once all are taken.
    pub fn take() -> Option<TablePool> {
        let i = POOL_NEXT.load(Ordering::SeqCst);
        if i >= POOL_CHUNKS {
            return None;
        }
        POOL_NEXT.store(i + 1, Ordering::SeqCst);
        // SAFETY: chunk `i` has never been handed out (counter above, single-threaded guest), so
        // this is the only reference to it.
        let all = unsafe { &mut *POOL.0.get() };
        let pages = &mut all[i * CHUNK_PAGES..(i + 1) * CHUNK_PAGES];
        Some(TablePool { pages, next: 0 })
    }

    /// A zeroed page (its address is its IPA).
    pub fn page(&mut self) -> NonNull<Page> {
        let p = &mut self.pages[self.next];
        self.next += 1;
        p.0.fill(0);
        NonNull::from(p)
    }
}

impl Translation<El1Attributes> for TablePool {
    fn allocate_table(&mut self) -> (NonNull<PageTable<El1Attributes>>, PhysicalAddress) {
        let p = self.page();
        (p.cast(), PhysicalAddress(p.as_ptr() as usize))
    }
    unsafe fn deallocate_table(&mut self, _page_table: NonNull<PageTable<El1Attributes>>) {
        // Tables live as long as the test: nothing is returned to the bump pool.
    }
    fn physical_to_virtual(&self, pa: PhysicalAddress) -> NonNull<PageTable<El1Attributes>> {
        NonNull::new(pa.0 as *mut PageTable<El1Attributes>).expect("table address")
    }
}

/// ASID of the device address space.
pub const ASID: u16 = 1;

/// A device address space: stage-1 tables for one CD, addressed by IPA.
pub struct DeviceSpace {
    map: Mapping<TablePool, El1And0>,
    /// IPA of the CD table (one CD).
    pub cd_table: u64,
}

fn page_flags() -> El1Attributes {
    // Normal memory (MAIR attribute 0), inner shareable, accessed, readable and writable by
    // unprivileged accesses (a PCIe device's default).
    El1Attributes::VALID
        | El1Attributes::ACCESSED
        | El1Attributes::ATTRIBUTE_INDEX_0
        | El1Attributes::INNER_SHAREABLE
        | El1Attributes::USER
        | El1Attributes::NON_GLOBAL
}

impl DeviceSpace {
    /// Empty tables (39-bit IOVA, starting at level 1) and a CD pointing at them.
    pub fn new(mut pool: TablePool) -> Self {
        let cd_page = pool.page();
        let map = Mapping::with_asid_and_va_range(pool, ASID as usize, 1, El1And0, VaRange::Lower);
        let cd = Cd::default()
            .with_t0sz(25)
            .with_tg0(0)
            .with_ir0(1)
            .with_or0(1)
            .with_sh0(3)
            .with_epd1(1)
            .with_v(1)
            .with_ips(2)
            .with_aa64(1)
            .with_r(1)
            .with_a(1)
            .with_asid(ASID as u64)
            .with_ttb0(map.root_address().0 as u64)
            .with_mair(0xff);
        let cd_table = cd_page.as_ptr() as u64;
        // SAFETY: our own page, 4 KiB, aligned; the device only reads it after SET_STE.
        unsafe { (cd_table as *mut Cd).write_volatile(cd) };
        Self { map, cd_table }
    }

    /// Maps `[iova, iova + len)` to our IPA `ipa`.
    pub fn map(&mut self, iova: u64, ipa: u64, len: u64) -> Result<(), ()> {
        let r = MemoryRegion::new(iova as usize, (iova + len) as usize);
        self.map
            .map_range(&r, PhysicalAddress(ipa as usize), page_flags(), Constraints::empty())
            .map_err(|_| ())
    }

    /// Unmaps `[iova, iova + len)` (entries made invalid; the SMMU may still hold them until a
    /// TLBI).
    pub fn unmap(&mut self, iova: u64, len: u64) -> Result<(), ()> {
        let r = MemoryRegion::new(iova as usize, (iova + len) as usize);
        self.map
            .map_range(&r, PhysicalAddress(0), El1Attributes::empty(), Constraints::empty())
            .map_err(|_| ())
    }
}
