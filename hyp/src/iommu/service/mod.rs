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
mod report;
pub mod streams;

pub use calls::{InjectError, SmmuCalls};
pub use report::Report;
use report::Reporter;

use crate::iommu::driver::dmabuf::DmaBuf;
use crate::iommu::driver::order::Coherency;
use crate::iommu::driver::smmu::{CmdError, EventWords, SmmuDriver};
use crate::iommu::driver::ste::{self, Domain, S1Config, S2Config};
use crate::iommu::driver::strtab::{Ensured, SteError, StreamTable};
use crate::iommu::driver::SmmuRegs;
use crate::iommu::pm::{Action, Power, Refusal, Vote};
use crate::iommu::validate::{self, SmmuCaps, MAX_S1CDMAX};
use crate::vm::memory::{GuestMemory, GuestRange};
use alloc::boxed::Box;
use alloc::vec::Vec;
use events::{EventDestination, EventReadResult, EventRouter, Tally};
use host_abi::smmu::regs::Gerror;
use host_abi::smmu::{cmd, Cd, Command, Opcode, Ste};
use host_abi::{HypError, PmStatus, PmVoteResult, SmmuStats};
use host_abi::{EVENT_READ_MAX, INVALIDATE_MAX};
use platform::power::{GbpaReset, SmmuPowerController};
use platform::{Manifest, VmSpec};
use power::{PmCounters, PowerGate};
use streams::Streams;
use zerocopy::IntoBytes;

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

/// Most CDs of one stream's table ([`MAX_S1CDMAX`]).
const MAX_CDS: usize = 1 << MAX_S1CDMAX;

/// The shadow CDs a batch refreshes: (stream index, stream ID, its CDs as read and checked).
type Refresh = Vec<(usize, u32, Vec<Cd>)>;

/// One VM's shadow CD tables: memory inside its RAM (at IPA == PA) that its CPU's stage 2 does
/// not map and its devices' stage 2 maps read-only, which the hypervisor alone writes. Each of
/// its streams has one table of `64 << max_cdmax` bytes at its slot.
pub struct ShadowCds {
    /// IPA (== PA) of the region.
    pub ipa: u64,
    /// The region, as the hypervisor writes it.
    pub buf: DmaBuf,
}

/// The SMMU service.
pub struct SmmuService<R: SmmuRegs> {
    table: StreamTable,
    vms: &'static [VmSpec],
    shadows: Vec<Option<ShadowCds>>,
    /// The CDs of one stream as read and validated, before they are shadowed (allocated once:
    /// SET_STE is a benchmarked path, and a whole table is 2 KiB).
    staging: Box<[Cd]>,
    hw: PowerGate<R>,
    streams: Streams,
    events: EventRouter,
    stage2: Vec<Option<S2Config>>,
    caps: SmmuCaps,
    /// The one VM allowed to inject power losses (test platforms: the host), or nobody.
    pub injector: Option<u32>,
    /// Where routed events are reported (none: not logged).
    pub event_log: Option<EventLog>,
    /// Most event records the work of one entry takes off the SMMU's queue ([`DRAIN_PER_ENTRY`]
    /// unless the caller says otherwise: the EL2 side sets 0 for a guest's call while the SMMU's
    /// own interrupt is being served, so that a guest's calls do not pay for another VM's
    /// flood). Global errors are handled on every entry whatever it is.
    pub entry_drain: u32,
    /// Global errors handled so far (each error bit counts once).
    global_errors: u64,
    /// What the EL2 side logs once the lock is released ([`SmmuService::take_report`]).
    reporter: Reporter,
    /// The commands of the batch being sent (validated, VMID forced): no allocation per batch.
    send: Box<[Command; INVALIDATE_MAX as usize]>,
    /// A VM's INVALIDATE commands as copied out of its memory ([`SmmuCalls::invalidate_from`]),
    /// and the records of an EVENT_READ on their way into it: buffers kept, so that no call
    /// zeroes a fresh one (the compiler's `memset` of 256 or 512 bytes cost 120 and 216
    /// instructions a call). Only the part a call fills is ever read.
    received: Box<[Command]>,
    records_out: [EventWords; EVENT_READ_MAX as usize],
    /// The hitless plan of the STE being installed (kept: refilled, never copied).
    plan: ste::Plan,
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
            vms: manifest.vms,
            shadows: (0..vms).map(|_| None).collect(),
            staging: alloc::vec![Cd::default(); MAX_CDS].into_boxed_slice(),
            hw: PowerGate::new(driver, vms, controller),
            streams: Streams::from_manifest(manifest),
            events: EventRouter::new(vms),
            stage2: (0..vms).map(|_| None).collect(),
            caps,
            injector: None,
            event_log: None,
            entry_drain: DRAIN_PER_ENTRY,
            global_errors: 0,
            reporter: Reporter::default(),
            send: Box::new([Command::default(); INVALIDATE_MAX as usize]),
            received: alloc::vec![Command::default(); INVALIDATE_MAX as usize].into_boxed_slice(),
            records_out: [[0; 4]; EVENT_READ_MAX as usize],
            plan: ste::Plan::new(),
        }
    }

    /// Records VM `vm`'s stage 2 (identity and nested STEs point at it).
    pub fn set_stage2(&mut self, vm: u32, s2: S2Config) {
        if let Some(slot) = self.stage2.get_mut(vm as usize) {
            *slot = Some(s2);
        }
    }

    /// Gives VM `vm` its shadow CD tables (the EL2 side carves them from its RAM:
    /// [`VmSpec::shadow_cds`]). Without them its streams cannot be nested.
    pub fn set_shadow_cds(&mut self, vm: u32, shadow: ShadowCds) {
        if let Some(slot) = self.shadows.get_mut(vm as usize) {
            *slot = Some(shadow);
        }
    }

    /// Bytes of one stream's shadow CD table on this SMMU.
    fn shadow_table_bytes(&self) -> usize {
        64 << self.caps.max_cdmax()
    }

    /// Where the shadow CD table of the stream at `idx` is: its IPA and its first word in its
    /// owner's region. `None` if the owner has no region or it has no room for this stream.
    fn shadow_of(&self, idx: usize) -> Option<(u64, usize)> {
        let s = self.streams.at(idx);
        let region = self.shadows.get(s.vm as usize)?.as_ref()?;
        let bytes = self.shadow_table_bytes();
        let off = s.slot as usize * bytes;
        (off + bytes <= region.buf.len_words() * 8).then_some((region.ipa + off as u64, off / 8))
    }

    /// The physical STE the service installs for `domain` on stream `sid`: on its owner's stage
    /// 2, a nested one with the stream's shadow CD table (what the SMMU walks) in place of the
    /// VM's own. `None` if `sid` is not assigned or cannot take `domain`.
    pub fn encoded(&self, sid: u32, domain: &Domain) -> Option<Ste> {
        let s = self.streams.get(sid)?;
        let s2 = self.stage2.get(s.vm as usize).copied().flatten()?;
        let idx = self.streams.owned(s.vm, sid)?;
        let physical = match *domain {
            Domain::Nested(s1) => {
                Domain::Nested(S1Config { ctx_ptr: self.shadow_of(idx)?.0, ..s1 })
            }
            d => d,
        };
        Some(ste::encode_for(&physical, &s2, self.hw.driver().coherency()))
    }

    /// Reads VM `vm`'s CD table that `s1` describes out of its memory (one copy) into `out`
    /// (as long as the table) and validates every CD in it: what the stream's shadow table is
    /// to hold.
    fn read_cds(
        &self,
        vm: u32,
        s1: &S1Config,
        mem: &dyn GuestMemory,
        out: &mut [Cd],
    ) -> Result<(), HypError> {
        let spec = self.vms.get(vm as usize).ok_or(HypError::DeviceError)?;
        let len = 1usize << s1.cdmax;
        if len > MAX_CDS || len != out.len() {
            return Err(HypError::BadConfig);
        }
        let range =
            GuestRange::of(spec, s1.ctx_ptr, 64 * len as u64).map_err(|_| HypError::BadConfig)?;
        mem.read(range, out.as_mut_bytes())?;
        for c in out.iter_mut() {
            if !validate::cd_in_place(c, spec, &self.caps)? {
                *c = Cd::default();
            }
        }
        Ok(())
    }

    /// Writes `img` into the shadow table of the stream at `idx` (`sid`). While the SMMU may be
    /// using it (`live`: the stream is nested), every state it can fetch is the old CD, the new
    /// one, or an invalid one: a valid CD loses V first (CFGI_CD + SYNC), then its other words
    /// change (CFGI_CD + SYNC), then word 0 brings V back (CFGI_CD + SYNC). A table not in use
    /// is written as a whole and its CDs invalidated once (the SMMU may hold copies from an
    /// earlier attachment). While the SMMU is off, memory only (resume invalidates all). On a
    /// non-coherent SMMU each CD written is cleaned before its CFGI_CD (or, off, at once).
    fn write_shadow(
        &mut self,
        idx: usize,
        sid: u32,
        img: &[Cd],
        live: bool,
    ) -> Result<(), InstallError> {
        let Some((_, base)) = self.shadow_of(idx) else {
            return Err(InstallError::Table(SteError::OutOfRange));
        };
        let vm = self.streams.at(idx).vm as usize;
        let Self { shadows, hw, .. } = self;
        let Some(Some(region)) = shadows.get_mut(vm) else {
            return Err(InstallError::Table(SteError::OutOfRange));
        };
        let buf = &mut region.buf;
        // The common case (attaching the CDs it had): nothing to write, nothing to touch.
        if img.iter().enumerate().all(|(ssid, c)| same(&buf.read_entry::<8>(base + ssid * 8), &c.0))
        {
            return Ok(());
        }
        let coherency = hw.driver().coherency();
        let mut d = hw.powered_or_barriers();
        let mut syncs = 0u64;
        let mut changed = false;
        let mut sync = |d: &mut Hw<'_, R>, c: Command| -> Result<(), InstallError> {
            syncs += 1;
            match d {
                Ok(d) => d.submit(&[c.0]).map_err(InstallError::Command),
                Err(_) => Ok(()),
            }
        };
        // A step of a live update: the CD (one 64-byte line) cleaned, then its CFGI_CD.
        let mut step = |d: &mut Hw<'_, R>, buf: &DmaBuf, at: usize, c: Command| {
            clean_live_cd(coherency, d, buf, at);
            sync(d, c)
        };
        for (ssid, new) in img.iter().enumerate() {
            let at = base + ssid * 8;
            let cur: [u64; 8] = buf.read_entry(at);
            if same(&cur, &new.0) {
                continue;
            }
            changed = true;
            let cfgi = Command::cfgi_cd(sid, ssid as u32);
            let valid = |w0: u64| host_abi::smmu::cd::V.get(&[w0]) == 1;
            if live && valid(cur[0]) {
                buf.write(at, cur[0] & !host_abi::smmu::cd::V.mask());
                step(&mut d, buf, at, cfgi)?;
            }
            for (w, (&was, &word)) in cur.iter().zip(new.0.iter()).enumerate().skip(1) {
                if was != word {
                    buf.write(at + w, word);
                }
            }
            if live && valid(new.0[0]) {
                step(&mut d, buf, at, cfgi)?;
            }
            buf.write(at, new.0[0]);
            if live {
                step(&mut d, buf, at, cfgi)?;
            } else {
                clean_written_cd(coherency, &mut d, buf, at);
            }
        }
        if changed && !live {
            sync(&mut d, Command::cfgi_cd_all(sid))?;
        }
        if hw.state() == Power::Off {
            hw.counters.elided += syncs;
        }
        Ok(())
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

    /// The CD `ssid` of stream `sid`'s shadow table as it is in memory (what the SMMU walks).
    pub fn shadow_cd(&self, sid: u32, ssid: usize) -> Option<Cd> {
        let idx = self.streams.get(sid).and_then(|s| self.streams.owned(s.vm, sid))?;
        let (_, base) = self.shadow_of(idx)?;
        let region = self.shadows.get(self.streams.at(idx).vm as usize)?.as_ref()?;
        (ssid < 1 << self.caps.max_cdmax()).then(|| Cd(region.buf.read_entry(base + ssid * 8)))
    }

    /// Where CD `ssid` of stream `sid`'s shadow table is in the hypervisor's memory (tests:
    /// their shadow regions are heap buffers, not at the IPA the STE names).
    #[cfg(test)]
    pub(crate) fn shadow_cd_addr(&self, sid: u32, ssid: usize) -> Option<u64> {
        let idx = self.streams.get(sid).and_then(|s| self.streams.owned(s.vm, sid))?;
        let (_, base) = self.shadow_of(idx)?;
        let region = self.shadows.get(self.streams.at(idx).vm as usize)?.as_ref()?;
        Some(region.buf.words(base + ssid * 8, 8).pa)
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

    /// Whether the last drain left records in the SMMU's queue (the interrupt handler asks for
    /// another round).
    pub fn event_backlog(&self) -> bool {
        self.events.backlog()
    }

    /// Counts, from now on, the records routed to VM `vm` apart ([`Tally::own`]): the VM an
    /// entry is made for.
    #[inline]
    pub fn tally_for(&mut self, vm: u32) {
        self.events.tally_for(vm);
    }

    /// The records routed since the tally was last taken, or `None` when there were none
    /// ([`EventRouter::take_tally`]).
    #[inline]
    pub fn take_tally(&mut self) -> Option<Tally> {
        self.events.take_tally()
    }

    /// Events of streams no VM owns.
    pub fn unowned_events(&self) -> u64 {
        self.events.unowned
    }

    /// What every entry into the service does first, while the SMMU is powered: acknowledge
    /// global errors (re-initialising after a service failure) and drain the event queue into
    /// the owners' rings. Returns the global errors found.
    pub fn service_hardware(&mut self) -> Gerror {
        let Self { hw, streams, events, event_log, global_errors, reporter, entry_drain, .. } =
            self;
        entry_work(hw, streams, events, *event_log, global_errors, reporter, *entry_drain, false)
    }

    /// How often the service failed (for the hypervisor's closing summary): resumes that
    /// failed, attaches the SMMU failed, streams it could not write back to abort.
    pub fn failures(&self) -> (u64, u64, u64) {
        let r = &self.reporter;
        (self.hw.counters.resume_failures, r.attach_failures, r.block_failures)
    }

    /// What happened since the last call that the hypervisor's log should say (global errors
    /// handled, a failed resume, a failed attach, a stream that could not be blocked), or
    /// `None` (the common case: two loads).
    #[inline]
    pub fn take_report(&mut self) -> Option<Report> {
        if !self.reporter.pending && !self.hw.has_news() {
            return None;
        }
        self.take_pending_report()
    }

    #[cold]
    #[inline(never)]
    fn take_pending_report(&mut self) -> Option<Report> {
        if let Some(e) = self.hw.take_news() {
            self.reporter.resume_failed(e);
        }
        if let Some(f) = self.hw.take_failure() {
            self.reporter.failed(f);
        }
        self.reporter.take()
    }

    /// Handles global errors the SMMU raised outside a command batch (see
    /// [`handle_global_errors`]).
    pub fn handle_global_errors(&mut self) -> Gerror {
        let Self { hw, streams, events, global_errors, .. } = self;
        let active = handle_global_errors(hw, streams, events);
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
        let ensured = self.table.ensure(sid, self.hw.barriers()).map_err(InstallError::Table)?;
        ste::plan_into(&Ste(self.table.read(sid)), target, &mut self.plan);
        let plan = &self.plan;
        match self.hw.powered() {
            None => {
                for step in plan.steps() {
                    self.table
                        .write_word(sid, step.word, step.value)
                        .map_err(InstallError::Table)?;
                }
                clean_ste_written_off(&mut self.table, sid, self.hw.barriers());
                // (A failed SMMU gets here only to leave a stream blocked in memory after the
                // failure: nothing elided, nothing to come.)
                if self.hw.failure().is_none() {
                    self.hw.counters.elided += plan.syncs() as u64;
                }
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
                        clean_ste_step(&mut self.table, sid, d.regs_mut());
                        d.submit(&[Command::cfgi_ste(sid).0]).map_err(InstallError::Command)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Attaches stream `sid` of VM `vm` to `domain` (already validated), hitlessly. A nested
    /// domain's CD table is read out of the VM's memory `mem` (one copy), every CD validated
    /// ([`validate::cd`]) and written into the stream's shadow table, which is what the physical
    /// STE points at: the SMMU never walks a CD the hypervisor did not write. A refused CD
    /// changes nothing and is returned. If the SMMU fails the install, the stream is left
    /// blocked and `DEVICE_ERROR` returned.
    pub fn attach(
        &mut self,
        vm: u32,
        sid: u32,
        domain: Domain,
        mem: &dyn GuestMemory,
    ) -> Result<(), HypError> {
        let idx = self.streams.owned(vm, sid).ok_or(HypError::NotOwned)?;
        self.attach_owned(idx, vm, sid, domain, mem)
    }

    /// Blocks VM `vm`'s stream `sid` after a failure or when the VM stops. If the SMMU fails
    /// that too, [`Self::attach`] has left the entry abort in memory and reported it.
    fn block(&mut self, vm: u32, sid: u32) {
        if let Err(e) = self.attach(vm, sid, Domain::Blocked, &crate::vm::memory::NoMemory) {
            debug_assert_eq!(e, HypError::DeviceError, "only a stream of the VM's is blocked");
        }
    }

    /// SET_STE (see [`SmmuCalls::set_ste`]), with one ownership check: the stream's index found
    /// once serves the copy, the validation and the install.
    pub fn set_ste(
        &mut self,
        vm: &VmSpec,
        sid: u32,
        ipa: u64,
        mem: &dyn GuestMemory,
    ) -> Result<Domain, HypError> {
        let idx = self.streams.owned(vm.id, sid).ok_or(HypError::NotOwned)?;
        let range = GuestRange::of(vm, ipa, 64)?;
        let mut v = Ste::default();
        mem.read(range, v.as_mut_bytes())?;
        let domain = validate::virtual_ste(&v, vm, &self.caps)?;
        self.attach_owned(idx, vm.id, sid, domain, mem)?;
        Ok(domain)
    }

    /// [`SmmuService::attach`] of the stream at `idx` of the stream list, VM `vm`'s.
    fn attach_owned(
        &mut self,
        idx: usize,
        vm: u32,
        sid: u32,
        domain: Domain,
        mem: &dyn GuestMemory,
    ) -> Result<(), HypError> {
        let s2 = self.stage2.get(vm as usize).copied().flatten().ok_or(HypError::DeviceError)?;
        let coherency = self.hw.driver().coherency();
        // The CDs are read and checked into the staging buffer before anything changes.
        let (target, cds) = match domain {
            Domain::Nested(s1) => {
                let n = 1usize << s1.cdmax;
                let mut staging = core::mem::take(&mut self.staging);
                let r = self.read_cds(vm, &s1, mem, staging.get_mut(..n).unwrap_or(&mut []));
                self.staging = staging;
                r?;
                let (ipa, _) = self.shadow_of(idx).ok_or(HypError::DeviceError)?;
                let physical = Domain::Nested(S1Config { ctx_ptr: ipa, ..s1 });
                (ste::encode_for(&physical, &s2, coherency), n)
            }
            _ => (ste::encode_for(&domain, &s2, coherency), 0),
        };
        if self.hw.failure().is_some() {
            // Valid, but the SMMU that would have to read it is given up: nothing changes.
            return Err(HypError::DeviceError);
        }
        self.service_hardware();
        let live = matches!(self.streams.at(idx).domain, Domain::Nested(_));
        let r = if cds > 0 {
            let staging = core::mem::take(&mut self.staging);
            let r = self.write_shadow(idx, sid, &staging[..cds], live);
            self.staging = staging;
            r
        } else {
            Ok(())
        };
        match r.and_then(|()| self.install(sid, &target)) {
            Ok(()) => {
                // The VM's view (its own CD table): what a CFGI re-reads.
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
                let word0 = self.table.write_word(sid, 0, ste::ABORT_WORDS[0]);
                let rest = self.install(sid, &ste::abort());
                self.streams.set_domain(idx, Domain::Blocked);
                self.reporter.attach_failed(vm, sid);
                if word0.is_err() || rest.is_err() {
                    self.reporter.block_failed(vm, sid);
                }
                Err(HypError::DeviceError)
            }
        }
    }

    /// The shadow CDs a valid batch of VM `vm` asks to refresh: for each CFGI_STE, CFGI_CD or
    /// CFGI_CD_ALL naming one of its nested streams (once per stream), the stream's CD table
    /// read again out of `mem` and validated. With `Some((i, e))`: command `i`'s stream has a CD
    /// that is refused, and the refreshes are those of the commands before it.
    fn stage_refresh(
        &self,
        vm: u32,
        cmds: &[Command],
        mem: &dyn GuestMemory,
    ) -> (Refresh, Option<(usize, HypError)>) {
        let mut out: Refresh = Vec::new();
        for (i, c) in cmds.iter().enumerate().take(INVALIDATE_MAX as usize) {
            let op = c.opcode_byte();
            if op != Opcode::CfgiSte as u8
                && op != Opcode::CfgiCd as u8
                && op != Opcode::CfgiCdAll as u8
            {
                continue;
            }
            let sid = c.field(cmd::SID) as u32;
            let Some(idx) = self.streams.owned(vm, sid) else { continue };
            let Domain::Nested(s1) = self.streams.at(idx).domain else { continue };
            if out.iter().any(|(_, s, _)| *s == sid) {
                continue;
            }
            let mut img = alloc::vec![Cd::default(); 1 << s1.cdmax];
            if let Err(e) = self.read_cds(vm, &s1, mem, &mut img) {
                return (out, Some((i, e)));
            }
            out.push((idx, sid, img));
        }
        (out, None)
    }

    /// Validates every command of VM `vm`, then submits the valid ones as one batch with one
    /// SYNC. Returns how many reached the hardware, or the index in `cmds` of the first bad
    /// command (see [`SmmuCalls::invalidate`]). `cmds` is left as it is: the validated copy
    /// (the VMID forced) goes into the service's send buffer. Nothing happens, not even a
    /// power-on, unless every command is valid. A configuration invalidation (CFGI_STE,
    /// CFGI_CD, CFGI_CD_ALL) of a nested stream first re-reads its CD table out of `mem` into
    /// its shadow table (a VM's change to its CDs reaches the SMMU only this way); a refused
    /// CD blocks that stream, as the SMMU would fault it (C_BAD_CD), and refuses the batch at
    /// that command with nothing sent.
    pub fn invalidate(
        &mut self,
        vm: u32,
        cmds: &[Command],
        mem: &dyn GuestMemory,
    ) -> Result<usize, (usize, HypError)> {
        self.invalidate_batch::<false>(vm, cmds, mem)
    }

    /// [`SmmuService::invalidate`] as a command queue executes `cmds` (the Linux host's): the
    /// commands before the first refused one (by validation, or a configuration invalidation
    /// whose CDs are refused) are submitted as one batch with one SYNC, as the queue would
    /// have executed them before stopping on it, and the error names the refused one. In one
    /// call: everything is validated first, and nothing is submitted twice (see
    /// [`SmmuCalls::invalidate_prefix`]).
    pub fn invalidate_prefix(
        &mut self,
        vm: u32,
        cmds: &[Command],
        mem: &dyn GuestMemory,
    ) -> Result<usize, (usize, HypError)> {
        self.invalidate_batch::<true>(vm, cmds, mem)
    }

    /// [`SmmuService::invalidate`] (`PREFIX` false: a refused command refuses the batch) and
    /// [`SmmuService::invalidate_prefix`] (true: the commands before it are the batch).
    #[inline(always)]
    fn invalidate_batch<const PREFIX: bool>(
        &mut self,
        vm: u32,
        cmds: &[Command],
        mem: &dyn GuestMemory,
    ) -> Result<usize, (usize, HypError)> {
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
        let batch = batch::validate_prefix(cmds, &mut self.send[..], vmid, &owns, &self.caps, off);
        let (mut n, mut needs_power, config) =
            (batch.valid.send.len(), batch.valid.needs_power, batch.valid.config);
        // The first refused command, if any: the batch is what comes before it (nothing at all
        // for a guest's call, which fails whole).
        let mut refused = batch.refused;
        let mut cmds = cmds;
        if let Some((i, e)) = refused {
            if !PREFIX || i == 0 {
                return Err((i, e));
            }
            cmds = &cmds[..i];
        }
        if self.hw.failure().is_some() {
            // Valid (up to any refused command), but the SMMU is given up: nothing is
            // refreshed or sent.
            return Err((cmds.len().min(INVALIDATE_MAX as usize), HypError::DeviceError));
        }
        let result = if config {
            let (refresh, cd_refused) = self.stage_refresh(vm, cmds, mem);
            if let Some((i, e)) = cd_refused {
                let sid = cmds[i].field(cmd::SID) as u32;
                self.block(vm, sid);
                if !PREFIX || i == 0 {
                    return Err((i, e));
                }
                // Refused before the first command validation refused, if any: the batch
                // ends here instead.
                refused = cd_refused;
                cmds = &cmds[..i];
                let streams = &self.streams;
                let owns = |s: u32| streams.owns(vm, s);
                n = batch::sent_of(cmds, vmid, &owns, &self.caps);
                needs_power = off && batch::needs_power(cmds);
            }
            if needs_power {
                self.hw.counters.wakeups += 1;
                self.hw.power_on();
            }
            self.service_hardware();
            for (idx, sid, img) in &refresh {
                if self.write_shadow(*idx, *sid, img, true).is_err() {
                    self.block(vm, *sid);
                }
            }
            self.submit_batch(vm, cmds, vmid, n, false)
        } else {
            // Valid: from here on, effects. An ATC invalidation must never be lost: it brings
            // power back.
            if needs_power {
                self.hw.counters.wakeups += 1;
                self.hw.power_on();
            }
            self.submit_batch(vm, cmds, vmid, n, true)
        };
        match refused {
            // A failure of the submission names a command before the refused one, or the
            // refused one itself for a failure of the whole batch (its length).
            Some(r) if result.is_ok() => Err(r),
            _ => result,
        }
    }

    /// Sends the first `n` commands of the send buffer (validated out of VM `vm`'s `cmds`, its
    /// VMID `vmid` forced) with one SYNC (elided while the SMMU is off), after the entry work if
    /// `entry` (not done yet). Errors name a command by its index in `cmds`, as validation
    /// does: the one the SMMU rejected, or the number of commands for a failure of the whole
    /// batch (its closing SYNC rejected, a timeout, a power loss).
    fn submit_batch(
        &mut self,
        vm: u32,
        cmds: &[Command],
        vmid: u16,
        n: usize,
        entry: bool,
    ) -> Result<usize, (usize, HypError)> {
        let Self {
            hw,
            streams,
            events,
            event_log,
            global_errors,
            reporter,
            send,
            caps,
            entry_drain,
            ..
        } = self;
        if hw.powered().is_none() {
            // Off (or not resumable now): TLB and configuration invalidations are elided (the
            // resume that brings it back invalidates all).
            hw.counters.elided += n as u64;
            return Ok(0);
        }
        if entry {
            // The entry work (global errors, event drain).
            // (`powered` just checked the SMMU's configuration.)
            let drain = *entry_drain;
            entry_work(hw, streams, events, *event_log, global_errors, reporter, drain, true);
        }
        let whole = cmds.len().min(INVALIDATE_MAX as usize);
        // A service failure the entry work could not recover from: nothing reaches the SMMU.
        let Some(d) = hw.running() else { return Err((whole, HypError::DeviceError)) };
        let words: &[[u64; 2]] = zerocopy::transmute_ref!(&send[..n]);
        match d.submit(words) {
            Ok(()) => Ok(n),
            Err(CmdError::Rejected { index, .. }) => {
                let owns = |s: u32| streams.owns(vm, s);
                let at = batch::caller_index(cmds, index, vmid, &owns, caps);
                Err((at, HypError::DeviceError))
            }
            Err(CmdError::PowerLost) => {
                // Recover now rather than at the next entry: on a platform whose GBPA resets
                // to bypass, every moment at reset values is a moment of untranslated DMA.
                hw.recover();
                Err((whole, HypError::DeviceError))
            }
            Err(_) => Err((whole, HypError::DeviceError)),
        }
    }

    /// Moves up to `out.len()` of `vm`'s oldest event records into `out`.
    #[inline]
    pub fn read_events(&mut self, vm: u32, out: &mut [EventWords]) -> EventReadResult {
        self.service_hardware();
        self.events.read(vm, out)
    }

    /// [`SmmuCalls::read_events_into`] through the service's own buffer.
    #[inline]
    pub fn read_events_into(
        &mut self,
        vm: u32,
        range: GuestRange,
        mem: &mut dyn GuestMemory,
    ) -> Result<EventReadResult, HypError> {
        self.service_hardware();
        let out = &mut self.records_out;
        let n = ((range.len() / 32) as usize).min(out.len());
        let r = self.events.read(vm, &mut out[..n]);
        calls::write_records(range, &out[..r.written], mem)?;
        Ok(r)
    }

    /// [`SmmuCalls::invalidate_from`] through the service's own buffer.
    pub fn invalidate_from(
        &mut self,
        vm: u32,
        range: GuestRange,
        mem: &dyn GuestMemory,
    ) -> Result<usize, (usize, HypError)> {
        // Taken out for the call (an empty boxed slice in its place allocates nothing) and put
        // back, whatever the outcome.
        let mut buf = core::mem::take(&mut self.received);
        let r = match calls::read_commands(range, &mut buf, mem) {
            Ok(cmds) => self.invalidate_batch::<false>(vm, cmds, mem),
            Err(e) => Err(e),
        };
        self.received = buf;
        r
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
                self.hw.power_on();
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
    /// rule that refuses power-off there, [`crate::iommu::pm::loss_refusal`]): registers at their reset
    /// values would let those devices bypass translation until the hypervisor's next SMMU
    /// access. Streams are assigned at boot only, so what is checked when a loss is armed still
    /// holds when it fires.
    pub fn check_injection(&self, vm: u32) -> Result<(), InjectError> {
        if !self.may_inject(vm) {
            return Err(InjectError::NotSupported);
        }
        if self.hw.failure().is_some() {
            return Err(InjectError::Refused(Refusal::SmmuFailed));
        }
        match crate::iommu::pm::loss_refusal(self.hw.gbpa_reset(), self.streams.len()) {
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
            self.block(vm, sid);
        }
        self.vote(vm, Vote::AllowOff);
    }

    /// Test access to the registers (tests play the hardware with them).
    #[cfg(test)]
    pub(crate) fn regs_mut(&mut self) -> &mut R {
        self.hw.driver_mut().regs_mut()
    }
}

/// The driver when the SMMU is powered, its barriers alone when not
/// ([`power::PowerGate::powered_or_barriers`]).
type Hw<'a, R> = Result<&'a mut SmmuDriver<R>, &'a mut dyn crate::iommu::driver::SmmuBarriers>;

/// The barriers of `hw`, powered or not.
#[inline(always)]
fn barriers_of<'a, R: SmmuRegs>(
    hw: &'a mut Hw<'_, R>,
) -> &'a mut dyn crate::iommu::driver::SmmuBarriers {
    match hw {
        Ok(d) => d.regs_mut(),
        Err(b) => &mut **b,
    }
}

/// One step of a live shadow CD update (the CD at word `at` of `buf`) cleaned before its
/// CFGI_CD (non-coherent SMMU).
#[inline(always)]
fn clean_live_cd<R: SmmuRegs>(c: Coherency, hw: &mut Hw<'_, R>, buf: &DmaBuf, at: usize) {
    c.clean(barriers_of(hw), buf.words(at, 8));
}

/// A shadow CD written whole while not in use (word `at` of `buf`) cleaned before the
/// CFGI_CD_ALL after the table (non-coherent SMMU).
#[inline(always)]
fn clean_written_cd<R: SmmuRegs>(c: Coherency, hw: &mut Hw<'_, R>, buf: &DmaBuf, at: usize) {
    c.clean(barriers_of(hw), buf.words(at, 8));
}

/// STE `sid` after a step of its update, cleaned before the step's CFGI_STE.
#[inline(always)]
fn clean_ste_step(
    table: &mut StreamTable,
    sid: u32,
    b: &mut dyn crate::iommu::driver::SmmuBarriers,
) {
    table.clean_ste(sid, b);
}

/// STE `sid` after its update in memory only (SMMU off), cleaned: the resume's CFGI_ALL
/// makes the SMMU read it again.
fn clean_ste_written_off(
    table: &mut StreamTable,
    sid: u32,
    b: &mut dyn crate::iommu::driver::SmmuBarriers,
) {
    table.clean_ste(sid, b);
}

/// Whether two descriptors are equal, word by word (an `==` on arrays becomes a call to the
/// byte-wise `memcmp` of compiler-builtins on the hypervisor: hundreds of instructions).
#[inline]
fn same(a: &[u64; 8], b: &[u64; 8]) -> bool {
    a.iter().zip(b).fold(0, |d, (x, y)| d | (x ^ y)) == 0
}

/// The work of every entry into the service, with the SMMU powered: global errors handled,
/// counted (each error bit once) and kept for the log, then the event queue drained into the
/// owners' rings (at most `max` records: with 0, none, but whether records wait is noted).
/// Returns the global errors found.
#[inline]
#[allow(clippy::too_many_arguments)] // The service's fields it needs, borrowed apart.
fn entry_work<R: SmmuRegs>(
    hw: &mut PowerGate<R>,
    streams: &Streams,
    events: &mut EventRouter,
    log: Option<EventLog>,
    global_errors: &mut u64,
    reporter: &mut Reporter,
    max: u32,
    checked: bool,
) -> Gerror {
    // `checked`: the caller's `powered` has just checked the SMMU's configuration (a register
    // read) in this entry.
    let d = if checked { hw.running() } else { hw.powered() };
    let Some(d) = d else { return Gerror::empty() };
    let active = d.active_global_errors();
    if active.is_empty() {
        // The common case: the driver just checked serves the drain too (with `max` 0 it only
        // looks: `event_backlog` then says whether records wait).
        drain(d, streams, events, log, max);
        return active;
    }
    acknowledge_global_errors(hw, streams, events, active);
    *global_errors += active.bits().count_ones() as u64;
    reporter.errors(active);
    if let Some(d) = hw.running() {
        drain(d, streams, events, log, max);
    }
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
#[inline]
fn handle_global_errors<R: SmmuRegs>(
    hw: &mut PowerGate<R>,
    streams: &Streams,
    events: &mut EventRouter,
) -> Gerror {
    let Some(d) = hw.powered() else { return Gerror::empty() };
    let active = d.active_global_errors();
    if !active.is_empty() {
        acknowledge_global_errors(hw, streams, events, active);
    }
    active
}

/// [`handle_global_errors`] when there are some (out of line: rare).
#[cold]
#[inline(never)]
fn acknowledge_global_errors<R: SmmuRegs>(
    hw: &mut PowerGate<R>,
    streams: &Streams,
    events: &mut EventRouter,
    active: Gerror,
) {
    let Some(d) = hw.running() else { return };
    d.ack_global_errors(active);
    if active.contains(Gerror::SFM_ERR) {
        // The SMMU stopped serving: reprogrammed from the hypervisor's tables. If that fails,
        // the gate hands out no driver until a later entry's resume succeeds (reported once).
        let r = d.resume();
        hw.resumed(r);
    }
    if active.contains(Gerror::EVENTQ_ABT_ERR) {
        events.hardware_lost(streams);
    }
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
    fn read_events_into(
        &mut self,
        vm: u32,
        range: GuestRange,
        mem: &mut dyn GuestMemory,
    ) -> Result<EventReadResult, HypError> {
        SmmuService::read_events_into(self, vm, range, mem)
    }
    fn invalidate_from(
        &mut self,
        vm: u32,
        range: GuestRange,
        mem: &dyn GuestMemory,
    ) -> Result<usize, (usize, HypError)> {
        SmmuService::invalidate_from(self, vm, range, mem)
    }
    fn events_pending(&mut self, vm: u32) -> bool {
        self.events.pending(vm) != 0
    }
    fn stats(&mut self) -> SmmuStats {
        SmmuService::stats(self)
    }
    fn attach(
        &mut self,
        vm: u32,
        sid: u32,
        domain: Domain,
        mem: &dyn GuestMemory,
    ) -> Result<(), HypError> {
        SmmuService::attach(self, vm, sid, domain, mem)
    }
    fn set_ste(
        &mut self,
        vm: &VmSpec,
        sid: u32,
        ipa: u64,
        mem: &dyn GuestMemory,
    ) -> Result<Domain, HypError> {
        SmmuService::set_ste(self, vm, sid, ipa, mem)
    }
    fn clear_ste(&mut self, vm: u32, sid: u32, mem: &dyn GuestMemory) -> Result<(), HypError> {
        SmmuService::attach(self, vm, sid, Domain::Blocked, mem)
    }
    fn invalidate(
        &mut self,
        vm: u32,
        cmds: &[Command],
        mem: &dyn GuestMemory,
    ) -> Result<usize, (usize, HypError)> {
        SmmuService::invalidate(self, vm, cmds, mem)
    }
    fn invalidate_prefix(
        &mut self,
        vm: u32,
        cmds: &[Command],
        mem: &dyn GuestMemory,
    ) -> Result<usize, (usize, HypError)> {
        SmmuService::invalidate_prefix(self, vm, cmds, mem)
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
