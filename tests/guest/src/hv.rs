//! Typed hypercall wrappers over the host-abi codec.

use crate::arch::hvc;
use host_abi::{BootInfo, DeviceInfo, HypCall, HypError, SmmuStats, VmInfo};
use zerocopy::FromZeros;

/// Makes a call and decodes `x0` as a status.
pub fn call(c: HypCall) -> (Result<u64, HypError>, [u64; 4]) {
    let r = hvc(c.to_regs());
    (HypError::from_x0(r[0]), r)
}

/// Raw call with arbitrary registers (for tests of bad arguments).
pub fn raw(regs: [u64; 8]) -> Result<u64, HypError> {
    HypError::from_x0(hvc(regs)[0])
}

/// ABI version.
pub fn version() -> Result<u64, HypError> {
    call(HypCall::Version).0
}

/// This VM's info.
pub fn vm_info() -> Result<VmInfo, HypError> {
    let mut info = VmInfo::new_zeroed();
    let ipa = &mut info as *mut VmInfo as u64;
    call(HypCall::VmInfo { ipa, len: 64 }).0?;
    Ok(info)
}

/// Device `index` of this VM, and how many it has.
pub fn device_info(index: u64) -> Result<(DeviceInfo, u64), HypError> {
    let mut info = DeviceInfo::new_zeroed();
    let ipa = &mut info as *mut DeviceInfo as u64;
    let (st, r) = call(HypCall::DeviceInfo { index, ipa, len: 112 });
    st?;
    Ok((info, r[1]))
}

/// SMMU counters.
pub fn smmu_stats() -> Result<SmmuStats, HypError> {
    let mut s = SmmuStats::new_zeroed();
    let ipa = &mut s as *mut SmmuStats as u64;
    call(HypCall::SmmuStats { ipa, len: core::mem::size_of::<SmmuStats>() as u64 }).0?;
    Ok(s)
}

/// PM status.
pub fn pm_status() -> Result<host_abi::PmStatus, HypError> {
    let mut s = host_abi::PmStatus::new_zeroed();
    let ipa = &mut s as *mut host_abi::PmStatus as u64;
    call(HypCall::PmStatus { ipa, len: 64 }).0?;
    Ok(s)
}

/// PM vote; returns (power: 0 on / 1 off, refusal, DMA-capable streams).
pub fn pm_vote(allow_off: bool) -> Result<(u64, u64, u64), HypError> {
    let (st, r) = call(HypCall::PmVote { allow_off });
    st.map(|_| (r[1], r[2], r[3]))
}

/// The boot-info block the hypervisor passed in x0.
///
/// # Safety
///
/// `ipa` must be the value x0 held at entry.
pub unsafe fn boot_info(ipa: u64) -> BootInfo {
    // SAFETY: per the caller, the hypervisor wrote a BootInfo there (8-byte aligned).
    unsafe { (ipa as *const BootInfo).read_volatile() }
}
