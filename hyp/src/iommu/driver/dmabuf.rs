//! Memory the SMMU reads or writes: tables and queues in hypervisor memory.

use alloc::alloc::{alloc_zeroed, Layout};
use core::ptr::NonNull;

/// A zeroed, aligned buffer in hypervisor memory that the SMMU reads or writes. Never freed
/// in the hypervisor: tables and queues live as long as the SMMU may use them, and an SMMU
/// left pointing at a freed and reused table would walk whatever the heap put there. Host
/// builds (the tests and the model's explorer, which build hundreds of thousands of software
/// SMMUs) do free them on drop.
#[derive(Debug)]
pub struct DmaBuf {
    ptr: NonNull<u64>,
    len_words: usize,
    /// What `Drop` gives back (host builds only).
    #[cfg(not(target_os = "none"))]
    layout: Layout,
}

// SAFETY: the buffer is exclusively owned by the driver (which is itself behind a lock); the
// only other party touching it is the SMMU.
unsafe impl Send for DmaBuf {}

#[cfg(not(target_os = "none"))]
impl Drop for DmaBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout and not freed since (a DmaBuf is neither
        // Clone nor Copy); host builds' software SMMUs are dropped with the driver that owns it.
        unsafe { alloc::alloc::dealloc(self.ptr.as_ptr().cast(), self.layout) }
    }
}

impl DmaBuf {
    /// `bytes` zeroed bytes aligned to `align` (a power of two, at least 8); `None` if the heap
    /// cannot hold them or `bytes` is 0.
    pub fn new(bytes: usize, align: usize) -> Option<Self> {
        let layout = Layout::from_size_align(bytes, align.max(8)).ok()?;
        // SAFETY: the layout has a non-zero size (checked first).
        let p = (bytes > 0).then(|| unsafe { alloc_zeroed(layout) })?;
        Some(Self {
            ptr: NonNull::new(p.cast())?,
            len_words: bytes / 8,
            #[cfg(not(target_os = "none"))]
            layout,
        })
    }

    /// The `bytes` bytes of memory at physical address `pa` (identity-mapped at EL2), which the
    /// platform set aside for the hypervisor to write and the SMMU to read: the shadow context
    /// descriptors carved from a VM's RAM. Not zeroed.
    ///
    /// # Safety
    ///
    /// `[pa, pa + bytes)` must be 8-byte aligned memory mapped at EL2 at that address, written
    /// by nothing else (no VM's CPU stage 2 maps it, no device may write it) for as long as the
    /// hypervisor runs, and adopted only once. (The hypervisor only: a host build frees a
    /// DmaBuf on drop, which memory it did not allocate must never be.)
    #[cfg(target_os = "none")]
    pub unsafe fn at(pa: u64, bytes: usize) -> Self {
        Self {
            ptr: NonNull::new(pa as *mut u64).expect("a DmaBuf at address 0"),
            len_words: bytes / 8,
        }
    }

    /// The address given to the SMMU (identity-mapped hypervisor memory).
    pub fn pa(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

    /// Size in 64-bit words.
    pub fn len_words(&self) -> usize {
        self.len_words
    }

    /// Reads word `i` (the SMMU may write it concurrently: volatile).
    pub fn read(&self, i: usize) -> u64 {
        assert!(i < self.len_words);
        // SAFETY: in bounds (checked), aligned, owned by us.
        unsafe { self.ptr.as_ptr().add(i).read_volatile() }
    }

    /// Reads the `N` words from word `i` on (one bounds check: the event queue's drain loop).
    pub fn read_entry<const N: usize>(&self, i: usize) -> [u64; N] {
        assert!(i + N <= self.len_words);
        let mut out = [0u64; N];
        for (k, o) in out.iter_mut().enumerate() {
            // SAFETY: `i + k < i + N <= len_words` (checked above), aligned, owned by us.
            *o = unsafe { self.ptr.as_ptr().add(i + k).read_volatile() };
        }
        out
    }

    /// Writes word `i` (the SMMU may read it concurrently: volatile, single 64-bit store).
    pub fn write(&mut self, i: usize, v: u64) {
        assert!(i < self.len_words);
        // SAFETY: in bounds (checked), aligned, owned by us.
        unsafe { self.ptr.as_ptr().add(i).write_volatile(v) }
    }

    /// Writes the 16-byte entries `entries` from word `i` on (one bounds check for all of them:
    /// the command queue's hot loop).
    pub fn write_pairs(&mut self, i: usize, entries: &[[u64; 2]]) {
        assert!(i + 2 * entries.len() <= self.len_words);
        // SAFETY: `i + 2 * entries.len() <= len_words` (checked above): every word written is in
        // bounds; aligned, owned by us.
        let mut p = unsafe { self.ptr.as_ptr().add(i) };
        for e in entries {
            // Both words loaded before either store (one load-pair instruction: the compiler
            // does not always move the second load above the first volatile store itself).
            let [lo, hi] = *e;
            // SAFETY: in bounds (see above); each word a single volatile 64-bit store.
            unsafe {
                p.write_volatile(lo);
                p.add(1).write_volatile(hi);
                p = p.add(2);
            }
        }
    }

    /// Writes the 16-byte entry at word `i` (one bounds check for both words).
    pub fn write_pair(&mut self, i: usize, v: [u64; 2]) {
        assert!(i + 1 < self.len_words);
        // SAFETY: both words in bounds (checked), aligned, owned by us.
        unsafe {
            let p = self.ptr.as_ptr().add(i);
            p.write_volatile(v[0]);
            p.add(1).write_volatile(v[1]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_is_zeroed_aligned_and_as_long_as_asked() {
        let mut q = DmaBuf::new(16 << 3, 16 << 3).unwrap();
        assert_eq!(q.len_words(), 16);
        assert_eq!(q.pa() % 128, 0, "queues are aligned to their size");
        assert!((0..q.len_words()).all(|i| q.read(i) == 0));
        q.write_pair(14, [1, 2]);
        q.write(0, 3);
        assert_eq!(q.read_entry::<2>(14), [1, 2]);
        assert_eq!(q.read(0), 3);
        assert_eq!(DmaBuf::new(8, 1).unwrap().len_words(), 1);
        assert!(DmaBuf::new(0, 8).is_none());
    }

    #[test]
    #[should_panic]
    fn an_entry_past_the_end_is_refused() {
        let mut q = DmaBuf::new(64, 64).unwrap();
        q.write_pair(7, [1, 2]);
    }
}
