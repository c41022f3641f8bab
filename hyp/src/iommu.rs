//! The hypervisor's SMMU service: stream ownership (from the manifest), event routing to the
//! owner's ring, and the operations VMs reach through hypercalls. One instance owns the driver;
//! the EL2 side keeps it behind a lock and the hypercall dispatcher reaches it through
//! [`IommuOps`], so every decision here is tested on the host against the software SMMU.

use crate::events::{event_sid, EventRing};
use crate::smmu::driver::{CmdError, EventWords, Smmu};
use crate::smmu::ste::{self, Domain, S2Config};
use crate::smmu::SmmuRegs;
use crate::validate::{self, CommandAction};
use alloc::vec::Vec;
use host_abi::smmu::{Command, Ste};
use host_abi::{HypError, SmmuStats, INVALIDATE_MAX};
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
    /// Attaches stream `sid` of VM `vm` to `domain` (already validated), hitlessly.
    fn attach(&mut self, vm: u32, sid: u32, domain: Domain) -> Result<(), HypError>;
    /// Validates every command of VM `vm`, then submits the valid ones as one batch with one
    /// SYNC. Returns how many reached the hardware, or the index of the first bad command.
    /// `cmds` is the hypervisor's own copy and is rewritten in place.
    fn invalidate(&mut self, vm: u32, cmds: &mut [Command]) -> Result<usize, (usize, HypError)>;
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
    /// Each VM's stage 2 (set once its tables exist), by VM id.
    stage2: Vec<Option<S2Config>>,
    /// The domain each assigned stream is attached to, parallel to `streams`.
    domains: Vec<Domain>,
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
        let stage2 = manifest.vms.iter().map(|_| None).collect();
        let domains =
            manifest.vms.iter().flat_map(|vm| vm.devices.iter()).map(|_| Domain::Blocked).collect();
        Self { smmu, streams, rings, unowned_events: 0, stage2, domains }
    }

    /// Records VM `vm`'s stage 2 (identity and nested STEs point at it).
    pub fn set_stage2(&mut self, vm: u32, s2: S2Config) {
        if let Some(slot) = self.stage2.get_mut(vm as usize) {
            *slot = Some(s2);
        }
    }

    /// The domain stream `sid` is attached to, if it is assigned.
    pub fn domain_of(&self, sid: u32) -> Option<Domain> {
        self.streams.iter().position(|(s, _)| *s == sid).map(|i| self.domains[i])
    }

    /// Streams attached to something other than `Blocked` (streams that could issue DMA).
    pub fn attached_streams(&self) -> usize {
        self.domains.iter().filter(|d| **d != Domain::Blocked).count()
    }

    /// Writes `target` into `sid`'s STE in hitless order, with CFGI_STE + SYNC at each sync
    /// point of the plan.
    fn install(&mut self, sid: u32, target: &Ste) -> Result<(), CmdError> {
        self.smmu.prepare_stream(sid)?;
        let cur = Ste(self.smmu.read_ste(sid));
        let plan = ste::plan(&cur, target);
        for step in plan.steps() {
            self.smmu.write_ste_word(sid, step.word, step.value);
            if step.sync_after {
                self.smmu.submit(&[Command::cfgi_ste(sid).0])?;
            }
        }
        Ok(())
    }

    /// The VM that owns stream `sid`.
    pub fn owner_of(&self, sid: u32) -> Option<u32> {
        self.streams.iter().find(|(s, _)| *s == sid).map(|(_, vm)| *vm)
    }

    /// Streams owned by `vm`.
    pub fn streams_of(&self, vm: u32) -> impl Iterator<Item = u32> + '_ {
        self.streams.iter().filter(move |(_, v)| *v == vm).map(|(s, _)| *s)
    }

    /// Handles global errors the SMMU raised outside a command batch (CMDQ_ERR is handled by
    /// the batch that caused it): acknowledges them, and after a service failure re-initialises
    /// the SMMU from the hypervisor's own tables (every STE is as the VMs left it: nothing
    /// becomes weaker). Returns the bits that were active.
    pub fn handle_global_errors(&mut self) -> u32 {
        let active = self.smmu.active_global_errors();
        if active == 0 {
            return 0;
        }
        self.smmu.ack_global_errors(active);
        if active & crate::smmu::regs::gerror::SFM_ERR != 0 {
            let _ = self.smmu.resume();
        }
        active
    }

    /// Drains the SMMU's event queue into the owners' rings, telling `log` about each record.
    pub fn poll_events(&mut self, log: &mut dyn FnMut(EventDestination, &EventWords)) -> u32 {
        let Self { smmu, streams, rings, unowned_events, .. } = self;
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

    fn attach(&mut self, vm: u32, sid: u32, domain: Domain) -> Result<(), HypError> {
        let idx = self
            .streams
            .iter()
            .position(|&(s, v)| s == sid && v == vm)
            .ok_or(HypError::NotOwned)?;
        let s2 = self.stage2.get(vm as usize).copied().flatten().ok_or(HypError::DeviceError)?;
        let target = ste::encode(&domain, &s2);
        match self.install(sid, &target) {
            Ok(()) => {
                self.domains[idx] = domain;
                Ok(())
            }
            Err(_) => {
                // Leave the stream blocked rather than in an unknown state.
                let _ = self.install(sid, &ste::abort());
                self.domains[idx] = Domain::Blocked;
                Err(HypError::DeviceError)
            }
        }
    }

    fn invalidate(&mut self, vm: u32, cmds: &mut [Command]) -> Result<usize, (usize, HypError)> {
        let vmid = self
            .stage2
            .get(vm as usize)
            .copied()
            .flatten()
            .map(|s| s.vmid)
            .ok_or((0, HypError::DeviceError))?;
        let ats = self.smmu.features.idr0.ats();
        let streams = &self.streams;
        let owns = |s: u32| streams.iter().any(|&(sid, v)| sid == s && v == vm);
        // Validate everything first (nothing is submitted if one command is bad), compacting
        // the commands to send at the front of the same buffer.
        let mut n = 0;
        for i in 0..cmds.len().min(INVALIDATE_MAX as usize) {
            match validate::command(&cmds[i], vmid, &owns, ats) {
                Ok(CommandAction::Submit(x)) => {
                    cmds[n] = x;
                    n += 1;
                }
                Ok(CommandAction::Elide) => {}
                Err(e) => return Err((i, e)),
            }
        }
        // SAFETY-free reinterpretation: Command is `#[repr(C)] [u64; 2]`.
        let words: &[[u64; 2]] = zerocopy::transmute_ref!(&cmds[..n]);
        match self.smmu.submit(words) {
            Ok(()) => Ok(n),
            Err(CmdError::Rejected { index, .. }) => Err((index, HypError::DeviceError)),
            Err(_) => Err((n, HypError::DeviceError)),
        }
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

    fn ready() -> Iommu<FakeSmmu> {
        let smmu = Smmu::init(FakeSmmu::qemu(), 0x20, true).unwrap();
        let mut io = Iommu::new(smmu, &MANIFEST);
        for vm in MANIFEST.vms {
            io.set_stage2(vm.id, S2Config::vm(vm.vmid(), 0x4030_0000 + vm.id as u64 * 0x1000));
        }
        io
    }

    #[test]
    fn attach_installs_the_shadow_ste_and_invalidates_it() {
        let mut io = ready();
        let before = io.smmu.counters;
        io.attach(1, 0x18, Domain::Identity).unwrap();
        let s = Ste(io.smmu.read_ste(0x18));
        assert_eq!(s, ste::encode(&Domain::Identity, &S2Config::vm(2, 0x4030_1000)));
        assert_eq!(io.domain_of(0x18), Some(Domain::Identity));
        assert_eq!(io.attached_streams(), 1);
        // Abort -> identity: two sync points, each CFGI_STE + SYNC.
        assert_eq!(io.smmu.counters.syncs - before.syncs, 2);
        let ops = io.smmu.regs_mut().opcodes();
        assert_eq!(&ops[ops.len() - 4..], [0x03, 0x46, 0x03, 0x46]);
        assert_eq!(io.attach(1, 0x10, Domain::Identity), Err(HypError::NotOwned));
        assert_eq!(io.attach(0, 0x18, Domain::Identity), Err(HypError::NotOwned));
        io.attach(1, 0x18, Domain::Blocked).unwrap();
        assert_eq!(ste::effective(&Ste(io.smmu.read_ste(0x18))), None);
        assert_eq!(io.attached_streams(), 0);
    }

    #[test]
    fn invalidate_validates_all_then_submits_one_batch() {
        let mut io = ready();
        let before = io.smmu.counters;
        let batch = [Command::tlbi_nh_va(0, 1, 0x1000), Command::cfgi_cd(0x18, 0), Command::sync()];
        assert_eq!(io.invalidate(1, &mut batch.clone()), Ok(2), "the SYNC is elided");
        assert_eq!(io.smmu.counters.commands - before.commands, 3, "2 commands + 1 SYNC");
        assert_eq!(io.smmu.counters.syncs - before.syncs, 1);
        let ops = io.smmu.regs_mut().consumed.clone();
        assert_eq!(
            ops[ops.len() - 3],
            Command::tlbi_nh_va(2, 1, 0x1000).0,
            "VMID forced to guest1's"
        );
        let before = io.smmu.counters;
        let bad = [Command::tlbi_nh_all(0), Command::cfgi_ste(0x20)];
        assert_eq!(io.invalidate(1, &mut bad.clone()), Err((1, HypError::NotOwned)));
        assert_eq!(io.smmu.counters, before, "nothing submitted");
    }

    #[test]
    fn global_errors_are_acknowledged_and_a_service_failure_reinitialises() {
        use crate::smmu::regs::{gerror, off};
        let mut io = ready();
        io.attach(1, 0x18, Domain::Identity).unwrap();
        assert_eq!(io.handle_global_errors(), 0);
        let f = io.smmu.regs_mut();
        f.regs.insert(off::GERROR, gerror::EVENTQ_ABT_ERR | gerror::SFM_ERR);
        let cfgi_before = f.opcodes().iter().filter(|&&o| o == 0x04).count();
        assert_eq!(io.handle_global_errors(), gerror::EVENTQ_ABT_ERR | gerror::SFM_ERR);
        assert_eq!(io.smmu.active_global_errors(), 0, "acknowledged");
        let f = io.smmu.regs_mut();
        assert_eq!(
            f.opcodes().iter().filter(|&&o| o == 0x04).count(),
            cfgi_before + 1,
            "re-initialised"
        );
        assert_eq!(
            Ste(io.smmu.read_ste(0x18)),
            ste::encode(&Domain::Identity, &S2Config::vm(2, 0x4030_1000))
        );
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
