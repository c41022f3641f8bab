//! The SMMUv3 register map (Arm IHI 0070, chapter 6): offsets, typed register values and the
//! values the registers take at reset.
//!
//! One definition serves every party that speaks SMMU registers: the hypervisor's driver of the
//! real SMMU, the software SMMU (test double, model, the SMMU the Linux host is given), and the
//! platform's power-domain simulation, which puts the real registers back to [`RESET`] values.
//! Offsets are from the base of page 0; page-1 registers are at [`PAGE1`] + offset.

use bitflags::bitflags;

/// Offset of register page 1 (the event and PRI queue pointers).
pub const PAGE1: usize = 0x1_0000;

/// Register offsets.
pub mod off {
    use super::PAGE1;
    /// SMMU_IDR0: features.
    pub const IDR0: usize = 0x000;
    /// SMMU_IDR1: table, queue and ID sizes.
    pub const IDR1: usize = 0x004;
    /// SMMU_IDR2.
    pub const IDR2: usize = 0x008;
    /// SMMU_IDR3.
    pub const IDR3: usize = 0x00c;
    /// SMMU_IDR4 (IMPLEMENTATION DEFINED).
    pub const IDR4: usize = 0x010;
    /// SMMU_IDR5: output address size and granules.
    pub const IDR5: usize = 0x014;
    /// SMMU_IIDR: implementation identification.
    pub const IIDR: usize = 0x018;
    /// SMMU_AIDR: architecture version.
    pub const AIDR: usize = 0x01c;
    /// SMMU_CR0: enables.
    pub const CR0: usize = 0x020;
    /// SMMU_CR0ACK: CR0 as the SMMU applied it.
    pub const CR0ACK: usize = 0x024;
    /// SMMU_CR1: table and queue memory attributes.
    pub const CR1: usize = 0x028;
    /// SMMU_CR2: controls (RECINVSID, PTM, E2H).
    pub const CR2: usize = 0x02c;
    /// SMMU_STATUSR.
    pub const STATUSR: usize = 0x040;
    /// SMMU_GBPA: global bypass attributes.
    pub const GBPA: usize = 0x044;
    /// SMMU_AGBPA.
    pub const AGBPA: usize = 0x048;
    /// SMMU_IRQ_CTRL: interrupt enables.
    pub const IRQ_CTRL: usize = 0x050;
    /// SMMU_IRQ_CTRLACK: IRQ_CTRL as applied (read-only).
    pub const IRQ_CTRLACK: usize = 0x054;
    /// SMMU_GERROR: global errors (toggle bits, read-only).
    pub const GERROR: usize = 0x060;
    /// SMMU_GERRORN: acknowledged global errors.
    pub const GERRORN: usize = 0x064;
    /// SMMU_GERROR_IRQ_CFG0 (64-bit): MSI address.
    pub const GERROR_IRQ_CFG0: usize = 0x068;
    /// SMMU_GERROR_IRQ_CFG1: MSI data.
    pub const GERROR_IRQ_CFG1: usize = 0x070;
    /// SMMU_GERROR_IRQ_CFG2: MSI attributes.
    pub const GERROR_IRQ_CFG2: usize = 0x074;
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
    /// SMMU_EVENTQ_IRQ_CFG0 (64-bit): MSI address.
    pub const EVTQ_IRQ_CFG0: usize = 0x0b0;
    /// SMMU_EVENTQ_IRQ_CFG1: MSI data.
    pub const EVTQ_IRQ_CFG1: usize = 0x0b8;
    /// SMMU_EVENTQ_IRQ_CFG2: MSI attributes.
    pub const EVTQ_IRQ_CFG2: usize = 0x0bc;
    /// SMMU_PRIQ_BASE (64-bit).
    pub const PRIQ_BASE: usize = 0x0c0;
    /// SMMU_EVENTQ_PROD (page 1).
    pub const EVTQ_PROD: usize = PAGE1 + 0x0a8;
    /// SMMU_EVENTQ_CONS (page 1).
    pub const EVTQ_CONS: usize = PAGE1 + 0x0ac;
    /// SMMU_PRIQ_PROD (page 1).
    pub const PRIQ_PROD: usize = PAGE1 + 0x0c8;
    /// SMMU_PRIQ_CONS (page 1).
    pub const PRIQ_CONS: usize = PAGE1 + 0x0cc;
}

/// Size of the register space (both 64 KiB pages).
pub const SIZE: usize = 2 * PAGE1;

/// Extracts bits `[hi:lo]` of `v`.
const fn bits(v: u32, hi: u32, lo: u32) -> u32 {
    (v >> lo) & ((1 << (hi - lo + 1)) - 1)
}

/// SMMU_IDR0 of the SMMU the hypervisor emulates for a host kernel (part of the host ABI: the
/// host's driver sizes itself from it), on a coherent SMMU ([`emulated_idr0`]). Stage 1 only,
/// AArch64 tables, coherent, 16-bit ASIDs, MSIs (a CMD_SYNC may complete with a 32-bit write
/// into the host's own RAM: Linux then polls that word instead of CMDQ_CONS; the event and
/// global-error interrupts stay wired), little-endian walks, no stall, linear or two-level
/// stream tables; no stage 2, ATS, PRI, HYP, BTM or SEV.
pub const EMULATED_IDR0: u32 = Idr0::S1P
    | Idr0::TTF_AARCH64
    | Idr0::COHACC
    | Idr0::ASID16
    | Idr0::MSI
    | Idr0::TTENDIAN_LE
    | Idr0::STALL_MODEL_NONE
    | Idr0::ST_LEVEL_2LVL;

/// SMMU_IDR0 of the emulated SMMU when the hypervisor drives the real one as `coherent` or
/// not: [`EMULATED_IDR0`], without COHACC on a non-coherent SMMU (the host then maps its
/// structures non-cacheable and cleans its page tables, as the real SMMU needs).
pub const fn emulated_idr0(coherent: bool) -> u32 {
    if coherent {
        EMULATED_IDR0
    } else {
        EMULATED_IDR0 & !Idr0::COHACC
    }
}

/// SMMU_IDR0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Idr0(pub u32);

impl Idr0 {
    /// S2P, bit 0: stage-2 translation.
    pub const S2P: u32 = 1 << 0;
    /// S1P, bit 1: stage-1 translation.
    pub const S1P: u32 = 1 << 1;
    /// TTF, bits 3:2 = 0b10: AArch64 translation tables only.
    pub const TTF_AARCH64: u32 = 0b10 << 2;
    /// COHACC, bit 4: coherent accesses to tables and queues.
    pub const COHACC: u32 = 1 << 4;
    /// ASID16, bit 12.
    pub const ASID16: u32 = 1 << 12;
    /// MSI, bit 13: message-signalled interrupts (and CMD_SYNC completion by an MSI write).
    pub const MSI: u32 = 1 << 13;
    /// VMID16, bit 18.
    pub const VMID16: u32 = 1 << 18;
    /// STALL_MODEL, bits 25:24 = 0b01: stall not supported.
    pub const STALL_MODEL_NONE: u32 = 0b01 << 24;
    /// TTENDIAN, bits 22:21 = 0b10: little-endian table walks only.
    pub const TTENDIAN_LE: u32 = 0b10 << 21;
    /// ST_LEVEL, bits 28:27 = 0b01: two-level stream tables.
    pub const ST_LEVEL_2LVL: u32 = 0b01 << 27;
    /// CD2L, bit 19: two-level CD tables.
    pub const CD2L: u32 = 1 << 19;

    /// S2P: stage-2 translation.
    pub const fn s2p(self) -> bool {
        bits(self.0, 0, 0) == 1
    }
    /// S1P: stage-1 translation.
    pub const fn s1p(self) -> bool {
        bits(self.0, 1, 1) == 1
    }
    /// TTF includes AArch64 tables (0b10 or 0b11).
    pub const fn aarch64_tables(self) -> bool {
        bits(self.0, 3, 2) & 0b10 != 0
    }
    /// COHACC: coherent table/queue accesses.
    pub const fn coherent(self) -> bool {
        bits(self.0, 4, 4) == 1
    }
    /// BTM, bit 5: broadcast TLB maintenance.
    pub const fn btm(self) -> bool {
        bits(self.0, 5, 5) == 1
    }
    /// ATS, bit 10.
    pub const fn ats(self) -> bool {
        bits(self.0, 10, 10) == 1
    }
    /// ASID16: 16-bit ASIDs.
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
    /// VMID16: 16-bit VMIDs.
    pub const fn vmid16(self) -> bool {
        bits(self.0, 18, 18) == 1
    }
    /// CD2L: two-level CD tables.
    pub const fn cd2l(self) -> bool {
        bits(self.0, 19, 19) == 1
    }
    /// STALL_MODEL, bits 25:24 (0b01: stall not supported).
    pub const fn stall_model(self) -> u32 {
        bits(self.0, 25, 24)
    }
    /// HTTU, bits 7:6: hardware access-flag (0b01) and dirty-state (0b10) updates.
    pub const fn httu(self) -> u32 {
        bits(self.0, 7, 6)
    }
    /// TTENDIAN, bits 22:21: 0b00 mixed, 0b10 little-endian only, 0b11 big-endian only.
    pub const fn ttendian(self) -> u32 {
        bits(self.0, 22, 21)
    }
    /// TERM_MODEL, bit 26: terminated transactions always abort (CD.A must be 1).
    pub const fn term_model(self) -> bool {
        bits(self.0, 26, 26) == 1
    }
    /// ST_LEVEL: two-level stream tables supported (0b01).
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
    /// The register with these sizes (no presets, no PRI queue).
    pub const fn new(sidsize: u32, ssidsize: u32, eventqs: u32, cmdqs: u32) -> Self {
        Idr1(
            (sidsize & 0x3f)
                | (ssidsize & 0x1f) << 6
                | (eventqs & 0x1f) << 16
                | (cmdqs & 0x1f) << 21,
        )
    }
}

/// SMMU_IDR5.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Idr5(pub u32);

impl Idr5 {
    /// GRAN4K, bit 4.
    pub const GRAN4K: u32 = 1 << 4;

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
    /// OAS field value.
    pub const fn oas(self) -> u32 {
        bits(self.0, 2, 0)
    }
    /// GRAN4K: 4 KiB translation granule.
    pub const fn gran4k(self) -> bool {
        bits(self.0, 4, 4) == 1
    }
    /// GRAN16K, bit 5.
    pub const fn gran16k(self) -> bool {
        bits(self.0, 5, 5) == 1
    }
    /// GRAN64K, bit 6.
    pub const fn gran64k(self) -> bool {
        bits(self.0, 6, 6) == 1
    }
}

bitflags! {
    /// SMMU_CR0 / SMMU_CR0ACK.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Cr0: u32 {
        /// Translation enabled (otherwise GBPA decides).
        const SMMUEN = 1 << 0;
        /// PRI queue enabled.
        const PRIQEN = 1 << 1;
        /// Event queue enabled.
        const EVENTQEN = 1 << 2;
        /// Command queue enabled.
        const CMDQEN = 1 << 3;
        /// ATS checks.
        const ATSCHK = 1 << 4;
        /// VMID wildcard matching (bits 8:6).
        const VMW = 0b111 << 6;
    }
}

impl Cr0 {
    /// Translation and both queues on: what the hypervisor keeps while the SMMU is powered.
    pub const RUNNING: Cr0 = Cr0::SMMUEN.union(Cr0::EVENTQEN).union(Cr0::CMDQEN);
}

bitflags! {
    /// SMMU_IRQ_CTRL / SMMU_IRQ_CTRLACK.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct IrqCtrl: u32 {
        /// Global-error interrupt.
        const GERROR_IRQEN = 1 << 0;
        /// PRI queue interrupt.
        const PRIQ_IRQEN = 1 << 1;
        /// Event queue interrupt.
        const EVENTQ_IRQEN = 1 << 2;
    }
}

bitflags! {
    /// SMMU_GERROR / SMMU_GERRORN: each bit toggles in GERROR when the error is raised and is
    /// acknowledged by toggling the same bit of GERRORN; active = GERROR ^ GERRORN.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Gerror: u32 {
        /// The command queue stopped on an erroneous command (see CMDQ_CONS.ERR).
        const CMDQ_ERR = 1 << 0;
        /// An event queue write aborted.
        const EVENTQ_ABT_ERR = 1 << 2;
        /// A PRI queue write aborted.
        const PRIQ_ABT_ERR = 1 << 3;
        /// A CMD_SYNC MSI write aborted.
        const MSI_CMDQ_ABT_ERR = 1 << 4;
        /// An event queue MSI write aborted.
        const MSI_EVENTQ_ABT_ERR = 1 << 5;
        /// A PRI queue MSI write aborted.
        const MSI_PRIQ_ABT_ERR = 1 << 6;
        /// A GERROR MSI write aborted.
        const MSI_GERROR_ABT_ERR = 1 << 7;
        /// Service failure mode: the SMMU stopped translating.
        const SFM_ERR = 1 << 8;
    }
}

/// SMMU_GBPA: Global Bypass Attribute register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(transparent)]
pub struct Gbpa(pub u32);

impl Gbpa {
    /// UPDATE, bit 31: set by software with a new value, cleared by the SMMU once it applies.
    pub const UPDATE: u32 = 1 << 31;
    /// ABORT, bit 20: abort all incoming transactions while SMMUEN = 0.
    pub const ABORT: u32 = 1 << 20;

    /// Whether incoming transactions are aborted while the SMMU is disabled.
    pub const fn abort(self) -> bool {
        self.0 & Self::ABORT != 0
    }

    /// Whether an update is still in progress.
    pub const fn update_pending(self) -> bool {
        self.0 & Self::UPDATE != 0
    }

    /// This value with ABORT set and the other attribute fields kept.
    pub const fn with_abort(self) -> Gbpa {
        Gbpa((self.0 & !Self::UPDATE) | Self::ABORT)
    }
}

/// SMMU_CMDQ_CONS.ERR, bits 30:24: why the command queue stopped.
pub const fn cmdq_cons_err(cons: u32) -> u32 {
    bits(cons, 30, 24)
}

/// CMDQ_CONS.ERR field, in place.
pub const CMDQ_CONS_ERR_MASK: u32 = 0x7f << 24;

/// Overflow flag of EVENTQ_PROD (toggled by the SMMU when it discards an event) and the
/// matching acknowledgement flag of EVENTQ_CONS, bit 31 of both.
pub const Q_OVFLG: u32 = 1 << 31;

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
    /// FMT of a register value (0 linear, 1 two-level).
    pub const fn fmt_of(cfg: u32) -> u32 {
        (cfg >> 16) & 3
    }
    /// SPLIT of a register value.
    pub const fn split_of(cfg: u32) -> u32 {
        (cfg >> 6) & 0x1f
    }
    /// LOG2SIZE of a register value.
    pub const fn log2size_of(cfg: u32) -> u32 {
        cfg & 0x3f
    }
}

/// RA (read-allocate hint), bit 62 of the 64-bit base registers.
pub const BASE_RA: u64 = 1 << 62;
/// Physical address field of the 64-bit base registers: bits 51:5 (queues) or 51:6 (STRTAB).
pub const BASE_ADDR_MASK: u64 = ((1 << 52) - 1) & !0x1f;
/// STRTAB_BASE.ADDR: bits 51:6.
pub const STRTAB_ADDR_MASK: u64 = ((1 << 52) - 1) & !0x3f;
/// LOG2SIZE of the queue base registers, bits 4:0.
pub const QUEUE_LOG2SIZE_MASK: u64 = 0x1f;

/// SMMU_CR1: the memory attributes of the SMMU's accesses to its queues (QUEUE_IC bits 1:0,
/// QUEUE_OC 3:2, QUEUE_SH 5:4) and to its tables (TABLE_IC 7:6, TABLE_OC 9:8, TABLE_SH 11:10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cr1(pub u32);

impl Cr1 {
    /// Cacheability encoding: non-cacheable.
    pub const NC: u32 = 0b00;
    /// Cacheability encoding: write-back cacheable, read-allocate, write-allocate.
    pub const WB: u32 = 0b01;
    /// Shareability encoding: outer shareable.
    pub const OSH: u32 = 0b10;
    /// Shareability encoding: inner shareable.
    pub const ISH: u32 = 0b11;

    /// Queues and tables alike: inner and outer cacheability `cache`, shareability `sh`.
    pub const fn walks(cache: u32, sh: u32) -> Self {
        let unit = cache | cache << 2 | sh << 4;
        Self(unit | unit << 6)
    }
    /// QUEUE_IC.
    pub const fn queue_ic(self) -> u32 {
        bits(self.0, 1, 0)
    }
    /// QUEUE_OC.
    pub const fn queue_oc(self) -> u32 {
        bits(self.0, 3, 2)
    }
    /// QUEUE_SH.
    pub const fn queue_sh(self) -> u32 {
        bits(self.0, 5, 4)
    }
    /// TABLE_IC.
    pub const fn table_ic(self) -> u32 {
        bits(self.0, 7, 6)
    }
    /// TABLE_OC.
    pub const fn table_oc(self) -> u32 {
        bits(self.0, 9, 8)
    }
    /// TABLE_SH.
    pub const fn table_sh(self) -> u32 {
        bits(self.0, 11, 10)
    }
}

/// SMMU_CR1 for cacheable, inner-shareable tables and queues (a coherent SMMU): TABLE_SH /
/// QUEUE_SH = inner (0b11), TABLE_OC/IC and QUEUE_OC/IC = write-back (0b01).
pub const CR1_WB_ISH: u32 = Cr1::walks(Cr1::WB, Cr1::ISH).0;
/// SMMU_CR1 for non-cacheable, outer-shareable tables and queues (a non-coherent SMMU, whose
/// accesses go to memory past the CPUs' caches).
pub const CR1_NC_OSH: u32 = Cr1::walks(Cr1::NC, Cr1::OSH).0;

const _: () = assert!(CR1_WB_ISH == 0b1101_0111_0101);
const _: () = assert!(CR1_NC_OSH == 0b1000_0010_0000);

bitflags! {
    /// SMMU_CR2.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Cr2: u32 {
        /// E2H: EL2 translations are EL2-E2H.
        const E2H = 1 << 0;
        /// RECINVSID: record C_BAD_STREAMID for out-of-range stream IDs.
        const RECINVSID = 1 << 1;
        /// PTM: ignore broadcast TLB maintenance.
        const PTM = 1 << 2;
    }
}

/// The software-writable registers that lose their contents at reset (power-on), with their
/// reset values, in an order that disables before anything else. GBPA is not here: its reset
/// value is IMPLEMENTATION DEFINED (the platform says which); ID registers never change;
/// GERROR, CR0ACK and IRQ_CTRLACK are read-only and follow.
pub const RESET: [(usize, u32); 24] = [
    (off::CR0, 0),
    (off::IRQ_CTRL, 0),
    (off::CR1, 0),
    (off::CR2, 0),
    (off::STRTAB_BASE, 0),
    (off::STRTAB_BASE + 4, 0),
    (off::STRTAB_BASE_CFG, 0),
    (off::CMDQ_BASE, 0),
    (off::CMDQ_BASE + 4, 0),
    (off::CMDQ_PROD, 0),
    (off::CMDQ_CONS, 0),
    (off::EVTQ_BASE, 0),
    (off::EVTQ_BASE + 4, 0),
    (off::EVTQ_PROD, 0),
    (off::EVTQ_CONS, 0),
    (off::GERRORN, 0),
    (off::GERROR_IRQ_CFG0, 0),
    (off::GERROR_IRQ_CFG0 + 4, 0),
    (off::GERROR_IRQ_CFG1, 0),
    (off::GERROR_IRQ_CFG2, 0),
    (off::EVTQ_IRQ_CFG0, 0),
    (off::EVTQ_IRQ_CFG0 + 4, 0),
    (off::EVTQ_IRQ_CFG1, 0),
    (off::EVTQ_IRQ_CFG2, 0),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_idr0_decodes() {
        // QEMU 10 with arm-smmuv3.stage=nested.
        let i = Idr0(0x0d44_101b);
        assert!(i.s1p() && i.s2p() && i.aarch64_tables() && i.coherent());
        assert!(i.asid16() && i.vmid16() && i.two_level_strtab());
        assert!(!i.ats() && !i.pri() && !i.msi() && !i.cd2l());
        assert_eq!(i.stall_model(), 1);
    }

    #[test]
    fn idr1_and_idr5_fields() {
        let i = Idr1::new(16, 16, 19, 19);
        assert_eq!(i.0, 16 | (16 << 6) | (19 << 16) | (19 << 21));
        assert_eq!((i.sidsize(), i.ssidsize(), i.eventqs(), i.cmdqs()), (16, 16, 19, 19));
        assert!(!i.preset());
        assert!(Idr1(1 << 29).preset() && Idr1(1 << 30).preset());
        assert_eq!(Idr5(0b1_0101).oas_bits(), 48);
        assert!(Idr5(0b1_0101).gran4k() && !Idr5(0b1_0101).gran64k());
        assert_eq!(cmdq_cons_err(0x0100_0005), cerror::ILL);
        assert_eq!(
            strtab_cfg::FMT_2LVL | strtab_cfg::split(8) | strtab_cfg::log2size(16),
            0x1_0210
        );
        assert_eq!(strtab_cfg::fmt_of(0x1_0210), 1);
        assert_eq!(strtab_cfg::split_of(0x1_0210), 8);
        assert_eq!(strtab_cfg::log2size_of(0x1_0210), 16);
    }

    #[test]
    fn register_bits_are_architected() {
        assert_eq!(Cr0::RUNNING.bits(), 0b1101);
        assert_eq!(IrqCtrl::all().bits(), 0b111);
        assert_eq!(Gerror::all().bits(), 0x1fd);
        assert_eq!((Cr2::RECINVSID | Cr2::PTM).bits(), 0b110);
        assert_eq!(off::EVTQ_PROD, 0x100a8);
        assert_eq!(off::PRIQ_CONS, 0x100cc);
        // Every resettable register once, and never a read-only or ID register.
        for (i, (o, _)) in RESET.iter().enumerate() {
            assert!(RESET[i + 1..].iter().all(|(p, _)| p != o), "{o:#x} twice");
            assert!(![off::IRQ_CTRLACK, off::CR0ACK, off::GERROR, off::GBPA].contains(o));
            assert!(*o >= off::CR0, "{o:#x} is an ID register");
        }
        assert_eq!(RESET[0].0, off::CR0, "translation off first");
    }
}
