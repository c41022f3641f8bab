//! Exceptions taken to EL2: hypercalls, trapped SMCs (PSCI), stage-2 faults, and anything
//! unexpected.

use super::sysreg::{
    elr_el1, esr_el1, esr_el2, far_el1, far_el2, hcr_el2, hpfar_el2, id_aa64mmfr1_el1,
    id_aa64pfr0_el1, sctlr_el1, spsr_el1, vbar_el1, vmpidr_el2,
};
use super::{firmware, irq, uart, vm};
use arm_gic::InterruptGroup;
use hyp::host::mmio::{self, Outcome};
use hyp::hypercall::{self, Caller, Env};
use hyp::vm::esr::{Esr, ExceptionClass, SysRegAccess};
use hyp::vm::inject::{self, Injection, TrappedState};
use hyp::vm::psci::{self, PsciAction, StopReason};
use log::warn;

/// Registers saved by the vectors (layout shared with entry.S).
#[repr(C)]
pub struct TrapFrame {
    /// x0..x30; x19..x29 only for aborts and system-register traps (see entry.S).
    pub x: [u64; 31],
    /// ELR_EL2.
    pub elr: u64,
    /// SPSR_EL2.
    pub spsr: u64,
    pad: u64,
}

const _: () = assert!(core::mem::size_of::<TrapFrame>() == 272);
const _: () = assert!(core::mem::offset_of!(TrapFrame, elr) == 248);

/// The MMIO emulation path reads and writes the trapped VM's registers in the frame (x19..x29
/// are in it for aborts and system-register traps, not for HVC and SMC: see entry.S).
impl mmio::Registers for TrapFrame {
    fn get(&self, n: u8) -> u64 {
        self.x[n as usize]
    }
    fn set(&mut self, n: u8, value: u64) {
        self.x[n as usize] = value;
    }
}

/// Vector slot names, for fatal-exception reports.
const KINDS: [&str; 16] = [
    "current EL with SP_EL0, synchronous",
    "current EL with SP_EL0, IRQ",
    "current EL with SP_EL0, FIQ",
    "current EL with SP_EL0, SError",
    "current EL with SP_ELx, synchronous",
    "current EL with SP_ELx, IRQ",
    "current EL with SP_ELx, FIQ",
    "current EL with SP_ELx, SError",
    "lower EL (AArch64), synchronous",
    "lower EL (AArch64), IRQ",
    "lower EL (AArch64), FIQ",
    "lower EL (AArch64), SError",
    "lower EL (AArch32), synchronous",
    "lower EL (AArch32), IRQ",
    "lower EL (AArch32), FIQ",
    "lower EL (AArch32), SError",
];

/// Called by the vectors with the slot number and the saved frame.
#[no_mangle]
extern "C" fn rust_trap(kind: u64, frame: &mut TrapFrame) {
    if kind == 8 {
        lower_sync(frame);
    } else {
        other_vector(kind, frame);
    }
}

#[cold]
#[inline(never)]
fn other_vector(kind: u64, frame: &mut TrapFrame) {
    match kind {
        // Interrupts: from a VM on a CPU that routes them to EL2 (9, 10); 5 and 6 cannot happen
        // (EL2 runs with interrupts masked) but are served the same way rather than fatally.
        9 | 5 => irq::handle(InterruptGroup::Group1, current_name()),
        10 | 6 => irq::handle(InterruptGroup::Group0, current_name()),
        11 => lower_serror(frame),
        _ => fatal_exception(kind, frame),
    }
}

fn current_name() -> &'static str {
    vm::try_current().map_or("none", |v| v.spec.name)
}

/// An SError from a VM (`HCR_EL2.AMO`): it is the VM's, so it gets a virtual SError
/// (`HCR_EL2.VSE`), taken when it unmasks SErrors. The hypervisor carries on.
#[cold]
fn lower_serror(frame: &TrapFrame) {
    let vm = vm::current();
    if vm.first_trap(0x2f << 24) {
        warn!(
            "vm {}: SError at PC {:#x} ({}): a virtual SError is pending for it (logged once)",
            vm.spec.name,
            frame.elr,
            Esr(esr_el2::read())
        );
    }
    // SAFETY: HCR_EL2.VSE only makes a virtual SError pending for the current VM.
    unsafe { hcr_el2::write(hcr_el2::read() | (1 << 8)) };
}

/// A synchronous trap from a VM, by raw class, each kind in a function of its own (none pays
/// for another's registers in its prologue): hypercalls, data aborts (the hot store first),
/// the rest (the host's SGI writes first).
#[inline(always)]
fn lower_sync(frame: &mut TrapFrame) {
    let esr = Esr(esr_el2::read());
    match esr.ec_raw() {
        EC_HVC64 => hypercall(frame, esr),
        EC_DABT_LOWER => data_abort(frame, esr),
        _ => other_sync(frame, esr),
    }
}

/// A data abort: the VM's hot store, or the general path.
#[inline(never)]
fn data_abort(frame: &mut TrapFrame, esr: Esr) {
    if !hot_store(frame, esr) {
        slow_trap(frame, esr);
    }
}

/// Every synchronous trap but a hypercall and a data abort: the host's SGI writes first
/// (`host_sgi`), then the rest.
#[inline(never)]
fn other_sync(frame: &mut TrapFrame, esr: Esr) {
    if !host_sgi(frame, esr) {
        slow_trap(frame, esr);
    }
}

/// ESR_EL2.EC of an HVC from AArch64.
const EC_HVC64: u8 = 0x16;
/// ESR_EL2.EC of a data abort from a lower EL.
const EC_DABT_LOWER: u8 = 0x24;

/// The IPA of a stage-2 abort: HPFAR_EL2's page, FAR_EL2's offset in it.
#[inline(always)]
fn fault_ipa(far: u64) -> u64 {
    ((hpfar_el2::read() >> 4) & ((1 << 40) - 1)) << 12 | (far & 0xfff)
}

/// The VM's hot store (`Vm::hot`: the host's emulated `CMDQ_PROD`), emulated without the
/// region search: exactly what `slow_trap`'s MMIO path would do with it, in fewer
/// instructions. `false` (nothing done) for every other abort.
#[inline(always)]
fn hot_store(frame: &mut TrapFrame, esr: Esr) -> bool {
    let vm = vm::current();
    let Some(hot) = vm.hot.as_ref() else { return false };
    let Some(reg) = hot.register(esr, fault_ipa(far_el2::read())) else { return false };
    if vm.stopped() {
        // Another CPU of this VM stopped it: nothing more of it runs.
        vm.park();
    }
    hot.store(reg, frame);
    vm.count_mmio();
    frame.elr += 4;
    true
}

#[inline(always)]
fn hypercall(frame: &mut TrapFrame, esr: Esr) {
    let vm = vm::Vm::current_counting_hypercall();
    if let Some(ret) = hypercall::dispatch_stateless(esr.imm16(), args(frame)) {
        set_result(frame, &ret);
        return;
    }
    if args(frame)[0] as u32 == host_abi::FunctionId::InvalidateInline as u32 {
        // A Linux guest's strict unmap (four per I/O).
        invalidate_inline(frame, esr, vm);
        return;
    }
    hypercall_with_state(frame, esr, vm);
}

/// The call's `x0..x7` where the vectors saved them (no copy: the result is written back once
/// the call is done with them).
#[inline(always)]
fn args(frame: &TrapFrame) -> &[u64; host_abi::HVC_REGS] {
    const _: () = assert!(host_abi::HVC_REGS <= 31);
    frame.x.first_chunk().expect("x0..x7 are in the frame")
}

fn set_result(frame: &mut TrapFrame, ret: &host_abi::call::HypReturn) {
    let [a, b, c, d] = ret.0;
    frame.x[0] = a;
    frame.x[1] = b;
    frame.x[2] = c;
    frame.x[3] = d;
}

/// `INVALIDATE_INLINE` (`hypercall::dispatch_invalidate_inline`: the same checks and results
/// as through `hypercall::dispatch`, without the general decode), out of line so that the other
/// hypercalls' frame stays small.
#[inline(never)]
fn invalidate_inline(frame: &mut TrapFrame, esr: Esr, vm: &'static vm::Vm) {
    if vm.stopped() {
        // Another CPU of this VM stopped it: nothing more of it runs.
        vm.park();
    }
    let mem = super::guestmem::IdentityGuestMemory::of(vm.spec);
    let smmu = &mut super::front_door::HypercallSmmu;
    match hypercall::dispatch_invalidate_inline(esr.imm16(), args(frame), vm.spec.id, &mem, smmu) {
        Some(ret) => set_result(frame, &ret),
        // Not INVALIDATE_INLINE after all (an `HVC` immediate other than 0): the general path.
        None => hypercall_with_state(frame, esr, vm),
    }
}

#[inline(never)]
fn hypercall_with_state(frame: &mut TrapFrame, esr: Esr, vm: &'static vm::Vm) {
    if vm.stopped() {
        // Another CPU of this VM stopped it: nothing more of it runs.
        vm.park();
    }
    let mut mem = super::guestmem::IdentityGuestMemory::of(vm.spec);
    let smmu = &mut super::front_door::HypercallSmmu;
    let caller = Caller { vm: vm.spec, states: &vm::STATES, devices: &vm.devices };
    let mut env = Env { caller, mem: &mut mem, console: &mut vm::Console, smmu };
    let ret = hypercall::dispatch(esr.imm16(), args(frame), &mut env);
    set_result(frame, &ret);
}

#[cold]
#[inline(never)]
fn slow_trap(frame: &mut TrapFrame, esr: Esr) {
    let vm = vm::current();
    if vm.stopped() {
        // Another CPU of this VM stopped it: nothing more of it runs.
        vm.park();
    }
    match esr.class() {
        ExceptionClass::Smc64 => {
            // A trapped SMC returns to the SMC itself: step over it.
            frame.elr += 4;
            let caller = psci::Caller {
                mpidr: vmpidr_el2::read(),
                spectre: psci::SpectreState::from_id_regs(
                    id_aa64pfr0_el1::read(),
                    id_aa64mmfr1_el1::read(),
                ),
                cpus: vm.spec.cpus,
                mem: vm.spec.mem,
            };
            let x = [frame.x[0], frame.x[1], frame.x[2], frame.x[3]];
            match psci::handle(esr.imm16(), x, &caller, &vm::psci_state) {
                PsciAction::Return(v) => frame.x[0] = v,
                PsciAction::StopVm(reason) => vm.stop(reason),
                PsciAction::CpuOff => vm.cpu_off(),
                PsciAction::CpuOn { cpu, entry, context } => {
                    frame.x[0] = vm.cpu_on(cpu, entry, context) as i64 as u64;
                }
            }
        }
        ExceptionClass::DataAbortLower | ExceptionClass::InstrAbortLower => {
            let far = far_el2::read();
            let ipa = fault_ipa(far);
            if !vm.mmio.is_empty() {
                match mmio::emulate(&vm.mmio, esr, ipa, frame) {
                    Outcome::Emulated { .. } => {
                        vm.count_mmio();
                        frame.elr += 4;
                        return;
                    }
                    Outcome::Refused { why, device } => {
                        vm.count_refused_access();
                        if vm.first_refusal(why) {
                            warn!(
                                "vm {}: {device} access at IPA {ipa:#x} (PC {:#x}) not emulated: {}; \
                                 injecting a synchronous external abort (logged once per reason)",
                                vm.spec.name,
                                frame.elr,
                                why.describe()
                            );
                        }
                        if let Some(i) = inject::external_abort(&trapped(frame, esr, far)) {
                            apply(frame, &i);
                        }
                        return;
                    }
                    Outcome::NotEmulated => {}
                }
            }
            match vm::Vm::fault_line(vm.count_fault()) {
                vm::FaultLine::Full => warn!(
                    "vm {}: stage-2 fault at IPA {ipa:#x} (FAR {far:#x}, PC {:#x}): {esr}; \
                     injecting a synchronous external abort",
                    vm.spec.name, frame.elr
                ),
                vm::FaultLine::LastOne => warn!(
                    "vm {}: stage-2 fault at IPA {ipa:#x}: injecting a synchronous external abort; \
                     {} faults logged, further ones are only counted",
                    vm.spec.name,
                    vm::FAULT_LINES
                ),
                vm::FaultLine::Counted => {}
            }
            let t = trapped(frame, esr, far);
            if let Some(i) = inject::external_abort(&t) {
                if i.elr_el2 == frame.elr {
                    // The VM's vector itself is what faulted: injecting again would loop.
                    vm.stop(StopReason::Crashed);
                }
                apply(frame, &i);
            }
        }
        ExceptionClass::SysReg => {
            // (A Linux VM's SGI register writes never get here: `host_sgi`.)
            let access = SysRegAccess::decode(esr);
            if vm.first_trap((0x18 << 24) | access.key()) {
                warn!(
                    "vm {}: trapped {access} at PC {:#x}: injecting an undefined instruction \
                     (logged once per register)",
                    vm.spec.name, frame.elr
                );
            }
            let t = trapped(frame, esr, 0);
            apply(frame, &inject::undefined(&t));
        }
        _ => {
            if vm.first_trap((esr.ec_raw() as u32) << 24) {
                warn!(
                    "vm {}: unhandled trap at PC {:#x}: {esr}; injecting an undefined instruction \
                     (logged once per exception class)",
                    vm.spec.name, frame.elr
                );
            }
            let t = trapped(frame, esr, 0);
            apply(frame, &inject::undefined(&t));
        }
    }
}

/// A Linux VM's write to an SGI register (trapped: `HCR_EL2.FMO` is set on its CPUs), handled
/// before `slow_trap`: IPIs are the host's most frequent trap after its `CMDQ_PROD` writes. Its
/// group-1 SGIs are sent to its own CPUs only, the rest dropped (`hyp::host::sgi`), the first
/// drop of each register logged. `false` (nothing done) if the trap is not such a write, or the
/// VM is not a Linux one (`slow_trap` then injects an undefined instruction, as for any
/// register it does not emulate).
#[inline(always)]
fn host_sgi(frame: &mut TrapFrame, esr: Esr) -> bool {
    use hyp::host::sgi::{decide, SgiRegister};
    let Some((reg, rt)) = SgiRegister::written(esr) else { return false };
    let vm = vm::current();
    if vm.linux.is_none() {
        return false;
    }
    if vm.stopped() {
        // Another CPU of this VM stopped it: nothing more of it runs.
        vm.park();
    }
    let value = if rt == 31 { 0 } else { frame.x[rt as usize] };
    let d = decide(reg, value, super::sysreg::cpu_index(), vm.cpu_mask);
    if let Some((intid, targets)) = d.send {
        super::gic::send_sgi(intid, targets);
    }
    if d.dropped != 0 {
        sgi_dropped(vm, esr, reg, value, d.dropped);
    }
    frame.elr += 4;
    true
}

/// Counts an SGI write that named CPUs not the VM's (or a group-0 SGI), logging the first of
/// each register.
#[cold]
#[inline(never)]
fn sgi_dropped(vm: &vm::Vm, esr: Esr, reg: hyp::host::sgi::SgiRegister, value: u64, dropped: u16) {
    vm::count_dropped_sgi();
    let access = SysRegAccess::decode(esr);
    if vm.first_trap((0x18 << 24) | (1 << 23) | access.key()) {
        warn!(
            "vm {}: its {access} of {value:#x} names CPUs {dropped:#06x} that are not its own{}: \
             not sent there (logged once per register)",
            vm.spec.name,
            if reg == hyp::host::sgi::SgiRegister::Sgi1r { "" } else { ", or is a group-0 SGI" }
        );
    }
}

fn trapped(frame: &TrapFrame, esr: Esr, far: u64) -> TrappedState {
    TrappedState {
        esr,
        far,
        elr: frame.elr,
        spsr: frame.spsr,
        vbar_el1: vbar_el1::read(),
        sctlr_el1: sctlr_el1::read(),
    }
}

fn apply(frame: &mut TrapFrame, i: &Injection) {
    // SAFETY: these are the VM's own EL1 exception registers; writing them is exactly what the
    // architecture would have done taking the exception at EL1.
    unsafe {
        esr_el1::write(i.esr_el1);
        far_el1::write(i.far_el1);
        elr_el1::write(i.elr_el1);
        spsr_el1::write(i.spsr_el1);
    }
    frame.elr = i.elr_el2;
    frame.spsr = i.spsr_el2;
}

fn fatal_exception(kind: u64, frame: &TrapFrame) -> ! {
    let esr = Esr(esr_el2::read());
    let what = KINDS.get(kind as usize).copied().unwrap_or("?");
    uart::emergency(
        format_args!(
            "\r\nhyp: PANIC unexpected exception ({what}) on CPU {}: {esr}, FAR={:#x}, ELR={:#x}, SPSR={:#x}\r\n",
            super::sysreg::cpu_index(),
            far_el2::read(),
            frame.elr,
            frame.spsr,
        ),
        super::UART_BASE,
    );
    firmware::system_off()
}
