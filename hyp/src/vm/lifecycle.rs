//! VM lifecycle shared between CPUs: which VMs are running, the peak concurrency seen, and
//! who stopped last; the power state of each physical CPU (a VM may own several: the Linux
//! host starts and stops its others with PSCI); counters a VM's CPUs keep without sharing a
//! cache line write. Lock-free: each VM's CPU only sets or clears its own bit, and a CPU's
//! state moves from off to starting only by one compare-and-swap.

use crate::vm::psci::CpuState;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

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

/// Physical CPUs the hypervisor keeps a power state for (its stacks are sized the same).
pub const MAX_CPUS: usize = 8;

/// The power state of every physical CPU, as VMs see it through PSCI: off (never started, or
/// turned off by `CPU_OFF` or a stop), starting (a `CPU_ON`, or the hypervisor's boot, is
/// bringing it up), on (running its VM). Only a CPU's own VM, or the boot CPU, changes it.
#[derive(Debug)]
pub struct CpuPower {
    states: [AtomicU8; MAX_CPUS],
}

const OFF: u8 = 0;
const ON_PENDING: u8 = 1;
const ON: u8 = 2;

impl Default for CpuPower {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuPower {
    /// Every CPU off.
    pub const fn new() -> Self {
        Self { states: [const { AtomicU8::new(OFF) }; MAX_CPUS] }
    }

    /// CPU `cpu`'s state (a CPU beyond [`MAX_CPUS`] is off).
    pub fn get(&self, cpu: u32) -> CpuState {
        match self.states.get(cpu as usize).map(|s| s.load(Ordering::Acquire)) {
            Some(ON) => CpuState::On,
            Some(ON_PENDING) => CpuState::OnPending,
            _ => CpuState::Off,
        }
    }

    /// Claims the start of CPU `cpu`: off becomes starting, atomically, so two CPUs of a VM
    /// racing to start it cannot both succeed. `Err` with the state it had otherwise.
    pub fn try_start(&self, cpu: u32) -> Result<(), CpuState> {
        let Some(s) = self.states.get(cpu as usize) else { return Err(CpuState::Off) };
        match s.compare_exchange(OFF, ON_PENDING, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => Ok(()),
            Err(_) => Err(self.get(cpu)),
        }
    }

    /// CPU `cpu` entered its VM.
    pub fn started(&self, cpu: u32) {
        if let Some(s) = self.states.get(cpu as usize) {
            s.store(ON, Ordering::Release);
        }
    }

    /// CPU `cpu` is turning off (or a start of it failed).
    pub fn stopped(&self, cpu: u32) {
        if let Some(s) = self.states.get(cpu as usize) {
            s.store(OFF, Ordering::Release);
        }
    }
}

/// A counter of one VM, one slot per CPU of it: each slot is written only by its CPU, with a
/// load and a store (no atomic read-modify-write on a line the VM's other CPUs write), and
/// the total is read for reports.
#[derive(Debug)]
pub struct PerCpuCounter {
    slots: [AtomicU64; platform::manifest::MAX_VM_CPUS as usize],
}

impl Default for PerCpuCounter {
    fn default() -> Self {
        Self::new()
    }
}

impl PerCpuCounter {
    /// Zero.
    pub const fn new() -> Self {
        Self { slots: [const { AtomicU64::new(0) }; platform::manifest::MAX_VM_CPUS as usize] }
    }

    /// Adds one in slot `slot` (the CPU's place among its VM's, `Cpus::index`), called only
    /// on that CPU; returns the slot's new count.
    #[inline]
    pub fn add_one(&self, slot: usize) -> u64 {
        let s = &self.slots[slot % self.slots.len()];
        let n = s.load(Ordering::Relaxed) + 1;
        s.store(n, Ordering::Relaxed);
        n
    }

    /// The sum over every CPU.
    pub fn total(&self) -> u64 {
        self.slots.iter().map(|s| s.load(Ordering::Relaxed)).sum()
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

    #[test]
    fn cpu_power_states() {
        let p = CpuPower::new();
        assert_eq!(p.get(1), CpuState::Off);
        assert_eq!(p.try_start(1), Ok(()));
        assert_eq!(p.get(1), CpuState::OnPending);
        assert_eq!(p.try_start(1), Err(CpuState::OnPending), "a second start is refused");
        p.started(1);
        assert_eq!(p.try_start(1), Err(CpuState::On));
        p.stopped(1);
        assert_eq!(p.try_start(1), Ok(()), "started again after CPU_OFF");
        assert_eq!(p.get(0), CpuState::Off, "others untouched");
        assert_eq!(p.get(MAX_CPUS as u32), CpuState::Off);
        assert_eq!(p.try_start(MAX_CPUS as u32), Err(CpuState::Off), "no such CPU");
        p.started(99);
        p.stopped(99);
    }

    #[test]
    fn exactly_one_cpu_wins_a_start() {
        use std::sync::Arc;
        for _ in 0..50 {
            let p = Arc::new(CpuPower::new());
            let wins: usize = (0..4)
                .map(|_| {
                    let p = p.clone();
                    std::thread::spawn(move || p.try_start(3).is_ok() as usize)
                })
                .collect::<std::vec::Vec<_>>()
                .into_iter()
                .map(|h| h.join().unwrap())
                .sum();
            assert_eq!(wins, 1);
        }
    }

    #[test]
    fn per_cpu_counters_add_up() {
        let c = PerCpuCounter::new();
        assert_eq!((c.add_one(0), c.add_one(0), c.add_one(1)), (1, 2, 1));
        assert_eq!(c.total(), 3);
        let c = std::sync::Arc::new(PerCpuCounter::new());
        let hs: std::vec::Vec<_> = (0..2)
            .map(|slot| {
                let c = c.clone();
                std::thread::spawn(move || (0..10_000).for_each(|_| _ = c.add_one(slot)))
            })
            .collect();
        hs.into_iter().for_each(|h| h.join().unwrap());
        assert_eq!(c.total(), 20_000, "no increment lost between two CPUs' slots");
    }
}
