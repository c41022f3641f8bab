//! VM memory as EL2 reaches it.

use hyp::vm::memory::{GuestMemory, GuestRange};

/// VM memory seen from EL2: RAM is identity-mapped at EL2 and every VM's stage-2 maps its RAM at
/// IPA == PA, so an IPA inside a VM's RAM is its own physical address. A [`GuestRange`] can only
/// exist for a range inside one VM's RAM.
pub struct IdentityGuestMemory;

impl GuestMemory for IdentityGuestMemory {
    fn read(&self, range: GuestRange, out: &mut [u8]) {
        assert_eq!(out.len() as u64, range.len());
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
        // SAFETY: a GuestRange lies inside a VM's RAM, which is mapped at EL2 and is never the
        // hypervisor's own memory; `out` is hypervisor memory of the same length. The copy is
        // the one copy out of the VM.
        unsafe { core::ptr::copy_nonoverlapping(src as *const u8, out.as_mut_ptr(), out.len()) };
    }
    fn write(&mut self, range: GuestRange, data: &[u8]) {
        assert_eq!(data.len() as u64, range.len());
        // SAFETY: as for `read`.
        unsafe {
            core::ptr::copy_nonoverlapping(data.as_ptr(), range.ipa() as *mut u8, data.len())
        };
    }
}
