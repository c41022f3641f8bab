//! A VM's memory as the hypervisor may touch it: only through a [`GuestRange`], which can only
//! be made by checking that the whole range lies inside one VM's RAM. An access that was not
//! checked does not compile.

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

/// Copies between a VM's memory and the hypervisor's. Implementations may rely on every range
/// being inside the VM's RAM; the length of the hypervisor-side buffer must equal the range's.
pub trait GuestMemory {
    /// Copies `range` into `out` (`out.len() == range.len()`).
    fn read(&self, range: GuestRange, out: &mut [u8]);
    /// Copies `data` into `range` (`data.len() == range.len()`).
    fn write(&mut self, range: GuestRange, data: &[u8]);
}

/// No memory at all: for operations that read none (blocking a stream). A read yields zeros
/// (an invalid CD, should anything ever ask).
pub struct NoMemory;

impl GuestMemory for NoMemory {
    fn read(&self, _range: GuestRange, out: &mut [u8]) {
        out.fill(0);
    }
    fn write(&mut self, _range: GuestRange, _data: &[u8]) {}
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let vm = &platform::qemu_virt::MANIFEST.vms[1];
        let s = vm.shadow_cds();
        for (ipa, len) in
            [(s.base, 64), (s.base - 16, 32), (s.end() - 8, 16), (vm.mem.base, vm.mem.size)]
        {
            assert_eq!(GuestRange::of(vm, ipa, len), Err(HypError::InvalidAddress), "{ipa:#x}");
        }
        assert!(GuestRange::of(vm, s.base - 64, 64).is_ok());
        assert!(GuestRange::of(vm, s.end(), 64).is_ok(), "the boot-info page");
    }
}
