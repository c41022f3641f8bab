//! The one stage-2 layout every VM's translation uses, for the CPU (VTCR_EL2) and for the
//! SMMU (the STE's S2T0SZ, S2SL0, S2PS, S2TG): both are derived from [`VM_STAGE2`], so they
//! cannot disagree.

/// A stage-2 translation layout with the 4 KiB granule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stage2Layout {
    /// Input (IPA) size in bits.
    pub ipa_bits: u8,
    /// Level of the root table (0..=2 with 4 KiB pages).
    pub start_level: u8,
    /// Output (physical address) size in bits: 32, 36, 40, 42, 44, 48 or 52.
    pub pa_bits: u8,
}

/// Every VM's stage 2: 39-bit IPA space with its root at level 1 (aarch64-paging's `Stage2`
/// with root level 1), 40-bit physical addresses.
pub const VM_STAGE2: Stage2Layout = Stage2Layout { ipa_bits: 39, start_level: 1, pa_bits: 40 };

impl Stage2Layout {
    /// T0SZ = 64 - input bits (VTCR_EL2.T0SZ, STE.S2T0SZ).
    pub const fn t0sz(self) -> u8 {
        64 - self.ipa_bits
    }

    /// SL0 for the 4 KiB granule: 2 = level 0, 1 = level 1, 0 = level 2 (VTCR_EL2.SL0,
    /// STE.S2SL0).
    pub const fn sl0(self) -> u8 {
        2 - self.start_level
    }

    /// PS encoding of the output size (VTCR_EL2.PS, STE.S2PS).
    pub const fn ps(self) -> u8 {
        match self.pa_bits {
            32 => 0,
            36 => 1,
            40 => 2,
            42 => 3,
            44 => 4,
            48 => 5,
            _ => 6,
        }
    }

    /// Whether the layout is one the 4 KiB granule allows: the root level can resolve the
    /// input size with at most 16 concatenated tables.
    pub const fn is_valid(self) -> bool {
        // A level-L table resolves 9 bits; the root at level L covers 12 + 9 * (4 - L) bits,
        // and up to 16 concatenated root tables add 4 more.
        let covered = 12 + 9 * (4 - self.start_level as u32);
        self.start_level <= 2
            && (self.ipa_bits as u32) <= covered + 4
            && (self.ipa_bits as u32) > covered - 9
            && self.ipa_bits <= self.pa_bits
    }
}

const _: () = assert!(VM_STAGE2.is_valid());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vm_layout_encodes_as_the_architecture_says() {
        assert_eq!((VM_STAGE2.t0sz(), VM_STAGE2.sl0(), VM_STAGE2.ps()), (25, 1, 2));
        let l0 = Stage2Layout { ipa_bits: 48, start_level: 0, pa_bits: 48 };
        assert_eq!((l0.t0sz(), l0.sl0(), l0.ps()), (16, 2, 5));
        assert!(l0.is_valid());
        // 39 bits from level 2 would need 512 concatenated tables.
        assert!(!Stage2Layout { ipa_bits: 39, start_level: 2, pa_bits: 40 }.is_valid());
        // 30 bits from level 1 wastes a level: not how the architecture wants it.
        assert!(!Stage2Layout { ipa_bits: 30, start_level: 1, pa_bits: 40 }.is_valid());
        assert!(Stage2Layout { ipa_bits: 40, start_level: 1, pa_bits: 40 }.is_valid());
    }

    #[test]
    fn every_output_size_has_its_ps_encoding() {
        let ps = |pa_bits| Stage2Layout { ipa_bits: 32, start_level: 1, pa_bits }.ps();
        assert_eq!([32, 36, 40, 42, 44, 48, 52].map(ps), [0, 1, 2, 3, 4, 5, 6]);
    }
}
