//! What the hypervisor does with a PSCI call a VM made through `SMC #0`.

use host_abi::psci;

/// The decision for one trapped SMC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciAction {
    /// Return this value in `x0` and resume the VM after the SMC.
    Return(u64),
    /// Stop the VM (its only vCPU turns off).
    StopVm(StopReason),
}

/// Why a VM stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// PSCI SYSTEM_OFF.
    SystemOff,
    /// PSCI CPU_OFF of its only vCPU.
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
            StopReason::CpuOff => "CPU_OFF",
            StopReason::Crashed => "crash: its exception vector faults",
        }
    }
}

/// Decides what to do for an SMC with `x0` = `function` (only `w0` counts).
pub fn handle(function: u64) -> PsciAction {
    match function as u32 {
        psci::VERSION => PsciAction::Return(psci::VERSION_1_1 as u64),
        psci::CPU_OFF => PsciAction::StopVm(StopReason::CpuOff),
        psci::SYSTEM_OFF => PsciAction::StopVm(StopReason::SystemOff),
        // Every other PSCI function, and any non-PSCI SMC, is refused the same way.
        _ => PsciAction::Return(psci::NOT_SUPPORTED as i64 as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offered_calls() {
        assert_eq!(handle(0x8400_0000), PsciAction::Return(0x10001));
        assert_eq!(handle(0x8400_0008), PsciAction::StopVm(StopReason::SystemOff));
        assert_eq!(handle(0xffff_ffff_8400_0002), PsciAction::StopVm(StopReason::CpuOff));
        let refused = PsciAction::Return(u64::MAX);
        assert_eq!(handle(psci::CPU_ON as u64), refused);
        assert_eq!(handle(psci::SYSTEM_RESET as u64), refused);
        assert_eq!(handle(0xC600_0000), refused);
    }
}
