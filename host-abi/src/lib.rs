//! The hypercall ABI of the SMMU-owning hypervisor.
//!
//! This crate is shared by the hypervisor (which decodes calls), by guests and host kernels
//! (which encode them), and by the C header in `include/smmu_hyp.h` (kept identical to what
//! [`header::render`] produces by a test). It is `no_std`, allocation-free and contains no
//! `unsafe`.
//!
//! # Calling convention
//!
//! Every call is an SMCCC 1.1 *fast call* made with `HVC #0` from EL1. Function IDs live in the
//! **vendor-specific hypervisor service** range (owning entity 6): `0xC600_xxxx` for SMC64 calls
//! and `0x8600_FFxx` for the SMC32 general queries SMCCC defines for every service (call UID and
//! revision). Arguments are passed in `x1..x7`; results are returned in `x0..x3`. `x0` is a
//! signed status: `0` or a positive value on success, a negative [`HypError`] code on failure.
//! Registers `x4..x17` are preserved, as SMCCC 1.1 requires.
//!
//! Buffers are passed as (IPA, length) pairs. The hypervisor copies a buffer out of the caller's
//! memory exactly once before validating it, and rejects any buffer that is not entirely inside
//! the caller's own RAM with [`HypError::InvalidAddress`]. Nothing is changed by a call that
//! returns an error.
#![no_std]
#![forbid(unsafe_code)]

pub mod call;
pub mod error;
pub mod header;
pub mod psci;
pub mod smmu;
pub mod types;

pub use call::{
    FunctionId, HypCall, EVENT_READ_MAX, HVC_REGS, INVALIDATE_INLINE_MAX, INVALIDATE_MAX,
};
pub use error::HypError;
pub use types::{
    BarInfo, BootInfo, DeviceInfo, PmStatus, PmVoteResult, Refusal, SmmuStats, VmInfo,
};

/// Major version of this ABI. A change of major version is incompatible.
pub const ABI_VERSION_MAJOR: u16 = 1;
/// Minor version of this ABI. Minor versions only add calls, fields or values.
///
/// * 1.1: `SmmuStats`'s event-overflow and global-error counters.
/// * 1.2: refusal code 4, [`Refusal::SmmuFailed`] (the SMMU stopped answering).
pub const ABI_VERSION_MINOR: u16 = 2;
/// `(major << 16) | minor`, as returned by [`FunctionId::Version`] and stored in [`BootInfo`].
pub const ABI_VERSION: u32 = ((ABI_VERSION_MAJOR as u32) << 16) | ABI_VERSION_MINOR as u32;

/// The UID returned by [`FunctionId::CallUid`] in `w0..w3` (SMCCC "Call UID query").
///
/// Chosen for this hypervisor; a host kernel compares all four words before using any other call.
pub const CALL_UID: [u32; 4] = [0x5d4f_8a31, 0x4b6e_9c02, 0x8a7e_33c1, 0x2f16_be54];

/// Maximum number of bytes one [`FunctionId::ConsoleWrite`] call accepts.
pub const CONSOLE_WRITE_MAX: u64 = 256;
