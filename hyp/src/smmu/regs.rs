//! SMMUv3 register map (IHI 0070, chapter 6) and typed views of the registers the driver
//! decodes. Offsets are from the base of page 0; page 1 registers are at `0x1_0000 + offset`.

/// Register offsets.
pub mod off {
    /// SMMU_IDR0: features.
    pub const IDR0: usize = 0x000;
    /// SMMU_IDR1: sizes.
    pub const IDR1: usize = 0x004;
    /// SMMU_IDR3.
    pub const IDR3: usize = 0x00c;
    /// SMMU_IDR5: output address size and granules.
    pub const IDR5: usize = 0x014;
    /// SMMU_CR0: enables.
    pub const CR0: usize = 0x020;
    /// SMMU_CR0ACK.
    pub const CR0ACK: usize = 0x024;
    /// SMMU_CR1: table and queue memory attributes.
    pub const CR1: usize = 0x028;
    /// SMMU_CR2.
    pub const CR2: usize = 0x02c;
    /// SMMU_GBPA: global bypass attributes.
    pub const GBPA: usize = 0x044;
    /// SMMU_IRQ_CTRL.
    pub const IRQ_CTRL: usize = 0x050;
    /// SMMU_IRQ_CTRLACK.
    pub const IRQ_CTRLACK: usize = 0x054;
    /// SMMU_GERROR: global errors (toggle bits).
    pub const GERROR: usize = 0x060;
    /// SMMU_GERRORN: acknowledged global errors.
    pub const GERRORN: usize = 0x064;
    /// SMMU_STRTAB_BASE (64-bit).
    pub const STRTAB_BASE: usize = 0x080;
    /// SMMU_STRTAB_BASE_CFG.
    pub const STRTAB_BASE_CFG: usize = 0x088;
    /// SMMU_CMDQ_BASE (64-bit).
    pub const CMDQ_BASE: usize = 0x090;
    /// SMMU_CMDQ_PROD.
    pub const CMDQ_PROD: usize = 0x098;
    /// SMMU_CMDQ_CONS.
    pub const CMDQ_CONS: usize = 0x09c;
    /// SMMU_EVENTQ_BASE (64-bit).
    pub const EVTQ_BASE: usize = 0x0a0;
    /// SMMU_EVENTQ_PROD (page 1).
    pub const EVTQ_PROD: usize = 0x1_00a8;
    /// SMMU_EVENTQ_CONS (page 1).
    pub const EVTQ_CONS: usize = 0x1_00ac;
}

/// Extracts bits `[hi:lo]` of `v`.
const fn bits(v: u32, hi: u32, lo: u32) -> u32 {
    (v >> lo) & ((1 << (hi - lo + 1)) - 1)
}

/// SMMU_IDR0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Idr0(pub u32);

impl Idr0 {
    /// S2P, bit 0: stage-2 translation.
    pub const fn s2p(self) -> bool {
        bits(self.0, 0, 0) == 1
    }
    /// S1P, bit 1: stage-1 translation.
    pub const fn s1p(self) -> bool {
        bits(self.0, 1, 1) == 1
    }
    /// TTF, bits 3:2, includes AArch64 tables (0b10 or 0b11).
    pub const fn aarch64_tables(self) -> bool {
        bits(self.0, 3, 2) & 0b10 != 0
    }
    /// COHACC, bit 4: coherent table/queue accesses.
    pub const fn coherent(self) -> bool {
        bits(self.0, 4, 4) == 1
    }
    /// ATS, bit 10.
    pub const fn ats(self) -> bool {
        bits(self.0, 10, 10) == 1
    }
    /// ASID16, bit 12.
    pub const fn asid16(self) -> bool {
        bits(self.0, 12, 12) == 1
    }
    /// MSI, bit 13.
    pub const fn msi(self) -> bool {
        bits(self.0, 13, 13) == 1
    }
    /// PRI, bit 16.
    pub const fn pri(self) -> bool {
        bits(self.0, 16, 16) == 1
    }
    /// VMID16, bit 18.
    pub const fn vmid16(self) -> bool {
        bits(self.0, 18, 18) == 1
    }
    /// STALL_MODEL, bits 25:24 (0b01: stall not supported).
    pub const fn stall_model(self) -> u32 {
        bits(self.0, 25, 24)
    }
    /// ST_LEVEL, bits 28:27: two-level stream tables supported (0b01).
    pub const fn two_level_strtab(self) -> bool {
        bits(self.0, 28, 27) == 1
    }
}

/// SMMU_IDR1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Idr1(pub u32);

impl Idr1 {
    /// SIDSIZE, bits 5:0: stream ID bits.
    pub const fn sidsize(self) -> u32 {
        bits(self.0, 5, 0)
    }
    /// SSIDSIZE, bits 10:6: substream ID bits.
    pub const fn ssidsize(self) -> u32 {
        bits(self.0, 10, 6)
    }
    /// EVENTQS, bits 20:16: log2 of the largest event queue.
    pub const fn eventqs(self) -> u32 {
        bits(self.0, 20, 16)
    }
    /// CMDQS, bits 25:21: log2 of the largest command queue.
    pub const fn cmdqs(self) -> u32 {
        bits(self.0, 25, 21)
    }
    /// TABLES_PRESET (bit 30) or QUEUES_PRESET (bit 29): fixed base addresses.
    pub const fn preset(self) -> bool {
        bits(self.0, 30, 29) != 0
    }
}

/// SMMU_IDR5.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Idr5(pub u32);

impl Idr5 {
    /// OAS, bits 2:0, as a number of bits (32, 36, 40, 42, 44, 48, 52).
    pub const fn oas_bits(self) -> u32 {
        match bits(self.0, 2, 0) {
            0 => 32,
            1 => 36,
            2 => 40,
            3 => 42,
            4 => 44,
            5 => 48,
            _ => 52,
        }
    }
    /// GRAN4K, bit 4.
    pub const fn gran4k(self) -> bool {
        bits(self.0, 4, 4) == 1
    }
}

/// SMMU_CR0 / CR0ACK bits.
pub mod cr0 {
    /// SMMUEN: translation on.
    pub const SMMUEN: u32 = 1 << 0;
    /// EVENTQEN.
    pub const EVENTQEN: u32 = 1 << 2;
    /// CMDQEN.
    pub const CMDQEN: u32 = 1 << 3;
}

/// SMMU_GERROR / GERRORN bits.
pub mod gerror {
    /// CMDQ_ERR: the command queue stopped on an erroneous command.
    pub const CMDQ_ERR: u32 = 1 << 0;
    /// EVENTQ_ABT_ERR: an event queue write aborted.
    pub const EVENTQ_ABT_ERR: u32 = 1 << 2;
    /// PRIQ_ABT_ERR.
    pub const PRIQ_ABT_ERR: u32 = 1 << 3;
    /// MSI_CMDQ_ABT_ERR.
    pub const MSI_CMDQ_ABT_ERR: u32 = 1 << 4;
    /// MSI_EVENTQ_ABT_ERR.
    pub const MSI_EVENTQ_ABT_ERR: u32 = 1 << 5;
    /// MSI_PRIQ_ABT_ERR.
    pub const MSI_PRIQ_ABT_ERR: u32 = 1 << 6;
    /// MSI_GERROR_ABT_ERR.
    pub const MSI_GERROR_ABT_ERR: u32 = 1 << 7;
    /// SFM_ERR: service failure mode; the SMMU stopped translating.
    pub const SFM_ERR: u32 = 1 << 8;
    /// Every defined bit.
    pub const ALL: u32 = 0x1fd;
}

/// SMMU_CMDQ_CONS.ERR, bits 30:24: why the command queue stopped.
pub const fn cmdq_cons_err(cons: u32) -> u32 {
    bits(cons, 30, 24)
}

/// CMDQ_CONS.ERR values.
pub mod cerror {
    /// No error.
    pub const NONE: u32 = 0;
    /// Illegal command (unknown opcode, reserved fields set).
    pub const ILL: u32 = 1;
    /// Abort on command fetch.
    pub const ABT: u32 = 2;
    /// ATC invalidation timed out (the SYNC is the failing command).
    pub const ATC_INV_SYNC: u32 = 3;
}

/// SMMU_STRTAB_BASE_CFG fields.
pub mod strtab_cfg {
    /// FMT, bits 17:16: linear.
    pub const FMT_LINEAR: u32 = 0 << 16;
    /// FMT, bits 17:16: two-level.
    pub const FMT_2LVL: u32 = 1 << 16;
    /// SPLIT, bits 10:6.
    pub const fn split(n: u32) -> u32 {
        (n & 0x1f) << 6
    }
    /// LOG2SIZE, bits 5:0.
    pub const fn log2size(n: u32) -> u32 {
        n & 0x3f
    }
}

/// RA (read-allocate hint), bit 62 of the 64-bit base registers.
pub const BASE_RA: u64 = 1 << 62;
/// Physical address field of the 64-bit base registers: bits 51:5 (queues) or 51:6 (STRTAB).
pub const BASE_ADDR_MASK: u64 = ((1 << 52) - 1) & !0x1f;

/// SMMU_CR1 for cacheable, inner-shareable tables and queues: TABLE_SH/QUEUE_SH = inner (0b11),
/// TABLE_OC/IC and QUEUE_OC/IC = write-back (0b01).
pub const CR1_WB_ISH: u32 =
    0b01 | (0b01 << 2) | (0b11 << 4) | (0b01 << 6) | (0b01 << 8) | (0b11 << 10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_idr0_decodes() {
        // QEMU 10 with arm-smmuv3.stage=nested.
        let i = Idr0(0x0d44_101b);
        assert!(i.s1p() && i.s2p() && i.aarch64_tables() && i.coherent());
        assert!(i.asid16() && i.vmid16() && i.two_level_strtab());
        assert!(!i.ats() && !i.pri() && !i.msi());
        assert_eq!(i.stall_model(), 1);
    }

    #[test]
    fn idr1_and_idr5_fields() {
        // SIDSIZE 16, SSIDSIZE 16, EVENTQS 19, CMDQS 19.
        let i = Idr1(16 | (16 << 6) | (19 << 16) | (19 << 21));
        assert_eq!((i.sidsize(), i.ssidsize(), i.eventqs(), i.cmdqs()), (16, 16, 19, 19));
        assert!(!i.preset());
        assert_eq!(Idr5(0b1_0101).oas_bits(), 48);
        assert!(Idr5(0b1_0101).gran4k());
        assert_eq!(cmdq_cons_err(0x0100_0005), cerror::ILL);
        assert_eq!(
            strtab_cfg::FMT_2LVL | strtab_cfg::split(8) | strtab_cfg::log2size(16),
            0x1_0210
        );
    }
}
