//! What the SMMU service has to tell the hypervisor's log. The service keeps it under its lock;
//! the EL2 side takes it ([`super::SmmuService::take_report`]) and prints it once the lock is
//! released, for every caller alike (hypercalls, the Linux host's emulated SMMU, the SMMU's
//! interrupt). Nothing a VM repeats can flood the log: each kind is kept once until taken, a
//! failed attach once per VM, and the counters say how often.

use crate::iommu::driver::smmu::{Failure, SequenceError};
use host_abi::smmu::regs::Gerror;

/// One entry's news.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    /// Global errors acknowledged (a service failure re-initialises the SMMU from the
    /// hypervisor's own tables).
    pub errors: Gerror,
    /// The SMMU could not be resumed (first failure of a run of them): it stays disabled with
    /// GBPA.ABORT, every stream aborts, and every later entry tries again.
    pub resume_failed: Option<SequenceError>,
    /// The SMMU failed (a wait on it timed out; said once): translation was made no weaker as
    /// far as it could be, every later call that needs the hardware answers `DEVICE_ERROR` and
    /// power transitions are refused.
    pub failed: Option<Failure>,
    /// The SMMU failed to install a VM's STE: `(vm, sid)`, the first of that VM (the stream is
    /// left blocked).
    pub attach_failed: Option<(u32, u32)>,
    /// After a failure, a stream could not even be written back to abort: `(vm, sid)`, the first
    /// of that VM. Its
    /// entry in memory says abort from the first store on (word 0 alone); what failed is the
    /// invalidation that makes the SMMU re-read it, which the next resume does.
    pub block_failed: Option<(u32, u32)>,
}

impl Default for Report {
    fn default() -> Self {
        Self {
            errors: Gerror::empty(),
            resume_failed: None,
            failed: None,
            attach_failed: None,
            block_failed: None,
        }
    }
}

impl Report {
    /// Nothing to log.
    pub fn is_empty(&self) -> bool {
        *self == Report::default()
    }
}

/// The service's side: the report being built, and what is logged only once.
#[derive(Debug, Default)]
pub(super) struct Reporter {
    pub(super) report: Report,
    /// The report holds something (checked on every entry: one load).
    pub(super) pending: bool,
    /// VMs whose failed attach was reported (bit per VM).
    attach_reported: u64,
    /// VMs whose stream that could not be blocked was reported (bit per VM).
    block_reported: u64,
    /// Streams that could not be written back to abort after a failure.
    pub(super) block_failures: u64,
    /// Attaches the SMMU failed.
    pub(super) attach_failures: u64,
}

impl Reporter {
    pub(super) fn errors(&mut self, e: Gerror) {
        if !e.is_empty() {
            self.report.errors |= e;
            self.pending = true;
        }
    }

    pub(super) fn resume_failed(&mut self, e: SequenceError) {
        self.report.resume_failed.get_or_insert(e);
        self.pending = true;
    }

    pub(super) fn failed(&mut self, f: Failure) {
        self.report.failed = Some(f);
        self.pending = true;
    }

    pub(super) fn attach_failed(&mut self, vm: u32, sid: u32) {
        self.attach_failures += 1;
        let bit = 1u64 << (vm % 64);
        if self.attach_reported & bit == 0 {
            self.attach_reported |= bit;
            self.report.attach_failed.get_or_insert((vm, sid));
            self.pending = true;
        }
    }

    pub(super) fn block_failed(&mut self, vm: u32, sid: u32) {
        self.block_failures += 1;
        let bit = 1u64 << (vm % 64);
        if self.block_reported & bit == 0 {
            self.block_reported |= bit;
            self.report.block_failed.get_or_insert((vm, sid));
            self.pending = true;
        }
    }

    pub(super) fn take(&mut self) -> Option<Report> {
        if !self.pending {
            return None;
        }
        self.pending = false;
        Some(core::mem::take(&mut self.report))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_vm_is_reported_once_per_kind_and_counted_every_time() {
        let mut r = Reporter::default();
        assert_eq!(r.take(), None, "nothing to say");
        r.block_failed(2, 0x10);
        r.block_failed(2, 0x11);
        r.attach_failed(1, 0x18);
        let t = r.take().expect("reported");
        assert_eq!((t.block_failed, t.attach_failed), (Some((2, 0x10)), Some((1, 0x18))));
        assert!(!t.is_empty() && Report::default().is_empty());
        // Again for the same VMs: counted, not reported.
        r.block_failed(2, 0x12);
        r.attach_failed(1, 0x19);
        assert_eq!(r.take(), None);
        // Other VMs are reported on their own (a bit per VM).
        r.block_failed(3, 0x20);
        r.attach_failed(2, 0x30);
        let t = r.take().expect("other VMs");
        assert_eq!((t.block_failed, t.attach_failed), (Some((3, 0x20)), Some((2, 0x30))));
        assert_eq!((r.block_failures, r.attach_failures), (4, 3));
    }
}
