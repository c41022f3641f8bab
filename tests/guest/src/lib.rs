//! The bare-metal EL1 guest kernel that runs inside each VM: self-relocating entry, exception
//! vectors with a fault probe, hypercall and PSCI wrappers, a console over the hypercall, and
//! the test harness. The binaries (`guest-tests`, `demo`) are thin users of this library.
//!
//! Everything that touches the CPU is behind `cfg(target_arch = "aarch64")`; the harness's
//! message buffer and the pure helpers build and are tested on the host too.
#![cfg_attr(not(test), no_std)]
// Test functions return `Result<(), Msg>`: a fixed-size message is the point (no heap).
#![allow(clippy::result_large_err)]

#[cfg(target_arch = "aarch64")]
pub mod arch;
pub mod bench;
#[cfg(target_arch = "aarch64")]
pub mod console;
#[cfg(target_arch = "aarch64")]
pub mod edu;
#[cfg(target_arch = "aarch64")]
pub mod harness;
#[cfg(target_arch = "aarch64")]
pub mod hv;
#[cfg(target_arch = "aarch64")]
pub mod iommu;
pub mod msg;
