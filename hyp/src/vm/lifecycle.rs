//! VM lifecycle shared between CPUs: which VMs are running, the peak concurrency seen, and
//! who stopped last. Lock-free: each VM's CPU only sets or clears its own bit.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Lifecycle of up to 64 VMs.
#[derive(Debug)]
pub struct VmStates {
    count: u32,
    running: AtomicU64,
    stopped: AtomicU64,
    peak: AtomicU32,
}

/// What [`VmStates::stop`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopOutcome {
    /// Other VMs are still running.
    OthersRunning,
    /// This was the last VM: the machine can power off.
    LastVm,
    /// The VM had already stopped (or never started): nothing changed.
    NotRunning,
}

impl VmStates {
    /// `count` VMs, none started.
    pub const fn new(count: u32) -> Self {
        assert!(count >= 1 && count <= 64);
        Self {
            count,
            running: AtomicU64::new(0),
            stopped: AtomicU64::new(0),
            peak: AtomicU32::new(0),
        }
    }

    fn all(&self) -> u64 {
        if self.count == 64 {
            u64::MAX
        } else {
            (1u64 << self.count) - 1
        }
    }

    /// Marks VM `id` running (just before it is first entered).
    pub fn start(&self, id: u32) {
        let bit = 1u64 << id;
        let now = self.running.fetch_or(bit, Ordering::AcqRel) | bit;
        self.peak.fetch_max(now.count_ones(), Ordering::AcqRel);
    }

    /// Marks VM `id` stopped.
    pub fn stop(&self, id: u32) -> StopOutcome {
        let bit = 1u64 << id;
        if self.running.fetch_and(!bit, Ordering::AcqRel) & bit == 0 {
            return StopOutcome::NotRunning;
        }
        let stopped = self.stopped.fetch_or(bit, Ordering::AcqRel) | bit;
        if stopped == self.all() {
            StopOutcome::LastVm
        } else {
            StopOutcome::OthersRunning
        }
    }

    /// Bit `i` set while VM `i` runs.
    pub fn running_mask(&self) -> u64 {
        self.running.load(Ordering::Acquire)
    }

    /// Bit `i` set once VM `i` has stopped.
    pub fn stopped_mask(&self) -> u64 {
        self.stopped.load(Ordering::Acquire)
    }

    /// The most VMs ever running at once.
    pub fn peak_running(&self) -> u32 {
        self.peak.load(Ordering::Acquire)
    }

    /// Number of VMs.
    pub fn count(&self) -> u32 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle() {
        let s = VmStates::new(3);
        s.start(0);
        s.start(2);
        assert_eq!(s.running_mask(), 0b101);
        assert_eq!(s.peak_running(), 2);
        assert_eq!(s.stop(0), StopOutcome::OthersRunning);
        s.start(1);
        assert_eq!(s.peak_running(), 2, "peak counts simultaneous VMs only");
        assert_eq!(s.stop(0), StopOutcome::NotRunning);
        assert_eq!(s.stop(2), StopOutcome::OthersRunning);
        assert_eq!(s.stop(1), StopOutcome::LastVm);
        assert_eq!(s.running_mask(), 0);
    }

    #[test]
    fn exactly_one_cpu_sees_the_last_stop() {
        use std::sync::Arc;
        let s = Arc::new(VmStates::new(8));
        for i in 0..8 {
            s.start(i);
        }
        let handles: std::vec::Vec<_> = (0..8)
            .map(|i| {
                let s = s.clone();
                std::thread::spawn(move || s.stop(i))
            })
            .collect();
        let lasts = handles
            .into_iter()
            .filter(|_| true)
            .map(|h| h.join().unwrap())
            .filter(|o| *o == StopOutcome::LastVm)
            .count();
        assert_eq!(lasts, 1);
    }
}
