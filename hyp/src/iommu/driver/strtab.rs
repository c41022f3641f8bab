//! The stream table in hypervisor memory, linear or two-level: the only copy of every STE.
//!
//! It is memory only: it survives SMMU power-off, and changing it never touches a register.
//! The driver points the SMMU at it ([`StreamTable::base_and_cfg`]); the service writes STEs in
//! hitless order and asks the driver for CFGI_STE + SYNC between the steps. On a non-coherent
//! SMMU every write the SMMU may read is cleaned to the point of coherency first: a new
//! level-2 table before its level-1 descriptor, that descriptor, and each step of an STE's
//! update before its CFGI_STE ([`StreamTable::clean_ste`]).

use super::dmabuf::DmaBuf;
use super::order::{Coherency, DmaRange, Published, SmmuBarriers};
use super::ste::{self, SteWords};
use alloc::vec::Vec;
use host_abi::smmu::regs::{strtab_cfg, BASE_RA, STRTAB_ADDR_MASK};

/// log2 of the number of STEs in one level-2 table of a two-level stream table.
pub const STRTAB_SPLIT: u32 = 8;
/// A linear stream table is used up to this many SID bits (256 STEs, 16 KiB).
pub const LINEAR_MAX_BITS: u32 = 8;

/// Why an STE cannot be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SteError {
    /// The stream ID is beyond the table.
    OutOfRange,
    /// Its level-2 table does not exist (and was not to be allocated).
    NoLevel2,
    /// The heap could not hold a level-2 table.
    OutOfMemory,
}

impl core::fmt::Display for SteError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            SteError::OutOfRange => "stream ID beyond the stream table",
            SteError::NoLevel2 => "no level-2 stream table for the stream",
            SteError::OutOfMemory => "no memory for a level-2 stream table",
        })
    }
}

/// What [`StreamTable::ensure`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Ensured {
    /// The STE existed already.
    Existing,
    /// Its level-2 table was just allocated (all abort) and its level-1 descriptor written:
    /// the SMMU may hold a stale "invalid" view of the span until CFGI_STE + SYNC.
    NewLevel2,
}

#[derive(Debug)]
enum Layout {
    Linear(DmaBuf),
    TwoLevel { l1: DmaBuf, l2: Vec<Option<DmaBuf>> },
}

/// The stream table.
#[derive(Debug)]
pub struct StreamTable {
    layout: Layout,
    bits: u32,
    /// Whether what is written must be cleaned before the SMMU may read it.
    coherency: Coherency,
    /// 64-bit STE word stores so far.
    pub word_writes: u64,
}

impl StreamTable {
    /// A table for stream IDs up to `max_sid`, every STE abort: linear up to
    /// [`LINEAR_MAX_BITS`] (or when the SMMU has no two-level tables), two-level above, with
    /// level-2 tables allocated on first use; written for an SMMU of `coherency`.
    pub fn new(max_sid: u32, two_level_supported: bool, coherency: Coherency) -> Option<Self> {
        let bits = (32 - max_sid.leading_zeros()).max(1);
        let layout = if bits > LINEAR_MAX_BITS && two_level_supported {
            let n = 1usize << (bits - STRTAB_SPLIT);
            let l1 = DmaBuf::new(n * 8, (n * 8).max(64))?;
            Layout::TwoLevel { l1, l2: (0..n).map(|_| None).collect() }
        } else {
            Layout::Linear(abort_table(1usize << bits)?)
        };
        Some(Self { layout, bits, coherency, word_writes: 0 })
    }

    /// SID bits covered.
    pub fn sid_bits(&self) -> u32 {
        self.bits
    }

    /// Whether the table is two-level.
    pub fn is_two_level(&self) -> bool {
        matches!(self.layout, Layout::TwoLevel { .. })
    }

    /// SMMU_STRTAB_BASE and SMMU_STRTAB_BASE_CFG for this table.
    pub fn base_and_cfg(&self) -> (u64, u32) {
        match &self.layout {
            Layout::Linear(t) => (
                BASE_RA | (t.pa() & STRTAB_ADDR_MASK),
                strtab_cfg::FMT_LINEAR | strtab_cfg::log2size(self.bits),
            ),
            Layout::TwoLevel { l1, .. } => (
                BASE_RA | (l1.pa() & STRTAB_ADDR_MASK),
                strtab_cfg::FMT_2LVL
                    | strtab_cfg::split(STRTAB_SPLIT)
                    | strtab_cfg::log2size(self.bits),
            ),
        }
    }

    /// The memory SMMU_STRTAB_BASE points at: the linear table, or the level-1 table (each
    /// level-2 table is published on its own when it is linked, [`StreamTable::ensure`]).
    pub fn range(&self) -> DmaRange {
        match &self.layout {
            Layout::Linear(t) => t.range(),
            Layout::TwoLevel { l1, .. } => l1.range(),
        }
    }

    fn slot(&mut self, sid: u32) -> Result<(&mut DmaBuf, usize), SteError> {
        if sid >> self.bits != 0 {
            return Err(SteError::OutOfRange);
        }
        match &mut self.layout {
            Layout::Linear(t) => Ok((t, sid as usize * 8)),
            Layout::TwoLevel { l2, .. } => {
                let t = l2[(sid >> STRTAB_SPLIT) as usize].as_mut().ok_or(SteError::NoLevel2)?;
                Ok((t, (sid as usize & ((1 << STRTAB_SPLIT) - 1)) * 8))
            }
        }
    }

    /// Makes sure STE `sid` exists: allocates its level-2 table (every STE abort), cleans and
    /// publishes it (barriers through `b`, whatever the SMMU's power) and only then writes (and
    /// cleans) the level-1 descriptor that makes it reachable, if needed.
    pub fn ensure(&mut self, sid: u32, b: &mut dyn SmmuBarriers) -> Result<Ensured, SteError> {
        if sid >> self.bits != 0 {
            return Err(SteError::OutOfRange);
        }
        let Layout::TwoLevel { l1, l2 } = &mut self.layout else {
            return Ok(Ensured::Existing);
        };
        let i = (sid >> STRTAB_SPLIT) as usize;
        if l2[i].is_some() {
            return Ok(Ensured::Existing);
        }
        let t = abort_table(1usize << STRTAB_SPLIT).ok_or(SteError::OutOfMemory)?;
        clean_level2(self.coherency, &t, b);
        let published = publish_level2(&t, b);
        link(l1, i, &t, published);
        clean_level1_descriptor(self.coherency, l1, i, b);
        l2[i] = Some(t);
        Ok(Ensured::NewLevel2)
    }

    /// On a non-coherent SMMU, cleans STE `sid` (one 64-byte line: every word a step of its
    /// update wrote) to the point of coherency: before each CFGI_STE of the update, and after
    /// the last step when the SMMU is off (its resume invalidates every STE, then reads them).
    /// Nothing on a coherent SMMU, or for a stream the table does not hold.
    #[inline(always)]
    pub fn clean_ste(&mut self, sid: u32, b: &mut (impl SmmuBarriers + ?Sized)) {
        if self.coherency == Coherency::Coherent {
            return;
        }
        if let Ok((buf, base)) = self.slot(sid) {
            b.barrier(super::order::Barrier::Clean(buf.words(base, 8)));
        }
    }

    /// STE `sid` (abort if it has no level-2 table or is out of range).
    pub fn read(&mut self, sid: u32) -> SteWords {
        let mut out = ste::ABORT_WORDS;
        if let Ok((buf, base)) = self.slot(sid) {
            for (w, o) in out.iter_mut().enumerate() {
                *o = buf.read(base + w);
            }
        }
        out
    }

    /// Writes word `word` of STE `sid` (one 64-bit store). The caller orders these stores and
    /// the CFGI_STE + SYNC between them so the update is hitless.
    pub fn write_word(&mut self, sid: u32, word: usize, value: u64) -> Result<(), SteError> {
        assert!(word < 8);
        let (buf, base) = self.slot(sid)?;
        buf.write(base + word, value);
        self.word_writes += 1;
        Ok(())
    }
}

/// A new level-2 table, complete (every STE abort), in memory past the CPU's caches before it
/// is published (a non-coherent SMMU walks it there).
fn clean_level2(coherency: Coherency, t: &DmaBuf, b: &mut dyn SmmuBarriers) {
    coherency.clean(b, t.range());
}

/// Level-1 descriptor `i`, just written, in memory past the CPU's caches: the CFGI_STE that
/// follows (or a device's transaction) makes a non-coherent SMMU walk it there.
fn clean_level1_descriptor(coherency: Coherency, l1: &DmaBuf, i: usize, b: &mut dyn SmmuBarriers) {
    coherency.clean(b, l1.words(i, 1));
}

/// A new level-2 table, complete (every STE abort), observed by the SMMU before the level-1
/// descriptor that makes it reachable: a device's transaction may walk the table as soon as
/// that descriptor is visible, without any command.
fn publish_level2(t: &DmaBuf, b: &mut dyn SmmuBarriers) -> Published {
    t.publish(b)
}

/// Writes level-1 descriptor `i` pointing at the published level-2 table `t`. L1STD: SPAN
/// (bits 4:0) = SPLIT + 1, L2Ptr (bits 51:6).
fn link(l1: &mut DmaBuf, i: usize, t: &DmaBuf, _: Published) {
    l1.write(i, (t.pa() & STRTAB_ADDR_MASK) | (STRTAB_SPLIT as u64 + 1));
}

fn abort_table(entries: usize) -> Option<DmaBuf> {
    let bytes = 64 * entries;
    let mut t = DmaBuf::new(bytes, bytes)?;
    for sid in 0..entries {
        t.write(sid * 8, ste::ABORT_WORDS[0]);
    }
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iommu::driver::order::Barrier;
    use std::vec::Vec;

    /// Barriers asked for, in order.
    #[derive(Default)]
    struct Barriers(Vec<Barrier>);
    impl SmmuBarriers for Barriers {
        fn barrier(&mut self, b: Barrier) {
            self.0.push(b);
        }
    }

    #[test]
    fn errors_say_what_went_wrong() {
        use std::string::ToString;
        assert_eq!(SteError::OutOfRange.to_string(), "stream ID beyond the stream table");
        assert_eq!(SteError::NoLevel2.to_string(), "no level-2 stream table for the stream");
        assert_eq!(SteError::OutOfMemory.to_string(), "no memory for a level-2 stream table");
    }

    #[test]
    fn linear_tables_start_all_abort() {
        let mut t = StreamTable::new(0x20, true, Coherency::Coherent).unwrap();
        let mut b = Barriers::default();
        assert!(!t.is_two_level());
        assert_eq!(t.sid_bits(), 6);
        for sid in 0..64 {
            assert_eq!(t.read(sid), ste::ABORT_WORDS);
        }
        assert_eq!(t.ensure(5, &mut b), Ok(Ensured::Existing));
        assert_eq!(t.write_word(64, 0, 0), Err(SteError::OutOfRange));
        assert_eq!(t.ensure(64, &mut b), Err(SteError::OutOfRange));
        assert_eq!(t.write_word(63, 1, 0xabc), Ok(()));
        assert_eq!(t.read(63)[1], 0xabc);
        assert_eq!(t.word_writes, 1);
        let (base, cfg) = t.base_and_cfg();
        assert_eq!(cfg, 6);
        assert_eq!(base & BASE_RA, BASE_RA);
        assert_eq!(t.range(), DmaRange { pa: base & STRTAB_ADDR_MASK, len: 64 * 64 });
        assert!(b.0.is_empty(), "a linear table links nothing");
    }

    #[test]
    fn two_level_tables_allocate_on_demand() {
        let mut t = StreamTable::new(0x3ff, true, Coherency::Coherent).unwrap();
        let mut b = Barriers::default();
        assert!(t.is_two_level());
        assert_eq!(t.range().len, 4 * 8, "four level-1 descriptors");
        assert_eq!(t.base_and_cfg().1, strtab_cfg::FMT_2LVL | strtab_cfg::split(8) | 10);
        assert_eq!(t.write_word(0x123, 0, 1), Err(SteError::NoLevel2));
        assert_eq!(t.read(0x123), ste::ABORT_WORDS);
        assert_eq!(t.ensure(0x123, &mut b), Ok(Ensured::NewLevel2));
        // The new level-2 table, all abort, published before the descriptor that points at it
        // (which names it).
        let l1 = t.range().pa as *const u64;
        // SAFETY: the level-1 table is live, aligned and four words long.
        let desc = unsafe { l1.add(1).read_volatile() };
        assert_eq!(desc & 0x1f, 9, "SPAN: 256 STEs");
        let l2 = DmaRange { pa: desc & STRTAB_ADDR_MASK, len: 256 * 64 };
        assert_eq!(b.0, [Barrier::Publish(l2)]);
        assert_eq!(t.ensure(0x1ff, &mut b), Ok(Ensured::Existing), "same span");
        assert_eq!(b.0.len(), 1, "nothing more to publish");
        assert_eq!(t.read(0x1ff), ste::ABORT_WORDS);
        assert_eq!(t.write_word(0x123, 1, 0xabc), Ok(()));
        assert_eq!(t.read(0x123)[1], 0xabc);
        assert_eq!(t.ensure(0x400, &mut b), Err(SteError::OutOfRange));
        // Without two-level support the table stays linear.
        assert!(!StreamTable::new(0x3ff, false, Coherency::Coherent).unwrap().is_two_level());
    }

    #[test]
    fn a_non_coherent_table_cleans_the_level2_table_its_descriptor_and_each_ste() {
        let mut t = StreamTable::new(0x3ff, true, Coherency::NonCoherent).unwrap();
        let mut b = Barriers::default();
        assert_eq!(t.ensure(0x123, &mut b), Ok(Ensured::NewLevel2));
        let l1 = t.range().pa;
        // SAFETY: the level-1 table is live, aligned and four words long.
        let desc = unsafe { (l1 as *const u64).add(1).read_volatile() };
        let l2 = DmaRange { pa: desc & STRTAB_ADDR_MASK, len: 256 * 64 };
        let descriptor = DmaRange { pa: l1 + 8, len: 8 };
        // The table cleaned and published before the descriptor, then the descriptor cleaned.
        assert_eq!(b.0, [Barrier::Clean(l2), Barrier::Publish(l2), Barrier::Clean(descriptor)]);
        b.0.clear();
        t.clean_ste(0x123, &mut b);
        assert_eq!(b.0, [Barrier::Clean(DmaRange { pa: l2.pa + 0x23 * 64, len: 64 })]);
        // Nothing for a stream without a level-2 table or beyond the table.
        t.clean_ste(0x3ff, &mut b);
        t.clean_ste(0x400, &mut b);
        assert_eq!(b.0.len(), 1);
        // A coherent table cleans nothing.
        let mut t = StreamTable::new(0x3ff, true, Coherency::Coherent).unwrap();
        let mut b = Barriers::default();
        assert_eq!(t.ensure(0x123, &mut b), Ok(Ensured::NewLevel2));
        t.clean_ste(0x123, &mut b);
        assert!(b.0.iter().all(|b| matches!(b, Barrier::Publish(_))), "{:?}", b.0);
    }
}
