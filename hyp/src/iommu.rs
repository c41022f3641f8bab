//! The hypervisor's SMMU service: stream ownership (from the manifest), event routing to the
//! owner's ring, and the operations VMs reach through hypercalls. One instance owns the driver;
//! the EL2 side keeps it behind a lock and the hypercall dispatcher reaches it through
//! [`IommuOps`], so every decision here is tested on the host against the software SMMU.

use crate::events::{event_sid, EventRing};
use crate::pm::{self, Action, Power, Refusal, Vote};
use crate::smmu::driver::{CmdError, EventWords, Smmu};
use crate::smmu::ste::{self, Domain, S2Config};
use crate::smmu::SmmuRegs;
use crate::validate::{self, CommandAction};
use alloc::boxed::Box;
use alloc::vec::Vec;
use host_abi::smmu::{Command, Ste};
use host_abi::PmStatus;
use host_abi::{HypError, SmmuStats, INVALIDATE_MAX};
use platform::power::{GbpaReset, PowerRegs, SmmuPowerDomain};
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
    /// Records VM `vm`'s power vote; returns (power: 0 on / 1 off, refusal, DMA streams).
    fn pm_vote(&mut self, vm: u32, allow_off: bool) -> [u64; 3];
    /// Power-management status.
    fn pm_status(&mut self) -> PmStatus;
    /// Test platforms: inject an unexpected power loss now (`after_writes` = 0) or before the
    /// `after_writes`-th SMMU register write from now.
    fn inject_power_loss(&mut self, after_writes: u64) -> Result<(), HypError>;
    /// Whether stream `sid` is assigned to VM `vm`.
    fn owns(&mut self, vm: u32, sid: u32) -> bool;
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
    /// Power management: votes by VM id, state, the platform's power domain, counters.
    votes: Vec<Vote>,
    power: Power,
    domain_ctl: Box<dyn SmmuPowerDomain + Send>,
    /// Whether VMs may ask for an injected power loss (test platforms only).
    pub fault_injection: bool,
    /// Power management on (default). Off: votes never power the SMMU down and the fast path
    /// skips power-loss detection (the baseline of the PM-overhead benchmark).
    pub pm_enabled: bool,
    /// PM counters.
    pub pm: PmCounters,
    /// Streams not blocked.
    attached: usize,
}

/// Power-management counters (reported in `PmStatus`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PmCounters {
    /// Completed suspend sequences.
    pub suspends: u64,
    /// Completed resume sequences (votes and wake-ups).
    pub resumes: u64,
    /// Commands (CFGI_STE, TLBI, CFGI) not sent because the SMMU was off.
    pub elided: u64,
    /// Power-ons caused by an operation that needs the hardware (ATC_INV).
    pub wakeups: u64,
    /// Unexpected power losses detected and recovered.
    pub losses: u64,
}

/// The driver's registers as the platform's power domain sees them.
struct PowerAdapter<'a, R: SmmuRegs>(&'a mut R);

impl<R: SmmuRegs> PowerRegs for PowerAdapter<'_, R> {
    fn read32(&mut self, off: usize) -> u32 {
        self.0.read32(off)
    }
    fn write32(&mut self, off: usize, value: u32) {
        self.0.write32(off, value)
    }
}

impl<R: SmmuRegs> Iommu<R> {
    /// Takes over `smmu`, with stream ownership from `manifest`.
    pub fn new(
        smmu: Smmu<R>,
        manifest: &Manifest,
        domain_ctl: Box<dyn SmmuPowerDomain + Send>,
    ) -> Self {
        let streams = manifest
            .vms
            .iter()
            .flat_map(|vm| vm.devices.iter().map(move |d| (d.rid(), vm.id)))
            .collect();
        let rings = manifest.vms.iter().map(|_| EventRing::new()).collect();
        let stage2 = manifest.vms.iter().map(|_| None).collect();
        let domains =
            manifest.vms.iter().flat_map(|vm| vm.devices.iter()).map(|_| Domain::Blocked).collect();
        let votes = manifest.vms.iter().map(|_| Vote::NeedOn).collect();
        Self {
            smmu,
            streams,
            rings,
            unowned_events: 0,
            stage2,
            domains,
            votes,
            power: Power::On,
            domain_ctl,
            fault_injection: false,
            pm_enabled: true,
            pm: PmCounters::default(),
            attached: 0,
        }
    }

    /// Whether the hardware may be touched now: false while powered off. When powered, checks
    /// that the SMMU still holds our configuration and, after an unexpected power loss,
    /// recovers through the resume path first (one register read on the fast path).
    fn hardware(&mut self) -> bool {
        if self.power == Power::Off {
            return false;
        }
        if self.pm_enabled && !self.smmu.configured() {
            self.pm.losses += 1;
            let _ = self.smmu.resume();
        }
        true
    }

    fn power_on(&mut self) {
        self.domain_ctl.power_on(&mut PowerAdapter(self.smmu.regs_mut()));
        let _ = self.smmu.resume();
        self.power = Power::On;
        self.pm.resumes += 1;
    }

    fn power_off(&mut self) -> bool {
        self.poll_events(&mut |_, _| {});
        if self.smmu.suspend().is_err() {
            return false;
        }
        self.domain_ctl.power_off(&mut PowerAdapter(self.smmu.regs_mut()));
        self.power = Power::Off;
        self.pm.suspends += 1;
        true
    }

    /// Records `vm`'s vote and applies the decision. Returns the power state, why power stays
    /// on if it does, and the number of DMA-capable streams considered.
    pub fn vote(&mut self, vm: u32, vote: Vote) -> (Power, Refusal, usize) {
        if let Some(v) = self.votes.get_mut(vm as usize) {
            *v = vote;
        }
        let dma = self.streams.len();
        if !self.pm_enabled {
            return (self.power, Refusal::Disabled, dma);
        }
        let refusal = match pm::decide(&self.votes, self.power, self.domain_ctl.gbpa_reset(), dma) {
            Action::PowerOff => {
                if self.power_off() {
                    Refusal::None
                } else {
                    Refusal::WaitingForVotes
                }
            }
            Action::PowerOn => {
                self.power_on();
                Refusal::None
            }
            Action::Stay(r) => r,
        };
        (self.power, refusal, dma)
    }

    /// The power-management status, for `vm`'s view (PM_STATUS).
    pub fn pm_status(&self) -> PmStatus {
        let allow = self
            .votes
            .iter()
            .enumerate()
            .filter(|(_, v)| **v == Vote::AllowOff)
            .fold(0u64, |m, (i, _)| m | 1 << i);
        let refusal = match pm::decide(
            &self.votes,
            self.power,
            self.domain_ctl.gbpa_reset(),
            self.streams.len(),
        ) {
            Action::Stay(r) => r,
            _ => Refusal::None,
        };
        PmStatus {
            power: (self.power == Power::Off) as u32,
            refusal: refusal as u32,
            votes_allow_off: allow,
            vm_count: self.votes.len() as u32,
            gbpa_reset: (self.domain_ctl.gbpa_reset() == GbpaReset::Bypass) as u32,
            dma_streams: self.streams.len() as u32,
            attached_streams: self.attached_streams() as u32,
            suspends: self.pm.suspends,
            resumes: self.pm.resumes,
            elided: self.pm.elided,
            wakeups: self.pm.wakeups as u32,
            losses: self.pm.losses as u32,
        }
    }

    /// Test platforms: power is lost now, without the hypervisor asking (detected and recovered
    /// on the next hardware access).
    pub fn inject_power_loss(&mut self) -> Result<(), HypError> {
        if !self.fault_injection {
            return Err(HypError::NotSupported);
        }
        if self.power == Power::On {
            self.domain_ctl.inject_loss(&mut PowerAdapter(self.smmu.regs_mut()));
        }
        Ok(())
    }

    /// Assigns `count` more stream IDs from `first` to VM `vm`: streams without a physical
    /// device (benchmarks of many attached streams); their STEs are real all the same.
    pub fn add_streams(&mut self, vm: u32, first: u32, count: u32) {
        for sid in first..first + count {
            self.streams.push((sid, vm));
            self.domains.push(Domain::Blocked);
        }
    }

    /// Event records routed to VM `vm` so far, and dropped because its ring was full.
    pub fn events_of(&self, vm: u32) -> (u64, u64) {
        self.rings.get(vm as usize).map_or((0, 0), |r| (r.routed, r.overflows))
    }

    /// VM `vm` stopped: its streams are blocked and it no longer needs the SMMU powered.
    pub fn vm_stopped(&mut self, vm: u32) {
        let sids: Vec<u32> =
            self.streams.iter().filter(|(_, v)| *v == vm).map(|(s, _)| *s).collect();
        for sid in sids {
            let _ = self.attach(vm, sid, Domain::Blocked);
        }
        self.vote(vm, Vote::AllowOff);
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

    /// Streams attached to something other than `Blocked` (kept as a count: PM paths read it
    /// and must not scan every stream).
    pub fn attached_streams(&self) -> usize {
        self.attached
    }

    /// The power state.
    pub fn power(&self) -> Power {
        self.power
    }

    fn set_domain(&mut self, idx: usize, d: Domain) {
        let was = self.domains[idx] != Domain::Blocked;
        let is = d != Domain::Blocked;
        self.attached = self.attached + is as usize - was as usize;
        self.domains[idx] = d;
    }

    /// Writes `target` into `sid`'s STE in hitless order, with CFGI_STE + SYNC at each sync
    /// point of the plan.
    fn install(&mut self, sid: u32, target: &Ste) -> Result<(), CmdError> {
        if !self.hardware() {
            // Powered off: the SMMU fetches nothing; write the entry in memory. Resume
            // invalidates every cached configuration before SMMUEN.
            if !self.smmu.prepare_stream_offline(sid) {
                // Outside the stream table: cannot happen for an assigned stream.
                return Err(CmdError::TooLarge);
            }
            let cur = Ste(self.smmu.read_ste(sid));
            let plan = ste::plan(&cur, target);
            for step in plan.steps() {
                self.smmu.write_ste_word(sid, step.word, step.value);
            }
            self.pm.elided += plan.syncs() as u64;
            return Ok(());
        }
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
        if !self.hardware() {
            return 0;
        }
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
        if !self.hardware() {
            return 0;
        }
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

    fn pm_vote(&mut self, vm: u32, allow_off: bool) -> [u64; 3] {
        let (p, r, d) = self.vote(vm, if allow_off { Vote::AllowOff } else { Vote::NeedOn });
        [(p == Power::Off) as u64, r as u64, d as u64]
    }

    fn pm_status(&mut self) -> PmStatus {
        Iommu::pm_status(self)
    }

    fn owns(&mut self, vm: u32, sid: u32) -> bool {
        self.streams.iter().any(|&(s, v)| s == sid && v == vm)
    }

    fn inject_power_loss(&mut self, after_writes: u64) -> Result<(), HypError> {
        if after_writes != 0 {
            // Deferred losses need the register path; only the EL2 side provides them.
            return Err(HypError::NotSupported);
        }
        Iommu::inject_power_loss(self)
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
                self.set_domain(idx, domain);
                Ok(())
            }
            Err(_) => {
                // Leave the stream blocked rather than in an unknown state.
                let _ = self.install(sid, &ste::abort());
                self.set_domain(idx, Domain::Blocked);
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
        // An ATC invalidation must never be lost: it brings power back.
        if self.power == Power::Off
            && cmds.iter().any(|c| c.opcode_byte() == host_abi::smmu::Opcode::AtcInv as u8)
        {
            self.pm.wakeups += 1;
            self.power_on();
        }
        let streams = &self.streams;
        let owns = |s: u32| streams.iter().any(|&(sid, v)| sid == s && v == vm);
        // Validate everything first (nothing is submitted if one command is bad), compacting
        // the commands to send at the front of the same buffer.
        let mut n = 0;
        let len = cmds.len().min(INVALIDATE_MAX as usize);
        for i in 0..len {
            match validate::command(&cmds[i], vmid, &owns, ats) {
                Ok(CommandAction::Submit(x)) => {
                    cmds[n] = x;
                    n += 1;
                }
                Ok(CommandAction::Elide) => {}
                Err(e) => return Err((i, e)),
            }
        }
        if !self.hardware() {
            // Off: TLB and configuration invalidations are elided (resume invalidates all).
            self.pm.elided += n as u64;
            return Ok(0);
        }
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
            heap_in_use: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smmu::fake::FakeSmmu;
    use crate::smmu::regs::off;
    use platform::power::SimulatedPowerDomain;
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
        let mut io =
            Iommu::new(smmu, &MANIFEST, Box::new(SimulatedPowerDomain::new(GbpaReset::Abort)));
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

    fn vote_all(io: &mut Iommu<FakeSmmu>, v: Vote) -> (Power, Refusal, usize) {
        let mut last = (Power::On, Refusal::None, 0);
        for vm in 0..3 {
            last = io.vote(vm, v);
        }
        last
    }

    #[test]
    fn every_vm_must_allow_power_off() {
        use crate::smmu::regs::off;
        let mut io = ready();
        io.attach(1, 0x18, Domain::Identity).unwrap();
        assert_eq!(io.vote(0, Vote::AllowOff).1, Refusal::WaitingForVotes);
        assert_eq!(io.vote(1, Vote::AllowOff).0, Power::On);
        let (p, r, _) = io.vote(2, Vote::AllowOff);
        assert_eq!((p, r), (Power::Off, Refusal::None));
        assert_eq!(io.pm.suspends, 1);
        let f = io.smmu.regs_mut();
        assert_eq!(f.regs[&off::CR0], 0, "registers at reset");
        assert_eq!(f.regs[&off::GBPA] & (1 << 20), 1 << 20, "GBPA: abort");
        let consumed = f.consumed.len();
        // While off: STE changes in memory only, invalidations elided, no hardware access.
        io.attach(1, 0x18, Domain::Blocked).unwrap();
        assert_eq!(ste::effective(&Ste(io.smmu.read_ste(0x18))), None);
        assert_eq!(io.invalidate(1, &mut [Command::tlbi_nh_all(0)]), Ok(0));
        assert!(io.pm.elided >= 3);
        assert_eq!(io.smmu.regs_mut().consumed.len(), consumed, "nothing reached the SMMU");
        // The first need-on brings it back: resume invalidates everything, then SMMUEN.
        let (p, _, _) = io.vote(0, Vote::NeedOn);
        assert_eq!(p, Power::On);
        assert!(io.smmu.configured());
        assert_eq!(io.pm.resumes, 1);
        let ops = io.smmu.regs_mut().opcodes();
        assert_eq!(&ops[ops.len() - 4..], [0x04, 0x30, 0x20, 0x46]);
    }

    #[test]
    fn a_stopped_vm_is_blocked_and_no_longer_holds_power_on() {
        let mut io = ready();
        io.attach(1, 0x18, Domain::Identity).unwrap();
        io.vm_stopped(1);
        assert_eq!(io.domain_of(0x18), Some(Domain::Blocked));
        assert_eq!(ste::effective(&Ste(io.smmu.read_ste(0x18))), None);
        io.vote(0, Vote::AllowOff);
        assert_eq!(io.vote(2, Vote::AllowOff).0, Power::Off, "the stopped VM counts as allow-off");
    }

    #[test]
    fn extra_streams_are_owned_and_attachable() {
        let smmu = Smmu::init(FakeSmmu::qemu(), 0x1000 + 9, true).unwrap();
        let mut io =
            Iommu::new(smmu, &MANIFEST, Box::new(SimulatedPowerDomain::new(GbpaReset::Abort)));
        io.set_stage2(0, S2Config::vm(1, 0x4030_0000));
        io.add_streams(0, 0x1000, 10);
        assert!(io.owns(0, 0x1009) && !io.owns(1, 0x1009) && !io.owns(0, 0x100a));
        io.attach(0, 0x1005, Domain::Identity).unwrap();
        assert!(io.smmu.is_two_level(), "the stream ID space needs two levels");
        assert_eq!(io.attached_streams(), 1);
    }

    #[test]
    fn a_stream_first_attached_while_off_gets_its_table_and_translates_after_resume() {
        let smmu = Smmu::init(FakeSmmu::qemu(), 0x1000 + 9, true).unwrap();
        let mut io =
            Iommu::new(smmu, &MANIFEST, Box::new(SimulatedPowerDomain::new(GbpaReset::Abort)));
        io.set_stage2(0, S2Config::vm(1, 0x4030_0000));
        io.add_streams(0, 0x1000, 10);
        assert_eq!(vote_all(&mut io, Vote::AllowOff).0, Power::Off);
        io.attach(0, 0x1003, Domain::Identity).unwrap();
        let want = ste::encode(&Domain::Identity, &S2Config::vm(1, 0x4030_0000));
        assert_eq!(Ste(io.smmu.read_ste(0x1003)), want, "written in memory while off");
        io.vote(0, Vote::NeedOn);
        assert_eq!(Ste(io.smmu.read_ste(0x1003)), want);
    }

    #[test]
    fn an_atc_invalidation_wakes_the_smmu() {
        let mut io = ready();
        assert_eq!(vote_all(&mut io, Vote::AllowOff).0, Power::Off);
        assert_eq!(io.invalidate(1, &mut [Command::atc_inv_all(0x18)]), Ok(0));
        assert_eq!((io.pm.wakeups, io.pm.resumes), (1, 1));
        assert_eq!(io.pm_status().power, 0, "on again");
    }

    #[test]
    fn a_bypass_reset_platform_refuses_power_off_while_dma_is_possible() {
        let smmu = Smmu::init(FakeSmmu::qemu(), 0x20, true).unwrap();
        let mut io =
            Iommu::new(smmu, &MANIFEST, Box::new(SimulatedPowerDomain::new(GbpaReset::Bypass)));
        let (p, r, dma) = vote_all(&mut io, Vote::AllowOff);
        let streams = MANIFEST.vms.iter().map(|v| v.devices.len()).sum::<usize>();
        assert_eq!((p, r, dma), (Power::On, Refusal::BypassResetWithDma, streams));
        let s = io.pm_status();
        assert_eq!((s.power, s.refusal, s.gbpa_reset, s.votes_allow_off), (0, 2, 1, 0b111));
    }

    #[test]
    fn an_unexpected_power_loss_is_detected_and_recovered() {
        let mut io = ready();
        io.attach(1, 0x18, Domain::Identity).unwrap();
        assert_eq!(io.inject_power_loss(), Err(HypError::NotSupported));
        io.fault_injection = true;
        io.inject_power_loss().unwrap();
        assert!(!io.smmu.configured(), "registers at reset: the SMMU is not translating");
        // The next operation that needs the hardware notices and resumes first.
        assert_eq!(io.invalidate(1, &mut [Command::tlbi_nh_all(0)]), Ok(1));
        assert_eq!(io.pm.losses, 1);
        assert!(io.smmu.configured());
        assert_eq!(
            Ste(io.smmu.read_ste(0x18)),
            ste::encode(&Domain::Identity, &S2Config::vm(2, 0x4030_1000))
        );
    }

    #[test]
    fn routing_and_reading() {
        let smmu = Smmu::init(FakeSmmu::qemu(), 0x20, true).unwrap();
        let mut io =
            Iommu::new(smmu, &MANIFEST, Box::new(SimulatedPowerDomain::new(GbpaReset::Abort)));
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
