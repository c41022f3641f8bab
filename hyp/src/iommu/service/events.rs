//! Routing of SMMU event records to the VM that owns the stream, through a bounded ring per VM.
//!
//! A full ring drops the newest record and counts it against its own VM only, so a VM that
//! never reads its events cannot make the hypervisor allocate or block, nor cost another VM a
//! record. When the SMMU itself discarded records (its event queue overflowed, or an event
//! write aborted), nobody can know whose they were: every VM that could have lost one is told.

use super::streams::Streams;
use crate::iommu::driver::smmu::EventWords;
use alloc::vec::Vec;

/// Records kept per VM.
pub const RING_CAPACITY: usize = 64;

/// The stream ID of an event record (word 0, bits 63:32).
pub const fn event_sid(e: &EventWords) -> u32 {
    (e[0] >> 32) as u32
}

/// A bounded FIFO of event records.
#[derive(Debug)]
pub struct EventRing {
    buf: [EventWords; RING_CAPACITY],
    head: usize,
    len: usize,
    /// Records dropped because the ring was full.
    pub overflows: u64,
    /// Records ever routed here.
    pub routed: u64,
    /// Times the SMMU discarded records (queue overflow or write abort) while this VM had a
    /// stream that could fault: each time, an unknown number of its records may be missing.
    pub lost_notices: u64,
}

impl Default for EventRing {
    fn default() -> Self {
        Self::new()
    }
}

impl EventRing {
    /// An empty ring.
    pub const fn new() -> Self {
        Self {
            buf: [[0; 4]; RING_CAPACITY],
            head: 0,
            len: 0,
            overflows: 0,
            routed: 0,
            lost_notices: 0,
        }
    }

    /// Appends a record, or counts an overflow if full.
    pub fn push(&mut self, e: EventWords) {
        self.routed += 1;
        if self.len == RING_CAPACITY {
            self.overflows += 1;
            return;
        }
        self.buf[(self.head + self.len) % RING_CAPACITY] = e;
        self.len += 1;
    }

    /// Takes the oldest record.
    pub fn pop(&mut self) -> Option<EventWords> {
        if self.len == 0 {
            return None;
        }
        let e = self.buf[self.head];
        self.head = (self.head + 1) % RING_CAPACITY;
        self.len -= 1;
        Some(e)
    }

    /// Records waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no record is waiting.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Where a routed event went, for the hypervisor's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventDestination {
    /// To this VM's ring.
    Vm(u32),
    /// The stream belongs to no VM: logged only.
    Unowned,
}

/// What an event read produced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventReadResult {
    /// Records written to the caller's buffer.
    pub written: usize,
    /// Records still waiting in the caller's ring; at least 1 while the SMMU's own queue holds
    /// records not yet routed (any VM's: read again).
    pub pending: usize,
    /// Records dropped so far because the caller's ring was full (exact).
    pub dropped: u64,
    /// Times so far the SMMU discarded records while the caller could have had some among
    /// them (the number of records is unknown to anyone).
    pub lost_notices: u64,
}

/// The per-VM rings.
#[derive(Debug)]
pub struct EventRouter {
    rings: Vec<EventRing>,
    /// Events of streams no VM owns.
    pub unowned: u64,
    /// Times the SMMU discarded records (overflow or write abort).
    pub hw_losses: u64,
    /// VMs that received a record since the last loss notice (bit per VM).
    recent: u64,
    /// The last drain left records in the SMMU's queue (it routes a bounded number per entry).
    backlog: bool,
    /// Records routed since the tally was last taken ([`EventRouter::take_tally`]).
    tally: Tally,
    /// The VM whose records [`Tally::own`] counts.
    tally_vm: u32,
}

/// Records routed since the tally was last taken: where the EL2 side charges the drain to the
/// CPU that did it (the entry's own VM's records, the host's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// All of them, owned or not.
    pub records: u64,
    /// Those routed to the VM [`EventRouter::tally_for`] named.
    pub own: u64,
    /// Those routed to the host (VM 0).
    pub host: u64,
}

impl EventRouter {
    /// Rings for `vms` VMs.
    pub fn new(vms: usize) -> Self {
        Self {
            rings: (0..vms).map(|_| EventRing::new()).collect(),
            unowned: 0,
            hw_losses: 0,
            recent: 0,
            backlog: false,
            tally: Tally::default(),
            tally_vm: 0,
        }
    }

    /// From now on [`Tally::own`] counts VM `vm`'s records (the VM an entry is made for).
    #[inline]
    pub fn tally_for(&mut self, vm: u32) {
        self.tally_vm = vm;
    }

    /// The tally since it was last taken, reset; `None` (one load and a compare: the common
    /// case) when no record was routed since.
    #[inline]
    pub fn take_tally(&mut self) -> Option<Tally> {
        if self.tally.records == 0 {
            return None;
        }
        Some(core::mem::take(&mut self.tally))
    }

    /// Routes one record to the owner of its stream.
    pub fn route(&mut self, streams: &Streams, e: EventWords) -> EventDestination {
        self.tally.records += 1;
        match streams.get(event_sid(&e)).map(|s| s.vm) {
            Some(vm) if (vm as usize) < self.rings.len() => {
                self.rings[vm as usize].push(e);
                self.recent |= 1 << (vm % 64);
                self.tally.own += u64::from(vm == self.tally_vm);
                self.tally.host += u64::from(vm == 0);
                EventDestination::Vm(vm)
            }
            _ => {
                self.unowned += 1;
                EventDestination::Unowned
            }
        }
    }

    /// The SMMU discarded an unknown number of records: every VM that could have had one among
    /// them (a stream not blocked now, or a record routed in the same drain) is told.
    pub fn hardware_lost(&mut self, streams: &Streams) {
        self.hw_losses += 1;
        let affected = streams.vms_with_attached() | self.recent;
        for (vm, ring) in self.rings.iter_mut().enumerate() {
            if affected & (1 << (vm % 64)) != 0 {
                ring.lost_notices += 1;
            }
        }
    }

    /// A drain ended (`more`: it left records in the SMMU's queue): records routed from now on
    /// belong to the next one.
    pub fn drain_done(&mut self, more: bool) {
        self.recent = 0;
        self.backlog = more;
    }

    /// Whether the last drain left records in the SMMU's queue.
    pub fn backlog(&self) -> bool {
        self.backlog
    }

    /// Moves up to `out.len()` of `vm`'s oldest records into `out`.
    pub fn read(&mut self, vm: u32, out: &mut [EventWords]) -> EventReadResult {
        let Some(ring) = self.rings.get_mut(vm as usize) else {
            return EventReadResult::default();
        };
        let mut written = 0;
        for slot in out.iter_mut() {
            match ring.pop() {
                Some(e) => {
                    *slot = e;
                    written += 1;
                }
                None => break,
            }
        }
        EventReadResult {
            written,
            // Records the SMMU still holds may be the caller's: at least one more read.
            pending: ring.len().max(self.backlog as usize),
            dropped: ring.overflows,
            lost_notices: ring.lost_notices,
        }
    }

    /// Records waiting in `vm`'s ring.
    pub fn pending(&self, vm: u32) -> usize {
        self.rings.get(vm as usize).map_or(0, |r| r.len())
    }

    /// Records routed to `vm` so far, and dropped because its ring was full.
    pub fn counts(&self, vm: u32) -> (u64, u64) {
        self.rings.get(vm as usize).map_or((0, 0), |r| (r.routed, r.overflows))
    }

    /// Records routed to any VM, and dropped because a ring was full.
    pub fn totals(&self) -> (u64, u64) {
        self.rings.iter().fold((0, 0), |(a, b), r| (a + r.routed, b + r.overflows))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iommu::driver::ste::Domain;

    fn ev(sid: u32, n: u64) -> EventWords {
        [0x10 | (sid as u64) << 32, 0, n, 0]
    }

    #[test]
    fn fifo_order_and_bounded_overflow() {
        let mut r = EventRing::new();
        for i in 0..RING_CAPACITY as u64 + 3 {
            r.push(ev(0x18, i));
        }
        assert_eq!(r.len(), RING_CAPACITY);
        assert!(!r.is_empty());
        assert_eq!(r.overflows, 3);
        assert_eq!(r.routed, RING_CAPACITY as u64 + 3);
        assert_eq!(r.pop().unwrap()[2], 0, "oldest first; the newest were dropped");
        r.push(ev(0x18, 99));
        let mut last = 0;
        while let Some(e) = r.pop() {
            last = e[2];
        }
        assert_eq!(last, 99);
        assert!(r.is_empty());
        assert_eq!(event_sid(&ev(0x18, 0)), 0x18);
    }

    #[test]
    fn one_vms_flood_costs_no_other_vm_a_record() {
        let mut s = Streams::default();
        s.add(1, 0x18);
        s.add(2, 0x20);
        s.add(2, 0x21);
        let mut r = EventRouter::new(3);
        // VM 2 floods from two streams, interleaved with VM 1's few records, in SID order
        // unlike VM order.
        for i in 0..500u64 {
            r.route(&s, ev(if i % 2 == 0 { 0x21 } else { 0x20 }, i));
            if i % 100 == 0 {
                r.route(&s, ev(0x18, 1000 + i));
            }
        }
        assert_eq!(r.route(&s, ev(0x99, 0)), EventDestination::Unowned);
        let mut out = [[0u64; 4]; 16];
        let got = r.read(1, &mut out);
        assert_eq!((got.written, got.pending, got.dropped, got.lost_notices), (5, 0, 0, 0));
        assert_eq!(
            out[..5].iter().map(|e| e[2]).collect::<std::vec::Vec<_>>(),
            [1000, 1100, 1200, 1300, 1400]
        );
        let flood = r.read(2, &mut out);
        assert_eq!((flood.dropped, flood.pending), (500 - 64, 64 - 16));
        assert_eq!(r.unowned, 1);
        assert_eq!(r.counts(2), (500, 436));
        assert_eq!(r.totals(), (505, 436));
    }

    #[test]
    fn the_tally_counts_each_routed_record_once_for_the_vm_it_was_taken_for() {
        let mut s = Streams::default();
        s.add(0, 0x08);
        s.add(1, 0x18);
        s.add(2, 0x20);
        let mut r = EventRouter::new(3);
        assert_eq!(r.take_tally(), None, "nothing routed: nothing to charge");
        r.tally_for(1);
        for sid in [0x18, 0x18, 0x08, 0x20, 0x99] {
            r.route(&s, ev(sid, 0));
        }
        // All five (the unowned one too), VM 1's two, the host's one; a full ring's drops are
        // counted as routed (they were taken off the SMMU's queue all the same).
        assert_eq!(r.take_tally(), Some(Tally { records: 5, own: 2, host: 1 }));
        assert_eq!(r.take_tally(), None, "taken: reset");
        // An entry for the host counts its records twice over: its own and the host's.
        r.tally_for(0);
        for _ in 0..RING_CAPACITY + 2 {
            r.route(&s, ev(0x08, 0));
        }
        r.route(&s, ev(0x18, 0));
        let n = RING_CAPACITY as u64 + 2;
        assert_eq!(r.take_tally(), Some(Tally { records: n + 1, own: n, host: n }));
    }

    #[test]
    fn a_stream_of_a_vm_without_a_ring_is_unowned() {
        let mut s = Streams::default();
        s.add(7, 0x40);
        s.add(3, 0x48); // the first VM number without a ring
        let mut r = EventRouter::new(3);
        assert_eq!(r.route(&s, ev(0x40, 1)), EventDestination::Unowned);
        assert_eq!(r.route(&s, ev(0x48, 1)), EventDestination::Unowned);
        assert_eq!(r.unowned, 2);
        assert_eq!(r.totals(), (0, 0));
    }

    #[test]
    fn records_of_this_drain_count_for_every_vm_that_had_one() {
        let mut s = Streams::default();
        s.add(0, 0x10);
        s.add(1, 0x18);
        s.add(2, 0x20);
        let i = s.owned(1, 0x18).unwrap();
        s.set_domain(i, Domain::Identity);
        let mut r = EventRouter::new(3);
        // VM 2 (blocked now) and VM 1 (attached, and a record too) had records in this drain.
        r.route(&s, ev(0x20, 0));
        r.route(&s, ev(0x18, 0));
        r.hardware_lost(&s);
        let mut out = [[0u64; 4]; 4];
        assert_eq!(r.read(2, &mut out).lost_notices, 1, "a record in the drain: told");
        assert_eq!(r.read(1, &mut out).lost_notices, 1, "attached and a record: told once");
        assert_eq!(r.read(0, &mut out).lost_notices, 0);
    }

    #[test]
    fn a_hardware_loss_is_told_to_every_vm_that_could_have_lost_a_record() {
        let mut s = Streams::default();
        s.add(0, 0x10);
        s.add(1, 0x18);
        s.add(2, 0x20);
        let i = s.owned(2, 0x20).unwrap();
        s.set_domain(i, Domain::Identity);
        let mut r = EventRouter::new(3);
        r.route(&s, ev(0x10, 0)); // VM 0 had a record in this drain although blocked now
        r.hardware_lost(&s);
        r.drain_done(false);
        let mut out = [[0u64; 4]; 1];
        assert_eq!(r.read(0, &mut out).lost_notices, 1);
        assert_eq!(r.read(1, &mut out).lost_notices, 0, "blocked, no record: cannot have lost one");
        assert_eq!(r.read(2, &mut out).lost_notices, 1);
        r.hardware_lost(&s);
        assert_eq!(r.read(0, &mut out).lost_notices, 1, "nothing of VM 0's in the second drain");
        assert_eq!(r.read(2, &mut out).lost_notices, 2);
        assert_eq!(r.hw_losses, 2);
    }
}
