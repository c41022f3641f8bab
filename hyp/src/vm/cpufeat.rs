//! The EL2 controls a VM's EL1 needs for the CPU features the ID registers advertise to it.
//!
//! QEMU's `-cpu max` advertises SVE, SME, pointer authentication, FEAT_MOPS and FEAT_HCX (among
//! others). A feature the ID registers show but EL2 leaves disabled breaks a kernel that uses it:
//! SVE or SME register accesses trap to EL2 (`CPTR_EL2.TZ/TSM`) and pointer-authentication key
//! writes trap (`HCR_EL2.APK/API` clear), while the MOPS memory-copy instructions are simply
//! UNDEFINED at EL1/EL0 unless `HCRX_EL2.MSCEn` is set (busybox's memcpy then dies of SIGILL with
//! nothing reaching EL2). Pure: the EL2 code reads the ID registers and writes what this returns.
//! No VM state is saved or restored (one vCPU per physical CPU), so enabling these costs nothing.
#![forbid(unsafe_code)]

/// The ID register values that matter here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuIdRegs {
    /// ID_AA64PFR0_EL1.
    pub pfr0: u64,
    /// ID_AA64PFR1_EL1.
    pub pfr1: u64,
    /// ID_AA64MMFR1_EL1.
    pub mmfr1: u64,
    /// ID_AA64MMFR3_EL1.
    pub mmfr3: u64,
    /// ID_AA64ISAR2_EL1.
    pub isar2: u64,
    /// ID_AA64SMFR0_EL1.
    pub smfr0: u64,
}

fn field(v: u64, lsb: u32) -> u64 {
    (v >> lsb) & 0xf
}

impl CpuIdRegs {
    /// FEAT_SVE.
    pub fn sve(&self) -> bool {
        field(self.pfr0, 32) != 0
    }
    /// FEAT_SME.
    pub fn sme(&self) -> bool {
        field(self.pfr1, 24) != 0
    }
    /// FEAT_SME_FA64 (full A64 in streaming mode).
    pub fn sme_fa64(&self) -> bool {
        self.sme() && self.smfr0 & (1 << 63) != 0
    }
    /// FEAT_SME2 (ZT0).
    pub fn sme2(&self) -> bool {
        self.sme() && field(self.smfr0, 56) != 0
    }
    /// FEAT_HCX (HCRX_EL2 exists).
    pub fn hcx(&self) -> bool {
        field(self.mmfr1, 40) != 0
    }
    /// FEAT_MOPS.
    pub fn mops(&self) -> bool {
        field(self.isar2, 16) != 0
    }
    /// FEAT_TCR2.
    pub fn tcr2(&self) -> bool {
        field(self.mmfr3, 0) != 0
    }
    /// FEAT_SCTLR2.
    pub fn sctlr2(&self) -> bool {
        field(self.mmfr3, 4) != 0
    }
}

/// CPTR_EL2 (non-VHE) RES1 bits: 13, 9, 7:0, and 12 (TSM) / 8 (TZ) when SME / SVE are absent.
const CPTR_RES1: u64 = (1 << 13) | (1 << 9) | 0xff;
/// CPTR_EL2.TZ: trap SVE.
const CPTR_TZ: u64 = 1 << 8;
/// CPTR_EL2.TSM: trap SME.
const CPTR_TSM: u64 = 1 << 12;

/// HCRX_EL2.MSCEn: FEAT_MOPS instructions enabled at EL1/EL0.
pub const HCRX_MSCEN: u64 = 1 << 11;
/// HCRX_EL2.TCR2En: TCR2_EL1 accessible at EL1.
pub const HCRX_TCR2EN: u64 = 1 << 14;
/// HCRX_EL2.SCTLR2En: SCTLR2_EL1 accessible at EL1.
pub const HCRX_SCTLR2EN: u64 = 1 << 15;

/// SMCR_EL2.FA64 / EZT0.
const SMCR_FA64: u64 = 1 << 31;
const SMCR_EZT0: u64 = 1 << 30;
/// The largest vector length field (`LEN`): the effective length is then the hardware's
/// maximum, as if no EL2 existed.
const LEN_MAX: u64 = 0xf;

/// What EL2 writes before entering a VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct El2Controls {
    /// CPTR_EL2: no FP, SVE or SME traps.
    pub cptr: u64,
    /// ZCR_EL2 (if SVE).
    pub zcr: Option<u64>,
    /// SMCR_EL2 (if SME).
    pub smcr: Option<u64>,
    /// HCRX_EL2 (if FEAT_HCX).
    pub hcrx: Option<u64>,
}

/// The controls for a CPU with ID registers `id`.
pub fn el2_controls(id: &CpuIdRegs) -> El2Controls {
    let mut cptr = CPTR_RES1;
    if !id.sve() {
        cptr |= CPTR_TZ;
    }
    if !id.sme() {
        cptr |= CPTR_TSM;
    }
    let hcrx = id.hcx().then(|| {
        let mut v = 0;
        if id.mops() {
            v |= HCRX_MSCEN;
        }
        if id.tcr2() {
            v |= HCRX_TCR2EN;
        }
        if id.sctlr2() {
            v |= HCRX_SCTLR2EN;
        }
        v
    });
    let smcr = id.sme().then(|| {
        let mut v = LEN_MAX;
        if id.sme_fa64() {
            v |= SMCR_FA64;
        }
        if id.sme2() {
            v |= SMCR_EZT0;
        }
        v
    });
    El2Controls { cptr, zcr: id.sve().then_some(LEN_MAX), smcr, hcrx }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// QEMU 10 `-cpu max`, as read at EL2 (the fields that matter).
    const MAX: CpuIdRegs = CpuIdRegs {
        pfr0: 1 << 32,                // SVE
        pfr1: 2 << 24,                // SME2
        mmfr1: 1 << 40,               // HCX
        mmfr3: 0x11,                  // TCRX, SCTLRX
        isar2: 1 << 16,               // MOPS
        smfr0: (1 << 63) | (1 << 56), // FA64, SMEver 1
    };

    #[test]
    fn max_cpu_gets_everything_enabled() {
        let c = el2_controls(&MAX);
        assert_eq!(c.cptr & (CPTR_TZ | CPTR_TSM), 0, "no SVE/SME traps");
        assert_eq!(c.cptr & (1 << 10), 0, "no FP trap (TFP)");
        assert_eq!(c.cptr & (1 << 20), 0, "no trace trap (TTA)");
        assert_eq!(c.zcr, Some(0xf));
        assert_eq!(c.smcr, Some(0xf | SMCR_FA64 | SMCR_EZT0));
        assert_eq!(c.hcrx, Some(HCRX_MSCEN | HCRX_TCR2EN | HCRX_SCTLR2EN));
    }

    #[test]
    fn absent_features_keep_their_res1_bits_and_registers_untouched() {
        let c = el2_controls(&CpuIdRegs::default());
        assert_eq!(c.cptr, 0x33ff, "TZ and TSM are RES1 without SVE/SME");
        assert_eq!((c.zcr, c.smcr, c.hcrx), (None, None, None));
        let hcx_only = CpuIdRegs { mmfr1: 1 << 40, ..CpuIdRegs::default() };
        assert_eq!(el2_controls(&hcx_only).hcrx, Some(0), "HCRX written, nothing enabled");
        let sme1 = CpuIdRegs { pfr1: 1 << 24, ..CpuIdRegs::default() };
        assert_eq!(el2_controls(&sme1).smcr, Some(0xf), "no FA64, no ZT0");
    }
}
