//! What an SMMU sees of the memory the CPU writes, and what the CPU sees of the records an
//! SMMU writes, when nothing forgives a missing barrier: silicon may do all of this, QEMU none
//! of it (its SMMU reads guest memory the instant a register is written).
//!
//! * The SMMU's side ([`Visible`]): the memory an SMMU reads (its command queue and stream
//!   table, every range a barrier names: a level-2 table) is watched, and what the SMMU reads
//!   there is its contents as of the CPU's last [`Barrier::Publish`]; a store after that
//!   barrier is not seen yet, and memory no barrier ever published reads as [`STALE`] (as an
//!   STE: valid, bypass). A missing barrier before a doorbell is a stale command executed; a
//!   level-1 descriptor seen before its level-2 table was published, a stale STE used.
//! * The CPU's side ([`Posted`]): an event record the SMMU writes reaches the CPU's loads only
//!   once the CPU has loaded the producer index that covers it and then executed
//!   [`Barrier::Acquire`]; before that, a load of its slot returns what was there. Records
//!   read and given back (EVENTQ_CONS) with no [`Barrier::Release`] in between are counted as
//!   torn: the CPU's loads may complete after the SMMU reused the slots, which no host test can
//!   show by behaviour (its loads run in program order), so the count is the evidence.
//!
//! A non-coherent SMMU (`non_coherent` set on both) reads and writes memory past the CPU's
//! caches, and the model follows it:
//!
//! * [`Visible`]: a barrier publishes nothing; the SMMU sees a word only once a
//!   [`Barrier::Clean`] covering its 64-byte cache line was executed after the store (a store
//!   after the last clean of its line is not seen). A missing clean is a stale command, STE or
//!   CD, exactly as a missing barrier is on a coherent SMMU.
//! * [`Posted`]: a record covered by a producer-index load and an acquire reaches the CPU's
//!   loads only once a [`Barrier::Invalidate`] covering it follows (a load before that is
//!   served by a line cached from before the SMMU wrote it: the CPU reads what was there).

use super::{MemFault, SmmuMemory};
use alloc::vec;
use alloc::vec::Vec;
use platform::regs::{Barrier, DmaRange};

/// What an SMMU reads in memory no barrier has published: every word 0x9, which as word 0 of
/// an STE is V = 1, Config = bypass (the worst stale entry there is), and as a command an
/// opcode the architecture does not define.
pub const STALE: u64 = 0x9;

/// One watched range and its published contents.
#[derive(Clone, Debug)]
struct Region {
    base: u64,
    words: Vec<u64>,
}

impl Region {
    fn end(&self) -> u64 {
        self.base + self.words.len() as u64 * 8
    }
}

/// The memory an SMMU reads, as it can see it (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct Visible {
    regions: Vec<Region>,
    /// Words the SMMU read that no barrier had published.
    pub unpublished_reads: u64,
    /// The first address of such a read.
    pub first_unpublished: Option<u64>,
    /// A non-coherent SMMU: only [`Visible::clean`] publishes, line by line.
    pub non_coherent: bool,
}

/// The cache line of the model (the smallest the architecture allows a CPU is 16 bytes; 64
/// is what every Arm core of this class has, and an STE or a CD is exactly one).
pub const LINE: u64 = 64;

impl Visible {
    /// Starts watching `r` (8-byte aligned): the SMMU sees there what the next
    /// [`Visible::publish`] finds, [`STALE`] until then. A range inside one already watched
    /// changes nothing.
    pub fn watch(&mut self, r: DmaRange) {
        let end = r.pa + r.len;
        if r.len == 0 || self.regions.iter().any(|g| g.base <= r.pa && end <= g.end()) {
            return;
        }
        self.regions.push(Region { base: r.pa, words: vec![STALE; (r.len / 8) as usize] });
    }

    /// Whether `addr` is watched.
    pub fn watches(&self, addr: u64) -> bool {
        self.region(addr).is_some()
    }

    /// A [`Barrier::Publish`]: every watched range takes what `mem` holds now (every store the
    /// CPU made before the barrier is visible, on a coherent SMMU, wherever it went).
    /// On a non-coherent SMMU, nothing: the caches still hold what the CPU wrote.
    pub fn publish(&mut self, mem: &mut dyn SmmuMemory) {
        if self.non_coherent {
            return;
        }
        for g in &mut self.regions {
            mem.read(g.base, &mut g.words).expect("a watched range is memory");
        }
    }

    /// A [`Barrier::Clean`] of `r` on a non-coherent SMMU: every watched word of the cache
    /// lines `r` touches takes what `mem` holds now (in every watched range holding it). On a
    /// coherent SMMU, nothing (the barrier publishes).
    pub fn clean(&mut self, r: DmaRange, mem: &mut dyn SmmuMemory) {
        if !self.non_coherent || r.len == 0 {
            return;
        }
        let start = r.pa & !(LINE - 1);
        let end = (r.pa + r.len).next_multiple_of(LINE);
        for g in &mut self.regions {
            let (lo, hi) = (start.max(g.base), end.min(g.end()));
            if lo < hi {
                let first = ((lo - g.base) / 8) as usize;
                let words = &mut g.words[first..first + ((hi - lo) / 8) as usize];
                mem.read(lo, words).expect("a watched range is memory");
            }
        }
    }

    fn region(&self, addr: u64) -> Option<&Region> {
        self.regions.iter().find(|g| g.base <= addr && addr < g.end())
    }

    /// Reads `out.len()` words at `addr` as the SMMU sees them; `false` if any of them was never
    /// published (it reads [`STALE`]). Counts nothing ([`Visible::view`] does).
    pub fn read(&self, addr: u64, out: &mut [u64]) -> bool {
        let mut published = true;
        for (i, w) in out.iter_mut().enumerate() {
            let a = addr + i as u64 * 8;
            *w = match self.region(a) {
                Some(g) => g.words[((a - g.base) / 8) as usize],
                None => {
                    published = false;
                    STALE
                }
            };
        }
        published
    }

    /// The SMMU's reads through [`SmmuMemory`], counting those of unpublished memory. It
    /// writes nothing (an SMMU's own writes go to memory: [`Posted`]).
    pub fn view(&mut self) -> View<'_> {
        View(self)
    }
}

/// [`Visible`] as the memory an SMMU reads.
pub struct View<'a>(&'a mut Visible);

impl SmmuMemory for View<'_> {
    fn read(&mut self, addr: u64, out: &mut [u64]) -> Result<(), MemFault> {
        if !self.0.read(addr, out) {
            self.0.unpublished_reads += 1;
            self.0.first_unpublished.get_or_insert(addr);
        }
        Ok(())
    }
    fn write(&mut self, addr: u64, _: &[u64]) -> Result<(), MemFault> {
        Err(MemFault { addr })
    }
}

/// Event records an SMMU wrote, as the CPU can see them (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct Posted {
    /// Records written and not yet visible to the CPU's loads: (address, words).
    records: Vec<(u64, Vec<u64>)>,
    /// How many of them a producer-index load has covered.
    covered: usize,
    /// Records became visible (an acquire) since EVENTQ_CONS was last written.
    acquired: bool,
    /// A release followed that acquire.
    released: bool,
    /// EVENTQ_CONS writes that gave back records with no release after their loads.
    pub torn: u64,
    /// A non-coherent SMMU: acquired records still wait for an invalidate.
    pub non_coherent: bool,
    /// Records acquired on a non-coherent SMMU, not yet invalidated: in memory, but the CPU's
    /// caches may serve its loads of their slots from before.
    acquired_records: Vec<(u64, Vec<u64>)>,
}

impl Posted {
    /// The memory the SMMU writes a record through ([`super::SoftSmmu::post_event`]): held here
    /// until the CPU may see it.
    pub fn capture(&mut self) -> Capture<'_> {
        Capture(self)
    }

    /// The CPU loaded the producer index: every record written so far is covered by it.
    pub fn index_loaded(&mut self) {
        self.covered = self.records.len();
    }

    /// The CPU executed barrier `b`: after [`Barrier::Acquire`], the covered records are in
    /// `mem` (the CPU's loads see them).
    pub fn barrier(&mut self, b: Barrier, mem: &mut dyn SmmuMemory) {
        match b {
            Barrier::Acquire => {
                for (addr, words) in self.records.drain(..self.covered) {
                    if self.non_coherent {
                        self.acquired_records.push((addr, words));
                    } else {
                        mem.write(addr, &words).expect("the event queue is memory");
                    }
                }
                self.covered = 0;
                self.acquired = true;
                self.released = false;
            }
            Barrier::Release => self.released = true,
            Barrier::Invalidate(r) if self.non_coherent => {
                let start = r.pa & !(LINE - 1);
                let end = (r.pa + r.len).next_multiple_of(LINE);
                // In the order the SMMU wrote them: a later record in the same slot wins.
                self.acquired_records.retain(|(addr, words)| {
                    let inside = start <= *addr && *addr + words.len() as u64 * 8 <= end;
                    if inside {
                        mem.write(*addr, words).expect("the event queue is memory");
                    }
                    !inside
                });
            }
            Barrier::Publish(_) | Barrier::Clean(_) | Barrier::Invalidate(_) => {}
        }
    }

    /// The CPU wrote EVENTQ_CONS (the slots before it are the SMMU's again).
    pub fn cons_written(&mut self) {
        if self.acquired && !self.released {
            self.torn += 1;
        }
        self.acquired = false;
        self.released = false;
    }

    /// The SMMU lost power: records not yet seen are gone with the queue.
    pub fn clear(&mut self) {
        self.records.clear();
        self.acquired_records.clear();
        self.covered = 0;
    }

    /// The last record written is overwritten in memory by a dirty line of the CPU's written
    /// back (a non-coherent event queue the CPU zeroed and never cleaned): it never reaches
    /// the CPU, which reads what it had written there.
    pub fn lose_last(&mut self) {
        self.records.pop();
        self.covered = self.covered.min(self.records.len());
    }

    /// Records written that the CPU cannot see yet.
    pub fn pending(&self) -> usize {
        self.records.len() + self.acquired_records.len()
    }
}

/// [`Posted`] as the memory an SMMU writes records to.
pub struct Capture<'a>(&'a mut Posted);

impl SmmuMemory for Capture<'_> {
    fn read(&mut self, addr: u64, _: &mut [u64]) -> Result<(), MemFault> {
        Err(MemFault { addr })
    }
    fn write(&mut self, addr: u64, data: &[u64]) -> Result<(), MemFault> {
        self.0.records.push((addr, data.to_vec()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Word-addressed memory.
    #[derive(Default)]
    struct Mem(BTreeMap<u64, u64>);
    impl SmmuMemory for Mem {
        fn read(&mut self, addr: u64, out: &mut [u64]) -> Result<(), MemFault> {
            for (i, w) in out.iter_mut().enumerate() {
                *w = *self.0.get(&(addr + i as u64 * 8)).unwrap_or(&0);
            }
            Ok(())
        }
        fn write(&mut self, addr: u64, data: &[u64]) -> Result<(), MemFault> {
            for (i, w) in data.iter().enumerate() {
                self.0.insert(addr + i as u64 * 8, *w);
            }
            Ok(())
        }
    }

    fn range(pa: u64, len: u64) -> DmaRange {
        DmaRange { pa, len }
    }

    #[test]
    fn the_smmu_sees_a_store_only_after_a_barrier() {
        let (mut v, mut m) = (Visible::default(), Mem::default());
        m.write(0x1000, &[1, 2]).unwrap();
        v.watch(range(0x1000, 32));
        let mut w = [0; 2];
        assert!(v.read(0x1000, &mut w), "watched");
        assert_eq!(w, [STALE; 2], "not published yet");
        v.publish(&mut m);
        assert!(v.read(0x1000, &mut w));
        assert_eq!(w, [1, 2]);
        // A store after the barrier is not seen until the next one.
        m.write(0x1008, &[7]).unwrap();
        v.read(0x1000, &mut w);
        assert_eq!(w, [1, 2]);
        v.publish(&mut m);
        v.read(0x1008, &mut w);
        assert_eq!(w, [7, 0], "the last word of the range, then the next");
        v.read(0x1018, &mut w[..1]);
        assert_eq!(w[0], 0, "the range's last word");
        assert_eq!((v.unpublished_reads, v.first_unpublished), (0, None), "read counts nothing");
    }

    #[test]
    fn memory_no_barrier_published_reads_stale_and_is_counted() {
        let (mut v, mut m) = (Visible::default(), Mem::default());
        m.write(0x2000, &[5; 4]).unwrap();
        v.watch(range(0x1000, 16));
        v.publish(&mut m);
        assert!(!v.watches(0x2000) && v.watches(0x1008) && !v.watches(0x1010));
        assert!(!v.watches(0xff8));
        let mut w = [0; 3];
        assert!(!v.read(0x1008, &mut w), "the last word is watched, the next two are not");
        assert_eq!(w, [0, STALE, STALE]);
        let mut view = v.view();
        view.read(0x2000, &mut w).unwrap();
        view.read(0x1000, &mut w[..2]).unwrap();
        view.read(0x2008, &mut w).unwrap();
        assert_eq!(view.write(0x1000, &[1]), Err(MemFault { addr: 0x1000 }));
        assert_eq!((v.unpublished_reads, v.first_unpublished), (2, Some(0x2000)));
        // Watched later (a barrier naming it): published from then on.
        v.watch(range(0x2000, 32));
        v.publish(&mut m);
        assert!(v.read(0x2000, &mut w));
        assert_eq!(w, [5; 3]);
    }

    #[test]
    fn a_range_inside_a_watched_one_is_not_watched_twice() {
        let (mut v, mut m) = (Visible::default(), Mem::default());
        v.watch(range(0x1000, 64));
        v.watch(range(0x1000, 64));
        v.watch(range(0x1020, 32));
        v.watch(range(0x1000, 0));
        v.watch(range(0x3000, 0));
        assert_eq!(v.regions.len(), 1);
        // One that goes beyond it is a range of its own; the first one containing an address
        // answers for it.
        v.watch(range(0x1020, 64));
        assert_eq!(v.regions.len(), 2);
        m.write(0x1040, &[3]).unwrap();
        v.publish(&mut m);
        let mut w = [0];
        assert!(v.read(0x1058, &mut w) && v.read(0x1040, &mut w));
        assert_eq!(w, [3]);
        assert!(!v.watches(0x1060));
    }

    #[test]
    fn a_record_reaches_the_cpu_after_its_index_and_an_acquire() {
        let (mut p, mut m) = (Posted::default(), Mem::default());
        m.write(0x8000, &[0xdead; 4]).unwrap();
        p.capture().write(0x8000, &[1, 2, 3, 4]).unwrap();
        assert_eq!(p.capture().read(0x8000, &mut [0]), Err(MemFault { addr: 0x8000 }));
        assert_eq!(p.pending(), 1);
        // An acquire before the index is loaded shows nothing.
        p.barrier(Barrier::Acquire, &mut m);
        assert_eq!(m.0[&0x8000], 0xdead);
        p.index_loaded();
        p.capture().write(0x8020, &[5, 6, 7, 8]).unwrap();
        p.barrier(Barrier::Publish(range(0, 8)), &mut m);
        p.barrier(Barrier::Release, &mut m);
        assert_eq!(m.0[&0x8000], 0xdead, "a publish or a release is no acquire");
        p.barrier(Barrier::Acquire, &mut m);
        assert_eq!((m.0[&0x8000], m.0[&0x8018]), (1, 4), "the covered record");
        assert_eq!(m.0.get(&0x8020), None, "not the one written after the index was loaded");
        assert_eq!(p.pending(), 1);
        p.index_loaded();
        p.barrier(Barrier::Acquire, &mut m);
        assert_eq!(m.0[&0x8020], 5);
        assert_eq!(p.pending(), 0);
        // Power lost: records not yet seen are gone.
        p.capture().write(0x8040, &[9; 4]).unwrap();
        p.index_loaded();
        p.clear();
        p.barrier(Barrier::Acquire, &mut m);
        assert_eq!(m.0.get(&0x8040), None);
    }

    #[test]
    fn a_non_coherent_smmu_sees_a_store_only_after_a_clean_of_its_line() {
        let (mut v, mut m) = (Visible { non_coherent: true, ..Visible::default() }, Mem::default());
        v.watch(range(0x1000, 256));
        m.write(0x1000, &[1; 32]).unwrap();
        v.publish(&mut m);
        let mut w = [0; 32];
        v.read(0x1000, &mut w);
        assert_eq!(w, [STALE; 32], "a barrier publishes nothing");
        // One word named: its whole 64-byte line, and no other.
        v.clean(range(0x1048, 8), &mut m);
        v.read(0x1000, &mut w);
        assert_eq!(w[..8], [STALE; 8]);
        assert_eq!(w[8..16], [1; 8], "the line of 0x1048");
        assert_eq!(w[16..], [STALE; 16]);
        // A range across a line boundary: both lines.
        v.clean(range(0x10b8, 16), &mut m);
        v.read(0x1000, &mut w);
        assert_eq!(w[16..], [1; 16]);
        // A store after the clean is not seen until its line is cleaned again.
        m.write(0x1008, &[7]).unwrap();
        m.write(0x1040, &[8]).unwrap();
        v.clean(range(0x1000, 8), &mut m);
        v.read(0x1000, &mut w[..9]);
        assert_eq!(w[..9], [1, 7, 1, 1, 1, 1, 1, 1, 1]);
        // An empty range cleans nothing; memory outside every watched range stays unseen.
        v.clean(range(0x1040, 0), &mut m);
        v.clean(range(0x3000, 64), &mut m);
        v.read(0x1040, &mut w[..1]);
        assert_eq!(w[0], 1);
        assert!(!v.watches(0x3000));
        // Every watched range holding a cleaned word takes it.
        v.watch(range(0x1100, 64));
        v.watch(range(0x10c0, 128));
        m.write(0x1100, &[9]).unwrap();
        v.clean(range(0x1100, 8), &mut m);
        assert_eq!(v.regions[1].words[0], 9);
        assert_eq!(v.regions[2].words[8], 9);
        // On a coherent SMMU a clean publishes nothing by itself (the barrier does).
        let (mut v, mut m) = (Visible::default(), Mem::default());
        v.watch(range(0x1000, 64));
        m.write(0x1000, &[4]).unwrap();
        v.clean(range(0x1000, 64), &mut m);
        v.read(0x1000, &mut w[..1]);
        assert_eq!(w[0], STALE);
    }

    #[test]
    fn a_non_coherent_record_reaches_the_cpu_after_its_acquire_and_an_invalidate() {
        let (mut p, mut m) = (Posted { non_coherent: true, ..Posted::default() }, Mem::default());
        m.write(0x8000, &[0xdead; 8]).unwrap();
        p.capture().write(0x8000, &[1, 2, 3, 4]).unwrap();
        p.capture().write(0x8020, &[5, 6, 7, 8]).unwrap();
        // An invalidate before the index is loaded and acquired shows nothing.
        p.barrier(Barrier::Invalidate(range(0x8000, 64)), &mut m);
        p.index_loaded();
        p.barrier(Barrier::Invalidate(range(0x8000, 64)), &mut m);
        assert_eq!(m.0[&0x8000], 0xdead);
        p.barrier(Barrier::Acquire, &mut m);
        assert_eq!(m.0[&0x8000], 0xdead, "acquired, but served from a stale line");
        assert_eq!(p.pending(), 2);
        // Only the records inside the lines invalidated: the first one's line (0x8000..0x8040
        // holds both records: a record is half a line).
        p.barrier(Barrier::Invalidate(range(0x8000, 8)), &mut m);
        assert_eq!((m.0[&0x8000], m.0[&0x8020], m.0[&0x8038]), (1, 5, 8));
        assert_eq!(p.pending(), 0);
        // A record in another line stays unseen.
        p.capture().write(0x8040, &[9; 4]).unwrap();
        p.index_loaded();
        p.barrier(Barrier::Acquire, &mut m);
        p.barrier(Barrier::Invalidate(range(0x8000, 64)), &mut m);
        assert_eq!(m.0.get(&0x8040), None);
        p.barrier(Barrier::Clean(range(0x8040, 64)), &mut m);
        p.barrier(Barrier::Publish(range(0x8040, 64)), &mut m);
        assert_eq!(m.0.get(&0x8040), None, "a clean or a publish is no invalidate");
        // A later record in the same slot wins.
        p.capture().write(0x8040, &[10; 4]).unwrap();
        p.index_loaded();
        p.barrier(Barrier::Acquire, &mut m);
        p.barrier(Barrier::Invalidate(range(0x8040, 32)), &mut m);
        assert_eq!(m.0[&0x8040], 10);
        // Power lost: acquired records not yet invalidated are gone; a lost record never
        // comes.
        p.capture().write(0x8060, &[11; 4]).unwrap();
        p.index_loaded();
        p.barrier(Barrier::Acquire, &mut m);
        p.clear();
        p.capture().write(0x8000, &[12; 4]).unwrap();
        p.index_loaded();
        p.lose_last();
        p.barrier(Barrier::Acquire, &mut m);
        p.barrier(Barrier::Invalidate(range(0x8000, 128)), &mut m);
        assert_eq!((m.0.get(&0x8060), m.0[&0x8000]), (None, 1));
        assert_eq!(p.pending(), 0);
    }

    #[test]
    fn records_given_back_without_a_release_are_torn() {
        let (mut p, mut m) = (Posted::default(), Mem::default());
        // Nothing read: a CONS write (an overflow acknowledged) tears nothing.
        p.cons_written();
        assert_eq!(p.torn, 0);
        p.barrier(Barrier::Acquire, &mut m);
        p.barrier(Barrier::Release, &mut m);
        p.cons_written();
        assert_eq!(p.torn, 0);
        p.barrier(Barrier::Acquire, &mut m);
        p.cons_written();
        assert_eq!(p.torn, 1);
        // A release before the records' acquire does not order their loads.
        p.barrier(Barrier::Release, &mut m);
        p.barrier(Barrier::Acquire, &mut m);
        p.cons_written();
        assert_eq!(p.torn, 2);
        // Each CONS write ends a drain.
        p.cons_written();
        assert_eq!(p.torn, 2);
    }
}
