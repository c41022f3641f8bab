//! What the hypervisor answers to an `SMC` a VM made (trapped by `HCR_EL2.TSC`): PSCI 1.1 and
//! the SMCCC 1.1 Arm architecture calls, as `host_abi::psci` documents them. Pure: the EL2 trap
//! handler passes the immediate, the argument registers, the caller (its MPIDR, its CPUs and
//! RAM from the manifest, what the CPU's ID registers say about Spectre) and the power state
//! of the CPUs, and applies the decision.
//!
//! A VM may own several CPUs (the Linux host: `VmSpec::cpus`). The hypervisor starts only the
//! first; `CPU_ON` of another of the caller's own CPUs starts it at the caller's entry point
//! and context, `CPU_OFF` turns the calling CPU off (the whole VM stops only when it was its
//! last CPU on), `AFFINITY_INFO` reports on/off/on-pending. Every one of them names only the
//! caller's CPUs: a CPU of another VM (or one that does not exist) is `INVALID_PARAMETERS`,
//! whatever its state, so a VM learns nothing of another's CPUs.
#![forbid(unsafe_code)]

use host_abi::psci::*;
use platform::{Cpus, MemRange};

/// The decision for one trapped SMC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciAction {
    /// Return this value in `x0` and resume the VM after the SMC.
    Return(u64),
    /// Stop the VM (every vCPU of it turns off).
    StopVm(StopReason),
    /// `CPU_OFF` of a CPU whose VM keeps another CPU on: this CPU alone turns off.
    CpuOff,
    /// `CPU_ON` of `cpu`, one of the caller's CPUs and off: start it at EL1 at `entry` (an IPA
    /// in the caller's RAM) with `context` in `x0`; return `SUCCESS` to the caller (or what the
    /// start failed with).
    CpuOn {
        /// The CPU to start (linear index).
        cpu: u32,
        /// Where it enters the VM.
        entry: u64,
        /// Its `x0`.
        context: u64,
    },
}

/// The power state of a CPU as PSCI reports it (`AFFINITY_INFO`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuState {
    /// Off: `CPU_ON` may start it.
    Off,
    /// A `CPU_ON` of it is under way.
    OnPending,
    /// On.
    On,
}

impl CpuState {
    /// The `AFFINITY_INFO` answer.
    pub fn affinity_info(self) -> i32 {
        match self {
            CpuState::On => AFFINITY_ON,
            CpuState::Off => AFFINITY_OFF,
            CpuState::OnPending => AFFINITY_ON_PENDING,
        }
    }
}

/// Why a VM stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// PSCI SYSTEM_OFF.
    SystemOff,
    /// PSCI SYSTEM_RESET: the VM is stopped, not restarted (its images are not reloaded).
    SystemReset,
    /// PSCI CPU_OFF of its last vCPU on.
    CpuOff,
    /// The VM cannot make progress: its own exception vector faults (a fault would be
    /// re-injected forever).
    Crashed,
}

impl StopReason {
    /// In words, for logs.
    pub fn describe(self) -> &'static str {
        match self {
            StopReason::SystemOff => "SYSTEM_OFF",
            StopReason::SystemReset => "SYSTEM_RESET: stopped, not restarted",
            StopReason::CpuOff => "CPU_OFF",
            StopReason::Crashed => "crash: its exception vector faults",
        }
    }
}

/// Affinity fields of an MPIDR (Aff3, Aff2, Aff1, Aff0).
pub const MPIDR_AFFINITY: u64 = 0xff_00ff_ffff;

/// What the physical CPU's ID registers say about the Spectre variants SMCCC has workaround
/// calls for. The hypervisor implements no firmware mitigation, so the only honest answers are
/// "this PE is not affected" (when the architecture says so) and "not supported".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpectreState {
    /// `ID_AA64PFR0_EL1.CSV2` (bits 59:56): 1 or more means branch targets trained in one
    /// context cannot steer another (variant 2 not exploitable); 3 (FEAT_CSV2_3) also covers
    /// branch history (Spectre-BHB).
    pub csv2: u8,
    /// `ID_AA64MMFR1_EL1.ECBHB` (bits 63:60) non-zero: taking an exception clears branch
    /// history (Spectre-BHB not exploitable across exception levels).
    pub ecbhb: bool,
}

impl SpectreState {
    /// From `ID_AA64PFR0_EL1` and `ID_AA64MMFR1_EL1`.
    pub fn from_id_regs(pfr0: u64, mmfr1: u64) -> Self {
        Self { csv2: ((pfr0 >> 56) & 0xf) as u8, ecbhb: (mmfr1 >> 60) & 0xf != 0 }
    }

    /// Variant 2 (WORKAROUND_1) needs no mitigation on this PE.
    pub fn v2_unaffected(self) -> bool {
        self.csv2 >= 1
    }

    /// Spectre-BHB (WORKAROUND_3) needs no mitigation on this PE.
    pub fn bhb_unaffected(self) -> bool {
        self.csv2 >= 3 || self.ecbhb
    }
}

/// The linear index of the CPU with MPIDR affinity `mpidr` (its `Aff0` when Aff1..Aff3 are
/// zero, as on `virt` with up to 16 CPUs: `platform::linux::HostTree::mpidr` is the inverse),
/// or `None` for an affinity no CPU of this board has.
pub fn cpu_of(mpidr: u64) -> Option<u32> {
    let aff = mpidr & MPIDR_AFFINITY;
    (aff <= 0xff).then_some(aff as u32)
}

/// The calling VM, as PSCI sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    /// MPIDR_EL1 of the calling vCPU (the physical CPU's: `VMPIDR_EL2` is set to it).
    pub mpidr: u64,
    /// The CPU's Spectre state.
    pub spectre: SpectreState,
    /// The VM's CPUs (the manifest's).
    pub cpus: Cpus,
    /// The VM's RAM (a `CPU_ON` entry point must lie in it).
    pub mem: MemRange,
}

fn ret(v: i32) -> PsciAction {
    PsciAction::Return(v as i64 as u64)
}

/// `CPU_SUSPEND` power_state (original format): bit 16 StateType (1 = power down), bits 25:24
/// PowerLevel. Only a core standby is offered: it returns at once (one vCPU per physical CPU:
/// there is nothing else to run meanwhile, and PSCI lets a standby end on any wake-up event).
fn cpu_suspend(power_state: u32) -> PsciAction {
    let powerdown = power_state & (1 << 16) != 0;
    let level = (power_state >> 24) & 3;
    if powerdown || level != 0 {
        ret(INVALID_PARAMETERS)
    } else {
        ret(SUCCESS)
    }
}

/// Whether `function` is a PSCI call this hypervisor implements (what `PSCI_FEATURES` reports).
fn psci_implemented(function: u32) -> bool {
    matches!(
        function,
        VERSION
            | CPU_SUSPEND
            | CPU_SUSPEND64
            | CPU_OFF
            | CPU_ON
            | CPU_ON32
            | AFFINITY_INFO
            | AFFINITY_INFO32
            | MIGRATE_INFO_TYPE
            | SYSTEM_OFF
            | SYSTEM_RESET
            | FEATURES
    )
}

/// `PSCI_FEATURES(function)`.
fn psci_features(function: u32) -> PsciAction {
    match function {
        // CPU_SUSPEND's answer is its feature flags: original power_state format (bit 1 = 0),
        // no OS-initiated mode (bit 0 = 0).
        f if psci_implemented(f) => ret(SUCCESS),
        // SMCCC_VERSION is discovered through PSCI_FEATURES (SMCCC 1.1, section 7).
        SMCCC_VERSION => ret(SUCCESS),
        _ => ret(NOT_SUPPORTED),
    }
}

/// `SMCCC_ARCH_FEATURES(function)`.
fn arch_features(function: u32, spectre: SpectreState) -> PsciAction {
    match function {
        SMCCC_VERSION | SMCCC_ARCH_FEATURES => ret(SUCCESS),
        SMCCC_ARCH_WORKAROUND_1 if spectre.v2_unaffected() => ret(SMCCC_WORKAROUND_UNAFFECTED),
        SMCCC_ARCH_WORKAROUND_3 if spectre.bhb_unaffected() => ret(SMCCC_WORKAROUND_UNAFFECTED),
        // No firmware mitigation exists here: on an affected PE the VM is told so (SMCCC:
        // NOT_SUPPORTED). WORKAROUND_2 is never offered (PSTATE.SSBS is the OS's own control).
        _ => ret(NOT_SUPPORTED),
    }
}

/// `CPU_ON(target, entry, context)`.
fn cpu_on(
    target: u64,
    entry: u64,
    context: u64,
    caller: &Caller,
    state: &dyn Fn(u32) -> CpuState,
) -> PsciAction {
    let Some(cpu) = cpu_of(target).filter(|&c| caller.cpus.contains(c)) else {
        // Not one of this VM's CPUs.
        return ret(INVALID_PARAMETERS);
    };
    match state(cpu) {
        CpuState::On => ret(ALREADY_ON),
        CpuState::OnPending => ret(ON_PENDING),
        // An entry point the CPU could not fetch from (not the caller's RAM, or misaligned):
        // refused before anything starts.
        CpuState::Off if !entry.is_multiple_of(4) || !caller.mem.contains_range(entry, 4) => {
            ret(INVALID_ADDRESS)
        }
        CpuState::Off => PsciAction::CpuOn { cpu, entry, context },
    }
}

/// `CPU_OFF` of the calling CPU: the VM stops only if no other CPU of it is on (or starting).
fn cpu_off(caller: &Caller, state: &dyn Fn(u32) -> CpuState) -> PsciAction {
    let me = cpu_of(caller.mpidr);
    let others_on = caller.cpus.iter().any(|c| Some(c) != me && state(c) != CpuState::Off);
    if others_on {
        PsciAction::CpuOff
    } else {
        PsciAction::StopVm(StopReason::CpuOff)
    }
}

/// `AFFINITY_INFO(target, lowest_affinity_level)`: level 0 only, the caller's CPUs only.
fn affinity_info(
    target: u64,
    level: u64,
    caller: &Caller,
    state: &dyn Fn(u32) -> CpuState,
) -> PsciAction {
    match cpu_of(target).filter(|&c| caller.cpus.contains(c)) {
        Some(cpu) if level == 0 => ret(state(cpu).affinity_info()),
        _ => ret(INVALID_PARAMETERS),
    }
}

/// Decides what to do for `SMC #imm` with `x0..x3` = `x`; `state(cpu)` is the power state of
/// CPU `cpu` (asked only of the caller's own CPUs).
pub fn handle(
    imm: u16,
    x: [u64; 4],
    caller: &Caller,
    state: &dyn Fn(u32) -> CpuState,
) -> PsciAction {
    if imm != 0 {
        // SMCCC calls use SMC #0; other immediates are not a call we know.
        return ret(NOT_SUPPORTED);
    }
    // The function ID is w0; SMC32 calls take 32-bit arguments.
    let function = x[0] as u32;
    let smc64 = function & (1 << 30) != 0;
    let arg = |i: usize| if smc64 { x[i] } else { x[i] & 0xffff_ffff };
    match function {
        VERSION => PsciAction::Return(VERSION_1_1 as u64),
        CPU_SUSPEND | CPU_SUSPEND64 => cpu_suspend(arg(1) as u32),
        CPU_OFF => cpu_off(caller, state),
        CPU_ON | CPU_ON32 => cpu_on(arg(1), arg(2), arg(3), caller, state),
        AFFINITY_INFO | AFFINITY_INFO32 => affinity_info(arg(1), arg(2), caller, state),
        MIGRATE_INFO_TYPE => PsciAction::Return(MIGRATE_INFO_NONE as u64),
        SYSTEM_OFF => PsciAction::StopVm(StopReason::SystemOff),
        SYSTEM_RESET => PsciAction::StopVm(StopReason::SystemReset),
        FEATURES => psci_features(x[1] as u32),
        SMCCC_VERSION => PsciAction::Return(SMCCC_VERSION_1_1 as u64),
        SMCCC_ARCH_FEATURES => arch_features(x[1] as u32, caller.spectre),
        // Advertised as "implemented, not required on this PE": a no-op.
        SMCCC_ARCH_WORKAROUND_1 if caller.spectre.v2_unaffected() => ret(SUCCESS),
        SMCCC_ARCH_WORKAROUND_3 if caller.spectre.bhb_unaffected() => ret(SUCCESS),
        // Every other PSCI function, SMCCC call and non-SMCCC SMC is refused the same way.
        _ => ret(NOT_SUPPORTED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: PsciAction = PsciAction::Return(u64::MAX);
    const RAM: MemRange = MemRange::new(0x4400_0000, 0x1000_0000);
    /// A VM with one CPU, CPU 1.
    const CALLER: Caller = Caller {
        mpidr: 0x8000_0001,
        spectre: SpectreState { csv2: 1, ecbhb: false },
        cpus: Cpus::one(1),
        mem: RAM,
    };

    /// CPU 1 on, and no other CPU asked about.
    fn only_cpu1_on(cpu: u32) -> CpuState {
        assert_eq!(cpu, 1, "asked about CPU {cpu}, not the caller's");
        CpuState::On
    }

    fn call(f: u32, a1: u64, a2: u64) -> PsciAction {
        handle(0, [f as u64, a1, a2, 0], &CALLER, &only_cpu1_on)
    }

    fn with(spectre: SpectreState) -> Caller {
        Caller { mpidr: 1, spectre, ..CALLER }
    }

    fn r(v: i32) -> PsciAction {
        PsciAction::Return(v as i64 as u64)
    }

    #[test]
    fn offered_calls() {
        assert_eq!(call(VERSION, 0, 0), PsciAction::Return(0x10001));
        assert_eq!(call(SYSTEM_OFF, 0, 0), PsciAction::StopVm(StopReason::SystemOff));
        assert_eq!(
            handle(0, [0xffff_ffff_8400_0002, 0, 0, 0], &CALLER, &only_cpu1_on),
            PsciAction::StopVm(StopReason::CpuOff),
            "only w0 is the function ID"
        );
        assert_eq!(call(MIGRATE_INFO_TYPE, 0, 0), PsciAction::Return(2));
        assert_eq!(call(0xC600_0000, 0, 0), NS, "a hypercall ID through SMC");
        assert_eq!(call(SYSTEM_RESET2, 0, 0), NS);
        assert_eq!(call(SYSTEM_SUSPEND, 0x4400_0000, 0), NS);
    }

    #[test]
    fn smc_with_a_non_zero_immediate_is_not_psci() {
        // Was served as PSCI: SMC #1 with x0 = SYSTEM_OFF stopped the VM.
        assert_eq!(handle(1, [SYSTEM_OFF as u64, 0, 0, 0], &CALLER, &only_cpu1_on), NS);
        assert_eq!(handle(0xffff, [VERSION as u64, 0, 0, 0], &CALLER, &only_cpu1_on), NS);
    }

    #[test]
    fn psci_features_answers_for_every_implemented_function() {
        // Was NOT_SUPPORTED for everything although PSCI_VERSION says 1.1 (PSCI_FEATURES is
        // mandatory since 1.0).
        for f in [
            VERSION,
            CPU_SUSPEND,
            CPU_SUSPEND64,
            CPU_OFF,
            CPU_ON,
            CPU_ON32,
            AFFINITY_INFO,
            AFFINITY_INFO32,
            MIGRATE_INFO_TYPE,
            SYSTEM_OFF,
            SYSTEM_RESET,
            FEATURES,
            SMCCC_VERSION,
        ] {
            assert_eq!(call(FEATURES, f as u64, 0), r(0), "PSCI_FEATURES({f:#x})");
        }
        for f in [SYSTEM_RESET2, SYSTEM_SUSPEND, 0x8400_0005, 0x8400_001f, SMCCC_ARCH_SOC_ID, 0] {
            assert_eq!(call(FEATURES, f as u64, 0), NS, "PSCI_FEATURES({f:#x})");
        }
        // Only w1 counts.
        assert_eq!(call(FEATURES, 0xdead_0000_8400_0000, 0), r(0));
    }

    #[test]
    fn cpu_on_and_affinity_info_know_only_the_callers_cpu() {
        assert_eq!(call(CPU_ON, 0x1, 0x4400_0000), r(ALREADY_ON), "own CPU (Aff0 = 1)");
        assert_eq!(call(CPU_ON, 0x8000_0001, 0x4400_0000), r(ALREADY_ON), "bit 31 ignored");
        for other in [0, 2, 0x100, 0x1_0000_0001] {
            assert_eq!(call(CPU_ON, other, 0x4400_0000), r(INVALID_PARAMETERS), "cpu {other:#x}");
        }
        for other in [0, 2, 0x100] {
            assert_eq!(call(CPU_ON32, other, 0), r(INVALID_PARAMETERS), "cpu {other:#x}");
        }
        // SMC32: the upper half of x1 is not part of the argument.
        assert_eq!(call(CPU_ON32, 0xffff_ffff_0000_0001, 0), r(ALREADY_ON));
        assert_eq!(call(AFFINITY_INFO, 1, 0), r(AFFINITY_ON));
        assert_eq!(call(AFFINITY_INFO, 1, 1), r(INVALID_PARAMETERS), "level 1");
        assert_eq!(call(AFFINITY_INFO, 0, 0), r(INVALID_PARAMETERS), "another CPU");
    }

    /// The Linux host: CPUs 0 and 1; the guests own CPUs 2 and 3.
    const HOST: Caller = Caller {
        mpidr: 0x8000_0000,
        spectre: SpectreState { csv2: 1, ecbhb: false },
        cpus: Cpus::range(0, 2),
        mem: RAM,
    };

    /// The host's call from CPU `me` with CPU 0 in state `s0` and CPU 1 in `s1`; asking about
    /// any other CPU fails the test (the answer must not depend on it).
    fn host(me: u32, s0: CpuState, s1: CpuState, x: [u64; 4]) -> PsciAction {
        let caller = Caller { mpidr: 0x8000_0000 | me as u64, ..HOST };
        let state = move |cpu: u32| match cpu {
            0 => s0,
            1 => s1,
            _ => panic!("asked about CPU {cpu}, not the caller's"),
        };
        handle(0, x, &caller, &state)
    }

    use CpuState::{Off, On, OnPending};

    #[test]
    fn cpu_on_starts_another_of_the_callers_cpus_at_its_entry_point() {
        let on = |target: u64, entry: u64| host(0, On, Off, [CPU_ON as u64, target, entry, 0x77]);
        assert_eq!(
            on(1, 0x4400_1000),
            PsciAction::CpuOn { cpu: 1, entry: 0x4400_1000, context: 0x77 }
        );
        assert_eq!(
            on(0x8000_0001, RAM.end() - 4),
            PsciAction::CpuOn { cpu: 1, entry: RAM.end() - 4, context: 0x77 }
        );
        // An entry point the CPU could not fetch from the caller's RAM.
        for entry in
            [0, RAM.base - 4, RAM.end(), RAM.end() - 2, 0x4400_1002, 0x4020_0000, u64::MAX - 3]
        {
            assert_eq!(on(1, entry), r(INVALID_ADDRESS), "entry {entry:#x}");
        }
        // SMC32: the upper halves are not part of the arguments.
        assert_eq!(
            host(
                0,
                On,
                Off,
                [CPU_ON32 as u64, 0xffff_0000_0000_0001, 0x1_4400_1000, 0x1_0000_0005]
            ),
            PsciAction::CpuOn { cpu: 1, entry: 0x4400_1000, context: 5 }
        );
        // Already on, or being started: not started again.
        assert_eq!(host(0, On, On, [CPU_ON as u64, 1, 0x4400_1000, 0]), r(ALREADY_ON));
        assert_eq!(host(0, On, OnPending, [CPU_ON as u64, 1, 0x4400_1000, 0]), r(ON_PENDING));
        assert_eq!(host(1, On, On, [CPU_ON as u64, 0, 0x4400_1000, 0]), r(ALREADY_ON));
        // CPU 1 may start CPU 0 again once it is off.
        assert_eq!(
            host(1, Off, On, [CPU_ON as u64, 0, 0x4400_0000, 9]),
            PsciAction::CpuOn { cpu: 0, entry: 0x4400_0000, context: 9 }
        );
    }

    /// A guest's CPU, a CPU that does not exist, an affinity beyond Aff0: `INVALID_PARAMETERS`
    /// for `CPU_ON` and `AFFINITY_INFO` alike, whatever the states (the helper fails if the
    /// decision even asks about them).
    #[test]
    fn cpus_that_are_not_the_callers_are_refused() {
        // Aff3 (bits 39:32) is not part of an SMC32 argument: tested with SMC64 below.
        for target in [2, 3, 4, 0xff, 0x100, 0x1_0000, 0x8000_0002] {
            for s1 in [Off, On, OnPending] {
                for f in [CPU_ON, CPU_ON32] {
                    assert_eq!(
                        host(0, On, s1, [f as u64, target, 0x4400_0000, 0]),
                        r(INVALID_PARAMETERS),
                        "CPU_ON({target:#x})"
                    );
                }
                for f in [AFFINITY_INFO, AFFINITY_INFO32] {
                    assert_eq!(
                        host(1, On, s1, [f as u64, target, 0, 0]),
                        r(INVALID_PARAMETERS),
                        "AFFINITY_INFO({target:#x})"
                    );
                }
            }
        }
        assert_eq!(
            host(0, On, Off, [CPU_ON as u64, 0x1_0000_0001, RAM.base, 0]),
            r(INVALID_PARAMETERS)
        );
        assert_eq!(
            host(0, On, Off, [AFFINITY_INFO as u64, 0x1_0000_0001, 0, 0]),
            r(INVALID_PARAMETERS)
        );
        // A one-CPU guest: the host's CPUs are not its.
        for target in [0, 2] {
            assert_eq!(call(CPU_ON, target, 0x4400_0000), r(INVALID_PARAMETERS));
            assert_eq!(call(AFFINITY_INFO, target, 0), r(INVALID_PARAMETERS));
        }
    }

    #[test]
    fn affinity_info_reports_each_of_the_callers_cpus() {
        for (s, want) in [(On, AFFINITY_ON), (Off, AFFINITY_OFF), (OnPending, AFFINITY_ON_PENDING)]
        {
            assert_eq!(host(0, On, s, [AFFINITY_INFO as u64, 1, 0, 0]), r(want), "{s:?}");
            assert_eq!(host(1, s, On, [AFFINITY_INFO32 as u64, 0, 0, 0]), r(want), "{s:?}");
        }
        assert_eq!((AFFINITY_ON, AFFINITY_OFF, AFFINITY_ON_PENDING), (0, 1, 2), "PSCI 1.1 5.1.5");
        assert_eq!(host(0, On, Off, [AFFINITY_INFO as u64, 0, 0, 0]), r(AFFINITY_ON), "itself");
        assert_eq!(host(0, On, On, [AFFINITY_INFO as u64, 1, 1, 0]), r(INVALID_PARAMETERS));
    }

    #[test]
    fn cpu_off_stops_the_vm_only_with_its_last_cpu() {
        let off = [CPU_OFF as u64, 0, 0, 0];
        assert_eq!(host(1, On, On, off), PsciAction::CpuOff, "CPU 1, CPU 0 stays");
        assert_eq!(host(0, On, On, off), PsciAction::CpuOff, "CPU 0, CPU 1 stays");
        assert_eq!(host(0, On, OnPending, off), PsciAction::CpuOff, "CPU 1 is starting");
        assert_eq!(host(0, On, Off, off), PsciAction::StopVm(StopReason::CpuOff), "the last");
        assert_eq!(host(1, Off, On, off), PsciAction::StopVm(StopReason::CpuOff), "the last");
        assert_eq!(call(CPU_OFF, 0, 0), PsciAction::StopVm(StopReason::CpuOff), "a one-CPU VM");
        // SYSTEM_OFF stops the whole VM from either CPU.
        let sys = [SYSTEM_OFF as u64, 0, 0, 0];
        assert_eq!(host(1, On, On, sys), PsciAction::StopVm(StopReason::SystemOff));
        // CPU_SUSPEND (standby) returns at once on either.
        assert_eq!(host(1, On, On, [CPU_SUSPEND as u64, 0, 0, 0]), r(SUCCESS));
    }

    #[test]
    fn mpidr_to_cpu() {
        assert_eq!(cpu_of(0), Some(0));
        assert_eq!(cpu_of(0x8000_0003), Some(3), "U and bit 31 are not affinity");
        assert_eq!(cpu_of(0x4100_00ff), Some(0xff), "MT (bit 24) is not affinity");
        assert_eq!(cpu_of(0x100), None, "Aff1");
        assert_eq!(cpu_of(0x1_0000), None, "Aff2");
        assert_eq!(cpu_of(0x1_0000_0000), None, "Aff3");
        for c in 0..16 {
            assert_eq!(cpu_of(platform::linux::HostTree::mpidr(c)), Some(c));
        }
    }

    #[test]
    fn cpu_suspend_offers_standby_only() {
        assert_eq!(call(CPU_SUSPEND, 0, 0), r(SUCCESS));
        assert_eq!(call(CPU_SUSPEND64, 0x1, 0), r(SUCCESS), "any standby state ID");
        assert_eq!(call(CPU_SUSPEND, 1 << 16, 0x4400_0000), r(INVALID_PARAMETERS), "powerdown");
        assert_eq!(call(CPU_SUSPEND, 1 << 24, 0), r(INVALID_PARAMETERS), "cluster level");
    }

    #[test]
    fn system_reset_stops_the_vm() {
        // Was NOT_SUPPORTED, which leaves a panicking Linux (panic=N) spinning forever.
        assert_eq!(call(SYSTEM_RESET, 0, 0), PsciAction::StopVm(StopReason::SystemReset));
    }

    #[test]
    fn smccc_version_and_arch_features() {
        assert_eq!(call(SMCCC_VERSION, 0, 0), PsciAction::Return(0x10001));
        assert_eq!(call(SMCCC_ARCH_FEATURES, SMCCC_ARCH_FEATURES as u64, 0), r(SUCCESS));
        assert_eq!(call(SMCCC_ARCH_FEATURES, SMCCC_VERSION as u64, 0), r(SUCCESS));
        assert_eq!(call(SMCCC_ARCH_FEATURES, SMCCC_ARCH_SOC_ID as u64, 0), NS);
        assert_eq!(call(SMCCC_ARCH_FEATURES, SMCCC_ARCH_WORKAROUND_2 as u64, 0), NS);
        assert_eq!(call(SMCCC_ARCH_FEATURES, 0x8000_1234, 0), NS);
        assert_eq!(call(SMCCC_ARCH_WORKAROUND_2, 0, 0), NS);
    }

    #[test]
    fn spectre_answers_follow_the_id_registers() {
        let ask = |s: SpectreState, f: u32| {
            handle(0, [SMCCC_ARCH_FEATURES as u64, f as u64, 0, 0], &with(s), &only_cpu1_on)
        };
        let affected = SpectreState { csv2: 0, ecbhb: false };
        assert_eq!(ask(affected, SMCCC_ARCH_WORKAROUND_1), NS);
        assert_eq!(ask(affected, SMCCC_ARCH_WORKAROUND_3), NS);
        let csv2 = SpectreState::from_id_regs(1 << 56, 0);
        assert_eq!(ask(csv2, SMCCC_ARCH_WORKAROUND_1), r(SMCCC_WORKAROUND_UNAFFECTED));
        assert_eq!(ask(csv2, SMCCC_ARCH_WORKAROUND_3), NS, "CSV2 = 1 says nothing of BHB");
        let csv2_3 = SpectreState::from_id_regs(3 << 56, 0);
        assert_eq!(ask(csv2_3, SMCCC_ARCH_WORKAROUND_3), r(SMCCC_WORKAROUND_UNAFFECTED));
        let ecbhb = SpectreState::from_id_regs(0, 1 << 60);
        assert_eq!(ask(ecbhb, SMCCC_ARCH_WORKAROUND_3), r(SMCCC_WORKAROUND_UNAFFECTED));
        // The calls themselves: a no-op where unaffected, refused where nothing mitigates.
        let wa1 = |s| handle(0, [SMCCC_ARCH_WORKAROUND_1 as u64, 0, 0, 0], &with(s), &only_cpu1_on);
        assert_eq!(wa1(csv2), r(SUCCESS));
        assert_eq!(wa1(affected), NS);
    }

    /// Every combination of CSV2 (0..=3) and ECBHB, for both workarounds, as `ARCH_FEATURES`
    /// answers and as the calls themselves. A wrong "not required" makes a VM's kernel skip its
    /// mitigation: WORKAROUND_1 depends on CSV2 alone (ECBHB clears branch *history*, not
    /// branch targets), WORKAROUND_3 on CSV2 = 3 or ECBHB.
    #[test]
    fn spectre_answers_for_every_csv2_and_ecbhb() {
        let ask = |s: SpectreState, f: u32, arg: u32| {
            handle(0, [f as u64, arg as u64, 0, 0], &with(s), &only_cpu1_on)
        };
        let unaffected = r(SMCCC_WORKAROUND_UNAFFECTED);
        for csv2 in 0..=3u8 {
            for ecbhb in [false, true] {
                let s = SpectreState::from_id_regs(
                    (csv2 as u64) << 56,
                    if ecbhb { 1 << 60 } else { 0 },
                );
                assert_eq!(s, SpectreState { csv2, ecbhb });
                let v2 = csv2 >= 1;
                let bhb = csv2 == 3 || ecbhb;
                let what = std::format!("CSV2 = {csv2}, ECBHB = {ecbhb}");
                assert_eq!(
                    ask(s, SMCCC_ARCH_FEATURES, SMCCC_ARCH_WORKAROUND_1),
                    if v2 { unaffected } else { NS },
                    "ARCH_FEATURES(WORKAROUND_1), {what}"
                );
                assert_eq!(
                    ask(s, SMCCC_ARCH_FEATURES, SMCCC_ARCH_WORKAROUND_3),
                    if bhb { unaffected } else { NS },
                    "ARCH_FEATURES(WORKAROUND_3), {what}"
                );
                assert_eq!(
                    ask(s, SMCCC_ARCH_WORKAROUND_1, 0),
                    if v2 { r(SUCCESS) } else { NS },
                    "WORKAROUND_1, {what}"
                );
                assert_eq!(
                    ask(s, SMCCC_ARCH_WORKAROUND_3, 0),
                    if bhb { r(SUCCESS) } else { NS },
                    "WORKAROUND_3, {what}"
                );
                // WORKAROUND_2 is never offered, whatever the CPU says.
                assert_eq!(ask(s, SMCCC_ARCH_FEATURES, SMCCC_ARCH_WORKAROUND_2), NS, "{what}");
                assert_eq!(ask(s, SMCCC_ARCH_WORKAROUND_2, 0), NS, "{what}");
            }
        }
        // ECBHB without CSV2: WORKAROUND_1 is required (and not offered), WORKAROUND_3 is not.
        let ecbhb_only = SpectreState { csv2: 0, ecbhb: true };
        assert_eq!(ask(ecbhb_only, SMCCC_ARCH_FEATURES, SMCCC_ARCH_WORKAROUND_1), NS);
        assert_eq!(ask(ecbhb_only, SMCCC_ARCH_FEATURES, SMCCC_ARCH_WORKAROUND_3), unaffected);
    }

    /// Only the CSV2 and ECBHB fields count, and every non-zero value of ECBHB.
    #[test]
    fn spectre_fields_are_read_from_their_bits_only() {
        // ID_AA64PFR0_EL1: CSV3 (63:60) and DIT (51:48) beside CSV2 (59:56).
        let s = SpectreState::from_id_regs((1 << 60) | (0xf << 48) | (1 << 55), !(0xf << 60));
        assert_eq!(s, SpectreState { csv2: 0, ecbhb: false });
        assert_eq!(SpectreState::from_id_regs(0xf << 56, 0).csv2, 0xf);
        assert_eq!(SpectreState::from_id_regs(2 << 56, 0).csv2, 2);
        for v in 1..=0xfu64 {
            assert!(SpectreState::from_id_regs(0, v << 60).ecbhb, "ECBHB = {v}");
        }
        // A CSV2 value above 3 (a future extension) still covers variant 2 and BHB.
        let future = SpectreState { csv2: 4, ecbhb: false };
        assert!(future.v2_unaffected() && future.bhb_unaffected());
        assert!(!SpectreState { csv2: 2, ecbhb: false }.bhb_unaffected());
    }

    #[test]
    fn smc32_arguments_are_their_low_halves() {
        // AFFINITY_INFO32: the upper halves of x1 and x2 are not part of the arguments.
        assert_eq!(call(AFFINITY_INFO32, 0xffff_ffff_0000_0001, 0xffff_ffff_0000_0000), r(0));
        // AFFINITY_INFO (SMC64): they are.
        assert_eq!(call(AFFINITY_INFO, 1, 1 << 32), r(INVALID_PARAMETERS));
        assert_eq!(call(AFFINITY_INFO, 0x1_0000_0001, 0), r(INVALID_PARAMETERS));
        assert_eq!(call(AFFINITY_INFO32, 0x8000_0001, 0), r(AFFINITY_ON), "bit 31 ignored");
        assert_eq!(call(CPU_SUSPEND, 0xffff_ffff_0000_0000, 0), r(SUCCESS));
        assert_eq!(call(CPU_SUSPEND64, 2 << 24, 0), r(INVALID_PARAMETERS), "level 2");
        // SMCCC_ARCH_FEATURES and PSCI_FEATURES take w1 only.
        assert_eq!(
            call(SMCCC_ARCH_FEATURES, 0xffff_ffff_0000_0000 | SMCCC_VERSION as u64, 0),
            r(0)
        );
    }

    #[test]
    fn stop_reasons_are_told_apart_in_the_log() {
        let all = [
            StopReason::SystemOff,
            StopReason::SystemReset,
            StopReason::CpuOff,
            StopReason::Crashed,
        ];
        let words = all.map(StopReason::describe);
        assert_eq!(words[0], "SYSTEM_OFF");
        assert!(words[1].starts_with("SYSTEM_RESET"));
        assert_eq!(words[2], "CPU_OFF");
        assert!(words[3].contains("crash"));
        for (i, a) in words.iter().enumerate() {
            assert!(words[i + 1..].iter().all(|b| a != b), "{a} twice");
        }
    }
}
