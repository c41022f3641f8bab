//! Hypercall dispatch: one decoded call from one VM, validated completely before any effect.
//!
//! The EL2 trap handler passes the saved `x0..x7`, the caller's identity and access to its
//! memory; the answer is the four result registers. Guest memory is reached only through
//! [`GuestRange`]s made by [`Caller::range`], which checks the whole declared range against the
//! caller's RAM; buffers are copied once into hypervisor memory before they are used (no
//! double fetch).

use crate::iommu::pm::Vote;
use crate::iommu::service::SmmuCalls;
use crate::pci::Function;
use crate::vm::lifecycle::VmStates;
use crate::vm::memory::write_prefix;
pub use crate::vm::memory::{GuestMemory, GuestRange};
use host_abi::smmu::Command;
use host_abi::types::{encode_name, BarInfo, DeviceInfo, MAX_BARS};
use host_abi::{
    call::HypReturn, FunctionId, HypCall, HypError, VmInfo, CONSOLE_WRITE_MAX, HVC_REGS,
    INVALIDATE_INLINE_MAX,
};
use platform::VmSpec;
use zerocopy::IntoBytes;

/// Where VM console text goes (the EL2 side prefixes lines with the VM's name).
pub trait ConsoleSink {
    /// Text written by the VM (any bytes; not necessarily whole lines).
    fn vm_text(&mut self, vm: &VmSpec, bytes: &[u8]);
}

/// Who is calling.
#[derive(Clone, Copy, Debug)]
pub struct Caller<'a> {
    /// The calling VM.
    pub vm: &'static VmSpec,
    /// Lifecycle of all VMs (for VM_INFO).
    pub states: &'a VmStates,
    /// The PCI functions assigned to the caller, as configured at boot.
    pub devices: &'a [Function],
}

impl Caller<'_> {
    /// The caller's `[ipa, ipa + len)`, if all of it is the caller's RAM; `INVALID_ADDRESS`
    /// otherwise. The only way to reach guest memory.
    pub fn range(&self, ipa: u64, len: u64) -> Result<GuestRange, HypError> {
        GuestRange::of(self.vm, ipa, len)
    }
}

/// What a hypercall may touch besides its registers.
pub struct Env<'a> {
    /// Who is calling.
    pub caller: Caller<'a>,
    /// The caller's memory (memory that serves another VM refuses every buffer of the
    /// caller's: `INVALID_ADDRESS`, nothing read or written).
    pub mem: &'a mut dyn GuestMemory,
    /// The console.
    pub console: &'a mut dyn ConsoleSink,
    /// The SMMU service.
    pub smmu: &'a mut dyn SmmuCalls,
}

/// Answers the calls that need no state at all (discovery: CALL_UID, REVISION, VERSION, and
/// FEATURES of every function whose availability does not depend on the caller) straight from
/// the registers, before any context is built. `None` for the rest.
#[inline(always)]
pub fn dispatch_stateless(imm: u16, regs: &[u64; HVC_REGS]) -> Option<HypReturn> {
    if imm != 0 {
        return None;
    }
    let without_state = match FunctionId::from_u32(regs[0] as u32)? {
        FunctionId::CallUid | FunctionId::Revision | FunctionId::Version => true,
        // Whether PM_INJECT_LOSS is available depends on the caller.
        FunctionId::Features => regs[1] != FunctionId::PmInjectLoss as u32 as u64,
        _ => false,
    };
    // One call site of the decoder: it stays inlined on this path.
    without_state.then(|| HypReturn::from_result(HypCall::decode(regs).and_then(stateless)))
}

/// The stateless calls.
#[inline]
fn stateless(call: HypCall) -> Result<HypReturn, HypError> {
    match call {
        HypCall::CallUid => {
            let u = host_abi::CALL_UID;
            Ok(HypReturn::ok(u[0] as u64, u[1] as u64, u[2] as u64, u[3] as u64))
        }
        HypCall::Revision => Ok(HypReturn::ok(
            host_abi::ABI_VERSION_MAJOR as u64,
            host_abi::ABI_VERSION_MINOR as u64,
            0,
            0,
        )),
        HypCall::Version => Ok(HypReturn::ok(host_abi::ABI_VERSION as u64, 0, 0, 0)),
        HypCall::Features { function } => match FunctionId::from_u32(function) {
            Some(_) => Ok(HypReturn::ok(0, 0, 0, 0)),
            None => Err(HypError::NotSupported),
        },
        _ => Err(HypError::NotSupported),
    }
}

/// `INVALIDATE_INLINE` of VM `vm` (a Linux guest's strict unmap: four per I/O) without the
/// general decode: exactly what [`dispatch`] returns and does for it, `None` (nothing done)
/// for any other call. The caller has made every check [`dispatch`]'s caller makes (the VM is
/// running).
#[inline(always)]
pub fn dispatch_invalidate_inline(
    imm: u16,
    regs: &[u64; HVC_REGS],
    vm: u32,
    mem: &dyn GuestMemory,
    smmu: &mut dyn SmmuCalls,
) -> Option<HypReturn> {
    if imm != 0 || regs[0] as u32 != FunctionId::InvalidateInline as u32 {
        return None;
    }
    Some(match HypCall::decode_invalidate_inline(regs) {
        Ok(HypCall::InvalidateInline { count, cmds }) => {
            invalidate_inline(vm, count, cmds, mem, smmu)
        }
        Ok(_) => HypReturn::err(HypError::NotSupported),
        Err(e) => HypReturn::err(e),
    })
}

/// `INVALIDATE_INLINE`'s work: its `count` commands, from registers (nothing is read from the
/// VM's memory for them), as one batch.
#[inline(always)]
fn invalidate_inline(
    vm: u32,
    count: u8,
    cmds: [[u64; 2]; INVALIDATE_INLINE_MAX as usize],
    mem: &dyn GuestMemory,
    smmu: &mut dyn SmmuCalls,
) -> HypReturn {
    // The same 16 bytes each (`Command` is `[u64; 2]`): no copy.
    let cmds: &[Command; INVALIDATE_INLINE_MAX as usize] = zerocopy::transmute_ref!(&cmds);
    match smmu.invalidate(vm, &cmds[..count as usize], mem) {
        Ok(n) => HypReturn::ok(0, n as u64, 0, 0),
        Err((index, e)) => HypReturn::err_at(e, index as u64),
    }
}

/// Handles one `HVC #imm` with the saved registers. Never panics on any input.
pub fn dispatch(imm: u16, regs: &[u64; HVC_REGS], env: &mut Env<'_>) -> HypReturn {
    if imm != 0 {
        // SMCCC calls use HVC #0 only.
        return HypReturn::err(HypError::NotSupported);
    }
    HypReturn::from_result(HypCall::decode(regs).and_then(|call| execute(call, env)))
}

// The SMMU calls are out of line: their large stack buffers must not weigh on the fast
// calls' prologue.
#[inline(never)]
fn set_ste(
    caller: &Caller<'_>,
    sid: u32,
    ipa: u64,
    mem: &mut dyn GuestMemory,
    smmu: &mut dyn SmmuCalls,
) -> Result<HypReturn, HypError> {
    let domain = smmu.set_ste(caller.vm, sid, ipa, &*mem)?;
    Ok(HypReturn::ok(0, domain.kind(), 0, 0))
}

#[inline(never)]
fn invalidate(
    caller: &Caller<'_>,
    ipa: u64,
    count: u64,
    mem: &mut dyn GuestMemory,
    smmu: &mut dyn SmmuCalls,
) -> Result<HypReturn, HypError> {
    let range = caller.range(ipa, count * 16)?;
    // One copy out of the VM's memory (into the service's own buffer); everything after works
    // on that copy.
    Ok(match smmu.invalidate_from(caller.vm.id, range, &*mem) {
        Ok(n) => HypReturn::ok(0, n as u64, 0, 0),
        Err((index, e)) => HypReturn::err_at(e, index as u64),
    })
}

fn execute(call: HypCall, env: &mut Env<'_>) -> Result<HypReturn, HypError> {
    let Env { caller, mem, console, smmu } = env;
    let caller = &*caller;
    match call {
        HypCall::Features { function } if function == FunctionId::PmInjectLoss as u32 => {
            // Answered exactly as the call itself would be: only for the VM that may use it.
            if smmu.may_inject(caller.vm.id) {
                Ok(HypReturn::ok(0, 0, 0, 0))
            } else {
                Err(HypError::NotSupported)
            }
        }
        HypCall::CallUid | HypCall::Revision | HypCall::Version | HypCall::Features { .. } => {
            stateless(call)
        }
        HypCall::ConsoleWrite { ipa, len } => {
            let range = caller.range(ipa, len)?;
            let mut buf = [0u8; CONSOLE_WRITE_MAX as usize];
            let text = &mut buf[..len as usize];
            mem.read(range, text)?;
            console.vm_text(caller.vm, text);
            Ok(HypReturn::ok(0, len, 0, 0))
        }
        HypCall::VmInfo { ipa, len } => {
            // The whole declared buffer must be the caller's, not only what is written.
            let range = caller.range(ipa, len)?;
            let vm = caller.vm;
            let info = VmInfo {
                vm_id: vm.id,
                vm_count: caller.states.count(),
                mem_base: vm.mem.base,
                mem_size: vm.mem.size,
                cpu: vm.first_cpu(),
                peak_running: caller.states.peak_running(),
                running_mask: caller.states.running_mask(),
                name: encode_name(vm.name),
                stopped_mask: caller.states.stopped_mask(),
            };
            write_prefix(&mut **mem, range, info.as_bytes())?;
            Ok(HypReturn::ok(0, 0, 0, 0))
        }
        HypCall::DeviceInfo { index, ipa, len } => {
            let f = usize::try_from(index)
                .ok()
                .and_then(|i| caller.devices.get(i))
                .ok_or(HypError::InvalidParameter)?;
            let range = caller.range(ipa, len)?;
            let mut bars = [BarInfo::default(); MAX_BARS];
            for b in f.bars.iter().flatten() {
                // BARs are mapped at IPA == PA in the owner's stage-2.
                bars[b.index as usize] = BarInfo { ipa: b.base, size: b.size };
            }
            let info = DeviceInfo {
                stream_id: f.addr.rid(),
                vendor: f.vendor,
                device: f.device,
                pci_addr: f.addr.rid(),
                reserved: 0,
                bars,
            };
            write_prefix(&mut **mem, range, info.as_bytes())?;
            Ok(HypReturn::ok(0, caller.devices.len() as u64, 0, 0))
        }
        HypCall::EventRead { ipa, len } => {
            // (Memory that is not the caller's refuses the write below, after the records were
            // taken: never so at EL2, where a call gets its caller's memory.)
            let range = caller.range(ipa, len)?;
            // Nothing is written when no record is.
            let r = smmu.read_events_into(caller.vm.id, range, &mut **mem)?;
            let pending = (r.pending as u64).min(u32::MAX as u64);
            let notices = r.lost_notices.min(u32::MAX as u64);
            Ok(HypReturn::ok(0, r.written as u64, pending | notices << 32, r.dropped))
        }
        HypCall::SetSte { sid, ipa } => set_ste(caller, sid, ipa, &mut **mem, &mut **smmu),
        HypCall::ClearSte { sid } => {
            smmu.clear_ste(caller.vm.id, sid, &**mem)?;
            Ok(HypReturn::ok(0, 0, 0, 0))
        }
        HypCall::PmVote { allow_off } => {
            let vote = if allow_off { Vote::AllowOff } else { Vote::NeedOn };
            let [x1, x2, x3] = smmu.pm_vote(caller.vm.id, vote).to_regs();
            Ok(HypReturn::ok(0, x1, x2, x3))
        }
        HypCall::PmStatus { ipa, len } => {
            let range = caller.range(ipa, len)?;
            let s = smmu.pm_status();
            write_prefix(&mut **mem, range, s.as_bytes())?;
            Ok(HypReturn::ok(0, 0, 0, 0))
        }
        HypCall::PmInjectLoss { after_writes } => {
            Ok(match smmu.inject_power_loss(caller.vm.id, after_writes) {
                Ok(()) => HypReturn::ok(0, 0, 0, 0),
                // REFUSED says why in x1.
                Err(e) => HypReturn::err_at(e.error(), e.detail()),
            })
        }
        HypCall::Invalidate { ipa, count } => {
            invalidate(caller, ipa, count, &mut **mem, &mut **smmu)
        }
        HypCall::InvalidateInline { count, cmds } => {
            Ok(invalidate_inline(caller.vm.id, count, cmds, &**mem, &mut **smmu))
        }
        HypCall::SmmuStats { ipa, len } => {
            let range = caller.range(ipa, len)?;
            let s = smmu.stats();
            // Decoding made sure the whole structure fits.
            write_prefix(&mut **mem, range, s.as_bytes())?;
            Ok(HypReturn::ok(0, 0, 0, 0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iommu::driver::ste::Domain;
    use crate::iommu::service::events::EventReadResult;
    use crate::iommu::service::InjectError;
    use crate::iommu::validate::SmmuCaps;
    use crate::pci::Bar;
    use crate::vm::memory::ServedRange;
    use host_abi::smmu::Command;
    use host_abi::smmu::Ste;
    use host_abi::{FunctionId, PmStatus, PmVoteResult, SmmuStats};
    use platform::qemu_virt::MANIFEST;
    use std::vec;
    use std::vec::Vec;
    use zerocopy::FromBytes;

    /// A VM's RAM as a byte vector.
    struct Ram {
        vm: u32,
        base: u64,
        bytes: Vec<u8>,
    }
    impl GuestMemory for Ram {
        fn serves(&self, vm: u32) -> bool {
            vm == self.vm
        }
        fn copy_out(&self, r: ServedRange, out: &mut [u8]) {
            assert_eq!(out.len() as u64, r.len());
            let o = (r.ipa() - self.base) as usize;
            out.copy_from_slice(&self.bytes[o..o + out.len()]);
        }
        fn copy_in(&mut self, r: ServedRange, data: &[u8]) {
            assert_eq!(data.len() as u64, r.len());
            let o = (r.ipa() - self.base) as usize;
            self.bytes[o..o + data.len()].copy_from_slice(data);
        }
    }
    #[derive(Default)]
    struct Out(Vec<u8>);
    impl ConsoleSink for Out {
        fn vm_text(&mut self, _vm: &VmSpec, bytes: &[u8]) {
            self.0.extend_from_slice(bytes);
        }
    }

    struct World {
        states: VmStates,
        ram: Ram,
        out: Out,
        devices: Vec<Function>,
        smmu: FakeCalls,
    }

    fn world() -> World {
        let vm = &MANIFEST.vms[1];
        let states = VmStates::new(3);
        states.start(1);
        World {
            states,
            ram: Ram { vm: vm.id, base: vm.mem.base, bytes: vec![0; vm.mem.size as usize] },
            out: Out::default(),
            smmu: FakeCalls::default(),
            devices: vec![Function {
                addr: vm.devices[0],
                vendor: 0x1234,
                device: 0x11e8,
                bars: [
                    Some(Bar { index: 0, base: 0x1010_0000, size: 0x10_0000 }),
                    None,
                    None,
                    None,
                    None,
                    None,
                ],
            }],
        }
    }

    fn call(w: &mut World, imm: u16, regs: [u64; 8]) -> HypReturn {
        let caller = Caller { vm: &MANIFEST.vms[1], states: &w.states, devices: &w.devices };
        let mut env = Env { caller, mem: &mut w.ram, console: &mut w.out, smmu: &mut w.smmu };
        dispatch(imm, &regs, &mut env)
    }

    /// Events queued per VM; stats with a recognisable value.
    #[derive(Default)]
    struct FakeCalls {
        events: Vec<(u32, [u64; 4])>,
        attached: Vec<(u32, u32, Domain)>,
        invalidated: Vec<(u32, usize)>,
        /// Every command of every `invalidate`, in order.
        sent: Vec<Command>,
        injector: Option<u32>,
        injected: Vec<(u32, u64)>,
        inject_refusal: Option<crate::iommu::pm::Refusal>,
    }
    impl SmmuCalls for FakeCalls {
        fn events_pending(&mut self, vm: u32) -> bool {
            self.events.iter().any(|(v, _)| *v == vm)
        }
        fn read_events(&mut self, vm: u32, out: &mut [[u64; 4]]) -> EventReadResult {
            let mut written = 0;
            while written < out.len() {
                let Some(i) = self.events.iter().position(|(v, _)| *v == vm) else { break };
                out[written] = self.events.remove(i).1;
                written += 1;
            }
            let pending = self.events.iter().filter(|(v, _)| *v == vm).count();
            EventReadResult { written, pending, dropped: 7, lost_notices: 2 }
        }
        fn stats(&mut self) -> SmmuStats {
            SmmuStats { commands: 42, global_errors: 9, ..Default::default() }
        }
        fn attach(
            &mut self,
            vm: u32,
            sid: u32,
            domain: Domain,
            _mem: &dyn GuestMemory,
        ) -> Result<(), HypError> {
            self.attached.push((vm, sid, domain));
            Ok(())
        }
        fn pm_vote(&mut self, vm: u32, vote: Vote) -> PmVoteResult {
            PmVoteResult {
                powered_off: vote == Vote::AllowOff,
                refusal: None,
                dma_streams: 10 + vm,
            }
        }
        fn pm_status(&mut self) -> PmStatus {
            PmStatus { suspends: 5, ..Default::default() }
        }
        fn may_inject(&mut self, vm: u32) -> bool {
            self.injector == Some(vm)
        }
        fn inject_power_loss(&mut self, vm: u32, after_writes: u64) -> Result<(), InjectError> {
            if !self.may_inject(vm) {
                return Err(InjectError::NotSupported);
            }
            if let Some(r) = self.inject_refusal {
                return Err(InjectError::Refused(r));
            }
            self.injected.push((vm, after_writes));
            Ok(())
        }
        fn set_ste(
            &mut self,
            vm: &VmSpec,
            sid: u32,
            ipa: u64,
            mem: &dyn GuestMemory,
        ) -> Result<Domain, HypError> {
            // As the service does it: ownership, one copy, validation, then the attach.
            let caps = self.owned_stream(vm.id, sid)?;
            let mut v = Ste::default();
            mem.read(GuestRange::of(vm, ipa, 64)?, v.as_mut_bytes())?;
            let domain = crate::iommu::validate::virtual_ste(&v, vm, &caps)?;
            self.attach(vm.id, sid, domain, mem)?;
            Ok(domain)
        }
        fn clear_ste(&mut self, vm: u32, sid: u32, mem: &dyn GuestMemory) -> Result<(), HypError> {
            self.owned_stream(vm, sid)?;
            self.attach(vm, sid, Domain::Blocked, mem)
        }
        fn owned_stream(&mut self, vm: u32, sid: u32) -> Result<SmmuCaps, HypError> {
            if vm == 1 && sid == 0x18 {
                Ok(SmmuCaps::QEMU)
            } else {
                Err(HypError::NotOwned)
            }
        }
        fn invalidate(
            &mut self,
            vm: u32,
            cmds: &[Command],
            _mem: &dyn GuestMemory,
        ) -> Result<usize, (usize, HypError)> {
            self.invalidated.push((vm, cmds.len()));
            self.sent.extend_from_slice(cmds);
            match cmds.iter().position(|c| c.opcode_byte() == 0xff) {
                Some(i) => Err((i, HypError::BadCommand)),
                None => Ok(cmds.len()),
            }
        }
        fn invalidate_prefix(
            &mut self,
            _vm: u32,
            _cmds: &[Command],
            _mem: &dyn GuestMemory,
        ) -> Result<usize, (usize, HypError)> {
            unreachable!("hypercalls fail a batch whole")
        }
    }

    #[test]
    fn set_ste_validates_before_attaching() {
        use host_abi::smmu::SteConfig;
        let mut w = world();
        let base = w.ram.base;
        let put = |w: &mut World, s: Ste| w.ram.bytes[0x400..0x440].copy_from_slice(s.as_bytes());
        put(&mut w, Ste::default().with_v(1).with_config(SteConfig::Bypass));
        let r = call(&mut w, 0, HypCall::SetSte { sid: 0x18, ipa: base + 0x400 }.to_regs());
        assert_eq!(r.0, [0, 1, 0, 0], "bypass becomes identity");
        assert_eq!(w.smmu.attached, [(1, 0x18, Domain::Identity)]);
        // Not ours, outside memory, stage-2 field: refused, nothing attached.
        let r = call(&mut w, 0, HypCall::SetSte { sid: 0x10, ipa: base + 0x400 }.to_regs());
        assert_eq!(r.status(), Err(HypError::NotOwned));
        let r = call(&mut w, 0, HypCall::SetSte { sid: 0x18, ipa: 0x4020_0000 }.to_regs());
        assert_eq!(r.status(), Err(HypError::InvalidAddress));
        put(&mut w, Ste::default().with_v(1).with_config(SteConfig::Bypass).with_s2vmid(9));
        let r = call(&mut w, 0, HypCall::SetSte { sid: 0x18, ipa: base + 0x400 }.to_regs());
        assert_eq!(r.status(), Err(HypError::ForbiddenField));
        assert_eq!(w.smmu.attached.len(), 1);
        let r = call(&mut w, 0, HypCall::ClearSte { sid: 0x18 }.to_regs());
        assert_eq!(r.status(), Ok(0));
        assert_eq!(w.smmu.attached[1], (1, 0x18, Domain::Blocked));
        let r = call(&mut w, 0, HypCall::ClearSte { sid: 0x20 }.to_regs());
        assert_eq!(r.status(), Err(HypError::NotOwned));
        // x1 says what the stream got: 0 blocked, 1 identity, 2 nested.
        put(&mut w, Ste::default().with_v(1).with_config(SteConfig::Abort));
        let r = call(&mut w, 0, HypCall::SetSte { sid: 0x18, ipa: base + 0x400 }.to_regs());
        assert_eq!(r.0, [0, 0, 0, 0], "abort stays abort");
        assert_eq!(w.smmu.attached[2], (1, 0x18, Domain::Blocked));
        let s1 =
            Ste::default().with_v(1).with_config(SteConfig::S1).with_s1_context_ptr(base + 0x1000);
        put(&mut w, s1);
        let r = call(&mut w, 0, HypCall::SetSte { sid: 0x18, ipa: base + 0x400 }.to_regs());
        assert_eq!(r.0, [0, 2, 0, 0], "stage 1 becomes nested");
        assert!(
            matches!(w.smmu.attached[3], (1, 0x18, Domain::Nested(c)) if c.ctx_ptr == base + 0x1000)
        );
        // A CD table in the hypervisor's shadow CDs (inside the caller's RAM): refused.
        let shadow = MANIFEST.vms[1].shadow_cds().base;
        put(&mut w, s1.with_s1_context_ptr(shadow));
        let r = call(&mut w, 0, HypCall::SetSte { sid: 0x18, ipa: base + 0x400 }.to_regs());
        assert_eq!(r.status(), Err(HypError::BadConfig));
        assert_eq!(w.smmu.attached.len(), 4);
    }

    #[test]
    fn invalidate_copies_the_batch_once_and_reports_the_bad_index() {
        let mut w = world();
        let base = w.ram.base;
        for i in 0..3 {
            let c = if i == 2 { Command([0xff, 0]) } else { Command::tlbi_nh_all(0) };
            w.ram.bytes[0x800 + i * 16..0x810 + i * 16].copy_from_slice(c.as_bytes());
        }
        let r = call(&mut w, 0, HypCall::Invalidate { ipa: base + 0x800, count: 2 }.to_regs());
        assert_eq!(r.0, [0, 2, 0, 0]);
        let r = call(&mut w, 0, HypCall::Invalidate { ipa: base + 0x800, count: 3 }.to_regs());
        assert_eq!(r.0, [HypError::BadCommand.code() as u64, 2, 0, 0]);
        let end = MANIFEST.vms[1].mem.end();
        let r = call(&mut w, 0, HypCall::Invalidate { ipa: end - 32, count: 3 }.to_regs());
        assert_eq!(r.status(), Err(HypError::InvalidAddress));
        assert_eq!(w.smmu.invalidated, [(1, 2), (1, 3)]);
        // Batches up to 16 commands and larger ones take different buffers: both whole.
        for i in 0..40 {
            let c = Command::tlbi_nh_va(0, 1, i << 12);
            w.ram.bytes[0x1000 + i as usize * 16..][..16].copy_from_slice(c.as_bytes());
        }
        for count in [16, 17, 40] {
            let r = call(&mut w, 0, HypCall::Invalidate { ipa: base + 0x1000, count }.to_regs());
            assert_eq!(r.0, [0, count, 0, 0], "{count} commands");
        }
        assert_eq!(w.smmu.invalidated[2..], [(1, 16), (1, 17), (1, 40)]);
    }

    #[test]
    fn an_inline_invalidate_sends_its_register_commands_and_reads_no_memory() {
        let mut w = world();
        let ram = w.ram.bytes.clone();
        let (tlbi, bad) = (Command::tlbi_nh_va(0, 1, 0x7000).0, [0xff, 0]);
        let inline = |count: u8, cmds| HypCall::InvalidateInline { count, cmds }.to_regs();
        let r = call(&mut w, 0, inline(2, [tlbi, Command::sync().0, [0, 0]]));
        assert_eq!(r.0, [0, 2, 0, 0]);
        // The bad command's index, as INVALIDATE reports it; nothing of the batch sent.
        let r = call(&mut w, 0, inline(3, [tlbi, tlbi, bad]));
        assert_eq!(r.0, [HypError::BadCommand.code() as u64, 2, 0, 0]);
        let mut regs = inline(1, [tlbi, [0, 0], [0, 0]]);
        regs[1] = 4;
        assert_eq!(call(&mut w, 0, regs).status(), Err(HypError::InvalidParameter));
        assert_eq!(w.smmu.invalidated, [(1, 2), (1, 3)], "through SmmuCalls::invalidate");
        assert_eq!(w.ram.bytes, ram, "the caller's memory untouched");
    }

    /// The fast path of `INVALIDATE_INLINE` returns and does exactly what `dispatch` does for
    /// it (the same result, the same commands through `SmmuCalls::invalidate`, nothing else),
    /// and leaves every other call alone: counts in and out of range, bad commands, register
    /// garbage past the count, `x0`'s upper half, another immediate, other functions.
    #[test]
    fn the_inline_fast_path_is_dispatch_for_its_call() {
        let id = FunctionId::InvalidateInline as u32 as u64;
        let (tlbi, sync, bad) = (Command::tlbi_nh_va(0, 1, 0x7000).0, Command::sync().0, [0xff, 7]);
        let mut cases: Vec<(u16, [u64; 8])> = Vec::new();
        for count in [0, 1, 2, 3, 4, 5, 1 << 32 | 1, u64::MAX] {
            for cmds in
                [[tlbi, sync, tlbi], [tlbi, bad, sync], [bad, tlbi, tlbi], [sync, sync, bad]]
            {
                let r = [
                    id, count, cmds[0][0], cmds[0][1], cmds[1][0], cmds[1][1], cmds[2][0],
                    cmds[2][1],
                ];
                cases.push((0, r));
                cases.push((1, r));
                let mut hi = r;
                hi[0] |= 0xdead_beef << 32;
                cases.push((0, hi));
            }
        }
        for f in FunctionId::ALL {
            cases.push((0, [f as u32 as u64, 1, tlbi[0], tlbi[1], 0, 0, 0, 0]));
        }
        cases.push((0, [0x8400_0000, 1, tlbi[0], tlbi[1], 0, 0, 0, 0]));
        let mut fast_taken = 0;
        let (mut fast, mut slow) = (world(), world());
        let ram = fast.ram.bytes.clone();
        for (imm, regs) in cases {
            (fast.smmu, slow.smmu) = (FakeCalls::default(), FakeCalls::default());
            let r = dispatch_invalidate_inline(imm, &regs, 1, &fast.ram, &mut fast.smmu);
            let want = call(&mut slow, imm, regs);
            match r {
                None => {
                    assert!(imm != 0 || regs[0] as u32 != id as u32, "{regs:x?} left alone");
                    assert!(fast.smmu.invalidated.is_empty());
                }
                Some(got) => {
                    fast_taken += 1;
                    assert_eq!((imm, regs[0] as u32), (0, id as u32));
                    assert_eq!(got, want, "{regs:x?}");
                    assert_eq!(fast.smmu.invalidated, slow.smmu.invalidated, "{regs:x?}");
                    assert_eq!(fast.smmu.sent, slow.smmu.sent, "{regs:x?}");
                }
            }
            assert_eq!(fast.ram.bytes, ram, "nothing written to the caller's memory");
        }
        // 8 counts x 4 command sets x (x0 as is, x0 with an upper half), and FunctionId::ALL's.
        assert_eq!(fast_taken, 8 * 4 * 2 + 1);
    }

    #[test]
    fn event_read_returns_the_callers_events_in_order() {
        let mut w = world();
        w.smmu.events = vec![(1, [1, 0, 0xa, 0]), (2, [2, 0, 0xb, 0]), (1, [3, 0, 0xc, 0])];
        let base = w.ram.base;
        let r = call(&mut w, 0, HypCall::EventRead { ipa: base + 0x100, len: 32 }.to_regs());
        assert_eq!(r.0, [0, 1, 1 | 2 << 32, 7], "x2: pending | loss notices << 32");
        assert_eq!(&w.ram.bytes[0x100..0x108], &1u64.to_le_bytes());
        assert_eq!(&w.ram.bytes[0x110..0x118], &0xau64.to_le_bytes());
        let r = call(&mut w, 0, HypCall::EventRead { ipa: base + 0x200, len: 64 }.to_regs());
        assert_eq!(r.0, [0, 1, 2 << 32, 7]);
        assert_eq!(&w.ram.bytes[0x200..0x208], &3u64.to_le_bytes());
        assert!(w.ram.bytes[0x220..0x240].iter().all(|&b| b == 0), "only written records");
        let r = call(&mut w, 0, HypCall::EventRead { ipa: 0x4020_0000, len: 32 }.to_regs());
        assert_eq!(r.status(), Err(HypError::InvalidAddress));
        assert_eq!(w.smmu.events.len(), 1, "guest2's event stays; a refused read takes nothing");
        let r = call(&mut w, 0, HypCall::SmmuStats { ipa: base + 0x300, len: 80 }.to_regs());
        assert_eq!(r.status(), Ok(0));
        assert_eq!(&w.ram.bytes[0x300..0x308], &42u64.to_le_bytes());
        assert_eq!(&w.ram.bytes[0x348..0x350], &9u64.to_le_bytes(), "global_errors, offset 72");
        // 64 bytes (ABI 1.0's structure) are refused, not filled in part.
        let mut regs = HypCall::SmmuStats { ipa: base + 0x400, len: 80 }.to_regs();
        regs[2] = 64;
        assert_eq!(call(&mut w, 0, regs).status(), Err(HypError::InvalidParameter));
        assert!(w.ram.bytes[0x400..0x450].iter().all(|&b| b == 0), "nothing written");
    }

    #[test]
    fn queries() {
        let mut w = world();
        let r = call(&mut w, 0, HypCall::Version.to_regs());
        assert_eq!(r.status(), Ok(host_abi::ABI_VERSION as u64));
        let r = call(&mut w, 0, HypCall::CallUid.to_regs());
        assert_eq!(r.0, host_abi::CALL_UID.map(|x| x as u64));
        for f in FunctionId::ALL {
            let r = call(&mut w, 0, HypCall::Features { function: f as u32 }.to_regs());
            let want =
                if f == FunctionId::PmInjectLoss { Err(HypError::NotSupported) } else { Ok(0) };
            assert_eq!(r.status(), want, "{}", f.name());
        }
        // FEATURES answers for PM_INJECT_LOSS exactly as the call does, for this caller.
        let inject = HypCall::PmInjectLoss { after_writes: 0 }.to_regs();
        let feat = HypCall::Features { function: FunctionId::PmInjectLoss as u32 }.to_regs();
        assert_eq!(call(&mut w, 0, inject).status(), Err(HypError::NotSupported));
        assert_eq!(dispatch_stateless(0, &feat), None, "not answered without the caller");
        w.smmu.injector = Some(2);
        assert_eq!(
            call(&mut w, 0, feat).status(),
            Err(HypError::NotSupported),
            "another VM's right"
        );
        assert_eq!(call(&mut w, 0, inject).status(), Err(HypError::NotSupported));
        w.smmu.injector = Some(1);
        assert_eq!(call(&mut w, 0, feat).status(), Ok(0));
        assert_eq!(call(&mut w, 0, inject).status(), Ok(0));
        assert_eq!(w.smmu.injected, [(1, 0)]);
        // Refused now (a bypass-reset platform with DMA-capable streams): REFUSED, the reason's
        // code in x1, for an immediate and an armed loss alike; FEATURES still offers the call.
        w.smmu.inject_refusal = Some(crate::iommu::pm::Refusal::BypassResetWithDma);
        for after_writes in [0, 3] {
            let r = call(&mut w, 0, HypCall::PmInjectLoss { after_writes }.to_regs());
            assert_eq!(r.0, [HypError::Refused.code() as u64, 2, 0, 0]);
        }
        assert_eq!(w.smmu.injected, [(1, 0)], "nothing injected or armed");
        assert_eq!(call(&mut w, 0, feat).status(), Ok(0));
        let r = call(&mut w, 0, HypCall::Features { function: 0xC600_00FF }.to_regs());
        assert_eq!(r.status(), Err(HypError::NotSupported));
        let r = call(&mut w, 1, HypCall::Version.to_regs());
        assert_eq!(r.status(), Err(HypError::NotSupported));
    }

    #[test]
    fn discovery_is_answered_without_any_state() {
        // These never need the caller, its memory or the SMMU: the fast path answers them.
        let version = dispatch_stateless(0, &HypCall::Version.to_regs());
        assert_eq!(version, Some(HypReturn::ok(host_abi::ABI_VERSION as u64, 0, 0, 0)));
        let rev = dispatch_stateless(0, &HypCall::Revision.to_regs()).unwrap();
        assert_eq!(
            rev.0,
            [host_abi::ABI_VERSION_MAJOR as u64, host_abi::ABI_VERSION_MINOR as u64, 0, 0]
        );
        let uid = dispatch_stateless(0, &HypCall::CallUid.to_regs()).unwrap();
        assert_eq!(uid.0, host_abi::CALL_UID.map(|w| w as u64));
        let f = HypCall::Features { function: FunctionId::Invalidate as u32 };
        assert_eq!(dispatch_stateless(0, &f.to_regs()), Some(HypReturn::ok(0, 0, 0, 0)));
        let f = HypCall::Features { function: 0xC600_00FF };
        assert_eq!(
            dispatch_stateless(0, &f.to_regs()),
            Some(HypReturn::err(HypError::NotSupported))
        );
        // Not here: another immediate, a call with state, FEATURES of PM_INJECT_LOSS.
        assert_eq!(dispatch_stateless(1, &HypCall::Version.to_regs()), None);
        assert_eq!(dispatch_stateless(0, &HypCall::ClearSte { sid: 1 }.to_regs()), None);
        let f = HypCall::Features { function: FunctionId::PmInjectLoss as u32 };
        assert_eq!(dispatch_stateless(0, &f.to_regs()), None);
        let mut bad = [0u64; 8];
        bad[0] = 0xC600_00FF;
        assert_eq!(dispatch_stateless(0, &bad), None, "unknown: the full path answers");
        // The full path gives the same answers.
        let mut w = world();
        assert_eq!(call(&mut w, 0, HypCall::Revision.to_regs()), rev);
        assert_eq!(call(&mut w, 0, HypCall::Version.to_regs()), version.unwrap());
    }

    #[test]
    fn console_write_copies_from_guest_memory() {
        let mut w = world();
        let base = w.ram.base;
        w.ram.bytes[0x100..0x105].copy_from_slice(b"hello");
        let r = call(&mut w, 0, HypCall::ConsoleWrite { ipa: base + 0x100, len: 5 }.to_regs());
        assert_eq!(r.0, [0, 5, 0, 0]);
        assert_eq!(w.out.0, b"hello");
    }

    #[test]
    fn buffers_outside_the_caller_are_refused_without_effect() {
        let mut w = world();
        let vm = &MANIFEST.vms[1];
        let bad = [
            0x4020_0000,               // hypervisor
            MANIFEST.vms[0].mem.base,  // another VM
            vm.mem.end() - 4,          // straddles the end
            u64::MAX - 2,              // wraps
            vm.mem.base - 1,           // starts just below
            vm.shadow_cds().base,      // the hypervisor's shadow CDs inside its RAM
            vm.shadow_cds().base - 4,  // straddles into them
            vm.shadow_cds().end() - 4, // straddles out of them
        ];
        for ipa in bad {
            let r = call(&mut w, 0, HypCall::ConsoleWrite { ipa, len: 8 }.to_regs());
            assert_eq!(r.status(), Err(HypError::InvalidAddress), "console {ipa:#x}");
            let r = call(&mut w, 0, HypCall::VmInfo { ipa, len: 64 }.to_regs());
            assert_eq!(r.status(), Err(HypError::InvalidAddress), "vm_info {ipa:#x}");
            let r = call(&mut w, 0, HypCall::SetSte { sid: 0x18, ipa }.to_regs());
            assert_eq!(r.status(), Err(HypError::InvalidAddress), "set_ste {ipa:#x}");
            let r = call(&mut w, 0, HypCall::Invalidate { ipa, count: 1 }.to_regs());
            assert_eq!(r.status(), Err(HypError::InvalidAddress), "invalidate {ipa:#x}");
        }
        assert!(w.out.0.is_empty());
        assert!(w.smmu.attached.is_empty() && w.smmu.invalidated.is_empty());
        assert!(w.ram.bytes.iter().all(|&b| b == 0));
    }

    #[test]
    fn the_callers_buffers_are_not_reached_through_another_vms_memory() {
        use host_abi::smmu::SteConfig;
        let mut w = world();
        let base = w.ram.base;
        let ste = Ste::default().with_v(1).with_config(SteConfig::Bypass);
        w.ram.bytes[0x400..0x440].copy_from_slice(ste.as_bytes());
        w.ram.bytes[0x800..0x810].copy_from_slice(Command::tlbi_nh_all(0).as_bytes());
        w.ram.bytes[0x100..0x105].copy_from_slice(b"hello");
        w.smmu.events = vec![(1, [1, 0, 0xa, 0]), (1, [2, 0, 0xb, 0])];
        // VM 1's RAM, as memory that serves VM 2: were it not for the check, every call below
        // would succeed on these very bytes.
        w.ram.vm = 2;
        let before = w.ram.bytes.clone();
        let calls = [
            HypCall::ConsoleWrite { ipa: base + 0x100, len: 5 },
            HypCall::VmInfo { ipa: base + 0x2000, len: 64 },
            HypCall::DeviceInfo { index: 0, ipa: base + 0x3000, len: 112 },
            HypCall::EventRead { ipa: base + 0x200, len: 32 },
            HypCall::SetSte { sid: 0x18, ipa: base + 0x400 },
            HypCall::Invalidate { ipa: base + 0x800, count: 1 },
            HypCall::PmStatus { ipa: base + 0x500, len: 64 },
            HypCall::SmmuStats { ipa: base + 0x600, len: 80 },
        ];
        for c in calls {
            let r = call(&mut w, 0, c.to_regs());
            assert_eq!(r.status(), Err(HypError::InvalidAddress), "{c:x?}");
        }
        assert!(w.ram.bytes == before, "nothing written");
        assert!(w.out.0.is_empty(), "nothing read");
        assert!(w.smmu.attached.is_empty() && w.smmu.invalidated.is_empty());
        // EVENT_READ learns that the memory is not the caller's only when it writes: its record
        // was taken (at EL2 a call always gets its caller's own memory).
        assert_eq!(w.smmu.events.len(), 1);
        // The same calls through the caller's own memory.
        w.ram.vm = 1;
        for c in calls {
            assert!(call(&mut w, 0, c.to_regs()).status().is_ok(), "{c:x?}");
        }
        assert_eq!(w.out.0, b"hello");
        assert_eq!(w.smmu.attached, [(1, 0x18, Domain::Identity)]);
        assert_eq!(w.smmu.invalidated, [(1, 1)]);
        assert!(w.smmu.events.is_empty() && w.ram.bytes[0x200..0x208] == 2u64.to_le_bytes());
    }

    #[test]
    fn device_info_lists_the_callers_devices_only() {
        let mut w = world();
        let vm = &MANIFEST.vms[1];
        let ipa = vm.mem.base + 0x3000;
        let r = call(&mut w, 0, HypCall::DeviceInfo { index: 0, ipa, len: 112 }.to_regs());
        assert_eq!(r.0, [0, 1, 0, 0]);
        let info = DeviceInfo::read_from_bytes(&w.ram.bytes[0x3000..0x3070]).unwrap();
        assert_eq!(info.stream_id, 0x18);
        assert_eq!((info.vendor, info.device), (0x1234, 0x11e8));
        assert_eq!(info.bars[0], BarInfo { ipa: 0x1010_0000, size: 0x10_0000 });
        assert_eq!(info.bars[1].size, 0);
        let before = w.ram.bytes.clone();
        let r = call(&mut w, 0, HypCall::DeviceInfo { index: 1, ipa, len: 112 }.to_regs());
        assert_eq!(r.status(), Err(HypError::InvalidParameter));
        let r = call(&mut w, 0, HypCall::DeviceInfo { index: u64::MAX, ipa, len: 112 }.to_regs());
        assert_eq!(r.status(), Err(HypError::InvalidParameter));
        let r =
            call(&mut w, 0, HypCall::DeviceInfo { index: 0, ipa: 0x4020_0000, len: 112 }.to_regs());
        assert_eq!(r.status(), Err(HypError::InvalidAddress));
        assert!(w.ram.bytes == before, "failed calls write nothing");
    }

    #[test]
    fn vm_info_describes_the_caller() {
        let mut w = world();
        let vm = &MANIFEST.vms[1];
        let ipa = vm.mem.base + 0x2000;
        let r = call(&mut w, 0, HypCall::VmInfo { ipa, len: 4096 }.to_regs());
        assert_eq!(r.status(), Ok(0));
        let info = VmInfo::read_from_bytes(&w.ram.bytes[0x2000..0x2040]).unwrap();
        assert_eq!(info.vm_id, 1);
        assert_eq!(info.vm_count, 3);
        assert_eq!(info.mem_base, vm.mem.base);
        assert_eq!(info.cpu, vm.first_cpu());
        assert_eq!(info.running_mask, 0b10);
        assert_eq!(info.peak_running, 1);
        assert_eq!(host_abi::types::decode_name(&info.name), "guest1");
        // Only 64 bytes are written even with a larger buffer.
        assert!(w.ram.bytes[0x2040..0x3000].iter().all(|&b| b == 0));
    }
}
