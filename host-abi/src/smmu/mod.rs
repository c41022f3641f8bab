//! SMMUv3 in-memory descriptors (Arm IHI 0070): the stream table entry, the context
//! descriptor, command queue entries and event records, as little-endian words with named
//! fields. VMs build STEs and CDs with these types to describe what they want; the hypervisor
//! validates them and builds the real ones with the same accessors.
//!
//! Every field is a [`Field`] (word, lowest bit, width): one definition per field, one
//! generic getter/setter, and unit tests that pin each field to its architected position.

pub mod regs;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// A bit field: word index, lowest bit, width in bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// 64-bit word index inside the descriptor.
    pub word: usize,
    /// Lowest bit inside that word.
    pub lsb: u32,
    /// Width in bits (1..=64).
    pub width: u32,
}

impl Field {
    /// A field.
    pub const fn new(word: usize, lsb: u32, width: u32) -> Self {
        Self { word, lsb, width }
    }

    /// The field's bits, in place.
    pub const fn mask(self) -> u64 {
        let ones = if self.width == 64 { u64::MAX } else { (1u64 << self.width) - 1 };
        ones << self.lsb
    }

    /// Reads the field from `words`.
    pub const fn get(self, words: &[u64]) -> u64 {
        (words[self.word] & self.mask()) >> self.lsb
    }

    /// Writes `value` (truncated to the field's width) into `words`.
    pub fn set(self, words: &mut [u64], value: u64) {
        let m = self.mask();
        words[self.word] = (words[self.word] & !m) | ((value << self.lsb) & m);
    }
}

/// The bits of `fields` in an `N`-word descriptor (for compile-time masks).
pub const fn fields_mask<const N: usize>(fields: &[Field]) -> [u64; N] {
    let mut m = [0u64; N];
    let mut i = 0;
    while i < fields.len() {
        m[fields[i].word] |= fields[i].mask();
        i += 1;
    }
    m
}

/// Stream table entry fields.
pub mod ste {
    use super::Field;
    /// Valid.
    pub const V: Field = Field::new(0, 0, 1);
    /// Stream configuration (see [`super::SteConfig`]).
    pub const CONFIG: Field = Field::new(0, 1, 3);
    /// Stage-1 context descriptor table format (0: linear).
    pub const S1FMT: Field = Field::new(0, 4, 2);
    /// Stage-1 context descriptor table pointer, bits 51:6 (stored at 51:6).
    pub const S1_CONTEXT_PTR: Field = Field::new(0, 6, 46);
    /// log2 of the number of context descriptors.
    pub const S1CDMAX: Field = Field::new(0, 59, 5);
    /// Default substream behaviour (0 terminate, 1 bypass stage 1, 2 use substream 0).
    pub const S1DSS: Field = Field::new(1, 0, 2);
    /// CD table fetch inner cacheability.
    pub const S1CIR: Field = Field::new(1, 2, 2);
    /// CD table fetch outer cacheability.
    pub const S1COR: Field = Field::new(1, 4, 2);
    /// CD table fetch shareability.
    pub const S1CSH: Field = Field::new(1, 6, 2);
    /// Stage-1 stall disable.
    pub const S1STALLD: Field = Field::new(1, 27, 1);
    /// ATS enable.
    pub const EATS: Field = Field::new(1, 28, 2);
    /// StreamWorld (translation regime).
    pub const STRW: Field = Field::new(1, 30, 2);
    /// Memory attribute override.
    pub const MEMATTR: Field = Field::new(1, 32, 4);
    /// Memory type override enable.
    pub const MTCFG: Field = Field::new(1, 36, 1);
    /// Allocation hints override.
    pub const ALLOCCFG: Field = Field::new(1, 37, 4);
    /// Shareability override.
    pub const SHCFG: Field = Field::new(1, 44, 2);
    /// Security state override.
    pub const NSCFG: Field = Field::new(1, 46, 2);
    /// Privilege override.
    pub const PRIVCFG: Field = Field::new(1, 48, 2);
    /// Instruction/data override.
    pub const INSTCFG: Field = Field::new(1, 50, 2);
    /// Stage-2 VMID.
    pub const S2VMID: Field = Field::new(2, 0, 16);
    /// Stage-2 input size: 64 - T0SZ bits.
    pub const S2T0SZ: Field = Field::new(2, 32, 6);
    /// Stage-2 starting level.
    pub const S2SL0: Field = Field::new(2, 38, 2);
    /// Stage-2 table walk inner cacheability.
    pub const S2IR0: Field = Field::new(2, 40, 2);
    /// Stage-2 table walk outer cacheability.
    pub const S2OR0: Field = Field::new(2, 42, 2);
    /// Stage-2 table walk shareability.
    pub const S2SH0: Field = Field::new(2, 44, 2);
    /// Stage-2 granule (0: 4 KiB).
    pub const S2TG: Field = Field::new(2, 46, 2);
    /// Stage-2 output size.
    pub const S2PS: Field = Field::new(2, 48, 3);
    /// Stage-2 tables are AArch64.
    pub const S2AA64: Field = Field::new(2, 51, 1);
    /// Stage-2 big-endian walks.
    pub const S2ENDI: Field = Field::new(2, 52, 1);
    /// Stage-2 access flag fault disable.
    pub const S2AFFD: Field = Field::new(2, 53, 1);
    /// Stage-2 protected table walk.
    pub const S2PTW: Field = Field::new(2, 54, 1);
    /// Stage-2 stall.
    pub const S2S: Field = Field::new(2, 57, 1);
    /// Stage-2 record faults.
    pub const S2R: Field = Field::new(2, 58, 1);
    /// Stage-2 translation table base, bits 51:4 (stored at 51:4).
    pub const S2TTB: Field = Field::new(3, 4, 48);
}

/// Context descriptor fields.
pub mod cd {
    use super::Field;
    /// Stage-1 input size: 64 - T0SZ bits.
    pub const T0SZ: Field = Field::new(0, 0, 6);
    /// Granule (0: 4 KiB).
    pub const TG0: Field = Field::new(0, 6, 2);
    /// Walk inner cacheability.
    pub const IR0: Field = Field::new(0, 8, 2);
    /// Walk outer cacheability.
    pub const OR0: Field = Field::new(0, 10, 2);
    /// Walk shareability.
    pub const SH0: Field = Field::new(0, 12, 2);
    /// TTB0 walks disabled.
    pub const EPD0: Field = Field::new(0, 14, 1);
    /// Big-endian walks.
    pub const ENDI: Field = Field::new(0, 15, 1);
    /// TTB1 walks disabled.
    pub const EPD1: Field = Field::new(0, 30, 1);
    /// Valid.
    pub const V: Field = Field::new(0, 31, 1);
    /// Intermediate (output) physical address size.
    pub const IPS: Field = Field::new(0, 32, 3);
    /// Access flag fault disable.
    pub const AFFD: Field = Field::new(0, 35, 1);
    /// AArch64 tables.
    pub const AA64: Field = Field::new(0, 41, 1);
    /// Hardware dirty-state update.
    pub const HD: Field = Field::new(0, 42, 1);
    /// Hardware access-flag update.
    pub const HA: Field = Field::new(0, 43, 1);
    /// Stall.
    pub const S: Field = Field::new(0, 44, 1);
    /// Record faults.
    pub const R: Field = Field::new(0, 45, 1);
    /// Abort (rather than terminate) faulting transactions.
    pub const A: Field = Field::new(0, 46, 1);
    /// ASID set (shared/non-shared).
    pub const ASET: Field = Field::new(0, 47, 1);
    /// ASID.
    pub const ASID: Field = Field::new(0, 48, 16);
    /// Stage-1 input size of the TTB1 range: 64 - T1SZ bits.
    pub const T1SZ: Field = Field::new(0, 16, 6);
    /// TTB1 granule (0b10: 4 KiB, 0b01: 16 KiB, 0b11: 64 KiB; 0b00 reserved).
    pub const TG1: Field = Field::new(0, 22, 2);
    /// TTB1 walk inner cacheability.
    pub const IR1: Field = Field::new(0, 24, 2);
    /// TTB1 walk outer cacheability.
    pub const OR1: Field = Field::new(0, 26, 2);
    /// TTB1 walk shareability.
    pub const SH1: Field = Field::new(0, 28, 2);
    /// Write permission implies execute-never.
    pub const WXN: Field = Field::new(0, 36, 1);
    /// Unprivileged write permission implies privileged execute-never.
    pub const UWXN: Field = Field::new(0, 37, 1);
    /// Top-byte ignore, one bit per TTB range.
    pub const TBI: Field = Field::new(0, 38, 2);
    /// Privileged access never.
    pub const PAN: Field = Field::new(0, 40, 1);
    /// Secure state of TTB0 walks (Secure streams only; the hypervisor's).
    pub const NSCFG0: Field = Field::new(1, 0, 1);
    /// Hierarchical attribute disable for TTB0 walks.
    pub const HAD0: Field = Field::new(1, 1, 1);
    /// Word 1 bits 3:2 (reserved here).
    pub const RES1_3_2: Field = Field::new(1, 2, 2);
    /// Translation table base 0, bits 51:4 (stored at 51:4).
    pub const TTB0: Field = Field::new(1, 4, 48);
    /// Word 1 bits 59:52 (reserved).
    pub const RES1_59_52: Field = Field::new(1, 52, 8);
    /// Page-based hardware attributes of TTB0 walks (IMPLEMENTATION DEFINED use).
    pub const HWU0: Field = Field::new(1, 60, 4);
    /// Secure state of TTB1 walks.
    pub const NSCFG1: Field = Field::new(2, 0, 1);
    /// Hierarchical attribute disable for TTB1 walks.
    pub const HAD1: Field = Field::new(2, 1, 1);
    /// Word 2 bits 3:2 (reserved here).
    pub const RES2_3_2: Field = Field::new(2, 2, 2);
    /// Translation table base 1, bits 51:4 (stored at 51:4).
    pub const TTB1: Field = Field::new(2, 4, 48);
    /// Word 2 bits 59:52 (reserved).
    pub const RES2_59_52: Field = Field::new(2, 52, 8);
    /// Page-based hardware attributes of TTB1 walks.
    pub const HWU1: Field = Field::new(2, 60, 4);
    /// Memory attribute indirection (MAIR_EL1 format: MAIR0 then MAIR1).
    pub const MAIR: Field = Field::new(3, 0, 64);
    /// Auxiliary memory attribute indirection (IMPLEMENTATION DEFINED).
    pub const AMAIR: Field = Field::new(4, 0, 64);
    /// IMPLEMENTATION DEFINED word.
    pub const IMPDEF: Field = Field::new(5, 0, 64);
    /// MPAM partition ID (bits 15:0) and performance monitoring group (bits 39:32) of word 6,
    /// with the rest of it.
    pub const MPAM: Field = Field::new(6, 0, 64);
    /// Word 7 (reserved).
    pub const RES7: Field = Field::new(7, 0, 64);
}

/// Command fields (word 0 bits 7:0 is the opcode).
pub mod cmd {
    use super::Field;
    /// Opcode.
    pub const OPCODE: Field = Field::new(0, 0, 8);
    /// Secure stream (CFGI_*): must be 0 here.
    pub const SSEC: Field = Field::new(0, 10, 1);
    /// Substream ID valid (ATC_INV).
    pub const SSV: Field = Field::new(0, 11, 1);
    /// Substream ID (CFGI_CD, ATC_INV).
    pub const SSID: Field = Field::new(0, 12, 20);
    /// Stream ID (CFGI_*, ATC_INV).
    pub const SID: Field = Field::new(0, 32, 32);
    /// VMID (TLBI_NH_*, TLBI_S12_VMALL).
    pub const VMID: Field = Field::new(0, 32, 16);
    /// ASID (TLBI_NH_ASID, TLBI_NH_VA).
    pub const ASID: Field = Field::new(0, 48, 16);
    /// Range-invalidation count (TLBI_NH_VA).
    pub const NUM: Field = Field::new(0, 12, 5);
    /// Range-invalidation scale (TLBI_NH_VA).
    pub const SCALE: Field = Field::new(0, 20, 5);
    /// ATC_INV global.
    pub const GLOBAL: Field = Field::new(0, 9, 1);
    /// Leaf only (CFGI_STE, CFGI_CD, TLBI_NH_VA).
    pub const LEAF: Field = Field::new(1, 0, 1);
    /// STE range (CFGI_STE_RANGE): 2^(Range+1) streams.
    pub const RANGE: Field = Field::new(1, 0, 5);
    /// ATC_INV size.
    pub const SIZE: Field = Field::new(1, 0, 6);
    /// TLBI_NH_VA translation table level hint.
    pub const TTL: Field = Field::new(1, 8, 2);
    /// TLBI_NH_VA granule hint.
    pub const TG: Field = Field::new(1, 10, 2);
    /// Address bits 63:12 (TLBI_NH_VA, ATC_INV).
    pub const ADDR: Field = Field::new(1, 12, 52);
    /// CMD_PREFETCH_ADDR: log2 of the number of pages to prefetch.
    pub const PREFETCH_SIZE: Field = Field::new(1, 0, 5);
    /// CMD_PREFETCH_ADDR: log2 of the stride between them.
    pub const PREFETCH_STRIDE: Field = Field::new(1, 5, 5);
    /// CMD_SYNC completion signal (0 none, 1 IRQ, 2 SEV, 3 reserved).
    pub const SYNC_CS: Field = Field::new(0, 12, 2);
    /// [`SYNC_CS`]: no signal (completion seen by polling CONS).
    pub const SYNC_CS_NONE: u64 = 0;
    /// [`SYNC_CS`]: an interrupt (with MSIs: MSIDATA written at MSIADDR) on completion.
    pub const SYNC_CS_IRQ: u64 = 1;
    /// [`SYNC_CS`]: a send-event on completion.
    pub const SYNC_CS_SEV: u64 = 2;
    /// CMD_SYNC MSI shareability.
    pub const SYNC_MSH: Field = Field::new(0, 22, 2);
    /// CMD_SYNC MSI attributes.
    pub const SYNC_MSIATTR: Field = Field::new(0, 24, 4);
    /// CMD_SYNC MSI data.
    pub const SYNC_MSIDATA: Field = Field::new(0, 32, 32);
    /// CMD_SYNC MSI address bits 51:2.
    pub const SYNC_MSIADDR: Field = Field::new(1, 2, 50);
}

/// Event record fields.
pub mod evt {
    use super::Field;
    /// Event type.
    pub const TYPE: Field = Field::new(0, 0, 8);
    /// Substream ID valid.
    pub const SSV: Field = Field::new(0, 11, 1);
    /// Substream ID.
    pub const SSID: Field = Field::new(0, 12, 20);
    /// Stream ID.
    pub const SID: Field = Field::new(0, 32, 32);
    /// Privileged (1) or unprivileged access.
    pub const PNU: Field = Field::new(1, 33, 1);
    /// Instruction (1) or data access.
    pub const IND: Field = Field::new(1, 34, 1);
    /// Read (1) or write (0).
    pub const RNW: Field = Field::new(1, 35, 1);
    /// The fault was at stage 2.
    pub const S2: Field = Field::new(1, 39, 1);
    /// Class of the faulting access (0 CD fetch, 1 translation table walk, 2 input address).
    pub const CLASS: Field = Field::new(1, 40, 2);
    /// Input address (IOVA).
    pub const INPUT_ADDR: Field = Field::new(2, 0, 64);
    /// IPA of a stage-2 fault (bits 51:12, stored at 51:12).
    pub const IPA: Field = Field::new(3, 12, 40);
}

/// STE.Config values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum SteConfig {
    /// 0b000: abort every transaction, record nothing.
    Abort = 0b000,
    /// 0b100: bypass both stages.
    Bypass = 0b100,
    /// 0b101: stage 1 only.
    S1 = 0b101,
    /// 0b110: stage 2 only.
    S2 = 0b110,
    /// 0b111: stage 1 nested on stage 2.
    Nested = 0b111,
}

impl SteConfig {
    /// Decodes STE.Config; `None` for the reserved encodings 0b001..=0b011.
    pub const fn from_bits(b: u64) -> Option<SteConfig> {
        match b {
            0b000 => Some(SteConfig::Abort),
            0b100 => Some(SteConfig::Bypass),
            0b101 => Some(SteConfig::S1),
            0b110 => Some(SteConfig::S2),
            0b111 => Some(SteConfig::Nested),
            _ => None,
        }
    }
}

/// A 64-byte stream table entry.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct Ste(pub [u64; 8]);

/// A 64-byte context descriptor.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct Cd(pub [u64; 8]);

/// A 16-byte command queue entry.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct Command(pub [u64; 2]);

/// A 32-byte event record.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct EventRecord(pub [u64; 4]);

const _: () = assert!(core::mem::size_of::<Ste>() == 64);
const _: () = assert!(core::mem::size_of::<Cd>() == 64);
const _: () = assert!(core::mem::size_of::<Command>() == 16);
const _: () = assert!(core::mem::size_of::<EventRecord>() == 32);

macro_rules! accessors {
    ($ty:ident { $($get:ident / $set:ident = $field:path),* $(,)? }) => {
        impl $ty {
            $(
                #[doc = concat!("Reads `", stringify!($field), "`.")]
                pub const fn $get(&self) -> u64 {
                    $field.get(&self.0)
                }
                #[doc = concat!("Sets `", stringify!($field), "`.")]
                pub fn $set(mut self, v: u64) -> Self {
                    $field.set(&mut self.0, v);
                    self
                }
            )*
        }
    };
}

accessors!(Ste {
    v / with_v = ste::V,
    config_bits / with_config_bits = ste::CONFIG,
    s1fmt / with_s1fmt = ste::S1FMT,
    s1cdmax / with_s1cdmax = ste::S1CDMAX,
    s1dss / with_s1dss = ste::S1DSS,
    s1cir / with_s1cir = ste::S1CIR,
    s1cor / with_s1cor = ste::S1COR,
    s1csh / with_s1csh = ste::S1CSH,
    s2vmid / with_s2vmid = ste::S2VMID,
    s2t0sz / with_s2t0sz = ste::S2T0SZ,
    s2sl0 / with_s2sl0 = ste::S2SL0,
    s2ir0 / with_s2ir0 = ste::S2IR0,
    s2or0 / with_s2or0 = ste::S2OR0,
    s2sh0 / with_s2sh0 = ste::S2SH0,
    s2tg / with_s2tg = ste::S2TG,
    s2ps / with_s2ps = ste::S2PS,
    s2aa64 / with_s2aa64 = ste::S2AA64,
    s2ptw / with_s2ptw = ste::S2PTW,
    s2r / with_s2r = ste::S2R,
});

impl Ste {
    /// STE.Config, if not a reserved encoding.
    pub const fn config(&self) -> Option<SteConfig> {
        SteConfig::from_bits(self.config_bits())
    }

    /// With STE.Config = `c`.
    pub fn with_config(self, c: SteConfig) -> Self {
        self.with_config_bits(c as u64)
    }

    /// The CD table address (bits 51:6).
    pub const fn s1_context_ptr(&self) -> u64 {
        ste::S1_CONTEXT_PTR.get(&self.0) << 6
    }

    /// With the CD table at `addr` (64-byte aligned).
    pub fn with_s1_context_ptr(self, addr: u64) -> Self {
        let mut s = self;
        ste::S1_CONTEXT_PTR.set(&mut s.0, addr >> 6);
        s
    }

    /// The stage-2 table base (bits 51:4).
    pub const fn s2ttb(&self) -> u64 {
        ste::S2TTB.get(&self.0) << 4
    }

    /// With the stage-2 table at `addr` (16-byte aligned).
    pub fn with_s2ttb(self, addr: u64) -> Self {
        let mut s = self;
        ste::S2TTB.set(&mut s.0, addr >> 4);
        s
    }
}

accessors!(Cd {
    t0sz / with_t0sz = cd::T0SZ,
    tg0 / with_tg0 = cd::TG0,
    ir0 / with_ir0 = cd::IR0,
    or0 / with_or0 = cd::OR0,
    sh0 / with_sh0 = cd::SH0,
    epd0 / with_epd0 = cd::EPD0,
    epd1 / with_epd1 = cd::EPD1,
    v / with_v = cd::V,
    ips / with_ips = cd::IPS,
    aa64 / with_aa64 = cd::AA64,
    r / with_r = cd::R,
    a / with_a = cd::A,
    aset / with_aset = cd::ASET,
    asid / with_asid = cd::ASID,
    mair / with_mair = cd::MAIR,
    t1sz / with_t1sz = cd::T1SZ,
    tg1 / with_tg1 = cd::TG1,
    sh1 / with_sh1 = cd::SH1,
    endi / with_endi = cd::ENDI,
    hd / with_hd = cd::HD,
    ha / with_ha = cd::HA,
    s / with_s = cd::S,
});

impl Cd {
    /// TTB0 (bits 51:4).
    pub const fn ttb0(&self) -> u64 {
        cd::TTB0.get(&self.0) << 4
    }

    /// With TTB0 = `addr`.
    pub fn with_ttb0(self, addr: u64) -> Self {
        let mut c = self;
        cd::TTB0.set(&mut c.0, addr >> 4);
        c
    }

    /// TTB1 (bits 51:4).
    pub const fn ttb1(&self) -> u64 {
        cd::TTB1.get(&self.0) << 4
    }

    /// With TTB1 = `addr`.
    pub fn with_ttb1(self, addr: u64) -> Self {
        let mut c = self;
        cd::TTB1.set(&mut c.0, addr >> 4);
        c
    }
}

/// Command opcodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Opcode {
    /// CMD_PREFETCH_CONFIG.
    PrefetchConfig = 0x01,
    /// CMD_PREFETCH_ADDR.
    PrefetchAddr = 0x02,
    /// CMD_CFGI_STE.
    CfgiSte = 0x03,
    /// CMD_CFGI_STE_RANGE (CFGI_ALL with Range = 31).
    CfgiSteRange = 0x04,
    /// CMD_CFGI_CD.
    CfgiCd = 0x05,
    /// CMD_CFGI_CD_ALL.
    CfgiCdAll = 0x06,
    /// CMD_TLBI_NH_ALL.
    TlbiNhAll = 0x10,
    /// CMD_TLBI_NH_ASID.
    TlbiNhAsid = 0x11,
    /// CMD_TLBI_NH_VA.
    TlbiNhVa = 0x12,
    /// CMD_TLBI_NH_VAA.
    TlbiNhVaa = 0x13,
    /// CMD_TLBI_EL2_ALL.
    TlbiEl2All = 0x20,
    /// CMD_TLBI_S12_VMALL.
    TlbiS12Vmall = 0x28,
    /// CMD_TLBI_NSNH_ALL.
    TlbiNsnhAll = 0x30,
    /// CMD_ATC_INV.
    AtcInv = 0x40,
    /// CMD_PRI_RESP.
    PriResp = 0x41,
    /// CMD_RESUME (stall).
    Resume = 0x44,
    /// CMD_SYNC.
    Sync = 0x46,
}

impl Opcode {
    /// Decodes an opcode byte.
    pub const fn from_u8(b: u8) -> Option<Opcode> {
        use Opcode::*;
        Some(match b {
            0x01 => PrefetchConfig,
            0x02 => PrefetchAddr,
            0x03 => CfgiSte,
            0x04 => CfgiSteRange,
            0x05 => CfgiCd,
            0x06 => CfgiCdAll,
            0x10 => TlbiNhAll,
            0x11 => TlbiNhAsid,
            0x12 => TlbiNhVa,
            0x13 => TlbiNhVaa,
            0x20 => TlbiEl2All,
            0x28 => TlbiS12Vmall,
            0x30 => TlbiNsnhAll,
            0x40 => AtcInv,
            0x41 => PriResp,
            0x44 => Resume,
            0x46 => Sync,
            _ => return None,
        })
    }
}

impl Command {
    fn op(op: Opcode) -> Self {
        Command([op as u64, 0])
    }

    fn with(mut self, f: Field, v: u64) -> Self {
        f.set(&mut self.0, v);
        self
    }

    /// The opcode byte.
    pub const fn opcode_byte(&self) -> u8 {
        cmd::OPCODE.get(&self.0) as u8
    }

    /// Reads a field.
    pub const fn field(&self, f: Field) -> u64 {
        f.get(&self.0)
    }

    /// CMD_CFGI_STE for `sid` (leaf).
    pub fn cfgi_ste(sid: u32) -> Self {
        Self::op(Opcode::CfgiSte).with(cmd::SID, sid as u64).with(cmd::LEAF, 1)
    }
    /// CMD_CFGI_ALL: CFGI_STE_RANGE covering every stream.
    pub fn cfgi_all() -> Self {
        Self::op(Opcode::CfgiSteRange).with(cmd::RANGE, 31)
    }
    /// CMD_CFGI_CD for (`sid`, `ssid`) (leaf).
    pub fn cfgi_cd(sid: u32, ssid: u32) -> Self {
        Self::op(Opcode::CfgiCd)
            .with(cmd::SID, sid as u64)
            .with(cmd::SSID, ssid as u64)
            .with(cmd::LEAF, 1)
    }
    /// CMD_CFGI_CD_ALL for `sid`.
    pub fn cfgi_cd_all(sid: u32) -> Self {
        Self::op(Opcode::CfgiCdAll).with(cmd::SID, sid as u64)
    }
    /// CMD_TLBI_NH_ALL for `vmid`.
    pub fn tlbi_nh_all(vmid: u16) -> Self {
        Self::op(Opcode::TlbiNhAll).with(cmd::VMID, vmid as u64)
    }
    /// CMD_TLBI_NH_ASID.
    pub fn tlbi_nh_asid(vmid: u16, asid: u16) -> Self {
        Self::op(Opcode::TlbiNhAsid).with(cmd::VMID, vmid as u64).with(cmd::ASID, asid as u64)
    }
    /// CMD_TLBI_NH_VA for the page at `va` (leaf).
    pub fn tlbi_nh_va(vmid: u16, asid: u16, va: u64) -> Self {
        Self::op(Opcode::TlbiNhVa)
            .with(cmd::VMID, vmid as u64)
            .with(cmd::ASID, asid as u64)
            .with(cmd::LEAF, 1)
            .with(cmd::ADDR, va >> 12)
    }
    /// CMD_TLBI_S12_VMALL for `vmid`.
    pub fn tlbi_s12_vmall(vmid: u16) -> Self {
        Self::op(Opcode::TlbiS12Vmall).with(cmd::VMID, vmid as u64)
    }
    /// CMD_TLBI_NSNH_ALL.
    pub fn tlbi_nsnh_all() -> Self {
        Self::op(Opcode::TlbiNsnhAll)
    }
    /// CMD_TLBI_EL2_ALL.
    pub fn tlbi_el2_all() -> Self {
        Self::op(Opcode::TlbiEl2All)
    }
    /// CMD_ATC_INV of the whole ATC of `sid` (Size = 52: everything).
    pub fn atc_inv_all(sid: u32) -> Self {
        Self::op(Opcode::AtcInv).with(cmd::SID, sid as u64).with(cmd::SIZE, 52)
    }
    /// CMD_SYNC with no completion signal (completion is seen by polling CONS).
    pub fn sync() -> Self {
        Self::op(Opcode::Sync)
    }
    /// CMD_SYNC completing with an MSI (CS = SIG_IRQ): `data` written at `addr` (4-byte
    /// aligned), as Linux's MSI polling (`IDR0.MSI`) asks for.
    pub fn sync_msi(addr: u64, data: u32) -> Self {
        Self::op(Opcode::Sync)
            .with(cmd::SYNC_CS, cmd::SYNC_CS_IRQ)
            .with(cmd::SYNC_MSIDATA, data as u64)
            .with(cmd::SYNC_MSIADDR, addr >> 2)
    }
}

/// Event types the hypervisor names in its logs.
pub fn event_name(ty: u8) -> &'static str {
    match ty {
        0x01 => "F_UUT",
        0x02 => "C_BAD_STREAMID",
        0x03 => "F_STE_FETCH",
        0x04 => "C_BAD_STE",
        0x05 => "F_BAD_ATS_TREQ",
        0x06 => "F_STREAM_DISABLED",
        0x07 => "F_TRANSL_FORBIDDEN",
        0x08 => "C_BAD_SUBSTREAMID",
        0x09 => "F_CD_FETCH",
        0x0a => "C_BAD_CD",
        0x0b => "F_WALK_EABT",
        0x10 => "F_TRANSLATION",
        0x11 => "F_ADDR_SIZE",
        0x12 => "F_ACCESS",
        0x13 => "F_PERMISSION",
        0x20 => "F_TLB_CONFLICT",
        0x21 => "F_CFG_CONFLICT",
        0x24 => "E_PAGE_REQUEST",
        0x25 => "F_VMS_FETCH",
        _ => "unknown event",
    }
}

impl EventRecord {
    /// Event type.
    pub const fn event_type(&self) -> u8 {
        evt::TYPE.get(&self.0) as u8
    }
    /// Stream ID.
    pub const fn sid(&self) -> u32 {
        evt::SID.get(&self.0) as u32
    }
    /// Input address (the IOVA the device used).
    pub const fn input_addr(&self) -> u64 {
        evt::INPUT_ADDR.get(&self.0)
    }
    /// Whether the fault happened at stage 2.
    pub const fn stage2(&self) -> bool {
        evt::S2.get(&self.0) == 1
    }
    /// Whether the access was a read.
    pub const fn is_read(&self) -> bool {
        evt::RNW.get(&self.0) == 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sets one field to all ones in an empty descriptor and returns the words.
    fn ones<const N: usize>(f: Field) -> [u64; N] {
        let mut w = [0u64; N];
        f.set(&mut w, u64::MAX);
        w
    }

    /// (field, expected word index, expected word value with the field all ones)
    fn check<const N: usize>(cases: &[(Field, usize, u64)]) {
        for &(f, word, value) in cases {
            let w: [u64; N] = ones(f);
            for (i, x) in w.iter().enumerate() {
                let expected = if i == word { value } else { 0 };
                assert_eq!(*x, expected, "{f:?} word {i}");
            }
            assert_eq!(f.get(&w), f.mask() >> f.lsb);
        }
    }

    #[test]
    fn ste_fields_are_at_their_architected_bits() {
        check::<8>(&[
            (ste::V, 0, 0x1),                                // V, bit 0
            (ste::CONFIG, 0, 0xe),                           // Config, bits 3:1
            (ste::S1FMT, 0, 0x30),                           // S1Fmt, bits 5:4
            (ste::S1_CONTEXT_PTR, 0, 0x000f_ffff_ffff_ffc0), // S1ContextPtr, bits 51:6
            (ste::S1CDMAX, 0, 0xf800_0000_0000_0000),        // S1CDMax, bits 63:59
            (ste::S1DSS, 1, 0x3),                            // S1DSS, bits 1:0
            (ste::S1CIR, 1, 0xc),                            // S1CIR, bits 3:2
            (ste::S1COR, 1, 0x30),                           // S1COR, bits 5:4
            (ste::S1CSH, 1, 0xc0),                           // S1CSH, bits 7:6
            (ste::S1STALLD, 1, 0x0800_0000),                 // S1STALLD, bit 27
            (ste::EATS, 1, 0x3000_0000),                     // EATS, bits 29:28
            (ste::STRW, 1, 0xc000_0000),                     // STRW, bits 31:30
            (ste::MEMATTR, 1, 0xf_0000_0000),                // MemAttr, bits 35:32
            (ste::MTCFG, 1, 0x10_0000_0000),                 // MTCFG, bit 36
            (ste::ALLOCCFG, 1, 0x1e0_0000_0000),             // ALLOCCFG, bits 40:37
            (ste::SHCFG, 1, 0x3000_0000_0000),               // SHCFG, bits 45:44
            (ste::NSCFG, 1, 0xc000_0000_0000),               // NSCFG, bits 47:46
            (ste::PRIVCFG, 1, 0x3_0000_0000_0000),           // PRIVCFG, bits 49:48
            (ste::INSTCFG, 1, 0xc_0000_0000_0000),           // INSTCFG, bits 51:50
            (ste::S2VMID, 2, 0xffff),                        // S2VMID, bits 15:0
            (ste::S2T0SZ, 2, 0x3f_0000_0000),                // S2T0SZ, bits 37:32
            (ste::S2SL0, 2, 0xc0_0000_0000),                 // S2SL0, bits 39:38
            (ste::S2IR0, 2, 0x300_0000_0000),                // S2IR0, bits 41:40
            (ste::S2OR0, 2, 0xc00_0000_0000),                // S2OR0, bits 43:42
            (ste::S2SH0, 2, 0x3000_0000_0000),               // S2SH0, bits 45:44
            (ste::S2TG, 2, 0xc000_0000_0000),                // S2TG, bits 47:46
            (ste::S2PS, 2, 0x7_0000_0000_0000),              // S2PS, bits 50:48
            (ste::S2AA64, 2, 0x8_0000_0000_0000),            // S2AA64, bit 51
            (ste::S2ENDI, 2, 0x10_0000_0000_0000),           // S2ENDI, bit 52
            (ste::S2AFFD, 2, 0x20_0000_0000_0000),           // S2AFFD, bit 53
            (ste::S2PTW, 2, 0x40_0000_0000_0000),            // S2PTW, bit 54
            (ste::S2S, 2, 0x200_0000_0000_0000),             // S2S, bit 57
            (ste::S2R, 2, 0x400_0000_0000_0000),             // S2R, bit 58
            (ste::S2TTB, 3, 0x000f_ffff_ffff_fff0),          // S2TTB, bits 51:4
        ]);
    }

    #[test]
    fn cd_fields_are_at_their_architected_bits() {
        check::<8>(&[
            (cd::T0SZ, 0, 0x3f),                  // T0SZ, bits 5:0
            (cd::TG0, 0, 0xc0),                   // TG0, bits 7:6
            (cd::IR0, 0, 0x300),                  // IR0, bits 9:8
            (cd::OR0, 0, 0xc00),                  // OR0, bits 11:10
            (cd::SH0, 0, 0x3000),                 // SH0, bits 13:12
            (cd::EPD0, 0, 0x4000),                // EPD0, bit 14
            (cd::ENDI, 0, 0x8000),                // ENDI, bit 15
            (cd::EPD1, 0, 0x4000_0000),           // EPD1, bit 30
            (cd::V, 0, 0x8000_0000),              // V, bit 31
            (cd::IPS, 0, 0x7_0000_0000),          // IPS, bits 34:32
            (cd::AFFD, 0, 0x8_0000_0000),         // AFFD, bit 35
            (cd::AA64, 0, 0x200_0000_0000),       // AA64, bit 41
            (cd::HD, 0, 0x400_0000_0000),         // HD, bit 42
            (cd::HA, 0, 0x800_0000_0000),         // HA, bit 43
            (cd::S, 0, 0x1000_0000_0000),         // S, bit 44
            (cd::R, 0, 0x2000_0000_0000),         // R, bit 45
            (cd::A, 0, 0x4000_0000_0000),         // A, bit 46
            (cd::ASET, 0, 0x8000_0000_0000),      // ASET, bit 47
            (cd::ASID, 0, 0xffff_0000_0000_0000), // ASID, bits 63:48
            (cd::TTB0, 1, 0x000f_ffff_ffff_fff0), // TTB0, bits 51:4
            (cd::MAIR, 3, u64::MAX),              // MAIR0, word 3
            (cd::T1SZ, 0, 0x3f_0000),             // T1SZ, bits 21:16
            (cd::TG1, 0, 0xc0_0000),              // TG1, bits 23:22
            (cd::IR1, 0, 0x300_0000),             // IR1, bits 25:24
            (cd::OR1, 0, 0xc00_0000),             // OR1, bits 27:26
            (cd::SH1, 0, 0x3000_0000),            // SH1, bits 29:28
            (cd::WXN, 0, 0x10_0000_0000),         // WXN, bit 36
            (cd::UWXN, 0, 0x20_0000_0000),        // UWXN, bit 37
            (cd::TBI, 0, 0xc0_0000_0000),         // TBI, bits 39:38
            (cd::PAN, 0, 0x100_0000_0000),        // PAN, bit 40
            (cd::NSCFG0, 1, 0x1),                 // NSCFG0, bit 0 of word 1
            (cd::HAD0, 1, 0x2),                   // HAD0, bit 1 of word 1
            (cd::HWU0, 1, 0xf000_0000_0000_0000), // HWU0, bits 63:60 of word 1
            (cd::NSCFG1, 2, 0x1),                 // NSCFG1, bit 0 of word 2
            (cd::HAD1, 2, 0x2),                   // HAD1, bit 1 of word 2
            (cd::TTB1, 2, 0x000f_ffff_ffff_fff0), // TTB1, bits 51:4 of word 2
            (cd::HWU1, 2, 0xf000_0000_0000_0000), // HWU1, bits 63:60 of word 2
            (cd::AMAIR, 4, u64::MAX),             // AMAIR, word 4
            (cd::IMPDEF, 5, u64::MAX),            // IMPLEMENTATION DEFINED, word 5
        ]);
        // Every bit of a CD is named by exactly one field.
        let all = [
            cd::T0SZ,
            cd::TG0,
            cd::IR0,
            cd::OR0,
            cd::SH0,
            cd::EPD0,
            cd::ENDI,
            cd::T1SZ,
            cd::TG1,
            cd::IR1,
            cd::OR1,
            cd::SH1,
            cd::EPD1,
            cd::V,
            cd::IPS,
            cd::AFFD,
            cd::WXN,
            cd::UWXN,
            cd::TBI,
            cd::PAN,
            cd::AA64,
            cd::HD,
            cd::HA,
            cd::S,
            cd::R,
            cd::A,
            cd::ASET,
            cd::ASID,
            cd::NSCFG0,
            cd::HAD0,
            cd::RES1_3_2,
            cd::TTB0,
            cd::RES1_59_52,
            cd::HWU0,
            cd::NSCFG1,
            cd::HAD1,
            cd::RES2_3_2,
            cd::TTB1,
            cd::RES2_59_52,
            cd::HWU1,
            cd::MAIR,
            cd::AMAIR,
            cd::IMPDEF,
            cd::MPAM,
            cd::RES7,
        ];
        let mut seen = [0u64; 8];
        for f in all {
            assert_eq!(seen[f.word] & f.mask(), 0, "{f:?} overlaps another field");
            seen[f.word] |= f.mask();
        }
        assert_eq!(seen, [u64::MAX; 8]);
    }

    #[test]
    fn command_and_event_fields_are_at_their_architected_bits() {
        check::<2>(&[
            (cmd::OPCODE, 0, 0xff),                // opcode, bits 7:0
            (cmd::SSEC, 0, 0x400),                 // SSec, bit 10
            (cmd::SSV, 0, 0x800),                  // SSV, bit 11
            (cmd::SSID, 0, 0xffff_f000),           // SubstreamID, bits 31:12
            (cmd::SID, 0, 0xffff_ffff_0000_0000),  // StreamID, bits 63:32
            (cmd::VMID, 0, 0xffff_0000_0000),      // VMID, bits 47:32
            (cmd::ASID, 0, 0xffff_0000_0000_0000), // ASID, bits 63:48
            (cmd::LEAF, 1, 0x1),                   // Leaf, bit 0 of word 1
            (cmd::ADDR, 1, 0xffff_ffff_ffff_f000), // Address, bits 63:12 of word 1
            (cmd::SYNC_CS, 0, 0x3000),             // CMD_SYNC CS, bits 13:12
        ]);
        check::<4>(&[
            (evt::TYPE, 0, 0xff),                 // event type, bits 7:0
            (evt::SID, 0, 0xffff_ffff_0000_0000), // StreamID, bits 63:32
            (evt::RNW, 1, 0x8_0000_0000),         // RnW, bit 35 of word 1
            (evt::S2, 1, 0x80_0000_0000),         // S2, bit 39 of word 1
            (evt::INPUT_ADDR, 2, u64::MAX),       // InputAddr, word 2
        ]);
    }

    #[test]
    fn commands_encode_as_the_architecture_says() {
        // CMD_CFGI_STE, SID 0x18, Leaf.
        assert_eq!(Command::cfgi_ste(0x18).0, [0x0000_0018_0000_0003, 1]);
        // CMD_CFGI_STE_RANGE with Range 31.
        assert_eq!(Command::cfgi_all().0, [0x04, 31]);
        // CMD_TLBI_NH_VA, VMID 2, ASID 5, VA 0x1234_5000, Leaf.
        assert_eq!(Command::tlbi_nh_va(2, 5, 0x1234_5000).0, [0x0005_0002_0000_0012, 0x1234_5001]);
        assert_eq!(Command::sync().0, [0x46, 0]);
        assert_eq!(Opcode::from_u8(0x12), Some(Opcode::TlbiNhVa));
        assert_eq!(Opcode::from_u8(0x02), Some(Opcode::PrefetchAddr));
        assert_eq!(Opcode::from_u8(0x07), None);
    }

    #[test]
    fn ste_and_cd_builders() {
        let s = Ste::default()
            .with_v(1)
            .with_config(SteConfig::Nested)
            .with_s1_context_ptr(0x4600_1000)
            .with_s2ttb(0x4030_0000);
        assert_eq!(s.0[0], 0x4600_1000 | 0xf);
        assert_eq!(s.config(), Some(SteConfig::Nested));
        assert_eq!(s.s1_context_ptr(), 0x4600_1000);
        assert_eq!(s.0[3], 0x4030_0000);
        assert_eq!(Ste::default().with_config_bits(2).config(), None);
        let c = Cd::default().with_ttb0(0x4610_0000).with_asid(7).with_v(1);
        assert_eq!(c.0[1], 0x4610_0000);
        assert_eq!(c.0[0], (7 << 48) | (1 << 31));
        let e = EventRecord([0x0000_0018_0000_0010, 1 << 39, 0x5000, 0]);
        assert_eq!(
            (e.event_type(), e.sid(), e.input_addr(), e.stage2()),
            (0x10, 0x18, 0x5000, true)
        );
        assert_eq!(event_name(e.event_type()), "F_TRANSLATION");
    }
}
