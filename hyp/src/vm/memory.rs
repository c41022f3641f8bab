//! A VM's memory as the hypervisor may touch it: only through a [`GuestRange`], which can only
//! be made by checking that the whole range lies inside one VM's RAM (as its [`VmSpec`], which
//! only the manifest provides, says), and only through a [`GuestMemory`] that serves that VM: a
//! range handed to another VM's memory is refused before anything is touched. An access that
//! was not checked does not compile.

use host_abi::HypError;
use platform::VmSpec;

/// A byte range of one VM's RAM, by IPA, known to lie entirely inside that RAM (and not to
/// wrap). The fields are private: [`GuestRange::of`] is the only way to make one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestRange {
    vm: u32,
    ipa: u64,
    len: u64,
}

impl GuestRange {
    /// `[ipa, ipa + len)` of VM `spec`, if it lies entirely inside its RAM and clear of the
    /// shadow context descriptors the hypervisor keeps there ([`VmSpec::holds`]); otherwise
    /// `INVALID_ADDRESS`. An empty range is refused too (no call takes one).
    pub fn of(spec: &VmSpec, ipa: u64, len: u64) -> Result<GuestRange, HypError> {
        if !spec.holds(ipa, len) {
            return Err(HypError::InvalidAddress);
        }
        Ok(GuestRange { vm: spec.id, ipa, len })
    }

    /// The VM it belongs to.
    pub fn vm(&self) -> u32 {
        self.vm
    }

    /// First IPA.
    pub fn ipa(&self) -> u64 {
        self.ipa
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Always false: empty ranges cannot be made.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The first `len` bytes, if `0 < len <= self.len()`.
    pub fn prefix(self, len: u64) -> Option<GuestRange> {
        (len > 0 && len <= self.len).then_some(GuestRange { len, ..self })
    }

    /// The bytes from `offset` on for `len` bytes, if inside this range.
    pub fn sub(self, offset: u64, len: u64) -> Option<GuestRange> {
        let end = offset.checked_add(len)?;
        (len > 0 && end <= self.len).then_some(GuestRange { ipa: self.ipa + offset, len, ..self })
    }
}

/// A [`GuestRange`] that a [`GuestMemory`] serves, as long as the hypervisor-side buffer it is
/// copied to or from: what the implementations' copies receive. Only [`GuestMemory::read`] and
/// [`GuestMemory::write`] make one, after checking both, so nothing else can reach the copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServedRange(GuestRange);

impl ServedRange {
    /// `range` if `memory` serves its VM (`INVALID_ADDRESS` otherwise); `buffer` must be its
    /// length (a caller's bug otherwise: panics, as a slice copy of the wrong length would).
    #[inline(always)]
    fn check<M: GuestMemory + ?Sized>(
        memory: &M,
        range: GuestRange,
        buffer: usize,
    ) -> Result<ServedRange, HypError> {
        if !memory.serves(range.vm) {
            return Err(HypError::InvalidAddress);
        }
        if buffer as u64 != range.len {
            length_mismatch(buffer, range.len);
        }
        Ok(ServedRange(range))
    }

    /// The VM it belongs to (one the memory serves).
    pub fn vm(&self) -> u32 {
        self.0.vm
    }

    /// First IPA.
    pub fn ipa(&self) -> u64 {
        self.0.ipa
    }

    /// Length in bytes (that of the buffer too).
    pub fn len(&self) -> u64 {
        self.0.len
    }

    /// Always false: empty ranges cannot be made.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// A caller's bug. Out of line, with nothing formatted on the copies' side: their fast path is a
/// compare and a branch (an `assert_eq!` there made every copy reserve stack for its report).
#[cold]
#[inline(never)]
fn length_mismatch(buffer: usize, range: u64) -> ! {
    panic!("buffer of {buffer} bytes and guest range of {range} bytes differ in length")
}

/// One VM's memory, as the hypervisor copies to and from it. An implementation knows which VM
/// it serves ([`GuestMemory::serves`]) and provides the copies; everyone else calls
/// [`GuestMemory::read`] and [`GuestMemory::write`], which refuse a range of any other VM with
/// `INVALID_ADDRESS` before any memory is touched: a range made for one VM cannot reach
/// another's memory, whichever memory it is handed to. (Implementations provide only the first
/// three methods.)
pub trait GuestMemory {
    /// Whether this is VM `vm`'s memory.
    fn serves(&self, vm: u32) -> bool;
    /// Copies `range` into `out`. The range lies inside the RAM of a VM this memory serves and
    /// `out` is as long as it.
    fn copy_out(&self, range: ServedRange, out: &mut [u8]);
    /// Copies `data` into `range`. The range lies inside the RAM of a VM this memory serves and
    /// `data` is as long as it.
    fn copy_in(&mut self, range: ServedRange, data: &[u8]);

    /// Makes sure no line of the hypervisor's own (cacheable) view of `range` serves a later
    /// [`GuestMemory::copy_out`] from before someone wrote the memory behind it without the
    /// hypervisor's caches (a non-coherent SMMU, or the VM through a non-cacheable mapping): at
    /// EL2 `DC CIVAC` over its lines, then `DSB SY`. Only [`NonCoherent`] calls it. Default:
    /// nothing (memory without a cache of its own).
    #[inline]
    fn invalidate_cached(&self, _range: ServedRange) {}

    /// Makes what the hypervisor wrote to `range` through its cacheable view reach memory, so
    /// that an observer outside its caches (a non-coherent SMMU, the VM through a
    /// non-cacheable mapping) reads it: at EL2 `DC CVAC` over its lines, then `DSB SY`. Only
    /// [`NonCoherent`] calls it. Default: nothing.
    #[inline]
    fn clean_cached(&self, _range: ServedRange) {}

    /// Copies `range` into `out` (`out.len() == range.len()`), or `INVALID_ADDRESS`, with
    /// nothing read, if the range is another VM's.
    #[inline]
    fn read(&self, range: GuestRange, out: &mut [u8]) -> Result<(), HypError> {
        let r = ServedRange::check(self, range, out.len())?;
        self.copy_out(r, out);
        Ok(())
    }

    /// Copies `data` into `range` (`data.len() == range.len()`), or `INVALID_ADDRESS`, with
    /// nothing written, if the range is another VM's.
    #[inline]
    fn write(&mut self, range: GuestRange, data: &[u8]) -> Result<(), HypError> {
        let r = ServedRange::check(self, range, data.len())?;
        self.copy_in(r, data);
        Ok(())
    }
}

/// Writes `bytes` at the start of `range` (which the decoder made at least as long as the
/// structure, except where the ABI allows a shorter buffer: then only what fits).
/// `INVALID_ADDRESS` if `mem` is not the range's VM's memory.
pub fn write_prefix(
    mem: &mut dyn GuestMemory,
    range: GuestRange,
    bytes: &[u8],
) -> Result<(), HypError> {
    let n = (bytes.len() as u64).min(range.len());
    match range.prefix(n) {
        Some(r) => mem.write(r, &bytes[..n as usize]),
        None => Ok(()),
    }
}

/// A VM's memory as the hypervisor reaches it for a non-coherent SMMU: every copy out of it
/// first invalidates the hypervisor's lines of the range ([`GuestMemory::invalidate_cached`]),
/// every copy into it is cleaned afterwards ([`GuestMemory::clean_cached`]).
///
/// Linux on a non-coherent SMMU allocates its stream table, context descriptors and queues
/// with `dma_alloc_coherent`, which maps them non-cacheable: its writes go straight to memory.
/// EL2 reads them through its cacheable identity map, where a line loaded by an earlier read
/// would still hold the old STE or command; and what EL2 writes there (event records) would
/// sit in its cache, unseen by the host's non-cacheable reads, until evicted. Both copies
/// complete their maintenance (`DSB SY`) before returning, so before the host can observe
/// anything that follows (a register value such as EVTQ_PROD is read through a trap, after it).
pub struct NonCoherent<'a>(pub &'a mut dyn GuestMemory);

impl GuestMemory for NonCoherent<'_> {
    #[inline]
    fn serves(&self, vm: u32) -> bool {
        self.0.serves(vm)
    }
    fn copy_out(&self, range: ServedRange, out: &mut [u8]) {
        self.0.invalidate_cached(range);
        self.0.copy_out(range, out);
    }
    fn copy_in(&mut self, range: ServedRange, data: &[u8]) {
        self.0.copy_in(range, data);
        self.0.clean_cached(range);
    }
}

/// Calls `f` with `mem` as the hypervisor must reach it for an SMMU that is `coherent` or not:
/// `mem` itself (the coherent path costs this one branch), or [`NonCoherent`] over it.
#[inline]
pub fn with_coherency<R>(
    coherent: bool,
    mem: &mut dyn GuestMemory,
    f: impl FnOnce(&mut dyn GuestMemory) -> R,
) -> R {
    if coherent {
        f(mem)
    } else {
        f(&mut NonCoherent(mem))
    }
}

/// No memory at all: for operations that read none (blocking a stream). It holds nothing of
/// anyone's, so it serves every VM: a read yields zeros (an invalid CD, should anything ever
/// ask), a write goes nowhere.
pub struct NoMemory;

impl GuestMemory for NoMemory {
    fn serves(&self, _vm: u32) -> bool {
        true
    }
    fn copy_out(&self, _range: ServedRange, out: &mut [u8]) {
        out.fill(0);
    }
    fn copy_in(&mut self, _range: ServedRange, _data: &[u8]) {}
}

/// Memory `mem`'s bytes as memory that serves VM `vm` alone: for tests that hand a range of one
/// VM to memory serving another.
#[cfg(test)]
pub struct ServingOnly<'a, M: ?Sized> {
    /// The VM served.
    pub vm: u32,
    /// Where the bytes are.
    pub mem: &'a mut M,
}

#[cfg(test)]
impl<M: GuestMemory + ?Sized> GuestMemory for ServingOnly<'_, M> {
    fn serves(&self, vm: u32) -> bool {
        vm == self.vm
    }
    fn copy_out(&self, range: ServedRange, out: &mut [u8]) {
        self.mem.copy_out(range, out)
    }
    fn copy_in(&mut self, range: ServedRange, data: &[u8]) {
        self.mem.copy_in(range, data)
    }
}

/// The widest access unit, among 16, 8, 4 and 1 bytes, that a copy between a VM's memory and
/// the hypervisor's may use: the VM-side address, the hypervisor-side address and the length
/// are all multiples of it. (A CMD_SYNC's MSI, four aligned bytes, is then one 32-bit store, as
/// an SMMU writes it: a VM polling the word never sees it half written.) The EL2 copies
/// (`el2::guestmem`) move each unit with one volatile access.
#[inline(always)]
pub fn access_unit(vm_side: usize, hyp_side: usize, len: usize) -> usize {
    let all = vm_side | hyp_side | len;
    if all.is_multiple_of(16) {
        16
    } else if all.is_multiple_of(8) {
        8
    } else if all.is_multiple_of(4) {
        4
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::qemu_virt::MANIFEST;
    use platform::MemRange;

    /// RAM at 0x1000..0x5000: its shadow CDs at 0x3000..0x4000, its boot-info page above.
    const VM: VmSpec = VmSpec::for_tests(1, "t", MemRange::new(0x1000, 0x4000), 1, &[]);

    #[test]
    fn only_ranges_inside_the_vm_exist() {
        let r = GuestRange::of(&VM, 0x1000, 0x2000).unwrap();
        assert_eq!((r.vm(), r.ipa(), r.len()), (1, 0x1000, 0x2000));
        for (ipa, len) in [
            (0x0fff, 1),
            (0x2fff, 2),
            (0x3000, 1),
            (0x1000, 0x2001),
            (0x1000, 0),
            (u64::MAX, 2),
            (0x2000, u64::MAX),
        ] {
            assert_eq!(
                GuestRange::of(&VM, ipa, len),
                Err(HypError::InvalidAddress),
                "{ipa:#x}+{len:#x}"
            );
        }
        assert!(GuestRange::of(&VM, 0x4000, 0x1000).is_ok(), "the boot-info page");
        // Every end 1..=63 bytes past the RAM is refused.
        for past in 1..64 {
            assert!(GuestRange::of(&VM, 0x5000 - 64, 64 + past).is_err());
        }
        assert!(!r.is_empty());
        assert_eq!(r.prefix(64).unwrap().len(), 64);
        assert_eq!(r.prefix(64).unwrap().ipa(), 0x1000);
        assert!(r.prefix(0x2001).is_none() && r.prefix(0).is_none());
        let s = r.sub(0x1000, 0x800).unwrap();
        assert_eq!((s.vm(), s.ipa(), s.len()), (1, 0x2000, 0x800));
        assert!(r.sub(0x1000, 0).is_none(), "empty");
        assert!(r.sub(0x1001, 0x1000).is_none() && r.sub(u64::MAX, 2).is_none());
        assert!(r.sub(0x1000, 0x1000).is_some() && r.sub(0x1000, 0x1001).is_none());
    }

    #[test]
    fn the_shadow_cds_are_not_the_vms_memory() {
        let vm = &MANIFEST.vms[1];
        let s = vm.shadow_cds();
        for (ipa, len) in
            [(s.base, 64), (s.base - 16, 32), (s.end() - 8, 16), (vm.mem.base, vm.mem.size)]
        {
            assert_eq!(GuestRange::of(vm, ipa, len), Err(HypError::InvalidAddress), "{ipa:#x}");
        }
        assert!(GuestRange::of(vm, s.base - 64, 64).is_ok());
        assert!(GuestRange::of(vm, s.end(), 64).is_ok(), "the boot-info page");
    }

    /// The first page of one VM's RAM as a byte vector, counting the copies that reach it.
    struct Ram {
        vm: u32,
        base: u64,
        bytes: std::vec::Vec<u8>,
        copies: core::cell::Cell<usize>,
    }

    impl Ram {
        fn of(spec: &VmSpec) -> Ram {
            let bytes = std::vec![0xee; 4096];
            Ram { vm: spec.id, base: spec.mem.base, bytes, copies: Default::default() }
        }
    }

    impl GuestMemory for Ram {
        fn serves(&self, vm: u32) -> bool {
            vm == self.vm
        }
        fn copy_out(&self, r: ServedRange, out: &mut [u8]) {
            assert!(r.vm() == self.vm && !r.is_empty() && r.len() == out.len() as u64);
            self.copies.set(self.copies.get() + 1);
            let o = (r.ipa() - self.base) as usize;
            out.copy_from_slice(&self.bytes[o..o + out.len()]);
        }
        fn copy_in(&mut self, r: ServedRange, data: &[u8]) {
            assert!(r.vm() == self.vm && !r.is_empty() && r.len() == data.len() as u64);
            self.copies.set(self.copies.get() + 1);
            let o = (r.ipa() - self.base) as usize;
            self.bytes[o..o + data.len()].copy_from_slice(data);
        }
    }

    #[test]
    fn a_memory_serves_its_own_vm_only() {
        let [g1, g2] = [&MANIFEST.vms[1], &MANIFEST.vms[2]];
        let (mut m1, mut m2) = (Ram::of(g1), Ram::of(g2));
        let r1 = GuestRange::of(g1, g1.mem.base + 0x100, 8).unwrap();
        // Its own VM's range: copied.
        assert_eq!(m1.write(r1, &[1, 2, 3, 4, 5, 6, 7, 8]), Ok(()));
        assert_eq!(m1.bytes[0x100..0x108], [1, 2, 3, 4, 5, 6, 7, 8]);
        let mut out = [0u8; 8];
        assert_eq!(m1.read(r1, &mut out), Ok(()));
        assert_eq!(out, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(m1.copies.get(), 2);
        // VM 1's range through VM 2's memory: refused, nothing copied either way.
        let mut out = [0u8; 8];
        assert_eq!(m2.read(r1, &mut out), Err(HypError::InvalidAddress));
        assert_eq!(out, [0; 8], "nothing read");
        assert_eq!(m2.write(r1, &[9; 8]), Err(HypError::InvalidAddress));
        assert_eq!(m2.copies.get(), 0, "VM 2's memory untouched");
        assert!(m2.bytes.iter().all(|&b| b == 0xee));
        // Even where VM 2's memory would hold that IPA (a range names its VM, not only its
        // addresses).
        let r2 = GuestRange::of(g2, g2.mem.base, 8).unwrap();
        assert_eq!((r1.vm(), r2.vm()), (1, 2));
        assert_eq!(m1.read(r2, &mut out), Err(HypError::InvalidAddress));
        assert_eq!(m2.read(r2, &mut out), Ok(()));
        assert_eq!(out, [0xee; 8]);
    }

    #[test]
    fn non_coherent_memory_serves_what_its_memory_serves() {
        let [g1, g2] = [&MANIFEST.vms[1], &MANIFEST.vms[2]];
        let mut m1 = Ram::of(g1);
        let (r1, r2) = (
            GuestRange::of(g1, g1.mem.base + 8, 8).unwrap(),
            GuestRange::of(g2, g2.mem.base, 8).unwrap(),
        );
        let mut nc = NonCoherent(&mut m1);
        assert!(nc.serves(1) && !nc.serves(2));
        assert_eq!(nc.write(r1, &[3; 8]), Ok(()));
        let mut out = [0u8; 8];
        assert_eq!(nc.read(r1, &mut out), Ok(()));
        assert_eq!(out, [3; 8]);
        assert_eq!(nc.read(r2, &mut out), Err(HypError::InvalidAddress));
        assert_eq!(nc.write(r2, &[4; 8]), Err(HypError::InvalidAddress));
        assert_eq!(m1.copies.get(), 2, "only its own VM's range reached the memory");
        // Either way, `f` gets the memory (the cache maintenance is the emulated SMMU's tests').
        for coherent in [true, false] {
            let n = with_coherency(coherent, &mut m1, |m| {
                m.read(r1, &mut out).map(|()| m.serves(1) && !m.serves(2))
            });
            assert_eq!(n, Ok(true));
        }
    }

    #[test]
    #[should_panic(expected = "differ in length")]
    fn a_buffer_of_another_length_is_a_bug() {
        let g1 = &MANIFEST.vms[1];
        let r = GuestRange::of(g1, g1.mem.base, 8).unwrap();
        let _ = Ram::of(g1).read(r, &mut [0u8; 7]);
    }

    #[test]
    fn no_memory_holds_zeros_for_everyone() {
        for vm in MANIFEST.vms {
            let r = GuestRange::of(vm, vm.mem.base, 16).unwrap();
            let mut out = [0xffu8; 16];
            assert_eq!(NoMemory.read(r, &mut out), Ok(()));
            assert_eq!(out, [0; 16]);
            assert_eq!(NoMemory.write(r, &[1; 16]), Ok(()));
            assert!(NoMemory.serves(vm.id));
        }
    }

    /// Each unit is taken exactly when all three of the addresses and the length allow it, the
    /// widest first: an MSI's aligned word is one 4-byte access, never four single bytes.
    #[test]
    fn the_access_unit_is_the_widest_all_three_allow() {
        for (vm, hyp, len, unit) in [
            (0x1000, 0x2000, 64, 16),
            (0x1010, 0x2020, 32, 16),
            (0x1008, 0x2000, 64, 8),
            (0x1000, 0x2008, 64, 8),
            (0x1000, 0x2000, 24, 8),
            (0x1004, 0x2000, 64, 4),
            (0x1000, 0x200c, 64, 4),
            (0x1000, 0x2000, 4, 4),
            (0x4000_1234, 0x2000, 4, 4),
            (0x1002, 0x2000, 64, 1),
            (0x1000, 0x2001, 64, 1),
            (0x1000, 0x2000, 6, 1),
            (0, 0, 0, 16),
            // The same low bits on both sides (and the length) still count: not cancelled.
            (0x1008, 0x2008, 64, 8),
            (0x1004, 0x2004, 64, 4),
            (0x1000, 0x2004, 4, 4),
            (0x1001, 0x2001, 1, 1),
        ] {
            assert_eq!(access_unit(vm, hyp, len), unit, "{vm:#x} {hyp:#x} {len}");
        }
    }
}
