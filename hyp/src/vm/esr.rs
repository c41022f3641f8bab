//! Exception Syndrome Register decoding (ESR_ELx), for trap dispatch and for logs that say what
//! happened in words.

/// An ESR_ELx value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(transparent)]
pub struct Esr(pub u64);

/// The exception classes the hypervisor distinguishes (ESR_ELx.EC, bits 31:26).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExceptionClass {
    /// 0x00: unknown reason.
    Unknown,
    /// 0x01: trapped WFI/WFE.
    WfiWfe,
    /// 0x07: trapped SVE/SIMD/FP access.
    FpAccess,
    /// 0x0E: illegal execution state.
    IllegalState,
    /// 0x15: SVC from AArch64.
    Svc64,
    /// 0x16: HVC from AArch64.
    Hvc64,
    /// 0x17: SMC from AArch64 (trapped by HCR_EL2.TSC).
    Smc64,
    /// 0x18: trapped MSR/MRS/system instruction.
    SysReg,
    /// 0x20: instruction abort from a lower exception level.
    InstrAbortLower,
    /// 0x21: instruction abort from the same exception level.
    InstrAbortSame,
    /// 0x22: PC alignment fault.
    PcAlignment,
    /// 0x24: data abort from a lower exception level.
    DataAbortLower,
    /// 0x25: data abort from the same exception level.
    DataAbortSame,
    /// 0x26: SP alignment fault.
    SpAlignment,
    /// 0x2F: SError interrupt.
    SError,
    /// 0x3C: BRK instruction.
    Brk,
    /// Any other class (raw value).
    Other(u8),
}

impl ExceptionClass {
    /// Decodes EC.
    pub fn from_raw(ec: u8) -> Self {
        use ExceptionClass::*;
        match ec {
            0x00 => Unknown,
            0x01 => WfiWfe,
            0x07 => FpAccess,
            0x0E => IllegalState,
            0x15 => Svc64,
            0x16 => Hvc64,
            0x17 => Smc64,
            0x18 => SysReg,
            0x20 => InstrAbortLower,
            0x21 => InstrAbortSame,
            0x22 => PcAlignment,
            0x24 => DataAbortLower,
            0x25 => DataAbortSame,
            0x26 => SpAlignment,
            0x2F => SError,
            0x3C => Brk,
            other => Other(other),
        }
    }

    /// The class in words.
    pub fn describe(self) -> &'static str {
        use ExceptionClass::*;
        match self {
            Unknown => "unknown reason (undefined instruction)",
            WfiWfe => "trapped WFI/WFE",
            FpAccess => "trapped FP/SIMD access",
            IllegalState => "illegal execution state",
            Svc64 => "SVC",
            Hvc64 => "HVC",
            Smc64 => "SMC",
            SysReg => "trapped system register access",
            InstrAbortLower => "instruction abort from a lower EL",
            InstrAbortSame => "instruction abort from the same EL",
            PcAlignment => "PC alignment fault",
            DataAbortLower => "data abort from a lower EL",
            DataAbortSame => "data abort from the same EL",
            SpAlignment => "SP alignment fault",
            SError => "SError",
            Brk => "BRK instruction",
            Other(_) => "other exception class",
        }
    }
}

impl Esr {
    /// EC, bits 31:26.
    pub const fn ec_raw(self) -> u8 {
        ((self.0 >> 26) & 0x3f) as u8
    }

    /// The exception class.
    pub fn class(self) -> ExceptionClass {
        ExceptionClass::from_raw(self.ec_raw())
    }

    /// IL, bit 25: 32-bit instruction.
    pub const fn il(self) -> bool {
        self.0 & (1 << 25) != 0
    }

    /// ISS, bits 24:0.
    pub const fn iss(self) -> u32 {
        (self.0 & 0x1ff_ffff) as u32
    }

    /// The 16-bit immediate of an HVC/SMC/SVC/BRK (ISS bits 15:0).
    pub const fn imm16(self) -> u16 {
        self.0 as u16
    }

    /// Data/instruction fault status code, ISS bits 5:0.
    pub const fn fsc(self) -> u8 {
        (self.0 & 0x3f) as u8
    }

    /// Data abort WnR, ISS bit 6: the access was a write.
    pub const fn is_write(self) -> bool {
        self.0 & (1 << 6) != 0
    }

    /// Data abort S1PTW, ISS bit 7: the fault happened on a stage-1 table walk.
    pub const fn s1ptw(self) -> bool {
        self.0 & (1 << 7) != 0
    }

    /// The fault status code in words.
    pub fn describe_fsc(self) -> &'static str {
        match self.fsc() {
            0x00..=0x03 => "address size fault",
            0x04..=0x07 => "translation fault",
            0x08..=0x0b => "access flag fault",
            0x0c..=0x0f => "permission fault",
            0x10 => "synchronous external abort",
            0x21 => "alignment fault",
            _ => "other fault",
        }
    }

    /// Translation-table level of the fault (for translation/access/permission faults).
    pub const fn fault_level(self) -> u8 {
        self.fsc() & 3
    }
}

impl core::fmt::Display for Esr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "ESR={:#010x} EC={:#04x} ({})", self.0, self.ec_raw(), self.class().describe())?;
        if matches!(
            self.class(),
            ExceptionClass::DataAbortLower
                | ExceptionClass::DataAbortSame
                | ExceptionClass::InstrAbortLower
                | ExceptionClass::InstrAbortSame
        ) {
            write!(f, ", {} at level {}", self.describe_fsc(), self.fault_level())?;
            if matches!(
                self.class(),
                ExceptionClass::DataAbortLower | ExceptionClass::DataAbortSame
            ) {
                f.write_str(if self.is_write() { ", write" } else { ", read" })?;
            }
        }
        Ok(())
    }
}

/// A trapped `MRS`/`MSR`/system instruction (ESR_ELx.EC 0x18): which register, which way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysRegAccess {
    /// op0, op1, CRn, CRm, op2: the register's encoding.
    pub op0: u8,
    /// op1.
    pub op1: u8,
    /// CRn.
    pub crn: u8,
    /// CRm.
    pub crm: u8,
    /// op2.
    pub op2: u8,
    /// The general register transferred.
    pub rt: u8,
    /// `MRS` (a read), else `MSR` or a system instruction.
    pub read: bool,
}

/// Names of the registers a kernel is likely to touch, by (op0, op1, CRn, CRm, op2).
/// (op0, op1, CRn, CRm, op2).
type Encoding = (u8, u8, u8, u8, u8);

const SYSREG_NAMES: &[(Encoding, &str)] = &[
    ((3, 0, 1, 0, 0), "SCTLR_EL1"),
    ((3, 0, 1, 0, 1), "ACTLR_EL1"),
    ((3, 0, 1, 0, 2), "CPACR_EL1"),
    ((3, 0, 1, 0, 3), "SCTLR2_EL1"),
    ((3, 0, 1, 2, 0), "ZCR_EL1"),
    ((3, 0, 1, 2, 4), "SMPRI_EL1"),
    ((3, 0, 1, 2, 6), "SMCR_EL1"),
    ((3, 0, 2, 0, 3), "TCR2_EL1"),
    ((3, 0, 2, 1, 0), "APIAKeyLo_EL1"),
    ((3, 0, 2, 1, 1), "APIAKeyHi_EL1"),
    ((3, 0, 2, 1, 2), "APIBKeyLo_EL1"),
    ((3, 0, 2, 1, 3), "APIBKeyHi_EL1"),
    ((3, 0, 2, 2, 0), "APDAKeyLo_EL1"),
    ((3, 0, 2, 2, 2), "APDBKeyLo_EL1"),
    ((3, 0, 2, 3, 0), "APGAKeyLo_EL1"),
    ((3, 0, 2, 5, 0), "GCSCR_EL1"),
    ((3, 0, 2, 5, 1), "GCSPR_EL1"),
    ((3, 0, 4, 6, 0), "ICC_PMR_EL1"),
    ((3, 0, 5, 3, 0), "ERRIDR_EL1"),
    ((3, 0, 9, 14, 1), "PMINTENSET_EL1"),
    ((3, 0, 9, 14, 2), "PMINTENCLR_EL1"),
    ((3, 0, 10, 4, 0), "LORSA_EL1"),
    ((3, 0, 10, 4, 7), "LORID_EL1"),
    ((3, 0, 10, 2, 0), "MAIR_EL1"),
    ((3, 0, 10, 2, 4), "PIRE0_EL1"),
    ((3, 0, 10, 2, 3), "PIR_EL1"),
    ((3, 0, 10, 2, 2), "POR_EL1"),
    ((3, 0, 12, 12, 5), "ICC_SRE_EL1"),
    ((3, 0, 12, 12, 4), "ICC_CTLR_EL1"),
    ((3, 0, 12, 12, 7), "ICC_IGRPEN1_EL1"),
    ((3, 0, 12, 11, 5), "ICC_SGI1R_EL1"),
    ((3, 1, 0, 0, 0), "CCSIDR_EL1"),
    ((3, 1, 0, 0, 7), "AIDR_EL1"),
    ((3, 2, 0, 0, 0), "CSSELR_EL1"),
    ((3, 3, 4, 4, 2), "FPMR"),
    ((3, 3, 9, 12, 0), "PMCR_EL0"),
    ((3, 3, 9, 12, 1), "PMCNTENSET_EL0"),
    ((3, 3, 9, 14, 0), "PMUSERENR_EL0"),
    ((3, 3, 13, 0, 5), "TPIDR2_EL0"),
    ((3, 3, 14, 0, 0), "CNTFRQ_EL0"),
    ((3, 3, 14, 2, 1), "CNTP_CTL_EL0"),
    ((3, 3, 14, 3, 1), "CNTV_CTL_EL0"),
    ((2, 0, 0, 2, 2), "MDSCR_EL1"),
    ((2, 0, 1, 0, 4), "OSLAR_EL1"),
    ((2, 0, 1, 1, 4), "OSLSR_EL1"),
    ((2, 0, 1, 3, 4), "OSDLR_EL1"),
];

impl SysRegAccess {
    /// Decodes the ISS of a trapped system-register access.
    pub fn decode(esr: Esr) -> Self {
        let iss = esr.iss();
        Self {
            op0: ((iss >> 20) & 3) as u8,
            op2: ((iss >> 17) & 7) as u8,
            op1: ((iss >> 14) & 7) as u8,
            crn: ((iss >> 10) & 0xf) as u8,
            rt: ((iss >> 5) & 0x1f) as u8,
            crm: ((iss >> 1) & 0xf) as u8,
            read: iss & 1 != 0,
        }
    }

    /// The encoding as one number (for "seen before" bookkeeping).
    pub fn key(&self) -> u32 {
        (self.op0 as u32) << 14
            | (self.op1 as u32) << 11
            | (self.crn as u32) << 7
            | (self.crm as u32) << 3
            | self.op2 as u32
    }

    /// The register's architectural name, if it is one of the known ones.
    pub fn name(&self) -> Option<&'static str> {
        let k = (self.op0, self.op1, self.crn, self.crm, self.op2);
        SYSREG_NAMES.iter().find(|(e, _)| *e == k).map(|(_, n)| *n).or(match k {
            (3, 0, 0, 1..=7, _) => Some("an ID register"),
            (2, 0, 0, _, 4..=7) => Some("a debug breakpoint/watchpoint register"),
            (3, 3, 14, 8..=15, _) => Some("a PMU event counter register"),
            (1, _, _, _, _) => Some("a system instruction"),
            _ => None,
        })
    }
}

impl core::fmt::Display for SysRegAccess {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let dir = if self.read { "read (MRS)" } else { "write (MSR)" };
        let enc = |f: &mut core::fmt::Formatter<'_>| {
            write!(f, "S{}_{}_C{}_C{}_{}", self.op0, self.op1, self.crn, self.crm, self.op2)
        };
        match self.name() {
            Some(n) => write!(f, "{dir} of {n} (")?,
            None => write!(f, "{dir} of an unnamed register (")?,
        }
        enc(f)?;
        write!(f, ", x{})", self.rt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;

    #[test]
    fn decodes_fields() {
        // HVC #0 from AArch64: EC 0x16, IL 1.
        let e = Esr(0x5a00_0000);
        assert_eq!(e.class(), ExceptionClass::Hvc64);
        assert!(e.il());
        assert_eq!(e.imm16(), 0);
        assert_eq!(Esr(0x5a00_0001).imm16(), 1);
        // Stage-2 translation fault, level 1, write: EC 0x24, WnR, DFSC 0x05.
        let d = Esr((0x24 << 26) | (1 << 25) | (1 << 6) | 0x05);
        assert_eq!(d.class(), ExceptionClass::DataAbortLower);
        assert!(d.is_write());
        assert_eq!(d.describe_fsc(), "translation fault");
        assert_eq!(d.fault_level(), 1);
        assert_eq!(
            format!("{d}"),
            "ESR=0x92000045 EC=0x24 (data abort from a lower EL), translation fault at level 1, write"
        );
        assert_eq!(Esr(0x3f << 26).class(), ExceptionClass::Other(0x3f));
    }

    #[test]
    fn system_register_traps_in_words() {
        // MSR APIAKeyLo_EL1, x3: op0 3, op1 0, CRn 2, CRm 1, op2 0, Rt 3, write.
        let iss = (3 << 20) | (2 << 10) | (3 << 5) | (1 << 1);
        let a = SysRegAccess::decode(Esr((0x18 << 26) | (1 << 25) | iss));
        assert_eq!((a.op0, a.op1, a.crn, a.crm, a.op2, a.rt, a.read), (3, 0, 2, 1, 0, 3, false));
        assert_eq!(format!("{a}"), "write (MSR) of APIAKeyLo_EL1 (S3_0_C2_C1_0, x3)");
        // MRS x0, ZCR_EL1.
        let iss = (3 << 20) | (1 << 10) | (2 << 1) | 1;
        let z = SysRegAccess::decode(Esr((0x18 << 26) | iss));
        assert_eq!(format!("{z}"), "read (MRS) of ZCR_EL1 (S3_0_C1_C2_0, x0)");
        assert_ne!(a.key(), z.key());
        // An ID register and an unknown one.
        let id = SysRegAccess { op0: 3, op1: 0, crn: 0, crm: 4, op2: 5, rt: 1, read: true };
        assert_eq!(id.name(), Some("an ID register"));
        let odd = SysRegAccess { op0: 3, op1: 7, crn: 15, crm: 2, op2: 0, rt: 1, read: true };
        assert_eq!(format!("{odd}"), "read (MRS) of an unnamed register (S3_7_C15_C2_0, x1)");
    }
}
