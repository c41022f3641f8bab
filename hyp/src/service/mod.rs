//! The SMMU service: every operation a VM can ask of the SMMU, on behalf of VM `vm`, with one
//! validation path for every caller. Its parts, one concern each:
//!
//! * [`streams`]: who owns which stream and what it is attached to;
//! * [`power`]: the driver behind its power gate, votes and the power controller;
//! * [`events`]: per-VM event rings, routing, loss notices;
//! * [`batch`]: a VM's invalidation batch validated into a value before anything happens;
//! * here: the operations (attach, invalidate, events, PM), which validate everything first
//!   and only then act.
//!
//! The EL2 side keeps one instance behind a lock; hypercalls reach it through
//! [`SmmuCalls`]. Every decision is tested on the host against the software
//! SMMU.

pub mod batch;
mod calls;
pub mod events;
pub mod power;
pub mod streams;

pub use calls::{InjectError, SmmuCalls};

use crate::pm::{Action, Power, Refusal, Vote};
use crate::smmu::driver::{CmdError, EventWords, SmmuDriver};
use crate::smmu::ste::{self, Domain, S2Config};
use crate::smmu::strtab::{Ensured, SteError, StreamTable};
use crate::smmu::SmmuRegs;
use crate::validate::SmmuCaps;
use alloc::boxed::Box;
use alloc::vec::Vec;
use events::{EventDestination, EventReadResult, EventRouter};
use host_abi::smmu::regs::Gerror;
use host_abi::smmu::{Command, Ste};
use host_abi::INVALIDATE_MAX;
use host_abi::{HypError, PmStatus, PmVoteResult, SmmuStats};
use platform::power::{GbpaReset, SmmuPowerController};
use platform::Manifest;
use power::{PmCounters, PowerGate};
use streams::Streams;

/// Called for every event record the service routes (the EL2 side logs them).
pub type EventLog = fn(EventDestination, &EventWords);

/// Why a shadow STE could not be installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstallError {
    /// The stream table could not hold it.
    Table(SteError),
    /// The SMMU failed an invalidation between two steps.
    Command(CmdError),
}

/// The SMMU service.
pub struct SmmuService<R: SmmuRegs> {
    table: StreamTable,
    hw: PowerGate<R>,
    streams: Streams,
    events: EventRouter,
    stage2: Vec<Option<S2Config>>,
    caps: SmmuCaps,
    /// The one VM allowed to inject power losses (test platforms: the host), or nobody.
    pub injector: Option<u32>,
    /// Where routed events are reported (none: not logged).
    pub event_log: Option<EventLog>,
    /// Global errors handled so far (each error bit counts once).
    global_errors: u64,
    /// Global errors handled and not yet reported ([`SmmuService::take_unreported_errors`]).
    unreported: Gerror,
    /// The commands of the batch being sent (validated, VMID forced): no allocation per batch.
    send: Box<[Command; INVALIDATE_MAX as usize]>,
}

impl<R: SmmuRegs> SmmuService<R> {
    /// Takes over the SMMU `driver` drives and its stream `table`, with stream ownership from
    /// `manifest` and the platform's power `controller`.
    pub fn new(
        driver: SmmuDriver<R>,
        table: StreamTable,
        manifest: &Manifest,
        controller: Box<dyn SmmuPowerController + Send>,
    ) -> Self {
        let vms = manifest.vms.len();
        let caps = SmmuCaps::from_features(&driver.features);
        Self {
            table,
            hw: PowerGate::new(driver, vms, controller),
            streams: Streams::from_manifest(manifest),
            events: EventRouter::new(vms),
            stage2: (0..vms).map(|_| None).collect(),
            caps,
            injector: None,
            event_log: None,
            global_errors: 0,
            unreported: Gerror::empty(),
            send: Box::new([Command::default(); INVALIDATE_MAX as usize]),
        }
    }

    /// Records VM `vm`'s stage 2 (identity and nested STEs point at it).
    pub fn set_stage2(&mut self, vm: u32, s2: S2Config) {
        if let Some(slot) = self.stage2.get_mut(vm as usize) {
            *slot = Some(s2);
        }
    }

    /// Assigns `count` more stream IDs from `first` to VM `vm`: streams without a physical
    /// device (benchmarks of many attached streams); their STEs are real all the same.
    pub fn add_streams(&mut self, vm: u32, first: u32, count: u32) {
        for sid in first..first.saturating_add(count) {
            self.streams.add(vm, sid);
        }
    }

    /// Power management on or off (`pm=off`: the benchmark's baseline).
    pub fn set_pm_enabled(&mut self, on: bool) {
        self.hw.enabled = on;
    }

    /// The domain stream `sid` is attached to, if it is assigned.
    pub fn domain_of(&self, sid: u32) -> Option<Domain> {
        self.streams.get(sid).map(|s| s.domain)
    }

    /// The VM that owns stream `sid`.
    pub fn owner_of(&self, sid: u32) -> Option<u32> {
        self.streams.get(sid).map(|s| s.vm)
    }

    /// Streams owned by `vm`.
    pub fn streams_of(&self, vm: u32) -> impl Iterator<Item = u32> + '_ {
        self.streams.of_vm(vm)
    }

    /// Whether `vm` owns stream `sid`.
    pub fn owns(&self, vm: u32, sid: u32) -> bool {
        self.streams.owns(vm, sid)
    }

    /// Streams attached to something other than `Blocked`.
    pub fn attached_streams(&self) -> usize {
        self.streams.attached()
    }

    /// The power state.
    pub fn power(&self) -> Power {
        self.hw.state()
    }

    /// PM counters.
    pub fn pm_counters(&self) -> PmCounters {
        self.hw.counters
    }

    /// What validation knows of the SMMU.
    pub fn caps(&self) -> SmmuCaps {
        self.caps
    }

    /// The driver, without touching the hardware (features, counters).
    pub fn driver(&self) -> &SmmuDriver<R> {
        self.hw.driver()
    }

    /// STE `sid` as it is in memory.
    pub fn ste(&mut self, sid: u32) -> Ste {
        Ste(self.table.read(sid))
    }

    /// Whether the stream table is two-level.
    pub fn is_two_level(&self) -> bool {
        self.table.is_two_level()
    }

    /// Event records routed to VM `vm` so far, and dropped because its ring was full.
    pub fn events_of(&self, vm: u32) -> (u64, u64) {
        self.events.counts(vm)
    }

    /// Events of streams no VM owns.
    pub fn unowned_events(&self) -> u64 {
        self.events.unowned
    }

    /// What every entry into the service does first, while the SMMU is powered: acknowledge
    /// global errors (re-initialising after a service failure) and drain the event queue into
    /// the owners' rings. Returns the global errors found.
    pub fn service_hardware(&mut self) -> Gerror {
        let Self { hw, streams, events, event_log, global_errors, unreported, .. } = self;
        let Some(d) = hw.powered() else { return Gerror::empty() };
        entry_work(d, streams, events, *event_log, global_errors, unreported)
    }

    /// The global errors handled since the last call (for the hypervisor's log).
    pub fn take_unreported_errors(&mut self) -> Gerror {
        core::mem::replace(&mut self.unreported, Gerror::empty())
    }

    /// Handles global errors the SMMU raised outside a command batch (see
    /// [`handle_global_errors`]).
    pub fn handle_global_errors(&mut self) -> Gerror {
        let Self { hw, streams, events, global_errors, .. } = self;
        let Some(d) = hw.powered() else { return Gerror::empty() };
        let active = handle_global_errors(d, streams, events);
        *global_errors += active.bits().count_ones() as u64;
        active
    }

    /// Drains the SMMU's whole event queue into the owners' rings (before a power-off, which
    /// would lose it). Returns the records taken.
    pub fn poll_events(&mut self) -> u32 {
        let Self { hw, streams, events, event_log, .. } = self;
        match hw.powered() {
            Some(d) => drain(d, streams, events, *event_log, u32::MAX),
            None => 0,
        }
    }

    /// Writes `target` into `sid`'s STE in hitless order, with CFGI_STE + SYNC at each sync
    /// point of the plan; while the SMMU is off, in memory only (resume invalidates
    /// everything before SMMUEN).
    fn install(&mut self, sid: u32, target: &Ste) -> Result<(), InstallError> {
        let ensured = self.table.ensure(sid).map_err(InstallError::Table)?;
        let plan = ste::plan(&Ste(self.table.read(sid)), target);
        match self.hw.powered() {
            None => {
                for step in plan.steps() {
                    self.table
                        .write_word(sid, step.word, step.value)
                        .map_err(InstallError::Table)?;
                }
                self.hw.counters.elided += plan.syncs() as u64;
            }
            Some(d) => {
                if ensured == Ensured::NewLevel2 {
                    // A new level-1 descriptor: drop any cached "invalid" view of the span.
                    d.submit(&[Command::cfgi_ste(sid).0]).map_err(InstallError::Command)?;
                }
                for step in plan.steps() {
                    self.table
                        .write_word(sid, step.word, step.value)
                        .map_err(InstallError::Table)?;
                    if step.sync_after {
                        d.submit(&[Command::cfgi_ste(sid).0]).map_err(InstallError::Command)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Attaches stream `sid` of VM `vm` to `domain` (already validated), hitlessly. If the SMMU
    /// fails it, the stream is left blocked and `DEVICE_ERROR` returned.
    pub fn attach(&mut self, vm: u32, sid: u32, domain: Domain) -> Result<(), HypError> {
        let idx = self.streams.owned(vm, sid).ok_or(HypError::NotOwned)?;
        let s2 = self.stage2.get(vm as usize).copied().flatten().ok_or(HypError::DeviceError)?;
        let target = ste::encode(&domain, &s2);
        self.service_hardware();
        match self.install(sid, &target) {
            Ok(()) => {
                self.streams.set_domain(idx, domain);
                Ok(())
            }
            Err(_) => {
                // Leave the stream blocked rather than in an unknown state. Word 0 first, alone
                // (one store: a fetch sees the entry as it was or abort, whatever the other
                // words hold), so that memory says abort even if the SMMU fails again below
                // (power lost a second time, or hung) and the plan stops at its first sync
                // point: resume rewrites nothing, but CFGI_ALL precedes SMMUEN. Then the rest
                // of the entry, hitlessly.
                let _ = self.table.write_word(sid, 0, ste::ABORT_WORDS[0]);
                let _ = self.install(sid, &ste::abort());
                self.streams.set_domain(idx, Domain::Blocked);
                Err(HypError::DeviceError)
            }
        }
    }

    /// Validates every command of VM `vm`, then submits the valid ones as one batch with one
    /// SYNC. Returns how many reached the hardware, or the index in `cmds` of the first bad
    /// command (see [`SmmuCalls::invalidate`]).
    /// `cmds` is the hypervisor's own copy and is rewritten in place. Nothing happens, not even
    /// a power-on, unless every command is valid.
    pub fn invalidate(&mut self, vm: u32, cmds: &[Command]) -> Result<usize, (usize, HypError)> {
        let vmid = self
            .stage2
            .get(vm as usize)
            .copied()
            .flatten()
            .map(|s| s.vmid)
            .ok_or((0, HypError::DeviceError))?;
        let streams = &self.streams;
        let owns = |s: u32| streams.owns(vm, s);
        let off = self.hw.state() == Power::Off;
        let batch = batch::validate(cmds, &mut self.send[..], vmid, &owns, &self.caps, off)?;
        // Valid: from here on, effects. An ATC invalidation must never be lost: it brings
        // power back.
        if batch.needs_power {
            self.hw.counters.wakeups += 1;
            let _ = self.hw.power_on();
        }
        let Self { hw, streams, events, event_log, global_errors, unreported, .. } = self;
        let Some(d) = hw.powered() else {
            // Off: TLB and configuration invalidations are elided (resume invalidates all).
            hw.counters.elided += batch.send.len() as u64;
            return Ok(0);
        };
        // The entry work (global errors, event drain) with the same power check.
        entry_work(d, streams, events, *event_log, global_errors, unreported);
        let words: &[[u64; 2]] = zerocopy::transmute_ref!(batch.send);
        let n = words.len();
        // Errors name a command by its index in the caller's array, as validation does: the
        // one the SMMU rejected, or the number of commands for a failure of the whole batch
        // (its closing SYNC rejected, a timeout, a power loss).
        let whole = cmds.len().min(INVALIDATE_MAX as usize);
        match d.submit(words) {
            Ok(()) => Ok(n),
            Err(CmdError::Rejected { index, .. }) => {
                let owns = |s: u32| streams.owns(vm, s);
                let at = batch::caller_index(cmds, index, vmid, &owns, &self.caps);
                Err((at, HypError::DeviceError))
            }
            Err(CmdError::PowerLost) => {
                // Recover now rather than at the next entry: on a platform whose GBPA resets
                // to bypass, every moment at reset values is a moment of untranslated DMA.
                let _ = hw.powered();
                Err((whole, HypError::DeviceError))
            }
            Err(_) => Err((whole, HypError::DeviceError)),
        }
    }

    /// Moves up to `out.len()` of `vm`'s oldest event records into `out`.
    pub fn read_events(&mut self, vm: u32, out: &mut [EventWords]) -> EventReadResult {
        self.service_hardware();
        self.events.read(vm, out)
    }

    /// SMMU-wide counters.
    pub fn stats(&mut self) -> SmmuStats {
        self.service_hardware();
        let c = self.hw.driver().counters;
        let (routed, dropped) = self.events.totals();
        SmmuStats {
            commands: c.commands,
            syncs: c.syncs,
            ste_writes: self.table.word_writes,
            events: c.events,
            events_routed: routed,
            events_dropped: dropped,
            command_errors: c.command_errors,
            heap_in_use: 0,
            events_lost_hw: self.events.hw_losses,
            global_errors: self.global_errors,
        }
    }

    /// Records `vm`'s vote and applies the decision.
    pub fn vote(&mut self, vm: u32, vote: Vote) -> PmVoteResult {
        // Routes what is queued, before the queue's registers may be lost below.
        self.service_hardware();
        self.hw.record_vote(vm, vote);
        let dma = self.streams.len();
        let refusal = match self.hw.decide(dma) {
            Action::PowerOff => {
                // Every record still queued is routed first: power-off loses the queue.
                self.poll_events();
                match self.hw.power_off() {
                    Ok(()) => None,
                    // Suspend failed (the SMMU lost power under it): power stays on and the
                    // next access recovers; the VMs see power on, waiting.
                    Err(_) => Some(Refusal::WaitingForVotes),
                }
            }
            Action::PowerOn => {
                let _ = self.hw.power_on();
                None
            }
            Action::Stay(r) => r,
        };
        PmVoteResult {
            powered_off: self.hw.state() == Power::Off,
            refusal,
            dma_streams: dma as u32,
        }
    }

    /// The power-management status.
    pub fn pm_status(&self) -> PmStatus {
        let refusal = match self.hw.decide(self.streams.len()) {
            Action::Stay(r) => r,
            _ => None,
        };
        let c = self.hw.counters;
        PmStatus {
            power: (self.hw.state() == Power::Off) as u32,
            refusal: Refusal::code_of(refusal),
            votes_allow_off: self.hw.allow_off_mask(),
            vm_count: self.hw.voters() as u32,
            gbpa_reset: (self.hw.gbpa_reset() == GbpaReset::Bypass) as u32,
            dma_streams: self.streams.len() as u32,
            attached_streams: self.streams.attached() as u32,
            suspends: c.suspends,
            resumes: c.resumes,
            elided: c.elided,
            wakeups: c.wakeups as u32,
            losses: c.losses as u32,
        }
    }

    /// Whether VM `vm` may inject power losses (and FEATURES says so to it).
    pub fn may_inject(&self, vm: u32) -> bool {
        self.injector == Some(vm)
    }

    /// Whether VM `vm` may inject a power loss now, now or armed for later: only the injector
    /// may, and not where GBPA resets to bypass while any DMA-capable stream is assigned (the
    /// rule that refuses power-off there, [`crate::pm::loss_refusal`]): registers at their reset
    /// values would let those devices bypass translation until the hypervisor's next SMMU
    /// access. Streams are assigned at boot only, so what is checked when a loss is armed still
    /// holds when it fires.
    pub fn check_injection(&self, vm: u32) -> Result<(), InjectError> {
        if !self.may_inject(vm) {
            return Err(InjectError::NotSupported);
        }
        match crate::pm::loss_refusal(self.hw.gbpa_reset(), self.streams.len()) {
            Some(r) => Err(InjectError::Refused(r)),
            None => Ok(()),
        }
    }

    /// Test platforms: VM `vm` asks for an unexpected power loss now (detected and recovered
    /// on the next hardware access), if [`SmmuService::check_injection`] allows it.
    pub fn inject_power_loss(&mut self, vm: u32) -> Result<(), InjectError> {
        self.check_injection(vm)?;
        self.hw.inject_loss();
        Ok(())
    }

    /// VM `vm` stopped: its streams are blocked and it no longer needs the SMMU powered.
    pub fn vm_stopped(&mut self, vm: u32) {
        let sids: Vec<u32> = self.streams.of_vm(vm).collect();
        for sid in sids {
            let _ = self.attach(vm, sid, Domain::Blocked);
        }
        self.vote(vm, Vote::AllowOff);
    }

    /// Test access to the registers (tests play the hardware with them).
    #[cfg(test)]
    pub(crate) fn regs_mut(&mut self) -> &mut R {
        self.hw.driver_mut().regs_mut()
    }
}

/// The work of every entry into the service, with the SMMU powered: global errors handled,
/// counted (each error bit once) and kept for the log, then the event queue drained into the
/// owners' rings. Returns the global errors found.
fn entry_work<R: SmmuRegs>(
    d: &mut SmmuDriver<R>,
    streams: &Streams,
    events: &mut EventRouter,
    log: Option<EventLog>,
    global_errors: &mut u64,
    unreported: &mut Gerror,
) -> Gerror {
    let active = handle_global_errors(d, streams, events);
    *global_errors += active.bits().count_ones() as u64;
    *unreported |= active;
    drain(d, streams, events, log, DRAIN_PER_ENTRY);
    active
}

/// Most event records one entry into the service routes: whatever a VM makes its devices
/// fault, the entry that happens to come next (another VM's hypercall, the SMMU's interrupt)
/// does a bounded amount of routing under the service's lock. The rest stay in the SMMU's queue
/// for the next entry, and EVENT_READ says more may come ([`EventRouter::read`]).
pub const DRAIN_PER_ENTRY: u32 = 256;

/// Acknowledges the global errors the SMMU raised outside a command batch (CMDQ_ERR is handled
/// by the batch that caused it). An event-queue abort means records were lost: the VMs that
/// could have had some are told. After a service failure the SMMU is re-initialised from the
/// hypervisor's own tables (every STE is as the VMs left it: nothing gets weaker).
fn handle_global_errors<R: SmmuRegs>(
    d: &mut SmmuDriver<R>,
    streams: &Streams,
    events: &mut EventRouter,
) -> Gerror {
    let active = d.active_global_errors();
    if active.is_empty() {
        return active;
    }
    d.ack_global_errors(active);
    if active.contains(Gerror::SFM_ERR) {
        let _ = d.resume();
    }
    if active.contains(Gerror::EVENTQ_ABT_ERR) {
        events.hardware_lost(streams);
    }
    active
}

/// Takes at most `max` records off the SMMU's event queue into the owners' rings.
fn drain<R: SmmuRegs>(
    d: &mut SmmuDriver<R>,
    streams: &Streams,
    events: &mut EventRouter,
    log: Option<EventLog>,
    max: u32,
) -> u32 {
    let drained = d.drain_events(max, |e| {
        let dest = events.route(streams, e);
        if let Some(log) = log {
            log(dest, &e);
        }
    });
    if drained.overflowed {
        events.hardware_lost(streams);
    }
    events.drain_done(drained.more);
    drained.records
}

impl<R: SmmuRegs> SmmuCalls for SmmuService<R> {
    fn read_events(&mut self, vm: u32, out: &mut [EventWords]) -> EventReadResult {
        SmmuService::read_events(self, vm, out)
    }
    fn events_pending(&mut self, vm: u32) -> bool {
        self.events.pending(vm) != 0
    }
    fn stats(&mut self) -> SmmuStats {
        SmmuService::stats(self)
    }
    fn attach(&mut self, vm: u32, sid: u32, domain: Domain) -> Result<(), HypError> {
        SmmuService::attach(self, vm, sid, domain)
    }
    fn invalidate(&mut self, vm: u32, cmds: &[Command]) -> Result<usize, (usize, HypError)> {
        SmmuService::invalidate(self, vm, cmds)
    }
    fn pm_vote(&mut self, vm: u32, vote: Vote) -> PmVoteResult {
        self.vote(vm, vote)
    }
    fn pm_status(&mut self) -> PmStatus {
        SmmuService::pm_status(self)
    }
    fn may_inject(&mut self, vm: u32) -> bool {
        SmmuService::may_inject(self, vm)
    }
    fn inject_power_loss(&mut self, vm: u32, after_writes: u64) -> Result<(), InjectError> {
        self.check_injection(vm)?;
        if after_writes != 0 {
            // A loss in the middle of a sequence needs the register path, which only the EL2
            // side has (it checks `check_injection` and arms its countdown itself).
            return Err(InjectError::NotSupported);
        }
        SmmuService::inject_power_loss(self, vm)
    }
    fn owned_stream(&mut self, vm: u32, sid: u32) -> Result<SmmuCaps, HypError> {
        if SmmuService::owns(self, vm, sid) {
            Ok(self.caps)
        } else {
            Err(HypError::NotOwned)
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
