//! Typed values of the EL2 system registers the hypervisor programs: HCR_EL2 as bitflags,
//! TCR_EL2 and VTCR_EL2 built from fields (VTCR from the one stage-2 layout the SMMU's STEs use
//! too, [`crate::vm::stage2::VM_STAGE2`]). Pure: the EL2 side writes what these compute.

use crate::vm::stage2::{Stage2Layout, VM_STAGE2};
use bitflags::bitflags;

bitflags! {
    /// HCR_EL2 (the bits the hypervisor sets).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Hcr: u64 {
        /// VM: stage-2 translation for EL1&0.
        const VM = 1 << 0;
        /// SWIO: set/way invalidation upgraded to clean and invalidate.
        const SWIO = 1 << 1;
        /// FMO: physical FIQs to EL2.
        const FMO = 1 << 3;
        /// IMO: physical IRQs to EL2.
        const IMO = 1 << 4;
        /// AMO: physical SErrors to EL2.
        const AMO = 1 << 5;
        /// VSE: a virtual SError is pending.
        const VSE = 1 << 8;
        /// FB: TLB and instruction-cache maintenance broadcast in the inner shareable domain.
        const FB = 1 << 9;
        /// BSU = 0b01: barriers upgraded to inner shareable.
        const BSU_INNER = 1 << 10;
        /// TSC: SMC traps to EL2 (PSCI is the hypervisor's).
        const TSC = 1 << 19;
        /// RW: EL1 is AArch64.
        const RW = 1 << 31;
        /// APK: EL1 may access its pointer-authentication keys.
        const APK = 1 << 40;
        /// API: pointer-authentication instructions do not trap.
        const API = 1 << 41;
    }
}

impl Hcr {
    /// Every VM: stage 2 on, SErrors to EL2, broadcast maintenance, inner-shareable barriers,
    /// SMC trapped, AArch64 EL1, the VM's own pointer authentication.
    pub const VM_COMMON: Hcr = Hcr::VM
        .union(Hcr::SWIO)
        .union(Hcr::AMO)
        .union(Hcr::FB)
        .union(Hcr::BSU_INNER)
        .union(Hcr::TSC)
        .union(Hcr::RW)
        .union(Hcr::APK)
        .union(Hcr::API);

    /// A VM that does not drive the GIC itself: every interrupt of its CPU comes to EL2.
    pub const VM_INTERRUPTS_AT_EL2: Hcr = Hcr::VM_COMMON.union(Hcr::FMO).union(Hcr::IMO);

    /// A Linux host, which drives the GIC itself: its group-1 interrupts (IRQs) stay at EL1,
    /// physical FIQs (group 0: the hypervisor's own interrupts) come to EL2. With FMO set, its
    /// EL1 accesses to `ICC_PMR/CTLR/DIR/RPR_EL1` and the group-0 registers go to the virtual
    /// CPU interface (`ICV_*`, state in `ICH_VMCR_EL2`/`ICH_AP0R<n>_EL2`), and its writes to
    /// `ICC_SGI0R/SGI1R/ASGI1R_EL1` trap (`hyp::host::sgi`); the group-1 registers (`IAR1`,
    /// `EOIR1`, `BPR1`, `AP1R<n>`, `IGRPEN1`) stay the physical ones (that needs IMO).
    pub const LINUX_HOST: Hcr = Hcr::VM_COMMON.union(Hcr::FMO);
}

/// Cacheability of translation-table walks: write-back read/write-allocate (0b01).
const WBWA: u64 = 0b01;
/// Shareability of walks: inner shareable (0b11).
const INNER_SHAREABLE: u64 = 0b11;

/// VTCR_EL2 for stage-2 `layout` with the 4 KiB granule, write-back inner-shareable walks and
/// 8-bit VMIDs (RES1 bit 31).
pub const fn vtcr(layout: Stage2Layout) -> u64 {
    layout.t0sz() as u64
        | (layout.sl0() as u64) << 6
        | WBWA << 8
        | WBWA << 10
        | INNER_SHAREABLE << 12
        | (layout.ps() as u64) << 16
        | 1 << 31
}

/// VTCR_EL2 of every VM.
pub const VTCR: u64 = vtcr(VM_STAGE2);

/// TCR_EL2 (non-VHE) for an EL2 stage 1 of `va_bits` with the 4 KiB granule, write-back
/// inner-shareable walks and `pa_bits` of physical address (RES1 bits 31 and 23).
pub const fn tcr_el2(va_bits: u8, pa_bits: u8) -> u64 {
    let ps = Stage2Layout { ipa_bits: va_bits, start_level: 1, pa_bits }.ps() as u64;
    (64 - va_bits) as u64
        | WBWA << 8
        | WBWA << 10
        | INNER_SHAREABLE << 12
        | ps << 16
        | 1 << 23
        | 1 << 31
}

/// TCR_EL2 of the hypervisor's own identity map: 39-bit VA (root at level 1), 40-bit PA.
pub const TCR_EL2: u64 = tcr_el2(39, 40);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_values_are_those_the_architecture_defines() {
        // T0SZ 25, SL0 1, IRGN0/ORGN0 WBWA, SH0 inner, PS 40-bit, RES1 bit 31.
        assert_eq!(
            VTCR,
            25 | (1 << 6) | (1 << 8) | (1 << 10) | (3 << 12) | (0b010 << 16) | (1 << 31)
        );
        assert_eq!(
            TCR_EL2,
            25 | (1 << 8) | (1 << 10) | (3 << 12) | (0b010 << 16) | (1 << 23) | (1 << 31)
        );
        assert_eq!(Hcr::VM_COMMON.bits(), 0x0000_0300_8008_0623);
        assert_eq!(Hcr::VM_INTERRUPTS_AT_EL2.bits() ^ Hcr::VM_COMMON.bits(), 0x18);
        // FMO (bit 3) alone: FIQs to EL2, IRQs stay the host's.
        assert_eq!(Hcr::LINUX_HOST.bits() ^ Hcr::VM_COMMON.bits(), 0x08);
        // The SMMU's S2 fields come from the same layout.
        let s2 = crate::iommu::driver::ste::S2Config::vm(1, 0);
        assert_eq!(
            (s2.t0sz as u64, s2.sl0 as u64, s2.ps as u64),
            (VTCR & 0x3f, VTCR >> 6 & 3, VTCR >> 16 & 7)
        );
    }
}
