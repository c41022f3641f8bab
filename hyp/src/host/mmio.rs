//! The one MMIO emulation path: a VM's load or store to an IPA its stage-2 leaves unmapped on
//! purpose (PCI configuration space, the host's redistributor frame, and later the emulated
//! SMMU) traps as a stage-2 data abort; this module decodes the syndrome once, finds the
//! emulated device that covers the IPA, performs the access on it and writes the result back
//! to the VM's register.
//!
//! Decoding follows ESR_EL2's data-abort ISS when ISV = 1: SAS (size), SSE (sign extend), SRT
//! (register), SF (64-bit register), WnR (write). What cannot be emulated faithfully is refused
//! with a reason, and the caller injects a synchronous external abort: no syndrome (ISV = 0:
//! load/store pair, writeback, SIMD, atomics...), an access that is not naturally aligned or
//! that leaves the device, a stage-1 table walk that touched the device, cache maintenance.
//!
//! Pure and host-tested: registers come in through [`Registers`], devices are [`Device`]s.
#![forbid(unsafe_code)]

use crate::vm::esr::{Esr, ExceptionClass};
use platform::MemRange;

/// One decoded data access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// The IPA accessed.
    pub ipa: u64,
    /// Bytes: 1, 2, 4 or 8.
    pub size: u8,
    /// A store.
    pub write: bool,
    /// The general register transferred (0..=30; 31 is XZR).
    pub reg: u8,
    /// A load sign-extends into the register.
    pub sign_extend: bool,
    /// The register is 64-bit (Xn), else 32-bit (Wn).
    pub sixty_four: bool,
}

/// Why an access cannot be emulated (the VM gets an external abort).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbortReason {
    /// ESR ISV = 0: the instruction's syndrome does not describe the access.
    NoSyndrome,
    /// Not naturally aligned to its size.
    Unaligned,
    /// The access runs past the end of the device.
    Straddles,
    /// A stage-1 translation table walk touched emulated MMIO.
    TableWalk,
    /// A cache maintenance instruction on emulated MMIO.
    CacheMaintenance,
}

impl AbortReason {
    /// Every reason, for per-reason bookkeeping.
    pub const ALL: [AbortReason; 5] = [
        AbortReason::NoSyndrome,
        AbortReason::Unaligned,
        AbortReason::Straddles,
        AbortReason::TableWalk,
        AbortReason::CacheMaintenance,
    ];

    /// In words, for logs.
    pub fn describe(self) -> &'static str {
        match self {
            AbortReason::NoSyndrome => {
                "the instruction has no syndrome (ISV = 0: pair, writeback, SIMD or atomic access)"
            }
            AbortReason::Unaligned => "the access is not naturally aligned",
            AbortReason::Straddles => "the access runs past the end of the device",
            AbortReason::TableWalk => "a stage-1 table walk read emulated MMIO",
            AbortReason::CacheMaintenance => "cache maintenance on emulated MMIO",
        }
    }

    /// A small index (for "logged once" bitmaps).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// ISS bits of a data abort.
mod iss {
    pub const ISV: u64 = 1 << 24;
    pub const SAS_SHIFT: u64 = 22;
    pub const SSE: u64 = 1 << 21;
    pub const SRT_SHIFT: u64 = 16;
    pub const SF: u64 = 1 << 15;
    pub const CM: u64 = 1 << 8;
}

/// Whether a data abort is a stage-2 translation fault (levels 0..3): the kind an unmapped,
/// emulated IPA produces. Anything else (permission, access flag, external abort) is not ours.
pub fn is_translation_fault(esr: Esr) -> bool {
    esr.class() == ExceptionClass::DataAbortLower && (0x04..=0x07).contains(&esr.fsc())
}

/// Decodes the access of a stage-2 data abort at `ipa`.
pub fn decode(esr: Esr, ipa: u64) -> Result<Access, AbortReason> {
    let v = esr.0;
    if esr.s1ptw() {
        return Err(AbortReason::TableWalk);
    }
    if v & iss::CM != 0 {
        return Err(AbortReason::CacheMaintenance);
    }
    if v & iss::ISV == 0 {
        return Err(AbortReason::NoSyndrome);
    }
    let size = 1u8 << ((v >> iss::SAS_SHIFT) & 3);
    if ipa & (size as u64 - 1) != 0 {
        return Err(AbortReason::Unaligned);
    }
    Ok(Access {
        ipa,
        size,
        write: esr.is_write(),
        reg: ((v >> iss::SRT_SHIFT) & 0x1f) as u8,
        sign_extend: v & iss::SSE != 0,
        sixty_four: v & iss::SF != 0,
    })
}

/// The low `size` bytes of `v`.
pub fn truncate(v: u64, size: u8) -> u64 {
    if size >= 8 {
        v
    } else {
        v & ((1u64 << (8 * size as u32)) - 1)
    }
}

impl Access {
    /// The value a store writes: the register's low `size` bytes.
    pub fn store_value(&self, reg: u64) -> u64 {
        truncate(reg, self.size)
    }

    /// The register value after a load returned `data`: the low `size` bytes of `data`, sign
    /// extended if SSE, then limited to 32 bits for a W register (whose upper half a load
    /// zeroes).
    pub fn load_result(&self, data: u64) -> u64 {
        let bits = 8 * self.size as u32;
        let mut v = truncate(data, self.size);
        if self.sign_extend && bits < 64 && v & (1 << (bits - 1)) != 0 {
            v |= !0u64 << bits;
        }
        if self.sixty_four {
            v
        } else {
            v & 0xffff_ffff
        }
    }
}

/// The trapped VM's general registers.
pub trait Registers {
    /// Reads Xn (n < 31).
    fn get(&self, n: u8) -> u64;
    /// Writes Xn (n < 31).
    fn set(&mut self, n: u8, value: u64);
}

/// An emulated device. Offsets are from the start of its region; `size` is 1, 2, 4 or 8 and
/// the offset is a multiple of it. The device does its own locking (several CPUs may share
/// one), and decides what its registers mean: reading something it does not implement should
/// return what the hardware would (often zero, or all ones for "absent").
pub trait Device {
    /// A name for logs.
    fn name(&self) -> &'static str;
    /// A load.
    fn read(&self, offset: u64, size: u8) -> u64;
    /// A store of `value` (already truncated to `size` bytes).
    fn write(&self, offset: u64, size: u8, value: u64);
}

/// A hardware register frame behind an emulated device that filters it (the host's
/// redistributor RD frame, its distributor): 32-bit accesses at offsets from the frame's base.
/// The EL2 side implements it with volatile accesses; tests with a fake.
pub trait Frame {
    /// Reads the 32-bit register at `offset`.
    fn read32(&self, offset: u64) -> u32;
    /// Writes the 32-bit register at `offset`.
    fn write32(&self, offset: u64, value: u32);
}

/// An emulated device and the IPA range it answers at.
#[derive(Clone, Copy)]
pub struct Region<'a> {
    /// Its IPAs (absent from the VM's stage-2).
    pub range: MemRange,
    /// The device.
    pub device: &'a (dyn Device + Sync),
}

/// What became of a trapped access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done: the VM resumes after the instruction. (The device is not named: asking a
    /// `dyn Device` its name is a call on every trapped access, and nobody logs a success.)
    Emulated {
        /// The access that was performed.
        access: Access,
    },
    /// An emulated region was hit but the access cannot be emulated: inject an abort.
    Refused {
        /// Why.
        why: AbortReason,
        /// Which device.
        device: &'static str,
    },
    /// No emulated device covers the IPA: an ordinary stage-2 fault.
    NotEmulated,
}

/// Emulates a stage-2 data abort at `ipa` against `regions`, reading and writing `regs`.
pub fn emulate(regions: &[Region<'_>], esr: Esr, ipa: u64, regs: &mut dyn Registers) -> Outcome {
    if !is_translation_fault(esr) {
        return Outcome::NotEmulated;
    }
    let Some(region) = regions.iter().find(|r| r.range.contains_range(ipa, 1)) else {
        return Outcome::NotEmulated;
    };
    let access = match decode(esr, ipa) {
        Ok(a) => a,
        Err(why) => return Outcome::Refused { why, device: region.device.name() },
    };
    if !region.range.contains_range(ipa, access.size as u64) {
        return Outcome::Refused { why: AbortReason::Straddles, device: region.device.name() };
    }
    let offset = ipa - region.range.base;
    if access.write {
        let reg = if access.reg == 31 { 0 } else { regs.get(access.reg) };
        region.device.write(offset, access.size, access.store_value(reg));
    } else {
        let data = region.device.read(offset, access.size);
        if access.reg != 31 {
            regs.set(access.reg, access.load_result(data));
        }
    }
    Outcome::Emulated { access }
}

/// One register a VM stores to far more often than to anything else (the host's emulated
/// `SMMU_CMDQ_PROD`: a write per strict unmap), recognised straight from the syndrome before
/// [`emulate`]'s region search and decode. It only ever takes a store that [`emulate`] would
/// perform identically; everything else (another size, a load, another IPA, any syndrome
/// `emulate` refuses) is left to [`emulate`].
#[derive(Clone, Copy)]
pub struct HotStore<'a> {
    /// The register's IPA: a multiple of `size`, inside `device`'s region.
    ipa: u64,
    /// Its offset in that region.
    offset: u64,
    /// The store's size in bytes (1, 2, 4 or 8).
    size: u8,
    /// The ESR bits [`HotStore::MASK`] selects, as a store of `size` bytes has them.
    syndrome: u64,
    /// The device that region belongs to.
    device: &'a (dyn Device + Sync),
}

impl<'a> HotStore<'a> {
    /// The store of `size` bytes (1, 2, 4 or 8) at `offset` in `region`, if `offset` is a
    /// multiple of `size` and the store lies inside the region (as `emulate` would take it).
    pub fn at(region: &Region<'a>, offset: u64, size: u8) -> Option<HotStore<'a>> {
        let fits = offset.checked_add(size as u64).is_some_and(|end| end <= region.range.size);
        (matches!(size, 1 | 2 | 4 | 8) && offset.is_multiple_of(size as u64) && fits).then(|| {
            HotStore {
                ipa: region.range.base + offset,
                offset,
                size,
                syndrome: Self::expected(size),
                device: region.device,
            }
        })
    }
}

impl HotStore<'_> {
    /// The ESR bits [`emulate`] looks at for a store: the class, ISV, SAS, CM, S1PTW, WnR and
    /// the fault status code's kind (a translation fault, any level). SRT is the register;
    /// IL, SSE, SF, AR and the rest do not change a store.
    const MASK: u64 =
        (0x3f << 26) | iss::ISV | (3 << iss::SAS_SHIFT) | iss::CM | (1 << 7) | (1 << 6) | 0x3c;

    /// Those bits for a translation-fault store of `size` bytes from a lower EL.
    const fn expected(size: u8) -> u64 {
        (0x24 << 26)
            | iss::ISV
            | ((size.trailing_zeros() as u64) << iss::SAS_SHIFT)
            | (1 << 6)
            | 0x04
    }

    /// The register (SRT; 31 is XZR) of the store that `esr` at `ipa` describes, if it is
    /// this register's: exactly what [`emulate`] would do with it, a store of `size` bytes at
    /// `offset` of `device`.
    #[inline(always)]
    pub fn register(&self, esr: Esr, ipa: u64) -> Option<u8> {
        (esr.0 & Self::MASK == self.syndrome && ipa == self.ipa)
            .then_some(((esr.0 >> iss::SRT_SHIFT) & 0x1f) as u8)
    }

    /// Performs the store `esr` at `ipa` describes with `regs`, if it is this register's (see
    /// [`HotStore::register`]); `false` (nothing done) otherwise.
    #[inline(always)]
    pub fn emulate(&self, esr: Esr, ipa: u64, regs: &dyn Registers) -> bool {
        let Some(reg) = self.register(esr, ipa) else { return false };
        self.store(reg, regs);
        true
    }

    /// Performs the store from register `reg` (from [`HotStore::register`]) with `regs`.
    #[inline(always)]
    pub fn store(&self, reg: u8, regs: &dyn Registers) {
        let value = if reg == 31 { 0 } else { regs.get(reg) };
        self.device.write(self.offset, self.size, truncate(value, self.size));
    }
}

/// A register frame as a map, for the filters' tests: reading a register it does not hold
/// panics (as an emulator may fault), and every write is recorded.
#[cfg(test)]
pub(crate) struct FakeFrame {
    pub regs: spin::Mutex<std::collections::BTreeMap<u64, u32>>,
    pub writes: spin::Mutex<std::vec::Vec<(u64, u32)>>,
}

#[cfg(test)]
impl FakeFrame {
    /// A frame holding `regs`.
    pub fn with(regs: std::collections::BTreeMap<u64, u32>) -> FakeFrame {
        FakeFrame { regs: spin::Mutex::new(regs), writes: spin::Mutex::new(std::vec::Vec::new()) }
    }
}

#[cfg(test)]
impl Frame for FakeFrame {
    fn read32(&self, offset: u64) -> u32 {
        *self.regs.lock().get(&offset).unwrap_or_else(|| panic!("read of {offset:#x}"))
    }
    fn write32(&self, offset: u64, value: u32) {
        self.writes.lock().push((offset, value));
        self.regs.lock().insert(offset, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::RefCell;
    use std::vec::Vec;

    /// A device that remembers writes and answers reads with a fixed pattern.
    struct Recorder {
        writes: spin::Mutex<Vec<(u64, u8, u64)>>,
        reads: spin::Mutex<Vec<(u64, u8)>>,
        answer: u64,
    }

    impl Recorder {
        fn new(answer: u64) -> Self {
            Self {
                writes: spin::Mutex::new(Vec::new()),
                reads: spin::Mutex::new(Vec::new()),
                answer,
            }
        }
    }

    impl Device for Recorder {
        fn name(&self) -> &'static str {
            "recorder"
        }
        fn read(&self, offset: u64, size: u8) -> u64 {
            self.reads.lock().push((offset, size));
            self.answer
        }
        fn write(&self, offset: u64, size: u8, value: u64) {
            self.writes.lock().push((offset, size, value));
        }
    }

    struct Regs(RefCell<[u64; 31]>);

    impl Registers for Regs {
        fn get(&self, n: u8) -> u64 {
            self.0.borrow()[n as usize]
        }
        fn set(&mut self, n: u8, value: u64) {
            self.0.borrow_mut()[n as usize] = value;
        }
    }

    /// A stage-2 data abort syndrome with ISV set.
    fn esr(sas: u64, sse: bool, srt: u64, sf: bool, write: bool) -> Esr {
        Esr((0x24 << 26)
            | (1 << 25)
            | iss::ISV
            | (sas << iss::SAS_SHIFT)
            | ((sse as u64) << 21)
            | (srt << iss::SRT_SHIFT)
            | ((sf as u64) << 15)
            | ((write as u64) << 6)
            | 0x07) // translation fault, level 3
    }

    const BASE: u64 = 0x4010_0000_0000;

    fn regions(d: &(dyn Device + Sync)) -> [Region<'_>; 1] {
        [Region { range: MemRange::new(BASE, 0x1000), device: d }]
    }

    #[test]
    fn decodes_every_field() {
        let a = decode(esr(2, false, 5, false, true), BASE + 4).unwrap();
        assert_eq!(
            a,
            Access {
                ipa: BASE + 4,
                size: 4,
                write: true,
                reg: 5,
                sign_extend: false,
                sixty_four: false
            }
        );
        let a = decode(esr(3, false, 30, true, false), BASE + 8).unwrap();
        assert_eq!((a.size, a.write, a.reg, a.sixty_four), (8, false, 30, true));
        let a = decode(esr(0, true, 31, true, false), BASE + 3).unwrap();
        assert_eq!((a.size, a.sign_extend, a.reg), (1, true, 31));
        assert_eq!(decode(esr(1, false, 0, false, false), BASE + 2).unwrap().size, 2);
    }

    #[test]
    fn refuses_what_cannot_be_emulated() {
        let no_isv = Esr(esr(2, false, 0, false, false).0 & !iss::ISV);
        assert_eq!(decode(no_isv, BASE), Err(AbortReason::NoSyndrome));
        assert_eq!(decode(esr(2, false, 0, false, false), BASE + 2), Err(AbortReason::Unaligned));
        assert_eq!(decode(esr(3, false, 0, true, false), BASE + 4), Err(AbortReason::Unaligned));
        assert_eq!(decode(esr(1, false, 0, false, false), BASE + 1), Err(AbortReason::Unaligned));
        let walk = Esr(esr(3, false, 0, true, false).0 | (1 << 7));
        assert_eq!(decode(walk, BASE), Err(AbortReason::TableWalk));
        let cm = Esr(esr(3, false, 0, true, true).0 | iss::CM);
        assert_eq!(decode(cm, BASE), Err(AbortReason::CacheMaintenance));
    }

    #[test]
    fn loads_zero_or_sign_extend_into_w_and_x_registers() {
        let ld = |sas, sse, sf| decode(esr(sas, sse, 0, sf, false), BASE).unwrap();
        // LDRB w0: zero-extended byte.
        assert_eq!(ld(0, false, false).load_result(0x1234_5680), 0x80);
        // LDRSB w0: sign-extended to 32 bits only.
        assert_eq!(ld(0, true, false).load_result(0x80), 0xffff_ff80);
        // LDRSB x0: sign-extended to 64 bits.
        assert_eq!(ld(0, true, true).load_result(0x80), 0xffff_ffff_ffff_ff80);
        // LDRSH x0 of a positive half: no extension.
        assert_eq!(ld(1, true, true).load_result(0xffff_7fff), 0x7fff);
        // LDRSW x0.
        assert_eq!(ld(2, true, true).load_result(0x8000_0000), 0xffff_ffff_8000_0000);
        // LDR w0 of a device that answers 64 bits: the low word only.
        assert_eq!(ld(2, false, false).load_result(0xdead_beef_0000_0001), 1);
        // LDR x0.
        assert_eq!(ld(3, false, true).load_result(u64::MAX), u64::MAX);
        // A 64-bit load with SSE set (no such instruction, but the syndrome bit can be): there
        // is nothing to extend into.
        assert_eq!(ld(3, true, true).load_result(0x8000_0000_0000_0001), 0x8000_0000_0000_0001);
    }

    #[test]
    fn stores_take_the_low_bytes_of_the_register() {
        let st = |sas| decode(esr(sas, false, 0, true, true), BASE).unwrap();
        assert_eq!(st(0).store_value(0x1122_3344_5566_7788), 0x88);
        assert_eq!(st(1).store_value(0x1122_3344_5566_7788), 0x7788);
        assert_eq!(st(2).store_value(0x1122_3344_5566_7788), 0x5566_7788);
        assert_eq!(st(3).store_value(0x1122_3344_5566_7788), 0x1122_3344_5566_7788);
    }

    #[test]
    fn dispatches_by_ipa_and_moves_data() {
        let dev = Recorder::new(0xffff_ffff_ffff_fff0);
        let r = regions(&dev);
        let mut regs = Regs(RefCell::new([0; 31]));
        regs.0.borrow_mut()[7] = 0xaabb_ccdd_eeff_0011;
        // STRH w7, [BASE + 0x10]
        let o = emulate(&r, esr(1, false, 7, false, true), BASE + 0x10, &mut regs);
        assert!(matches!(o, Outcome::Emulated { access } if access.write && access.size == 2));
        assert_eq!(*dev.writes.lock(), [(0x10, 2, 0x0011)]);
        // LDRSH x3, [BASE + 0x20]
        emulate(&r, esr(1, true, 3, true, false), BASE + 0x20, &mut regs);
        assert_eq!(regs.get(3), 0xffff_ffff_ffff_fff0);
        assert_eq!(*dev.reads.lock(), [(0x20, 2)]);
        // STR xzr and LDR xzr: zero written, nothing changed.
        emulate(&r, esr(3, false, 31, true, true), BASE + 0x18, &mut regs);
        assert_eq!(dev.writes.lock()[1], (0x18, 8, 0));
        let before = *regs.0.borrow();
        emulate(&r, esr(3, false, 31, true, false), BASE + 0x18, &mut regs);
        assert_eq!(*regs.0.borrow(), before);
        // Outside every region: not ours.
        assert_eq!(
            emulate(&r, esr(2, false, 0, false, false), BASE + 0x1000, &mut regs),
            Outcome::NotEmulated
        );
        // A permission fault is not an emulated access.
        let perm = Esr((esr(2, false, 0, false, false).0 & !0x3f) | 0x0f);
        assert_eq!(emulate(&r, perm, BASE, &mut regs), Outcome::NotEmulated);
    }

    /// The hot store takes exactly the syndromes and IPAs for which the region search would
    /// perform the same store (the same bytes to the same offset of the same device), and
    /// nothing else: every combination of the bits `emulate` reads, and some it does not.
    #[test]
    fn hot_store_is_exactly_emulate_for_its_register() {
        const OFFSET: u64 = 0x98;
        for size in [4u8, 8] {
            let hot_dev = Recorder::new(0);
            let slow_dev = Recorder::new(0);
            let other = Recorder::new(0);
            // The hot register's region first, as the host's list has it, and another after.
            let slow = [
                Region {
                    range: MemRange::new(BASE, 0x1000),
                    device: &slow_dev as &(dyn Device + Sync),
                },
                Region { range: MemRange::new(BASE + 0x1000, 0x1000), device: &other },
            ];
            let hot_region = Region { range: MemRange::new(BASE, 0x1000), device: &hot_dev };
            let hot = HotStore::at(&hot_region, OFFSET, size).unwrap();
            let mut regs = Regs(RefCell::new(core::array::from_fn(|i| {
                0x0101_0101_0101_0101u64.wrapping_mul(i as u64 + 0xf1)
            })));
            let (mut taken, mut left) = (0, 0);
            for ec in [0x24u64, 0x25, 0x20, 0x18, 0x16] {
                for bits in 0u64..(1 << 8) {
                    for sas in 0..4u64 {
                        for fsc in [0x04u64, 0x05, 0x06, 0x07, 0x0b, 0x0f, 0x10, 0x2b, 0x3c] {
                            for srt in [5u64, 31] {
                                let bit = |n: u32| (bits >> n) & 1;
                                let e = Esr((ec << 26)
                                    | (bit(0) << 24) // ISV
                                    | (sas << iss::SAS_SHIFT)
                                    | (bit(1) << 21) // SSE
                                    | (srt << iss::SRT_SHIFT)
                                    | (bit(2) << 15) // SF
                                    | (bit(3) << 8) // CM
                                    | (bit(4) << 7) // S1PTW
                                    | (bit(5) << 6) // WnR
                                    | (bit(6) << 25) // IL
                                    | (bit(7) << 9) // EA
                                    | fsc);
                                for ipa in [
                                    BASE + OFFSET,
                                    BASE + OFFSET - 4,
                                    BASE + OFFSET + 4,
                                    BASE + OFFSET + 1,
                                    BASE + OFFSET + 2,
                                    BASE + OFFSET + 0x1000,
                                    BASE + OFFSET - 0x1000,
                                ] {
                                    hot_dev.writes.lock().clear();
                                    slow_dev.writes.lock().clear();
                                    let done = hot.emulate(e, ipa, &regs);
                                    let outcome = emulate(&slow, e, ipa, &mut regs);
                                    let same_store = matches!(outcome, Outcome::Emulated { access }
                                        if access.write && access.size == size && ipa == hot.ipa);
                                    assert_eq!(done, same_store, "{e} at {ipa:#x}, size {size}");
                                    if done {
                                        assert_eq!(*hot_dev.writes.lock(), *slow_dev.writes.lock());
                                        assert_eq!(hot_dev.writes.lock().len(), 1);
                                        taken += 1;
                                    } else {
                                        assert!(hot_dev.writes.lock().is_empty());
                                        left += 1;
                                    }
                                }
                            }
                        }
                    }
                }
            }
            // ISV, WnR, one size, 4 translation faults; SSE, SF, IL, EA free; two registers.
            assert_eq!(taken, 4 * 16 * 2, "size {size}");
            assert!(left > taken);
        }
    }

    /// A hot store is only made for an aligned store inside its region, of a size `emulate`
    /// knows.
    #[test]
    fn a_hot_store_lies_inside_its_region() {
        let dev = Recorder::new(0);
        let r = Region { range: MemRange::new(BASE, 0x1000), device: &dev };
        for (offset, size, ok) in [
            (0x98, 4, true),
            (0x98, 8, true),
            (0xffc, 4, true),
            (0xff8, 8, true),
            (0x0, 1, true),
            (0x2, 2, true),
            (0x1000, 4, false),
            (0xffc, 8, false),
            (0x9a, 4, false),
            (0x9c, 8, false),
            (0x98, 3, false),
            (0x98, 16, false),
            (0x98, 0, false),
            (u64::MAX - 3, 4, false),
        ] {
            let h = HotStore::at(&r, offset, size);
            assert_eq!(h.is_some(), ok, "{offset:#x} size {size}");
            if let Some(h) = h {
                assert_eq!((h.ipa, h.offset, h.size), (BASE + offset, offset, size));
            }
        }
    }

    #[test]
    fn refusals_touch_nothing() {
        let dev = Recorder::new(0);
        let r = regions(&dev);
        let mut regs = Regs(RefCell::new([7; 31]));
        let no_isv = Esr(esr(2, false, 0, false, false).0 & !iss::ISV);
        assert_eq!(
            emulate(&r, no_isv, BASE, &mut regs),
            Outcome::Refused { why: AbortReason::NoSyndrome, device: "recorder" }
        );
        assert_eq!(
            emulate(&r, esr(2, false, 0, false, true), BASE + 6, &mut regs),
            Outcome::Refused { why: AbortReason::Unaligned, device: "recorder" }
        );
        // An 8-byte access at the last 4 bytes cannot be aligned; one in the last 8 is inside.
        assert!(matches!(
            emulate(&r, esr(3, false, 0, true, false), BASE + 0xff8, &mut regs),
            Outcome::Emulated { .. }
        ));
        assert!(dev.writes.lock().is_empty());
        assert_eq!(regs.get(1), 7);
    }

    /// Each reason has its own index below `ALL.len()` (the EL2 side logs each reason once per
    /// VM in a bitmap indexed by it) and its own words.
    #[test]
    fn refusal_reasons_have_distinct_indices_and_words() {
        for (i, r) in AbortReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{r:?}");
            let words = r.describe();
            assert!(words.len() > 10, "{r:?}: {words}");
            assert!(AbortReason::ALL[i + 1..].iter().all(|o| o.describe() != words), "{words}");
        }
        assert!(AbortReason::NoSyndrome.describe().contains("ISV = 0"));
        assert!(AbortReason::Straddles.describe().contains("past the end"));
    }

    #[test]
    fn straddling_the_end_is_refused() {
        let dev = Recorder::new(0);
        let r = [Region { range: MemRange::new(BASE, 6), device: &dev as &(dyn Device + Sync) }];
        let mut regs = Regs(RefCell::new([0; 31]));
        assert_eq!(
            emulate(&r, esr(2, false, 0, false, false), BASE + 4, &mut regs),
            Outcome::Refused { why: AbortReason::Straddles, device: "recorder" }
        );
        assert!(dev.reads.lock().is_empty());
    }
}
