//! A pool of 4 KiB pages for translation tables, handed to aarch64-paging as its
//! [`Translation`]. Tables for the EL2 stage-1 and every VM's stage-2 come from a static pool in
//! hypervisor memory: identity-mapped (PA == VA), never mapped into any VM, and usable before
//! the MMU and the heap are up (no locks, no atomics).

use aarch64_paging::descriptor::{PagingAttributes, PhysicalAddress};
use aarch64_paging::paging::{PageTable, Translation};
use core::ptr::NonNull;

/// One 4 KiB page, aligned.
#[repr(C, align(4096))]
pub struct Page(pub [u8; 4096]);

/// Hands out pages of a slice it owns; freed pages go on a free list threaded through them.
#[derive(Debug)]
pub struct PagePool {
    pages: NonNull<Page>,
    count: usize,
    next: usize,
    free: Option<NonNull<Page>>,
    /// Pages handed out and not returned.
    pub in_use: usize,
}

// SAFETY: the pool exclusively owns its pages (it was built from a `&'static mut`), so moving it
// to another CPU moves that ownership with it.
unsafe impl Send for PagePool {}

impl PagePool {
    /// A pool over `pages`, which it owns from now on.
    pub fn new(pages: &'static mut [Page]) -> Self {
        let count = pages.len();
        // A slice pointer is never null.
        let pages = NonNull::from(pages).cast::<Page>();
        Self { pages, count, next: 0, free: None, in_use: 0 }
    }

    /// The number of pages the pool was given.
    pub fn capacity(&self) -> usize {
        self.count
    }

    /// The bytes the pool owns, by address (`(first, length)`; at EL2 VA == PA): every page
    /// it hands out lies inside, so a clean of this span cleans every table built from it.
    pub fn span(&self) -> (u64, u64) {
        (self.pages.as_ptr() as u64, (self.count * core::mem::size_of::<Page>()) as u64)
    }

    /// A zeroed page, or `None` when the pool is exhausted.
    pub fn alloc(&mut self) -> Option<NonNull<Page>> {
        let page = if let Some(p) = self.free.take() {
            // SAFETY: pages on the free list are ours and hold the next link in their first
            // 8 bytes (written by `free`), aligned to 4 KiB.
            self.free = unsafe { p.cast::<Option<NonNull<Page>>>().read() };
            p
        } else if self.next < self.count {
            // SAFETY: `next < count`, so the result is inside the slice we own.
            let p = unsafe { self.pages.add(self.next) };
            self.next += 1;
            p
        } else {
            return None;
        };
        // SAFETY: the page is ours, not aliased (just taken from the pool), and 4 KiB long.
        unsafe { page.as_ptr().write_bytes(0, 1) };
        self.in_use += 1;
        Some(page)
    }

    /// Returns a page.
    ///
    /// # Safety
    ///
    /// `page` must have come from [`PagePool::alloc`] on this pool and not be in use any more.
    pub unsafe fn free(&mut self, page: NonNull<Page>) {
        // SAFETY: the caller gives the page back to us; we store the free-list link in it.
        unsafe { page.cast::<Option<NonNull<Page>>>().write(self.free) };
        self.free = Some(page);
        self.in_use -= 1;
    }
}

impl<A: PagingAttributes> Translation<A> for PagePool {
    fn allocate_table(&mut self) -> (NonNull<PageTable<A>>, PhysicalAddress) {
        // Running out of table pages is a configuration error of the pool size; there is no way
        // to report it through this trait, and continuing would corrupt memory.
        let page = self.alloc().expect("translation table page pool exhausted");
        (page.cast(), PhysicalAddress(page.as_ptr() as usize))
    }

    unsafe fn deallocate_table(&mut self, page_table: NonNull<PageTable<A>>) {
        // SAFETY: aarch64-paging only returns tables it got from `allocate_table`.
        unsafe { self.free(page_table.cast()) }
    }

    fn physical_to_virtual(&self, pa: PhysicalAddress) -> NonNull<PageTable<A>> {
        // The hypervisor's own memory is identity-mapped.
        NonNull::new(pa.0 as *mut PageTable<A>).expect("null page table address")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aarch64_paging::descriptor::Stage2Attributes;
    use aarch64_paging::paging::{MemoryRegion, Stage2};
    use aarch64_paging::Mapping;
    use std::boxed::Box;
    use std::vec::Vec;

    fn pool(n: usize) -> PagePool {
        let pages: Vec<Page> = (0..n).map(|_| Page([0xAA; 4096])).collect();
        PagePool::new(Box::leak(pages.into_boxed_slice()))
    }

    #[test]
    fn pages_are_zeroed_reused_and_bounded() {
        let mut p = pool(2);
        let a = p.alloc().unwrap();
        let b = p.alloc().unwrap();
        assert!(p.alloc().is_none());
        // SAFETY: test pages are valid for reads.
        assert!(unsafe { a.as_ref() }.0.iter().all(|&x| x == 0));
        assert_eq!(p.in_use, 2);
        // SAFETY: `a` came from this pool and is no longer used.
        unsafe { p.free(a) };
        assert_eq!(p.alloc(), Some(a));
        assert_ne!(a, b);
        // Every page it hands out lies inside its span.
        let (first, len) = p.span();
        assert_eq!(len, 2 * 4096);
        for page in [a, b] {
            let at = page.as_ptr() as u64;
            assert!(at >= first && at + 4096 <= first + len);
        }
    }

    #[test]
    fn builds_a_stage2_table() {
        let mut m = Mapping::new(pool(8), 1, Stage2);
        let flags = Stage2Attributes::VALID
            | Stage2Attributes::ACCESS_FLAG
            | Stage2Attributes::S2AP_ACCESS_RW
            | Stage2Attributes::SH_INNER
            | Stage2Attributes::MEMATTR_NORMAL_INNER_WB
            | Stage2Attributes::MEMATTR_NORMAL_OUTER_WB;
        m.map_range(
            &MemoryRegion::new(0x4400_0000, 0x4600_0000),
            PhysicalAddress(0x4400_0000),
            flags,
            aarch64_paging::paging::Constraints::empty(),
        )
        .unwrap();
        // Root (level 1) + one level-2 table for 2 MiB blocks.
        assert_eq!(m.translation().in_use, 2);
    }
}
