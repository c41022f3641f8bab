//! The firmware interfaces a VM reaches with `SMC #0` (trapped by the hypervisor): PSCI 1.1 and
//! the SMCCC 1.1 Arm architecture calls. A VM has exactly one vCPU on its own physical CPU, so
//! `CPU_OFF`, `SYSTEM_OFF` and `SYSTEM_RESET` all stop the VM (nothing is restarted); when every
//! VM has stopped the hypervisor powers the machine off.
//!
//! What is offered (`PSCI_FEATURES` answers 0 for exactly these): [`VERSION`], [`CPU_SUSPEND`]
//! (standby only: it returns at once), [`CPU_OFF`], [`CPU_ON`] (the caller's own CPU is
//! [`ALREADY_ON`]; any other CPU is [`INVALID_PARAMETERS`]: it is not the VM's), [`AFFINITY_INFO`]
//! (level 0, own CPU), [`MIGRATE_INFO_TYPE`] (2: no Trusted OS to migrate), [`SYSTEM_OFF`],
//! [`SYSTEM_RESET`], [`FEATURES`], and SMCCC's [`SMCCC_VERSION`] (1.1) and [`SMCCC_ARCH_FEATURES`].
//! `SMC` with a non-zero immediate, unknown IDs and every other PSCI function return
//! [`NOT_SUPPORTED`].

/// `PSCI_VERSION` (SMC32). Returns `(major << 16) | minor`.
pub const VERSION: u32 = 0x8400_0000;
/// `CPU_SUSPEND` (SMC32; [`CPU_SUSPEND64`] is the SMC64 form).
pub const CPU_SUSPEND: u32 = 0x8400_0001;
/// `CPU_SUSPEND` (SMC64).
pub const CPU_SUSPEND64: u32 = 0xC400_0001;
/// `CPU_OFF` (SMC32). Stops the calling VM; does not return.
pub const CPU_OFF: u32 = 0x8400_0002;
/// `CPU_ON` (SMC64; `0x8400_0003` is the SMC32 form).
pub const CPU_ON: u32 = 0xC400_0003;
/// `CPU_ON` (SMC32).
pub const CPU_ON32: u32 = 0x8400_0003;
/// `AFFINITY_INFO` (SMC64; `0x8400_0004` is the SMC32 form).
pub const AFFINITY_INFO: u32 = 0xC400_0004;
/// `AFFINITY_INFO` (SMC32).
pub const AFFINITY_INFO32: u32 = 0x8400_0004;
/// `MIGRATE_INFO_TYPE` (SMC32).
pub const MIGRATE_INFO_TYPE: u32 = 0x8400_0006;
/// `SYSTEM_OFF` (SMC32). Stops the calling VM; does not return.
pub const SYSTEM_OFF: u32 = 0x8400_0008;
/// `SYSTEM_RESET` (SMC32). Stops the calling VM (it is not restarted); does not return.
pub const SYSTEM_RESET: u32 = 0x8400_0009;
/// `PSCI_FEATURES` (SMC32): `x1` = a function ID; 0 if implemented, else [`NOT_SUPPORTED`].
pub const FEATURES: u32 = 0x8400_000A;
/// `SYSTEM_SUSPEND` (SMC64). Not offered.
pub const SYSTEM_SUSPEND: u32 = 0xC400_000E;
/// `SYSTEM_RESET2` (SMC64). Not offered.
pub const SYSTEM_RESET2: u32 = 0xC400_0012;

/// `SMCCC_VERSION`: returns `(major << 16) | minor`.
pub const SMCCC_VERSION: u32 = 0x8000_0000;
/// `SMCCC_ARCH_FEATURES`: `x1` = an Arm architecture service function ID.
pub const SMCCC_ARCH_FEATURES: u32 = 0x8000_0001;
/// `SMCCC_ARCH_SOC_ID`. Not offered.
pub const SMCCC_ARCH_SOC_ID: u32 = 0x8000_0002;
/// `SMCCC_ARCH_WORKAROUND_1` (Spectre variant 2, branch target injection).
pub const SMCCC_ARCH_WORKAROUND_1: u32 = 0x8000_8000;
/// `SMCCC_ARCH_WORKAROUND_2` (Spectre variant 4, speculative store bypass). Not offered: a PE
/// with `PSTATE.SSBS` lets the OS mitigate it itself.
pub const SMCCC_ARCH_WORKAROUND_2: u32 = 0x8000_7FFF;
/// `SMCCC_ARCH_WORKAROUND_3` (Spectre-BHB, branch history injection).
pub const SMCCC_ARCH_WORKAROUND_3: u32 = 0x8000_3FFF;

/// The PSCI version the hypervisor reports to VMs (1.1).
pub const VERSION_1_1: u32 = 0x0001_0001;
/// The SMCCC version the hypervisor reports to VMs (1.1).
pub const SMCCC_VERSION_1_1: u32 = 0x0001_0001;
/// `MIGRATE_INFO_TYPE`: "a Trusted OS is not present or does not require migration".
pub const MIGRATE_INFO_NONE: u32 = 2;

/// PSCI/SMCCC `SUCCESS`.
pub const SUCCESS: i32 = 0;
/// PSCI/SMCCC `NOT_SUPPORTED`.
pub const NOT_SUPPORTED: i32 = -1;
/// PSCI `INVALID_PARAMETERS`.
pub const INVALID_PARAMETERS: i32 = -2;
/// PSCI `DENIED`.
pub const DENIED: i32 = -3;
/// PSCI `ALREADY_ON`.
pub const ALREADY_ON: i32 = -4;
/// PSCI `ON_PENDING`: a `CPU_ON` of that CPU is under way.
pub const ON_PENDING: i32 = -5;
/// PSCI `INTERNAL_FAILURE`.
pub const INTERNAL_FAILURE: i32 = -6;
/// PSCI `INVALID_ADDRESS`: the entry point of a `CPU_ON` is not the caller's memory.
pub const INVALID_ADDRESS: i32 = -9;
/// SMCCC `NOT_REQUIRED` (answer of `SMCCC_ARCH_FEATURES` for a workaround the PE does not need,
/// used for `WORKAROUND_2`).
pub const SMCCC_NOT_REQUIRED: i32 = -2;
/// `SMCCC_ARCH_FEATURES` answer for `WORKAROUND_1`/`WORKAROUND_3`: "implemented, but this PE is
/// not affected" (calling it is a no-op).
pub const SMCCC_WORKAROUND_UNAFFECTED: i32 = 1;
/// `AFFINITY_INFO`: the CPU is on.
pub const AFFINITY_ON: i32 = 0;
/// `AFFINITY_INFO`: the CPU is off.
pub const AFFINITY_OFF: i32 = 1;
/// `AFFINITY_INFO`: the CPU is being turned on.
pub const AFFINITY_ON_PENDING: i32 = 2;

/// Whether a function ID is in the PSCI (standard secure service) ranges.
pub const fn is_psci(function: u32) -> bool {
    let base = function & !(1 << 30); // SMC32 and SMC64 share the numbering
    base >= 0x8400_0000 && base <= 0x8400_001F
}
