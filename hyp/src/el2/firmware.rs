//! PSCI calls from the hypervisor to the firmware (QEMU's built-in PSCI, SMC conduit).

use core::arch::asm;

use host_abi::psci::{AFFINITY_INFO, CPU_OFF, CPU_ON, SYSTEM_OFF};

fn smc(function: u32, a1: u64, a2: u64, a3: u64) -> i64 {
    let ret: u64;
    // SAFETY: an SMCCC call to the firmware; it clobbers x0..x17 at most (SMCCC 1.1 preserves
    // x4..x17 but we do not rely on it).
    unsafe {
        asm!(
            "smc #0",
            inout("x0") function as u64 => ret,
            inout("x1") a1 => _, inout("x2") a2 => _, inout("x3") a3 => _,
            out("x4") _, out("x5") _, out("x6") _, out("x7") _,
            out("x8") _, out("x9") _, out("x10") _, out("x11") _,
            out("x12") _, out("x13") _, out("x14") _, out("x15") _,
            out("x16") _, out("x17") _,
            options(nostack)
        )
    };
    ret as i64
}

/// Starts CPU `mpidr` at `entry` (physical address, entered at EL2 with the MMU off) with
/// `context` in x0. Returns the PSCI status (0 on success).
pub fn cpu_on(mpidr: u64, entry: u64, context: u64) -> i64 {
    smc(CPU_ON, mpidr, entry, context)
}

/// The firmware's `AFFINITY_INFO` of CPU `mpidr` at level 0: 0 on, 1 off, 2 on pending (or a
/// negative PSCI error).
pub fn affinity_info(mpidr: u64) -> i64 {
    smc(AFFINITY_INFO, mpidr, 0, 0)
}

/// Turns the calling CPU off. Does not return.
pub fn cpu_off() -> ! {
    smc(CPU_OFF, 0, 0, 0);
    // CPU_OFF only returns on failure: park.
    loop {
        // SAFETY: waiting for an event has no side effect.
        unsafe { asm!("wfe", options(nomem, nostack)) };
    }
}

/// Powers the machine off (QEMU exits). Does not return.
pub fn system_off() -> ! {
    smc(SYSTEM_OFF, 0, 0, 0);
    loop {
        // SAFETY: waiting for an event has no side effect.
        unsafe { asm!("wfe", options(nomem, nostack)) };
    }
}
