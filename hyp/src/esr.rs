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
}
