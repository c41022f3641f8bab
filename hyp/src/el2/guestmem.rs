//! VM memory as EL2 reaches it.

use hyp::vm::memory::{access_unit, GuestMemory, ServedRange};
use platform::regs::DmaRange;
use platform::VmSpec;

/// One VM's memory seen from EL2: RAM is identity-mapped at EL2 and every VM's stage-2 maps its
/// RAM at IPA == PA, so an IPA inside a VM's RAM is its own physical address. It serves the one
/// VM it was made for (a range of any other VM is refused before it gets here, see
/// [`GuestMemory::read`]), and every range it copies lies inside that VM's RAM.
///
/// Every access to the VM's side is volatile, one byte or one word at a time, in both
/// directions, never a `memcpy`: that memory changes under the hypervisor's feet. The VM's
/// devices may DMA into it at any moment, and its CPU may be running while another CPU works on
/// its memory (the SMMU's interrupt writes a Linux host's event records from another CPU). An
/// ordinary copy (`copy_nonoverlapping`, `memcpy`) is a promise to the compiler that nothing
/// else touches those bytes meanwhile: it may read one twice or not at all, merge or split
/// accesses, and a concurrent change is undefined behaviour to it. A volatile access is done
/// exactly once, as written, and whatever it sees is just a value: the copy is the one copy out
/// of the VM, and everything after it works on the hypervisor's own bytes.
pub struct IdentityGuestMemory {
    /// The VM served (its spec, not a copy of its id: making one on the hypercall path is then
    /// a single store).
    spec: &'static VmSpec,
}

impl IdentityGuestMemory {
    /// VM `spec`'s memory (a `VmSpec` comes from the manifest only).
    pub fn of(spec: &'static VmSpec) -> IdentityGuestMemory {
        IdentityGuestMemory { spec }
    }
}

/// Copies `n` units of `T` out of a VM: each unit read once, volatile, from `vm`, and stored
/// into `hyp`.
///
/// # Safety
///
/// `vm` must be valid for `n` reads of `T` and `hyp` for `n` writes of `T`, both aligned to
/// `T`, and the two must not overlap.
#[inline(always)]
unsafe fn copy_out_of_vm<T: Copy>(vm: *const T, hyp: *mut T, n: usize) {
    for i in 0..n {
        // SAFETY: `i < n`; the caller guarantees both regions for `n` aligned units.
        unsafe { hyp.add(i).write(vm.add(i).read_volatile()) };
    }
}

/// Copies `n` units of `T` into a VM: each unit loaded from `hyp` and written once, volatile,
/// to `vm`.
///
/// # Safety
///
/// As for [`copy_out_of_vm`], with `vm` valid for writes and `hyp` for reads.
#[inline(always)]
unsafe fn copy_into_vm<T: Copy>(hyp: *const T, vm: *mut T, n: usize) {
    for i in 0..n {
        // SAFETY: `i < n`; the caller guarantees both regions for `n` aligned units.
        unsafe { vm.add(i).write_volatile(hyp.add(i).read()) };
    }
}

/// The physical range of `range` (IPA == PA for every VM).
#[inline(always)]
fn dma_range(range: ServedRange) -> DmaRange {
    DmaRange { pa: range.ipa(), len: range.len() }
}

impl GuestMemory for IdentityGuestMemory {
    fn serves(&self, vm: u32) -> bool {
        vm == self.spec.id
    }

    /// `DC CIVAC` over the range's lines, then `DSB SY` (for a non-coherent SMMU's host).
    fn invalidate_cached(&self, range: ServedRange) {
        super::cache::clean_invalidate(dma_range(range));
    }

    /// `DC CVAC` over the range's lines, then `DSB SY`.
    fn clean_cached(&self, range: ServedRange) {
        super::cache::clean(dma_range(range));
    }

    fn copy_out(&self, range: ServedRange, out: &mut [u8]) {
        let (src, dst, len) = (range.ipa() as usize, out.as_mut_ptr() as usize, out.len());
        // SAFETY: a ServedRange lies inside the RAM of the VM this memory serves, which is
        // identity-mapped at EL2 and is never the hypervisor's own memory, so it cannot overlap
        // `out` (hypervisor memory); `out` is exactly as long as the range (checked when the
        // ServedRange was made); both addresses and the length are multiples of the unit
        // chosen, so `len / unit` aligned units fit in both.
        unsafe {
            match access_unit(src, dst, len) {
                // Commands and records: 16 bytes per load/store pair (the hypervisor has no SIMD,
                // so the generic memcpy moved 8 bytes at a time; this is the invalidation path).
                16 => copy_out_of_vm(src as *const u128, dst as *mut u128, len / 16),
                8 => copy_out_of_vm(src as *const u64, dst as *mut u64, len / 8),
                4 => copy_out_of_vm(src as *const u32, dst as *mut u32, len / 4),
                _ => copy_out_of_vm(src as *const u8, dst as *mut u8, len),
            }
        }
    }

    fn copy_in(&mut self, range: ServedRange, data: &[u8]) {
        let (src, dst, len) = (data.as_ptr() as usize, range.ipa() as usize, data.len());
        // SAFETY: as for `copy_out`, the other way round: `range` is the served VM's RAM,
        // `data` hypervisor memory of the same length.
        unsafe {
            match access_unit(dst, src, len) {
                16 => copy_into_vm(src as *const u128, dst as *mut u128, len / 16),
                8 => copy_into_vm(src as *const u64, dst as *mut u64, len / 8),
                4 => copy_into_vm(src as *const u32, dst as *mut u32, len / 4),
                _ => copy_into_vm(src as *const u8, dst as *mut u8, len),
            }
        }
    }
}
