//! CPU-level pieces: the entry assembly, HVC/SMC, the counter, and synchronous-exception
//! handling with fault probes.

use core::arch::asm;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

core::arch::global_asm!(include_str!("entry.S"));

/// Registers saved by the vectors (layout shared with entry.S).
#[repr(C)]
pub struct Frame {
    /// x0..x30.
    pub x: [u64; 31],
    /// ELR_EL1.
    pub elr: u64,
    /// SPSR_EL1.
    pub spsr: u64,
    pad: u64,
}

const _: () = assert!(core::mem::size_of::<Frame>() == 272);

/// `HVC #0` with `x0..x7`; returns `x0..x3`.
pub fn hvc(r: [u64; 8]) -> [u64; 4] {
    let (a, b, c, d): (u64, u64, u64, u64);
    // SAFETY: an SMCCC call to the hypervisor; it only changes x0..x3 (SMCCC 1.1), declared.
    unsafe {
        asm!("hvc #0",
            inout("x0") r[0] => a, inout("x1") r[1] => b, inout("x2") r[2] => c,
            inout("x3") r[3] => d, in("x4") r[4], in("x5") r[5], in("x6") r[6], in("x7") r[7],
            options(nostack))
    };
    [a, b, c, d]
}

/// `HVC #1`: an immediate the ABI does not use.
pub fn hvc_imm1(r: [u64; 8]) -> [u64; 4] {
    let (a, b, c, d): (u64, u64, u64, u64);
    // SAFETY: as for `hvc`.
    unsafe {
        asm!("hvc #1",
            inout("x0") r[0] => a, inout("x1") r[1] => b, inout("x2") r[2] => c,
            inout("x3") r[3] => d, in("x4") r[4], in("x5") r[5], in("x6") r[6], in("x7") r[7],
            options(nostack))
    };
    [a, b, c, d]
}

/// `SMC #0` (trapped by the hypervisor: PSCI).
pub fn smc(function: u64, a1: u64, a2: u64, a3: u64) -> u64 {
    let r: u64;
    // SAFETY: PSCI through the hypervisor; clobbers at most x0..x3 (declared).
    unsafe {
        asm!("smc #0", inout("x0") function => r, inout("x1") a1 => _, inout("x2") a2 => _,
            inout("x3") a3 => _, options(nostack))
    };
    r
}

/// `SMC #1`: an immediate SMCCC does not use.
pub fn smc_imm1(function: u64) -> u64 {
    let r: u64;
    // SAFETY: as for `smc`.
    unsafe {
        asm!("smc #1", inout("x0") function => r, inout("x1") 0u64 => _, inout("x2") 0u64 => _,
            inout("x3") 0u64 => _, options(nostack))
    };
    r
}

/// `ID_AA64PFR0_EL1` and `ID_AA64MMFR1_EL1` (what the CPU says about Spectre).
pub fn spectre_id_regs() -> (u64, u64) {
    let (pfr0, mmfr1): (u64, u64);
    // SAFETY: reading ID registers has no side effect.
    unsafe {
        asm!("mrs {}, id_aa64pfr0_el1", "mrs {}, id_aa64mmfr1_el1", out(reg) pfr0, out(reg) mmfr1,
            options(nomem, nostack))
    };
    (pfr0, mmfr1)
}

/// PSCI SYSTEM_OFF: stops this VM.
pub fn system_off() -> ! {
    smc(host_abi::psci::SYSTEM_OFF as u64, 0, 0, 0);
    loop {
        // SAFETY: waiting has no side effect.
        unsafe { asm!("wfe", options(nomem, nostack)) };
    }
}

/// The virtual counter.
pub fn counter() -> u64 {
    let v: u64;
    // SAFETY: reading the counter has no side effect.
    unsafe { asm!("isb", "mrs {}, cntvct_el0", out(reg) v, options(nomem, nostack)) };
    v
}

/// Counter ticks per second.
pub fn counter_freq() -> u64 {
    let v: u64;
    // SAFETY: reading CNTFRQ_EL0 has no side effect.
    unsafe { asm!("mrs {}, cntfrq_el0", out(reg) v, options(nomem, nostack)) };
    v
}

/// MPIDR_EL1 as the VM sees it (VMPIDR_EL2).
pub fn mpidr() -> u64 {
    let v: u64;
    // SAFETY: reading MPIDR_EL1 has no side effect.
    unsafe { asm!("mrs {}, mpidr_el1", out(reg) v, options(nomem, nostack)) };
    v
}

/// A synchronous exception a probe took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// ESR_EL1.
    pub esr: u64,
    /// FAR_EL1.
    pub far: u64,
}

impl Fault {
    /// ESR.EC.
    pub fn ec(&self) -> u64 {
        (self.esr >> 26) & 0x3f
    }
    /// ESR.ISS.{D,I}FSC.
    pub fn fsc(&self) -> u64 {
        self.esr & 0x3f
    }
}

unsafe extern "C" {
    fn probe_read64(addr: u64) -> u64;
    fn probe_write64(addr: u64, value: u64);
    static probe_read64_insn: u8;
    static probe_write64_insn: u8;
    fn probe_sgi1r(value: u64);
    static probe_sgi1r_insn: u8;
}

static PROBE_ARMED: AtomicBool = AtomicBool::new(false);
static PROBE_FAULTED: AtomicBool = AtomicBool::new(false);
static PROBE_ESR: AtomicU64 = AtomicU64::new(0);
static PROBE_FAR: AtomicU64 = AtomicU64::new(0);

fn probe(f: impl FnOnce() -> u64) -> Result<u64, Fault> {
    PROBE_FAULTED.store(false, Ordering::SeqCst);
    PROBE_ARMED.store(true, Ordering::SeqCst);
    let v = f();
    PROBE_ARMED.store(false, Ordering::SeqCst);
    if PROBE_FAULTED.load(Ordering::SeqCst) {
        Err(Fault { esr: PROBE_ESR.load(Ordering::SeqCst), far: PROBE_FAR.load(Ordering::SeqCst) })
    } else {
        Ok(v)
    }
}

/// Reads 8 bytes at `addr`, or reports the synchronous exception that access raised.
pub fn try_read64(addr: u64) -> Result<u64, Fault> {
    // SAFETY: the probe is a single load; if it faults the handler skips it. Reading an address
    // the VM may not touch is the point: the hypervisor must refuse it.
    probe(|| unsafe { probe_read64(addr) })
}

/// Writes 8 bytes at `addr`, or reports the synchronous exception that access raised.
pub fn try_write64(addr: u64, value: u64) -> Result<(), Fault> {
    // SAFETY: as for `try_read64`; callers only aim at memory that is not this VM's (where a
    // successful write is the bug the test reports) or at their own scratch memory.
    probe(|| {
        unsafe { probe_write64(addr, value) };
        0
    })
    .map(|_| ())
}

/// Writes `value` to `ICC_SGI1R_EL1` (an SGI), or reports the synchronous exception the write
/// raised.
pub fn try_sgi1r(value: u64) -> Result<(), Fault> {
    // SAFETY: one system-register write; if it traps back as an exception the handler skips
    // it. Callers name an SGI Linux does not use: if it were sent, nobody would act on it.
    probe(|| {
        unsafe { probe_sgi1r(value) };
        0
    })
    .map(|_| ())
}

/// Called by the vectors for every exception.
#[no_mangle]
extern "C" fn guest_exception(kind: u64, frame: &mut Frame) {
    let esr: u64;
    let far: u64;
    // SAFETY: reading the syndrome registers has no side effect.
    unsafe {
        asm!("mrs {}, esr_el1", out(reg) esr, options(nomem, nostack));
        asm!("mrs {}, far_el1", out(reg) far, options(nomem, nostack));
    }
    let read_insn = core::ptr::addr_of!(probe_read64_insn) as u64;
    let write_insn = core::ptr::addr_of!(probe_write64_insn) as u64;
    let sgi_insn = core::ptr::addr_of!(probe_sgi1r_insn) as u64;
    if kind == 4
        && PROBE_ARMED.load(Ordering::SeqCst)
        && (frame.elr == read_insn || frame.elr == write_insn || frame.elr == sgi_insn)
    {
        PROBE_ESR.store(esr, Ordering::SeqCst);
        PROBE_FAR.store(far, Ordering::SeqCst);
        PROBE_FAULTED.store(true, Ordering::SeqCst);
        PROBE_ARMED.store(false, Ordering::SeqCst);
        frame.elr += 4;
        return;
    }
    crate::harness::unexpected_exception(kind, esr, far, frame.elr)
}
