//! VM memory as EL2 reaches it.

use hyp::vm::memory::{GuestMemory, ServedRange};
use platform::VmSpec;

/// One VM's memory seen from EL2: RAM is identity-mapped at EL2 and every VM's stage-2 maps its
/// RAM at IPA == PA, so an IPA inside a VM's RAM is its own physical address. It serves the one
/// VM it was made for (a range of any other VM is refused before it gets here, see
/// [`GuestMemory::read`]), and every range it copies lies inside that VM's RAM.
pub struct IdentityGuestMemory {
    vm: u32,
}

impl IdentityGuestMemory {
    /// VM `spec`'s memory (a `VmSpec` comes from the manifest only).
    pub fn of(spec: &VmSpec) -> IdentityGuestMemory {
        IdentityGuestMemory { vm: spec.id }
    }
}

impl GuestMemory for IdentityGuestMemory {
    fn serves(&self, vm: u32) -> bool {
        vm == self.vm
    }

    fn copy_out(&self, range: ServedRange, out: &mut [u8]) {
        let src = range.ipa() as usize;
        let dst = out.as_mut_ptr() as usize;
        if (src | dst | out.len()) % 16 == 0 {
            // Commands and records: 16 bytes per load/store pair (the hypervisor has no SIMD, so
            // the generic memcpy moves 8 bytes at a time; this is the invalidation path).
            let (s, d) = (src as *const u128, dst as *mut u128);
            for i in 0..out.len() / 16 {
                // SAFETY: as below; both 16-byte aligned (checked), `i * 16 < out.len()`.
                unsafe { d.add(i).write(s.add(i).read_volatile()) };
            }
            return;
        }
        // SAFETY: a ServedRange lies inside the RAM of the VM this memory serves, which is mapped
        // at EL2 and is never the hypervisor's own memory; `out` is hypervisor memory of the
        // same length (checked when the ServedRange was made). The copy is the one copy out of
        // the VM.
        unsafe { core::ptr::copy_nonoverlapping(src as *const u8, out.as_mut_ptr(), out.len()) };
    }

    fn copy_in(&mut self, range: ServedRange, data: &[u8]) {
        // SAFETY: as for `copy_out`.
        unsafe {
            core::ptr::copy_nonoverlapping(data.as_ptr(), range.ipa() as *mut u8, data.len())
        };
    }
}
