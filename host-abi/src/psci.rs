//! The PSCI functions a VM may call with `SMC #0` (trapped by the hypervisor).
//!
//! Only [`VERSION`], [`CPU_OFF`] and [`SYSTEM_OFF`] are offered; every other PSCI function
//! returns [`NOT_SUPPORTED`]. A VM has exactly one vCPU, so `CPU_OFF` and `SYSTEM_OFF` both stop
//! the VM; when every VM has stopped the hypervisor powers the machine off.

/// `PSCI_VERSION` (SMC32). Returns `(major << 16) | minor`.
pub const VERSION: u32 = 0x8400_0000;
/// `CPU_OFF` (SMC32). Stops the calling VM; does not return.
pub const CPU_OFF: u32 = 0x8400_0002;
/// `CPU_ON` (SMC64). Not offered to VMs.
pub const CPU_ON: u32 = 0xC400_0003;
/// `SYSTEM_OFF` (SMC32). Stops the calling VM; does not return.
pub const SYSTEM_OFF: u32 = 0x8400_0008;
/// `SYSTEM_RESET` (SMC32). Not offered to VMs.
pub const SYSTEM_RESET: u32 = 0x8400_0009;

/// The PSCI version the hypervisor reports to VMs (1.1).
pub const VERSION_1_1: u32 = 0x0001_0001;
/// PSCI `NOT_SUPPORTED`.
pub const NOT_SUPPORTED: i32 = -1;

/// Whether a function ID is in the PSCI (standard secure service) ranges.
pub const fn is_psci(function: u32) -> bool {
    let base = function & !(1 << 30); // SMC32 and SMC64 share the numbering
    base >= 0x8400_0000 && base <= 0x8400_001F
}
