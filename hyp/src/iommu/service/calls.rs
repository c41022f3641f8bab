//! The SMMU service's operations as its front ends see them.

use crate::iommu::driver::smmu::EventWords;
use crate::iommu::driver::ste::Domain;
use crate::iommu::pm::{Refusal, Vote};
use crate::iommu::service::events::EventReadResult;
use crate::iommu::validate::SmmuCaps;
use crate::vm::memory::{GuestMemory, GuestRange};
use host_abi::smmu::Command;
use host_abi::{HypError, PmStatus, PmVoteResult, SmmuStats, EVENT_READ_MAX, INVALIDATE_MAX};
use platform::VmSpec;
use zerocopy::IntoBytes;

/// The SMMU operations a VM may ask for, on behalf of VM `vm`: what the service's two front
/// ends (hypercalls, and the Linux host's emulated SMMU) reach it through (behind the EL2 side's
/// lock).
pub trait SmmuCalls {
    /// Moves up to `out.len()` of `vm`'s oldest event records into `out`.
    fn read_events(&mut self, vm: u32, out: &mut [EventWords]) -> EventReadResult;
    /// EVENT_READ: moves up to `range.len() / 32` of `vm`'s oldest event records (at most
    /// [`EVENT_READ_MAX`]) into the start of `range` of its memory `mem` (nothing written when
    /// none is). `INVALID_ADDRESS` if `mem` is not the range's VM's memory (the records were
    /// taken: never so where a call gets its caller's memory).
    ///
    /// The default reads them into a buffer on the stack. An implementation with a buffer of
    /// its own ([`crate::iommu::service::SmmuService`]) uses it instead: zeroing a fresh one
    /// on every call (the compiler's `memset`) cost more than the rest of an empty read.
    fn read_events_into(
        &mut self,
        vm: u32,
        range: GuestRange,
        mem: &mut dyn GuestMemory,
    ) -> Result<EventReadResult, HypError> {
        let mut out = [[0u64; 4]; EVENT_READ_MAX as usize];
        let n = ((range.len() / 32) as usize).min(out.len());
        let r = self.read_events(vm, &mut out[..n]);
        write_records(range, &out[..r.written], mem)?;
        Ok(r)
    }
    /// Whether `vm` may have event records waiting (a cheap hint: `false` only if certainly
    /// none is routed to it yet).
    fn events_pending(&mut self, vm: u32) -> bool;
    /// SMMU-wide counters.
    fn stats(&mut self) -> SmmuStats;
    /// Attaches stream `sid` of VM `vm` to `domain` (already validated), hitlessly; a nested
    /// domain's CDs are read out of the VM's memory `mem`, validated and shadowed.
    fn attach(
        &mut self,
        vm: u32,
        sid: u32,
        domain: Domain,
        mem: &dyn GuestMemory,
    ) -> Result<(), HypError>;
    /// SET_STE: VM `vm`'s stream `sid` set to what the 64-byte virtual STE at IPA `ipa` of its
    /// memory `mem` asks for. Ownership first (`NOT_OWNED`), then the STE copied once out of
    /// `mem` (`INVALID_ADDRESS` unless wholly in its RAM, and `mem` its memory), validated (the
    /// error names what is wrong), and installed hitlessly. Returns the domain. An implementation that holds a lock
    /// does all of it under one acquisition (the EL2 side does).
    fn set_ste(
        &mut self,
        vm: &VmSpec,
        sid: u32,
        ipa: u64,
        mem: &dyn GuestMemory,
    ) -> Result<Domain, HypError>;
    /// CLEAR_STE: VM `vm`'s stream `sid` blocked (`NOT_OWNED` unless it is the VM's), in one
    /// entry as [`SmmuCalls::set_ste`].
    fn clear_ste(&mut self, vm: u32, sid: u32, mem: &dyn GuestMemory) -> Result<(), HypError>;
    /// Validates every command of VM `vm`, then submits the valid ones as one batch with one
    /// SYNC. Returns how many reached the hardware, or the index in `cmds` of the first bad
    /// command (refused by validation or rejected by the SMMU; `cmds.len()` when the batch
    /// failed as a whole). `cmds` (the hypervisor's own copy) is left as it is. Configuration
    /// invalidations of nested streams re-read their CDs out of `mem` into the shadow tables
    /// first.
    fn invalidate(
        &mut self,
        vm: u32,
        cmds: &[Command],
        mem: &dyn GuestMemory,
    ) -> Result<usize, (usize, HypError)>;
    /// INVALIDATE: the `range.len() / 16` commands at `range` of VM `vm`'s memory `mem` (1 to
    /// [`INVALIDATE_MAX`]) copied once out of it, then [`SmmuCalls::invalidate`] on that copy.
    /// A range `mem` does not serve (or of another length) is `INVALID_ADDRESS` at index 0,
    /// with nothing read or sent.
    ///
    /// The default copies into a buffer on the stack (zeroed on every call: for test doubles);
    /// an implementation with a buffer of its own uses it instead (see
    /// [`SmmuCalls::read_events_into`]).
    fn invalidate_from(
        &mut self,
        vm: u32,
        range: GuestRange,
        mem: &dyn GuestMemory,
    ) -> Result<usize, (usize, HypError)> {
        let mut buf = [Command::default(); INVALIDATE_MAX as usize];
        let cmds = read_commands(range, &mut buf, mem)?;
        self.invalidate(vm, cmds, mem)
    }
    /// [`SmmuCalls::invalidate`] as a command queue executes `cmds` (the Linux host's emulated
    /// SMMU; a guest's INVALIDATE, which fails whole, never comes here): every command is
    /// validated first, then the ones before the first refused command (refused by validation,
    /// or a configuration invalidation whose CDs are now refused) are submitted as one batch
    /// with one SYNC, and the error names the refused one, in one call. Returns how many reached
    /// the hardware, or the index of the first bad command (as for `invalidate`; a failure of
    /// the submission names a command before the refused one, or the refused one when it is a
    /// failure of the whole batch).
    fn invalidate_prefix(
        &mut self,
        vm: u32,
        cmds: &[Command],
        mem: &dyn GuestMemory,
    ) -> Result<usize, (usize, HypError)>;
    /// Records VM `vm`'s power vote and applies the decision.
    fn pm_vote(&mut self, vm: u32, vote: Vote) -> PmVoteResult;
    /// Power-management status.
    fn pm_status(&mut self) -> PmStatus;
    /// Whether VM `vm` may inject power losses (test platforms: the host only).
    fn may_inject(&mut self, vm: u32) -> bool;
    /// VM `vm` injects an unexpected power loss now (`after_writes` = 0) or before the
    /// `after_writes`-th SMMU register write from now. `NOT_SUPPORTED` unless it may; refused,
    /// with nothing armed, where the loss would open an untranslated window.
    fn inject_power_loss(&mut self, vm: u32, after_writes: u64) -> Result<(), InjectError>;
    /// `NOT_OWNED` unless stream `sid` is assigned to VM `vm`; otherwise what the real SMMU
    /// supports (the stream's virtual STE is checked against it).
    fn owned_stream(&mut self, vm: u32, sid: u32) -> Result<SmmuCaps, HypError>;
}

/// The commands at `range` of `mem`, copied once into the start of `buf`: the copy every later
/// step works on. `INVALID_ADDRESS` at index 0 if they do not fit `buf`, the range is not a whole
/// number of commands or `mem` does not serve it.
#[inline]
pub fn read_commands<'b>(
    range: GuestRange,
    buf: &'b mut [Command],
    mem: &dyn GuestMemory,
) -> Result<&'b [Command], (usize, HypError)> {
    let n = (range.len() / 16) as usize;
    let cmds = match buf.get_mut(..n) {
        Some(c) if range.len().is_multiple_of(16) => c,
        _ => return Err((0, HypError::InvalidAddress)),
    };
    mem.read(range, cmds.as_mut_bytes()).map_err(|e| (0, e))?;
    Ok(cmds)
}

/// Writes `records` at the start of `range` of `mem` (nothing when there are none; at most
/// what `range` holds).
#[inline]
pub fn write_records(
    range: GuestRange,
    records: &[EventWords],
    mem: &mut dyn GuestMemory,
) -> Result<(), HypError> {
    crate::vm::memory::write_prefix(mem, range, records.as_bytes())
}

/// Why `PM_INJECT_LOSS` did nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InjectError {
    /// The caller may not inject power losses here (`NOT_SUPPORTED`).
    NotSupported,
    /// Not now: the loss would break the invariant (`REFUSED`, the reason's code in `x1`).
    Refused(Refusal),
}

impl InjectError {
    /// The status in `x0`.
    pub fn error(self) -> HypError {
        match self {
            InjectError::NotSupported => HypError::NotSupported,
            InjectError::Refused(_) => HypError::Refused,
        }
    }

    /// The value in `x1`: the refusal's code, or 0.
    pub fn detail(self) -> u64 {
        match self {
            InjectError::NotSupported => 0,
            InjectError::Refused(r) => r.code() as u64,
        }
    }
}
