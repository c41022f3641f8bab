//! The SMMU behind its power gate: the driver is reachable only through
//! [`PowerGate::powered`], which answers `None` while the SMMU is off, so "no register access
//! while powered off" holds by construction. Votes, the power state, the platform's power
//! controller and the PM counters live here; the decision itself is [`crate::iommu::pm::decide`].

use crate::iommu::driver::smmu::{Failure, SequenceError, SmmuDriver};
use crate::iommu::driver::{SmmuBarriers, SmmuRegs};
use crate::iommu::pm::{self, Action, Power, Refusal, Vote};
use alloc::boxed::Box;
use alloc::vec::Vec;
use platform::power::{GbpaReset, SmmuPowerController};

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
    /// Unexpected power losses detected (recovered, or retried on every entry until they are).
    pub losses: u64,
    /// Times the SMMU could not be resumed (left disabled with GBPA.ABORT; retried on every
    /// entry, and a run of failed retries counts once).
    pub resume_failures: u64,
}

/// The SMMU and its power.
pub struct PowerGate<R: SmmuRegs> {
    driver: SmmuDriver<R>,
    state: Power,
    votes: Vec<Vote>,
    controller: Box<dyn SmmuPowerController + Send>,
    /// PM counters.
    pub counters: PmCounters,
    /// Power management on (default). Off: votes never power the SMMU down and the fast path
    /// skips power-loss detection (the baseline of the PM-overhead benchmark).
    pub enabled: bool,
    /// The last resume failed (power lost again and again while it was programmed): the SMMU
    /// is disabled (GBPA.ABORT, or unpowered) and no driver is handed out until a resume
    /// succeeds.
    resume_failed: bool,
    /// A resume failure not yet reported (the first of a run of them).
    news: Option<SequenceError>,
    /// The driver's failure (a wait timed out) was reported.
    failure_reported: bool,
}

impl<R: SmmuRegs> PowerGate<R> {
    /// A powered SMMU, every one of `vms` VMs voting need-on.
    pub fn new(
        driver: SmmuDriver<R>,
        vms: usize,
        controller: Box<dyn SmmuPowerController + Send>,
    ) -> Self {
        Self {
            driver,
            state: Power::On,
            votes: (0..vms).map(|_| Vote::NeedOn).collect(),
            controller,
            counters: PmCounters::default(),
            enabled: true,
            resume_failed: false,
            news: None,
            failure_reported: false,
        }
    }

    /// The driver, if the SMMU is powered and running. Checks first that the SMMU still holds
    /// its configuration (one register read) and, after an unexpected power loss, recovers
    /// through the resume path. `None` while powered off, and while a resume has failed: the
    /// SMMU is then disabled with GBPA.ABORT (or unpowered), every stream aborts, the callers
    /// treat it as off (memory only; the next successful resume re-reads everything), and each
    /// later call tries the resume again. `None` too once the SMMU has failed ([`Self::failure`]:
    /// callers that need the hardware check that first, and answer an error).
    #[inline]
    pub fn powered(&mut self) -> Option<&mut SmmuDriver<R>> {
        if self.state == Power::Off || self.driver.failure().is_some() {
            return None;
        }
        if self.enabled && !self.driver.configured() && !self.recover_lost() {
            return None;
        }
        Some(&mut self.driver)
    }

    /// The SMMU lost its configuration: resumed from the hypervisor's tables (out of line: the
    /// check above is on every entry's path). `false` if that failed.
    #[cold]
    #[inline(never)]
    fn recover_lost(&mut self) -> bool {
        if !self.resume_failed {
            self.counters.losses += 1;
        }
        let r = self.driver.resume();
        self.resumed(r)
    }

    /// The driver if the SMMU is on, its last resume did not fail and it has not failed, without
    /// checking the hardware (for a second use within one entry, after [`Self::powered`]).
    pub fn running(&mut self) -> Option<&mut SmmuDriver<R>> {
        let ok = self.state == Power::On && !self.resume_failed && self.driver.failure().is_none();
        ok.then_some(&mut self.driver)
    }

    /// Why the SMMU failed, if it did: a wait on it timed out, and the driver gave it up
    /// ([`Failure`]). From then on the gate hands out no driver, refuses every power transition,
    /// and the service answers `DEVICE_ERROR` to every call that needs the hardware.
    pub fn failure(&self) -> Option<Failure> {
        self.driver.failure()
    }

    /// The failure, the first time it is asked for (the log says it once).
    pub fn take_failure(&mut self) -> Option<Failure> {
        let f = self.driver.failure().filter(|_| !self.failure_reported);
        self.failure_reported |= f.is_some();
        f
    }

    /// Recovers from an unexpected power loss now, if there was one (see [`Self::powered`]).
    pub fn recover(&mut self) {
        self.powered();
    }

    /// Records how a resume went (whoever ran it); `true` if it succeeded.
    pub fn resumed(&mut self, r: Result<(), SequenceError>) -> bool {
        match r {
            Ok(()) => {
                self.resume_failed = false;
                true
            }
            // The SMMU failed (hung, not unpowered): reported as such, not retried.
            Err(_) if self.driver.failure().is_some() => false,
            Err(e) => {
                if !self.resume_failed {
                    self.counters.resume_failures += 1;
                    self.news = Some(e);
                }
                self.resume_failed = true;
                false
            }
        }
    }

    /// The first failure of a run of failed resumes, once.
    pub fn take_news(&mut self) -> Option<SequenceError> {
        self.news.take()
    }

    /// Whether a resume failure or the SMMU's failure waits to be reported.
    #[inline]
    pub fn has_news(&self) -> bool {
        self.news.is_some() || self.driver.failure().is_some() && !self.failure_reported
    }

    /// The driver if the SMMU is powered and running ([`Self::powered`]); otherwise its
    /// barriers alone, for the cache maintenance of what is written in memory only (no
    /// register access either: the next resume reads that memory).
    pub fn powered_or_barriers(&mut self) -> Result<&mut SmmuDriver<R>, &mut dyn SmmuBarriers> {
        if self.powered().is_some() {
            Ok(&mut self.driver)
        } else {
            Err(self.driver.regs_mut())
        }
    }

    /// The CPU's memory barriers on the SMMU's path, whatever its power (a barrier is no
    /// register access): the stream table publishes a new level-2 table with them.
    pub fn barriers(&mut self) -> &mut dyn SmmuBarriers {
        self.driver.regs_mut()
    }

    /// The driver without touching the hardware (its features and counters).
    pub fn driver(&self) -> &SmmuDriver<R> {
        &self.driver
    }

    /// The driver whatever the power state: tests only (they play the hardware).
    #[cfg(test)]
    pub(crate) fn driver_mut(&mut self) -> &mut SmmuDriver<R> {
        &mut self.driver
    }

    /// The power state.
    pub fn state(&self) -> Power {
        self.state
    }

    /// GBPA's value after power-on on this platform.
    pub fn gbpa_reset(&self) -> GbpaReset {
        self.controller.gbpa_reset()
    }

    /// Records `vm`'s vote (an unknown VM changes nothing).
    pub fn record_vote(&mut self, vm: u32, vote: Vote) {
        if let Some(v) = self.votes.get_mut(vm as usize) {
            *v = vote;
        }
    }

    /// Bit `i` set if VM `i` allows power-off.
    pub fn allow_off_mask(&self) -> u64 {
        self.votes
            .iter()
            .enumerate()
            .filter(|(_, v)| **v == Vote::AllowOff)
            .fold(0, |m, (i, _)| m | 1 << (i % 64))
    }

    /// VMs voting.
    pub fn voters(&self) -> usize {
        self.votes.len()
    }

    /// What the votes ask for now, with `dma_streams` DMA-capable streams assigned.
    pub fn decide(&self, dma_streams: usize) -> Action {
        if self.driver.failure().is_some() {
            return Action::Stay(Some(Refusal::SmmuFailed));
        }
        if !self.enabled {
            return Action::Stay(Some(Refusal::Disabled));
        }
        pm::decide(&self.votes, self.state, self.controller.gbpa_reset(), dma_streams)
    }

    /// Powers on and resumes (no-op if on). A failed resume is recorded ([`Self::resumed`]):
    /// reported once, no driver handed out, retried by every later entry.
    pub fn power_on(&mut self) {
        if self.state == Power::On {
            return;
        }
        self.controller.power_on(self.driver.regs_mut());
        self.state = Power::On;
        self.counters.resumes += 1;
        let r = self.driver.resume();
        self.resumed(r);
    }

    /// Suspends and powers off (the caller drained the event queue first). On failure the SMMU
    /// stays on.
    pub fn power_off(&mut self) -> Result<(), SequenceError> {
        if self.state == Power::Off {
            return Ok(());
        }
        self.driver.suspend()?;
        self.controller.power_off(self.driver.regs_mut());
        self.state = Power::Off;
        self.counters.suspends += 1;
        Ok(())
    }

    /// Test platforms: power is lost now without the hypervisor asking (noticed and recovered
    /// on the next [`PowerGate::powered`]). Nothing happens while powered off.
    pub fn inject_loss(&mut self) {
        if self.state == Power::On {
            self.controller.inject_loss(self.driver.regs_mut());
        }
    }
}
