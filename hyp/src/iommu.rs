//! The hypervisor's SMMU service: stream ownership (from the manifest), event routing to the
//! owner's ring, and the operations VMs reach through hypercalls. One instance owns the driver;
//! the EL2 side keeps it behind a lock and the hypercall dispatcher reaches it through
//! [`IommuOps`], so every decision here is tested on the host against the software SMMU.

use crate::events::{event_sid, EventRing};
use crate::smmu::driver::{EventWords, Smmu};
use crate::smmu::SmmuRegs;
use alloc::vec::Vec;
use host_abi::SmmuStats;
use platform::Manifest;

/// What an event read produced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventReadResult {
    /// Records written to the caller's buffer.
    pub written: usize,
    /// Records still waiting in the caller's ring.
    pub pending: usize,
    /// Records dropped so far because the caller's ring was full.
    pub dropped: u64,
}

/// The SMMU operations a hypercall may ask for, on behalf of VM `vm`.
pub trait IommuOps {
    /// Moves up to `out.len()` of `vm`'s oldest event records into `out`.
    fn read_events(&mut self, vm: u32, out: &mut [EventWords]) -> EventReadResult;
    /// SMMU-wide counters.
    fn stats(&mut self) -> SmmuStats;
}

/// Where a routed event went, for the hypervisor's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventDestination {
    /// To this VM's ring.
    Vm(u32),
    /// The stream belongs to no VM: logged only.
    Unowned,
}

/// The SMMU service.
pub struct Iommu<R: SmmuRegs> {
    /// The driver.
    pub smmu: Smmu<R>,
    /// (stream ID, owning VM) for every assigned stream.
    streams: Vec<(u32, u32)>,
    /// Event rings, by VM id.
    rings: Vec<EventRing>,
    /// Events of streams no VM owns.
    pub unowned_events: u64,
}

impl<R: SmmuRegs> Iommu<R> {
    /// Takes over `smmu`, with stream ownership from `manifest`.
    pub fn new(smmu: Smmu<R>, manifest: &Manifest) -> Self {
        let streams = manifest
            .vms
            .iter()
            .flat_map(|vm| vm.devices.iter().map(move |d| (d.rid(), vm.id)))
            .collect();
        let rings = manifest.vms.iter().map(|_| EventRing::new()).collect();
        Self { smmu, streams, rings, unowned_events: 0 }
    }

    /// The VM that owns stream `sid`.
    pub fn owner_of(&self, sid: u32) -> Option<u32> {
        self.streams.iter().find(|(s, _)| *s == sid).map(|(_, vm)| *vm)
    }

    /// Streams owned by `vm`.
    pub fn streams_of(&self, vm: u32) -> impl Iterator<Item = u32> + '_ {
        self.streams.iter().filter(move |(_, v)| *v == vm).map(|(s, _)| *s)
    }

    /// Drains the SMMU's event queue into the owners' rings, telling `log` about each record.
    pub fn poll_events(&mut self, log: &mut dyn FnMut(EventDestination, &EventWords)) -> u32 {
        let Self { smmu, streams, rings, unowned_events } = self;
        smmu.drain_events(|e| {
            let sid = event_sid(&e);
            match streams.iter().find(|(s, _)| *s == sid) {
                Some(&(_, vm)) => {
                    rings[vm as usize].push(e);
                    log(EventDestination::Vm(vm), &e);
                }
                None => {
                    *unowned_events += 1;
                    log(EventDestination::Unowned, &e);
                }
            }
        })
    }
}

impl<R: SmmuRegs> IommuOps for Iommu<R> {
    fn read_events(&mut self, vm: u32, out: &mut [EventWords]) -> EventReadResult {
        self.poll_events(&mut |_, _| {});
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
        EventReadResult { written, pending: ring.len(), dropped: ring.overflows }
    }

    fn stats(&mut self) -> SmmuStats {
        self.poll_events(&mut |_, _| {});
        let c = self.smmu.counters;
        SmmuStats {
            commands: c.commands,
            syncs: c.syncs,
            ste_writes: c.ste_writes,
            events: c.events,
            events_routed: self.rings.iter().map(|r| r.routed).sum(),
            events_dropped: self.rings.iter().map(|r| r.overflows).sum(),
            command_errors: c.command_errors,
            reserved: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smmu::fake::FakeSmmu;
    use crate::smmu::regs::off;
    use platform::qemu_virt::MANIFEST;

    /// Writes `records` into the SMMU's event queue as the hardware would and moves PROD.
    fn post_events(fake: &mut FakeSmmu, records: &[EventWords]) {
        let base =
            fake.regs[&off::EVTQ_BASE] as u64 | (fake.regs[&(off::EVTQ_BASE + 4)] as u64) << 32;
        let log2 = (base & 0x1f) as u32;
        let addr = base & ((1 << 52) - 1) & !0x1f;
        let mut prod = fake.regs.get(&off::EVTQ_PROD).copied().unwrap_or(0);
        for r in records {
            let i = (prod & ((1 << log2) - 1)) as u64;
            // SAFETY: the queue the driver allocated, identity-mapped on the host too.
            unsafe { *((addr + i * 32) as *mut EventWords) = *r };
            prod = (prod + 1) & ((2 << log2) - 1);
        }
        fake.regs.insert(off::EVTQ_PROD, prod);
    }

    fn ev(sid: u32, iova: u64) -> EventWords {
        [0x10 | (sid as u64) << 32, 0, iova, 0]
    }

    #[test]
    fn routing_and_reading() {
        let smmu = Smmu::init(FakeSmmu::qemu(), 0x20, true).unwrap();
        let mut io = Iommu::new(smmu, &MANIFEST);
        assert_eq!(io.owner_of(0x18), Some(1));
        assert_eq!(io.owner_of(0x08), None);
        assert_eq!(io.streams_of(2).collect::<std::vec::Vec<_>>(), [0x20]);
        let records = [ev(0x18, 0x1000), ev(0x20, 0x2000), ev(0x08, 0), ev(0x18, 0x3000)];
        post_events(io.smmu.regs_mut(), &records);
        let mut out = [[0u64; 4]; 1];
        let r = io.read_events(1, &mut out);
        assert_eq!(r, EventReadResult { written: 1, pending: 1, dropped: 0 });
        assert_eq!(out[0][2], 0x1000);
        let mut out = [[0u64; 4]; 4];
        let r = io.read_events(1, &mut out);
        assert_eq!((r.written, r.pending), (1, 0));
        assert_eq!(out[0][2], 0x3000);
        let r = io.read_events(0, &mut out);
        assert_eq!(r.written, 0, "the host owns none of these streams");
        let r = io.read_events(2, &mut out);
        assert_eq!((r.written, out[0][2]), (1, 0x2000));
        assert_eq!(io.unowned_events, 1);
        let s = io.stats();
        assert_eq!((s.events, s.events_routed, s.events_dropped), (4, 3, 0));
        assert_eq!(s.syncs, 1, "the boot batch");
    }
}
