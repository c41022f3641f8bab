//! The SMMU service against the software SMMU.

use super::*;
use crate::iommu::driver::smmu::{SmmuDriver, Timeout, EVTQ_LOG2};
use crate::iommu::driver::ste::S1Config;
use crate::iommu::service::SmmuCalls;
use crate::iommu::soft::fake::FakeSmmu;
use crate::iommu::soft::SmmuIdRegs;
use crate::iommu::validate::SmmuCaps;
use crate::vm::memory::{GuestMemory, NoMemory, ServedRange, ServingOnly};
use host_abi::smmu::regs::{off, Gbpa, Idr1, IrqCtrl};
use host_abi::smmu::Cd;
use platform::power::SimulatedPowerController;
use platform::qemu_virt::MANIFEST;
use std::string::ToString;
use std::vec;
use zerocopy::IntoBytes;

fn ev(sid: u32, iova: u64) -> EventWords {
    [0x10 | (sid as u64) << 32, 0, iova, 0]
}

fn sid_of(vm: usize) -> u32 {
    MANIFEST.vms[vm].devices[0].rid()
}

/// The SMMU service on `fake`, its table covering `max_sid`, every manifest VM's stage 2 set
/// (also the set-up of the emulated SMMU's tests and of both fuzzers).
pub(crate) fn service_with(
    fake: FakeSmmu,
    max_sid: u32,
    reset: GbpaReset,
) -> SmmuService<FakeSmmu> {
    let c = fake.coherency;
    let (driver, table) = SmmuDriver::init(fake, max_sid, true, IrqCtrl::empty(), c).unwrap();
    let mut io =
        SmmuService::new(driver, table, &MANIFEST, Box::new(SimulatedPowerController::new(reset)));
    for vm in MANIFEST.vms {
        io.set_stage2(vm.id, s2(vm.id));
        let shadow = vm.shadow_cds();
        let buf = DmaBuf::new(shadow.size as usize, 4096).unwrap();
        io.set_shadow_cds(vm.id, ShadowCds { ipa: shadow.base, buf });
    }
    io
}

/// VM `vm`'s stage-2 configuration in the tests (a made-up table address per VM).
pub(crate) fn s2(vm: u32) -> S2Config {
    S2Config::vm(MANIFEST.vms[vm as usize].vmid(), 0x4030_0000 + vm as u64 * 0x1000)
}

fn max_sid() -> u32 {
    MANIFEST.vms.iter().flat_map(|v| v.devices.iter()).map(|d| d.rid()).max().unwrap()
}

fn ready() -> SmmuService<FakeSmmu> {
    service_with(FakeSmmu::qemu(), max_sid(), GbpaReset::Abort)
}

fn vote_all(io: &mut SmmuService<FakeSmmu>, v: Vote) -> PmVoteResult {
    let mut last = None;
    for vm in 0..MANIFEST.vms.len() as u32 {
        last = Some(io.vote(vm, v));
    }
    last.unwrap()
}

#[test]
fn attach_installs_the_shadow_ste_and_invalidates_it() {
    let mut io = ready();
    let g1 = sid_of(1);
    let before = io.driver().counters;
    io.attach(1, g1, Domain::Identity, &NoMemory).unwrap();
    assert_eq!(io.ste(g1), ste::encode(&Domain::Identity, &s2(1)));
    assert_eq!(io.domain_of(g1), Some(Domain::Identity));
    assert_eq!(io.attached_streams(), 1);
    // Abort -> identity: two sync points, each CFGI_STE + SYNC.
    assert_eq!(io.driver().counters.syncs - before.syncs, 2);
    let ops = io.regs_mut().opcodes();
    assert_eq!(&ops[ops.len() - 4..], [0x03, 0x46, 0x03, 0x46]);
    assert_eq!(io.attach(1, sid_of(0), Domain::Identity, &NoMemory), Err(HypError::NotOwned));
    assert_eq!(io.attach(0, g1, Domain::Identity, &NoMemory), Err(HypError::NotOwned));
    io.attach(1, g1, Domain::Blocked, &NoMemory).unwrap();
    assert_eq!(ste::effective(&io.ste(g1)), None);
    assert_eq!(io.attached_streams(), 0);
}

#[test]
fn invalidate_validates_all_then_submits_one_batch() {
    let mut io = ready();
    let g1 = sid_of(1);
    let before = io.driver().counters;
    let batch = [Command::tlbi_nh_va(0, 1, 0x1000), Command::cfgi_cd(g1, 0), Command::sync()];
    assert_eq!(io.invalidate(1, &batch.clone(), &NoMemory), Ok(2), "the SYNC is elided");
    assert_eq!(io.driver().counters.commands - before.commands, 3, "2 commands + 1 SYNC");
    assert_eq!(io.driver().counters.syncs - before.syncs, 1);
    let ops = io.regs_mut().consumed.clone();
    assert_eq!(
        ops[ops.len() - 3],
        Command::tlbi_nh_va(MANIFEST.vms[1].vmid(), 1, 0x1000).0,
        "VMID forced to guest1's"
    );
    let before = io.driver().counters;
    let bad = [Command::tlbi_nh_all(0), Command::cfgi_ste(sid_of(2))];
    assert_eq!(io.invalidate(1, &bad.clone(), &NoMemory), Err((1, HypError::NotOwned)));
    assert_eq!(io.driver().counters, before, "nothing submitted");
}

#[test]
fn a_command_the_smmu_rejects_is_named_by_its_index_in_the_callers_array() {
    // Two SYNCs and an ATC_INV (no ATS) are dropped before the command the SMMU refuses: the
    // error still names it where the caller put it (index 4), not where it was in the batch
    // sent (index 1). Through the SmmuCalls interface too (the hypercall and the emulated SMMU,
    // which stops the host's queue on that entry).
    let mut io = ready();
    let g1 = sid_of(1);
    let b = [
        Command::sync(),
        Command::tlbi_nh_all(0),
        Command::sync(),
        Command::atc_inv_all(g1),
        Command::cfgi_cd(g1, 0),
        Command::tlbi_nh_va(0, 1, 0x1000),
        Command::sync(),
    ];
    io.regs_mut().reject_opcode = Some(b[4].opcode_byte());
    let before = io.regs_mut().consumed.len();
    assert_eq!(io.invalidate(1, &b, &NoMemory), Err((4, HypError::DeviceError)));
    let calls: &mut dyn SmmuCalls = &mut io;
    assert_eq!(calls.invalidate(1, &b, &NoMemory), Err((4, HypError::DeviceError)));
    // What the SMMU executed: the commands before and after the refused one (the driver
    // replaced it with a SYNC and restarted the queue), each batch with its own SYNC.
    let vmid = MANIFEST.vms[1].vmid();
    let done: std::vec::Vec<[u64; 2]> = io.regs_mut().consumed[before..].to_vec();
    assert_eq!(done[0], Command::tlbi_nh_all(vmid).0);
    assert!(done.contains(&Command::tlbi_nh_va(vmid, 1, 0x1000).0));
    assert!(!done.contains(&Command::cfgi_cd(g1, 0).0));
    io.regs_mut().reject_opcode = None;
    assert_eq!(io.invalidate(1, &b, &NoMemory), Ok(3), "the SMMU accepts it again");
    // The batch's own closing SYNC rejected: no command of the caller's, so the count. (An SMMU
    // that rejects every SYNC, the driver's replacement included, never completes one: it is
    // given up on, and every later batch is refused without a register access.)
    io.regs_mut().reject_opcode = Some(Command::sync().opcode_byte());
    io.hw.driver_mut().poll_limit = 16;
    assert_eq!(io.invalidate(1, &b[..3], &NoMemory), Err((3, HypError::DeviceError)));
    io.regs_mut().reject_opcode = None;
    assert_eq!(io.invalidate(1, &b, &NoMemory), Err((7, HypError::DeviceError)));
}

#[test]
fn a_batch_whose_first_command_is_dropped_still_sends_the_rest() {
    let mut io = ready();
    let n = io.regs_mut().consumed.len();
    let b = [Command::sync(), Command::tlbi_nh_va(0, 3, 0x5000)];
    assert_eq!(io.invalidate(2, &b, &NoMemory), Ok(1));
    let c = &io.regs_mut().consumed[n..];
    assert_eq!(c, [Command::tlbi_nh_va(MANIFEST.vms[2].vmid(), 3, 0x5000).0, Command::sync().0]);
}

#[test]
fn global_errors_are_acknowledged_and_a_service_failure_reinitialises() {
    let mut io = ready();
    let g1 = sid_of(1);
    io.attach(1, g1, Domain::Identity, &NoMemory).unwrap();
    assert_eq!(io.handle_global_errors(), Gerror::empty());
    io.regs_mut().raise(Gerror::EVENTQ_ABT_ERR | Gerror::SFM_ERR);
    let cfgi_before = io.regs_mut().opcodes().iter().filter(|&&o| o == 0x04).count();
    assert_eq!(io.handle_global_errors(), Gerror::EVENTQ_ABT_ERR | Gerror::SFM_ERR);
    assert!(io.regs_mut().smmu.active_errors().is_empty(), "acknowledged");
    assert_eq!(
        io.regs_mut().opcodes().iter().filter(|&&o| o == 0x04).count(),
        cfgi_before + 1,
        "re-initialised"
    );
    assert_eq!(io.ste(g1), ste::encode(&Domain::Identity, &s2(1)));
    let mut out = [[0u64; 4]; 1];
    assert_eq!(io.read_events(1, &mut out).lost_notices, 1, "an aborted event write is told");
    assert_eq!(io.read_events(2, &mut out).lost_notices, 0, "no stream of VM 2 could fault");
    assert_eq!(io.stats().global_errors, 2);
}

#[test]
fn every_vm_must_allow_power_off() {
    let mut io = ready();
    let g1 = sid_of(1);
    let last = MANIFEST.vms.len() as u32 - 1;
    io.attach(1, g1, Domain::Identity, &NoMemory).unwrap();
    assert_eq!(io.vote(0, Vote::AllowOff).refusal, Some(Refusal::WaitingForVotes));
    for vm in 1..last {
        assert!(!io.vote(vm, Vote::AllowOff).powered_off);
    }
    let r = io.vote(last, Vote::AllowOff);
    assert_eq!((r.powered_off, r.refusal), (true, None));
    assert_eq!(io.pm_counters().suspends, 1);
    let f = io.regs_mut();
    assert_eq!(f.smmu.read32(off::CR0), 0, "registers at reset");
    assert!(f.aborts(), "GBPA: abort");
    let consumed = f.consumed.len();
    let writes = f.writes.len();
    // While off: STE changes in memory only, invalidations elided, no hardware access.
    io.attach(1, g1, Domain::Blocked, &NoMemory).unwrap();
    assert_eq!(ste::effective(&io.ste(g1)), None);
    assert_eq!(io.invalidate(1, &[Command::tlbi_nh_all(0)], &NoMemory), Ok(0));
    let _ = io.stats();
    let mut out = [[0u64; 4]; 1];
    let _ = io.read_events(1, &mut out);
    assert!(io.pm_counters().elided >= 3);
    assert_eq!(io.regs_mut().consumed.len(), consumed, "nothing reached the SMMU");
    assert_eq!(io.regs_mut().writes.len(), writes, "no register written while off");
    // The first need-on brings it back: resume invalidates everything, then SMMUEN.
    assert!(!io.vote(0, Vote::NeedOn).powered_off);
    assert_eq!(io.pm_counters().resumes, 1);
    let ops = io.regs_mut().opcodes();
    assert_eq!(&ops[ops.len() - 4..], [0x04, 0x30, 0x20, 0x46]);
    assert!(io.regs_mut().smmu.cr0().contains(host_abi::smmu::regs::Cr0::RUNNING));
}

#[test]
fn events_pending_at_power_off_reach_their_owner() {
    let mut io = ready();
    let (g1, g2) = (sid_of(1), sid_of(2));
    let pending = |io: &mut SmmuService<FakeSmmu>, vm| SmmuCalls::events_pending(io, vm);
    assert!(!pending(&mut io, 1) && !pending(&mut io, 2));
    io.regs_mut().post_event(ev(g2, 0x2000));
    io.regs_mut().post_event(ev(g1, 0x1000));
    assert!(vote_all(&mut io, Vote::AllowOff).powered_off);
    // The queue's registers are gone; the records were routed before they were.
    assert!(pending(&mut io, 1) && pending(&mut io, 2) && !pending(&mut io, 0));
    let mut out = [[0u64; 4]; 4];
    let r = io.read_events(1, &mut out);
    assert_eq!((r.written, out[0][2]), (1, 0x1000));
    assert!(!pending(&mut io, 1) && pending(&mut io, 2), "read, VM 1 has none left");
    let r = io.read_events(2, &mut out);
    assert_eq!((r.written, out[0][2]), (1, 0x2000));
    assert!(!pending(&mut io, 2));
}

#[test]
fn an_entry_drains_at_most_what_its_caller_allows() {
    let mut io = ready();
    let (g1, g2) = (sid_of(1), sid_of(2));
    let pending = |io: &mut SmmuService<FakeSmmu>, vm| SmmuCalls::events_pending(io, vm);
    for i in 0..DRAIN_PER_ENTRY as u64 + 3 {
        io.regs_mut().post_event(ev(g2, 0x1000 * i));
    }
    io.regs_mut().post_event(ev(g1, 0x1000));
    // A guest's call while the SMMU's interrupt is served: global errors only, no record taken.
    io.entry_drain = 0;
    let _ = io.stats();
    assert!(!pending(&mut io, 1) && !pending(&mut io, 2));
    assert_eq!(io.driver().counters.events, 0);
    assert!(io.event_backlog(), "it saw that records wait");
    // The interrupt's entry: one bounded round, and it says records are left.
    io.entry_drain = DRAIN_PER_ENTRY;
    io.service_hardware();
    assert_eq!(io.driver().counters.events, DRAIN_PER_ENTRY as u64);
    assert!(io.event_backlog() && pending(&mut io, 2) && !pending(&mut io, 1));
    io.service_hardware();
    assert_eq!(io.driver().counters.events, DRAIN_PER_ENTRY as u64 + 4);
    assert!(!io.event_backlog() && pending(&mut io, 1));
}

#[test]
fn a_stopped_vm_is_blocked_and_no_longer_holds_power_on() {
    let mut io = ready();
    let g1 = sid_of(1);
    io.attach(1, g1, Domain::Identity, &NoMemory).unwrap();
    io.vm_stopped(1);
    assert_eq!(io.domain_of(g1), Some(Domain::Blocked));
    assert_eq!(ste::effective(&io.ste(g1)), None);
    for vm in 0..MANIFEST.vms.len() as u32 {
        if vm != 1 {
            io.vote(vm, Vote::AllowOff);
        }
    }
    assert_eq!(io.power(), Power::Off, "the stopped VM counts as allow-off");
}

#[test]
fn extra_streams_are_owned_and_attachable_on_a_two_level_table() {
    let mut io = service_with(FakeSmmu::qemu(), 0x10ff, GbpaReset::Abort);
    io.add_streams(0, 0x1000, 0x100);
    assert!(io.owns(0, 0x10ff) && !io.owns(1, 0x10ff) && !io.owns(0, 0x1100));
    assert!(io.is_two_level(), "the stream ID space needs two levels");
    let n = io.regs_mut().consumed.len();
    io.attach(0, 0x1005, Domain::Identity, &NoMemory).unwrap();
    // What the SMMU uses for the stream is the shadow STE: it walks the table the way the
    // hardware does, through the level-1 descriptor, as the CPU's barriers published it.
    let fetched = in_use(&mut io, 0x1005).0;
    assert_eq!(Ste(fetched), ste::encode(&Domain::Identity, &s2(0)));
    // The new span was invalidated before the STE changed, then each step.
    let ops: std::vec::Vec<u64> = io.regs_mut().consumed[n..].iter().map(|c| c[0] & 0xff).collect();
    assert_eq!(ops, [0x03, 0x46, 0x03, 0x46, 0x03, 0x46]);
    assert_eq!(io.attached_streams(), 1);
    // The level-1 descriptor spans its whole level-2 table (SPAN = SPLIT + 1): the last
    // stream of the 256 is reached too.
    io.attach(0, 0x10ff, Domain::Identity, &NoMemory).unwrap();
    let fetched = in_use(&mut io, 0x10ff).0;
    assert_eq!(Ste(fetched), ste::encode(&Domain::Identity, &s2(0)));
}

#[test]
fn a_failed_ste_write_is_reported_and_the_stream_stays_blocked() {
    // A stream the manifest assigns beyond what the table covers (a misconfigured platform):
    // the install fails, the call says so, nothing is attached.
    let mut io = service_with(FakeSmmu::qemu(), max_sid(), GbpaReset::Abort);
    io.add_streams(2, 0x4000, 1);
    assert_eq!(io.attach(2, 0x4000, Domain::Identity, &NoMemory), Err(HypError::DeviceError));
    assert_eq!(io.domain_of(0x4000), Some(Domain::Blocked));
    assert_eq!(io.attached_streams(), 0);
}

#[test]
fn a_failed_attach_leaves_the_stream_blocked_in_memory_even_if_the_smmu_fails_again() {
    // A hung SMMU: the new entry's first sync point fails, and so does the fallback's. The
    // stream is reported blocked, so its entry in memory must say abort (resume's CFGI_ALL
    // makes the SMMU read it), not the old domain.
    let mut io = ready();
    let g1 = sid_of(1);
    io.attach(1, g1, Domain::Identity, &NoMemory).unwrap();
    io.regs_mut().hold_commands = true;
    let nested = Domain::Nested(crate::iommu::driver::ste::S1Config {
        ctx_ptr: MANIFEST.vms[1].mem.base + 0x1000,
        cdmax: 0,
        fmt: 0,
        dss: 0,
        cir: 1,
        cor: 1,
        csh: 3,
    });
    assert_eq!(io.attach(1, g1, nested, &NoMemory), Err(HypError::DeviceError));
    assert_eq!(io.domain_of(g1), Some(Domain::Blocked));
    assert_eq!(ste::effective(&io.ste(g1)), None, "the entry in memory aborts: {:x?}", io.ste(g1));
}

#[test]
fn a_stream_first_attached_while_off_gets_its_table_and_translates_after_resume() {
    let mut io = service_with(FakeSmmu::qemu(), 0x1000 + 9, GbpaReset::Abort);
    io.add_streams(0, 0x1000, 10);
    assert!(vote_all(&mut io, Vote::AllowOff).powered_off);
    io.attach(0, 0x1003, Domain::Identity, &NoMemory).unwrap();
    let want = ste::encode(&Domain::Identity, &s2(0));
    assert_eq!(io.ste(0x1003), want, "written in memory while off");
    io.vote(0, Vote::NeedOn);
    let fetched = in_use(&mut io, 0x1003).0;
    assert_eq!(Ste(fetched), want);
}

#[test]
fn an_atc_invalidation_wakes_the_smmu() {
    let mut io = ready();
    assert!(vote_all(&mut io, Vote::AllowOff).powered_off);
    assert_eq!(io.invalidate(1, &[Command::atc_inv_all(sid_of(1))], &NoMemory), Ok(0));
    let c = io.pm_counters();
    assert_eq!((c.wakeups, c.resumes), (1, 1));
    assert_eq!(io.pm_status().power, 0, "on again");
}

#[test]
fn a_refused_atc_invalidation_does_not_wake_the_smmu() {
    let mut io = ready();
    assert!(vote_all(&mut io, Vote::AllowOff).powered_off);
    let writes = io.regs_mut().writes.len();
    // Another VM's stream: refused, and nothing happens, power-on included.
    assert_eq!(
        io.invalidate(1, &[Command::atc_inv_all(sid_of(2))], &NoMemory),
        Err((0, HypError::NotOwned))
    );
    // A valid ATC_INV followed by a bad command: refused as a whole.
    assert_eq!(
        io.invalidate(1, &[Command::atc_inv_all(sid_of(1)), Command::cfgi_all()], &NoMemory),
        Err((1, HypError::BadCommand))
    );
    assert_eq!(io.power(), Power::Off);
    assert_eq!(io.pm_counters().wakeups, 0);
    assert_eq!(io.regs_mut().writes.len(), writes, "no register touched");
}

#[test]
fn a_bypass_reset_platform_refuses_power_off_while_dma_is_possible() {
    let mut io = service_with(FakeSmmu::qemu(), max_sid(), GbpaReset::Bypass);
    let r = vote_all(&mut io, Vote::AllowOff);
    let streams = MANIFEST.vms.iter().map(|v| v.devices.len()).sum::<usize>() as u32;
    assert_eq!(
        r,
        PmVoteResult {
            powered_off: false,
            refusal: Some(Refusal::BypassResetWithDma),
            dma_streams: streams
        }
    );
    let s = io.pm_status();
    let all = (1u64 << MANIFEST.vms.len()) - 1;
    assert_eq!((s.power, s.refusal, s.gbpa_reset, s.votes_allow_off), (0, 2, 1, all));
}

#[test]
fn pm_off_refuses_every_power_off() {
    let mut io = ready();
    io.set_pm_enabled(false);
    let r = vote_all(&mut io, Vote::AllowOff);
    assert_eq!((r.powered_off, r.refusal), (false, Some(Refusal::Disabled)));
    assert_eq!(io.pm_status().refusal, 3);
}

#[test]
fn only_the_injector_may_inject_a_power_loss_and_it_is_recovered() {
    let mut io = ready();
    let g1 = sid_of(1);
    io.attach(1, g1, Domain::Identity, &NoMemory).unwrap();
    assert_eq!(io.inject_power_loss(0), Err(InjectError::NotSupported), "disabled");
    io.injector = Some(0);
    assert!(io.may_inject(0) && !io.may_inject(1));
    assert_eq!(io.inject_power_loss(1), Err(InjectError::NotSupported), "a guest may not");
    assert_eq!(SmmuCalls::inject_power_loss(&mut io, 2, 0), Err(InjectError::NotSupported));
    assert!(io.regs_mut().smmu.cr0().contains(host_abi::smmu::regs::Cr0::SMMUEN), "untouched");
    io.inject_power_loss(0).unwrap();
    assert!(!io.regs_mut().smmu.cr0().contains(host_abi::smmu::regs::Cr0::SMMUEN));
    assert!(io.regs_mut().aborts(), "this platform resets GBPA to abort");
    // The next operation that needs the hardware notices and resumes first.
    assert_eq!(io.invalidate(1, &[Command::tlbi_nh_all(0)], &NoMemory), Ok(1));
    assert_eq!(io.pm_counters().losses, 1);
    assert_eq!(io.ste(g1), ste::encode(&Domain::Identity, &s2(1)));
    let fetched =
        io.regs_mut().smmu.lookup_ste(&mut crate::iommu::soft::fake::HostMemory, g1).unwrap();
    assert_eq!(Ste(fetched), ste::encode(&Domain::Identity, &s2(1)), "translating again");
}

#[test]
fn a_bypass_reset_platform_refuses_an_injected_power_loss_while_dma_is_possible() {
    // The same rule as power-off: registers at reset values would mean GBPA = bypass, so
    // untranslated DMA until the hypervisor's next SMMU access. Refused, now or armed, with the
    // reason; nothing touches the SMMU.
    let mut io = service_with(FakeSmmu::qemu(), max_sid(), GbpaReset::Bypass);
    let g0 = sid_of(0);
    io.attach(0, g0, Domain::Identity, &NoMemory).unwrap();
    io.injector = Some(0);
    let refused = Err(InjectError::Refused(Refusal::BypassResetWithDma));
    let writes = io.regs_mut().writes.len();
    assert_eq!(io.check_injection(0), refused);
    assert_eq!(io.inject_power_loss(0), refused);
    assert_eq!(SmmuCalls::inject_power_loss(&mut io, 0, 0), refused, "immediate");
    assert_eq!(SmmuCalls::inject_power_loss(&mut io, 0, 3), refused, "armed");
    assert_eq!(io.check_injection(1), Err(InjectError::NotSupported), "a guest still may not");
    assert_eq!(io.regs_mut().writes.len(), writes, "no register written");
    assert!(io.regs_mut().smmu.cr0().contains(host_abi::smmu::regs::Cr0::SMMUEN), "untouched");
    assert_eq!(io.pm_counters().losses, 0);
    let fetched =
        io.regs_mut().smmu.lookup_ste(&mut crate::iommu::soft::fake::HostMemory, g0).unwrap();
    assert_eq!(Ste(fetched), ste::encode(&Domain::Identity, &s2(0)), "still translating");
    // The reason is the one a bypass-reset platform gives for power-off, and the call's x1.
    assert_eq!(io.pm_status().gbpa_reset, 1);
    let e = io.check_injection(0).unwrap_err();
    assert_eq!((e.error(), e.detail()), (HypError::Refused, 2));
    // Without DMA-capable streams there is no window to open: allowed.
    let mut bare = service_with(FakeSmmu::qemu(), max_sid(), GbpaReset::Bypass);
    bare.streams = Streams::default();
    bare.injector = Some(0);
    assert_eq!(bare.inject_power_loss(0), Ok(()));
    assert!(!bare.regs_mut().smmu.cr0().contains(host_abi::smmu::regs::Cr0::SMMUEN), "lost");
}

#[test]
fn an_abort_reset_platform_allows_an_injected_power_loss_with_dma() {
    let mut io = ready();
    io.attach(0, sid_of(0), Domain::Identity, &NoMemory).unwrap();
    io.injector = Some(0);
    assert_eq!(io.check_injection(0), Ok(()));
    assert_eq!(SmmuCalls::inject_power_loss(&mut io, 0, 0), Ok(()));
    assert!(io.regs_mut().aborts(), "at reset, GBPA = abort: nothing passes");
}

#[test]
fn a_power_loss_in_the_middle_of_a_batch_costs_no_long_wait() {
    let mut io = ready();
    // Power lost between two calls: detected at the next entry (CR0 is back at reset) and
    // recovered, then the batch goes through.
    io.regs_mut().power_loss(Gbpa::ABORT);
    assert_eq!(io.invalidate(1, &[Command::tlbi_nh_all(0)], &NoMemory), Ok(1));
    assert_eq!(io.pm_counters().losses, 1);
    // Lost just before the batch's PROD write: the SMMU never consumes it. The driver sees
    // its queue disabled on the first poll and gives up at once instead of spinning (which
    // would hold every other VM's SMMU call behind this one).
    let writes = io.regs_mut().writes.len();
    io.regs_mut().lose_power_before_write = Some(writes);
    io.regs_mut().reads = 0;
    let r = io.invalidate(1, &[Command::tlbi_nh_all(0)], &NoMemory);
    assert_eq!(r, Err((1, HypError::DeviceError)), "the batch did not complete");
    assert!(io.regs_mut().reads < 100, "{} register reads", io.regs_mut().reads);
    assert_eq!(io.pm_counters().losses, 2, "recovered before returning");
    assert!(io.regs_mut().smmu.cr0().contains(host_abi::smmu::regs::Cr0::RUNNING));
    assert_eq!(io.invalidate(1, &[Command::tlbi_nh_all(0)], &NoMemory), Ok(1), "working again");
}

#[test]
fn routing_and_reading_with_several_streams_per_vm_out_of_vm_order() {
    let mut io = service_with(FakeSmmu::qemu(), 0x1000 + 9, GbpaReset::Abort);
    // Extra streams: VM 2 gets a low one, VM 0 a high one.
    io.add_streams(2, 0x1001, 1);
    io.add_streams(0, 0x1009, 1);
    let (h, g1, g2) = (sid_of(0), sid_of(1), sid_of(2));
    assert_eq!(io.owner_of(g1), Some(1));
    assert_eq!(io.owner_of(0x08), None);
    assert_eq!(io.streams_of(2).collect::<std::vec::Vec<_>>(), [g2, 0x1001]);
    let records =
        [ev(0x1009, 1), ev(g1, 0x1000), ev(0x1001, 2), ev(g2, 0x2000), ev(0x08, 0), ev(h, 3)];
    for r in records {
        io.regs_mut().post_event(r);
    }
    io.regs_mut().post_event(ev(g1, 0x3000));
    let mut out = [[0u64; 4]; 1];
    let r = io.read_events(1, &mut out);
    assert_eq!((r.written, r.pending, r.dropped), (1, 1, 0));
    assert_eq!(out[0][2], 0x1000);
    let mut out = [[0u64; 4]; 4];
    let r = io.read_events(1, &mut out);
    assert_eq!((r.written, r.pending), (1, 0));
    assert_eq!(out[0][2], 0x3000);
    let r = io.read_events(0, &mut out);
    assert_eq!((r.written, out[0][2], out[1][2]), (2, 1, 3));
    let r = io.read_events(2, &mut out);
    assert_eq!((r.written, out[0][2], out[1][2]), (2, 2, 0x2000));
    assert_eq!(io.unowned_events(), 1);
    io.regs_mut().post_event(ev(0x09, 0));
    let s = io.stats();
    assert_eq!((s.events, s.events_routed, s.events_dropped), (8, 6, 0));
    assert_eq!(s.syncs, 1, "the boot batch");
    assert_eq!(io.unowned_events(), 2);
    assert_eq!(io.events_of(1), (2, 0));
    assert_eq!(io.events_of(0), (2, 0));
    assert_eq!(io.events_of(9), (0, 0), "no such VM");
    assert!(io.is_two_level());
    assert!(!ready().is_two_level(), "a few stream IDs: linear");
}

#[test]
fn a_flooding_vm_costs_another_vm_none_of_its_events() {
    let mut io = ready();
    let (g1, g2) = (sid_of(1), sid_of(2));
    io.attach(1, g1, Domain::Identity, &NoMemory).unwrap();
    io.attach(2, g2, Domain::Identity, &NoMemory).unwrap();
    // VM 2's device faults 3,000 times and VM 2 never reads; VM 1 expects its 40. Every
    // entry into the service drains the SMMU's queue (here: VM 1's and the host's calls).
    let mut mine = 0;
    for i in 0..3000u64 {
        io.regs_mut().post_event(ev(g2, i));
        if i % 75 == 0 {
            io.regs_mut().post_event(ev(g1, 0x10_0000 + mine));
            mine += 1;
        }
        if i % 500 == 0 {
            let _ = io.stats();
        }
    }
    let mut got = std::vec::Vec::new();
    let mut out = [[0u64; 4]; 16];
    for _ in 0..10 {
        let r = io.read_events(1, &mut out);
        got.extend(out[..r.written].iter().map(|e| e[2]));
        assert_eq!((r.dropped, r.lost_notices), (0, 0), "nothing of VM 1's was lost");
        if r.pending == 0 {
            break;
        }
    }
    assert_eq!(got, (0..mine).map(|i| 0x10_0000 + i).collect::<std::vec::Vec<_>>());
    let r = io.read_events(2, &mut out);
    assert_eq!(r.dropped, 3000 - 64, "the flooder's own ring overflowed, counted against it");
}

#[test]
fn one_entry_routes_a_bounded_number_of_records_and_event_read_says_more_may_come() {
    let mut io = ready();
    let (g1, g2) = (sid_of(1), sid_of(2));
    io.attach(1, g1, Domain::Identity, &NoMemory).unwrap();
    io.attach(2, g2, Domain::Identity, &NoMemory).unwrap();
    // VM 2's device faults 3,000 times with nobody entering the service, then VM 1's once.
    let flood = 3000u64;
    for i in 0..flood {
        io.regs_mut().post_event(ev(g2, i));
    }
    io.regs_mut().post_event(ev(g1, 0x77));
    let drained = |io: &mut SmmuService<FakeSmmu>| io.driver().counters.events;
    let before = drained(&mut io);
    // One entry (VM 1's call) routes at most DRAIN_PER_ENTRY of them: VM 2 chose how many
    // records there are, not how long VM 1's call holds the lock.
    let mut out = [[0u64; 4]; 16];
    let r = io.read_events(1, &mut out);
    assert_eq!(drained(&mut io) - before, DRAIN_PER_ENTRY as u64);
    assert_eq!(r.written, 0, "VM 1's record is still behind the flood");
    assert_eq!(r.pending, 1, "but EVENT_READ says to read again");
    // Reading on gets it, each call a bounded amount of routing.
    let mut calls = 1;
    let got = loop {
        let before = drained(&mut io);
        let r = io.read_events(1, &mut out);
        calls += 1;
        assert!(drained(&mut io) - before <= DRAIN_PER_ENTRY as u64);
        if r.written > 0 {
            break out[0][2];
        }
        assert!(r.pending > 0 && calls < 100, "no progress");
    };
    assert_eq!(got, 0x77);
    assert_eq!(calls as u64, (flood + 1).div_ceil(DRAIN_PER_ENTRY as u64));
    let r = io.read_events(1, &mut out);
    assert_eq!((r.written, r.pending), (0, 0), "the SMMU's queue is empty now");
}

#[test]
fn a_power_off_routes_every_queued_record_first() {
    let mut io = ready();
    let g1 = sid_of(1);
    io.attach(1, g1, Domain::Identity, &NoMemory).unwrap();
    let n = 10 * DRAIN_PER_ENTRY as u64 + 5;
    for i in 0..n {
        io.regs_mut().post_event(ev(g1, i));
    }
    // The last allow-off vote powers the SMMU off: the queue would be lost, so it is drained
    // whole first.
    io.vm_stopped(1);
    for vm in 0..MANIFEST.vms.len() as u32 {
        io.vote(vm, Vote::AllowOff);
    }
    assert_eq!(io.power(), Power::Off);
    assert_eq!(io.driver().counters.events, n);
}

#[test]
fn when_the_smmu_itself_drops_events_every_affected_vm_is_told() {
    let mut io = ready();
    let (g1, g2) = (sid_of(1), sid_of(2));
    io.attach(1, g1, Domain::Identity, &NoMemory).unwrap();
    io.attach(2, g2, Domain::Identity, &NoMemory).unwrap();
    // Nobody enters the service while VM 2's device overflows the SMMU's queue.
    for i in 0..(1u64 << EVTQ_LOG2) + 10 {
        io.regs_mut().post_event(ev(g2, i));
    }
    let mut out = [[0u64; 4]; 16];
    let r1 = io.read_events(1, &mut out);
    assert_eq!((r1.written, r1.lost_notices), (0, 1), "VM 1 could have lost records: told");
    let r0 = io.read_events(0, &mut out);
    assert_eq!(r0.lost_notices, 0, "the host's streams are blocked: it cannot have lost any");
    assert_eq!(io.stats().events_lost_hw, 1);
}

#[test]
fn a_virtual_ste_is_checked_against_the_real_smmu() {
    // An SMMU without substreams: S1CDMax = 1 would be C_BAD_STE; validation refuses it.
    let ids = SmmuIdRegs {
        idr: [0x0d44_101b, Idr1::new(16, 0, 19, 19).0, 0, 0, 0, 0x55],
        ..SmmuIdRegs::QEMU
    };
    let mut io = service_with(FakeSmmu::with_ids(ids), max_sid(), GbpaReset::Abort);
    let caps = SmmuCalls::owned_stream(&mut io, 1, sid_of(1)).unwrap();
    assert_eq!(caps.ssid_bits, 0);
    assert_eq!(SmmuCalls::owned_stream(&mut io, 1, sid_of(2)), Err(HypError::NotOwned));
    let mem = MANIFEST.vms[1].mem;
    let v = host_abi::smmu::Ste::default()
        .with_v(1)
        .with_config(host_abi::smmu::SteConfig::S1)
        .with_s1_context_ptr(mem.base + 0x1000)
        .with_s1cdmax(1);
    assert_eq!(
        crate::iommu::validate::virtual_ste(&v, &MANIFEST.vms[1], &caps),
        Err(HypError::BadConfig)
    );
    let _ = vec![0u8; 1];
}

#[test]
fn global_errors_are_reported_once() {
    let mut io = ready();
    assert!(io.take_report().map_or(Gerror::empty(), |r| r.errors).is_empty());
    io.regs_mut().raise(Gerror::EVENTQ_ABT_ERR);
    assert_eq!(io.service_hardware(), Gerror::EVENTQ_ABT_ERR);
    io.regs_mut().raise(Gerror::SFM_ERR);
    let _ = io.stats();
    assert_eq!(
        io.take_report().map_or(Gerror::empty(), |r| r.errors),
        Gerror::EVENTQ_ABT_ERR | Gerror::SFM_ERR
    );
    assert!(
        io.take_report().map_or(Gerror::empty(), |r| r.errors).is_empty(),
        "each reported once"
    );
}

#[test]
fn every_entry_counts_and_reports_the_global_errors_it_handles() {
    let mut io = ready();
    let both = Gerror::EVENTQ_ABT_ERR | Gerror::SFM_ERR;
    io.regs_mut().raise(both);
    assert_eq!(io.service_hardware(), both);
    assert_eq!(io.take_report().map_or(Gerror::empty(), |r| r.errors), both);
    // An invalidation's entry work handles them the same way.
    io.regs_mut().raise(Gerror::EVENTQ_ABT_ERR);
    assert_eq!(io.invalidate(1, &[Command::tlbi_nh_all(0)], &NoMemory), Ok(1));
    assert!(io.regs_mut().smmu.active_errors().is_empty(), "acknowledged");
    assert_eq!(io.take_report().map_or(Gerror::empty(), |r| r.errors), Gerror::EVENTQ_ABT_ERR);
    assert_eq!(io.stats().global_errors, 3, "each error bit counted once");
    assert!(io.take_report().map_or(Gerror::empty(), |r| r.errors).is_empty());
}

#[test]
fn polling_routes_the_events_and_says_how_many() {
    let mut io = ready();
    let g1 = sid_of(1);
    for i in 0..3 {
        io.regs_mut().post_event(ev(g1, i));
    }
    assert_eq!(io.poll_events(), 3);
    assert_eq!(io.poll_events(), 0);
    assert_eq!(io.events_of(1), (3, 0));
    io.regs_mut().post_event(ev(g1, 3));
    assert!(vote_all(&mut io, Vote::AllowOff).powered_off);
    assert_eq!(io.events_of(1), (4, 0), "routed before power-off");
    assert_eq!(io.poll_events(), 0, "off: nothing to poll");
    assert_eq!(io.power(), Power::Off, "polling does not power the SMMU on");
}

#[test]
fn the_hypercall_interface_is_the_service() {
    // Every SmmuCalls operation is the service's own, with the same answers.
    let mut io = ready();
    let g1 = sid_of(1);
    let calls: &mut dyn SmmuCalls = &mut io;
    assert_eq!(calls.owned_stream(1, g1), Ok(SmmuCaps::QEMU));
    assert_eq!(calls.owned_stream(1, sid_of(2)), Err(HypError::NotOwned));
    assert_eq!(calls.attach(1, g1, Domain::Identity, &NoMemory), Ok(()));
    assert_eq!(calls.attach(2, g1, Domain::Identity, &NoMemory), Err(HypError::NotOwned));
    assert_eq!(calls.invalidate(1, &[Command::tlbi_nh_all(0), Command::sync()], &NoMemory), Ok(1));
    assert_eq!(
        calls.invalidate(1, &[Command::cfgi_ste(sid_of(2))], &NoMemory),
        Err((0, HypError::NotOwned))
    );
    let s = calls.stats();
    assert!(s.commands > 0 && s.syncs >= 3 && s.ste_writes > 0, "{s:?}");
    let r = calls.pm_vote(0, Vote::AllowOff);
    assert_eq!((r.powered_off, r.refusal), (false, Some(Refusal::WaitingForVotes)));
    let st = calls.pm_status();
    assert_eq!((st.votes_allow_off, st.vm_count, st.attached_streams), (1, 3, 1));
    assert!(!calls.may_inject(0) && !calls.may_inject(1));
    assert_eq!(calls.inject_power_loss(0, 0), Err(InjectError::NotSupported));
    io.regs_mut().post_event(ev(g1, 0x77));
    io.injector = Some(0);
    let calls: &mut dyn SmmuCalls = &mut io;
    assert!(calls.may_inject(0) && !calls.may_inject(1));
    assert_eq!(calls.inject_power_loss(0, 3), Err(InjectError::NotSupported), "deferred: EL2 only");
    let mut out = [[0u64; 4]; 2];
    let r = calls.read_events(1, &mut out);
    assert_eq!((r.written, out[0][2]), (1, 0x77));
    assert_eq!(calls.inject_power_loss(0, 0), Ok(()));
    assert!(!io.regs_mut().smmu.cr0().contains(host_abi::smmu::regs::Cr0::SMMUEN), "lost");
}

#[test]
fn the_power_controller_sees_the_real_registers() {
    /// A controller that reads GBPA through the register path on every power transition.
    struct Probe(std::sync::Arc<std::sync::Mutex<std::vec::Vec<u32>>>);
    impl SmmuPowerController for Probe {
        fn gbpa_reset(&self) -> GbpaReset {
            GbpaReset::Abort
        }
        fn is_on(&self) -> bool {
            true
        }
        fn power_off(&mut self, regs: &mut dyn platform::regs::SmmuRegs) {
            self.0.lock().unwrap().push(regs.read32(off::GBPA));
            self.0.lock().unwrap().push(regs.read32(off::IDR0));
        }
        fn power_on(&mut self, _regs: &mut dyn platform::regs::SmmuRegs) {}
        fn inject_loss(&mut self, _regs: &mut dyn platform::regs::SmmuRegs) {}
    }
    let seen = std::sync::Arc::new(std::sync::Mutex::new(std::vec::Vec::new()));
    let (driver, table) =
        SmmuDriver::init(FakeSmmu::qemu(), max_sid(), true, IrqCtrl::empty(), Coherency::Coherent)
            .unwrap();
    let mut io = SmmuService::new(driver, table, &MANIFEST, Box::new(Probe(seen.clone())));
    for vm in MANIFEST.vms {
        io.set_stage2(vm.id, s2(vm.id));
    }
    assert!(vote_all(&mut io, Vote::AllowOff).powered_off);
    assert_eq!(*seen.lock().unwrap(), [Gbpa::ABORT | 0x1000, 0x0d44_101b]);
}

/// Guest 1's RAM for the CD tests: sparse.
#[derive(Default)]
struct Ram(std::collections::BTreeMap<u64, u8>);

impl GuestMemory for Ram {
    fn serves(&self, vm: u32) -> bool {
        vm == 1
    }
    fn copy_out(&self, r: ServedRange, out: &mut [u8]) {
        for (i, o) in out.iter_mut().enumerate() {
            *o = *self.0.get(&(r.ipa() + i as u64)).unwrap_or(&0);
        }
    }
    fn copy_in(&mut self, r: ServedRange, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            self.0.insert(r.ipa() + i as u64, *b);
        }
    }
}

impl Ram {
    fn put_cd(&mut self, ipa: u64, c: &Cd) {
        for (i, b) in c.as_bytes().iter().enumerate() {
            self.0.insert(ipa + i as u64, *b);
        }
    }
}

/// Guest 1's CD table and page tables, and a CD as a driver writes it.
const G1_CDS: u64 = 0x5400_3000;
fn g1_cd(asid: u64) -> Cd {
    crate::iommu::validate::linux_cd(0x5410_0000, asid, 0xff)
}

fn g1_nested() -> Domain {
    Domain::Nested(S1Config { ctx_ptr: G1_CDS, cdmax: 0, fmt: 0, dss: 0, cir: 1, cor: 1, csh: 3 })
}

/// CFGI_CD commands (any SSID) the SMMU consumed from `from` on.
fn cfgi_cds(io: &mut SmmuService<FakeSmmu>, from: usize, sid: u32) -> usize {
    let c = Command::cfgi_cd(sid, 0).0;
    io.regs_mut().consumed[from..].iter().filter(|x| x[0] & !(0xfffff << 12) == c[0]).count()
}

#[test]
fn a_nested_stream_walks_the_hypervisors_copy_of_its_cds() {
    let mut io = ready();
    let g1 = sid_of(1);
    let mut ram = Ram::default();
    ram.put_cd(G1_CDS, &g1_cd(5));
    io.attach(1, g1, g1_nested(), &ram).unwrap();
    let shadow = MANIFEST.vms[1].shadow_cds();
    let ste = io.ste(g1);
    assert_eq!(ste.config(), Some(host_abi::smmu::SteConfig::Nested));
    assert_eq!(ste.s1_context_ptr(), shadow.base, "the shadow table, not the VM's");
    assert!(shadow.contains_range(ste.s1_context_ptr(), 64));
    assert_eq!(Some(ste), io.encoded(g1, &g1_nested()));
    assert_eq!(io.shadow_cd(g1, 0), Some(g1_cd(5)));
    assert_eq!(io.domain_of(g1), Some(g1_nested()), "the VM's view: its own table");
    // The VM rewrites its CD without telling the SMMU: nothing the SMMU walks changes.
    let before = io.regs_mut().consumed.len();
    ram.put_cd(G1_CDS, &g1_cd(6).with_ips(6));
    assert_eq!(io.invalidate(1, &[Command::tlbi_nh_all(0)], &ram), Ok(1));
    assert_eq!(io.shadow_cd(g1, 0), Some(g1_cd(5)));
    assert_eq!(io.ste(g1), ste);
    assert_eq!(cfgi_cds(&mut io, before, g1), 0);
}

#[test]
fn cfgi_cd_cd_all_and_ste_refresh_the_shadow_through_an_invalid_cd() {
    for cfgi in [
        Command::cfgi_cd(sid_of(1), 0),
        Command::cfgi_cd_all(sid_of(1)),
        Command::cfgi_ste(sid_of(1)),
    ] {
        let mut io = ready();
        let g1 = sid_of(1);
        let mut ram = Ram::default();
        ram.put_cd(G1_CDS, &g1_cd(5));
        io.attach(1, g1, g1_nested(), &ram).unwrap();
        let ste = io.ste(g1);
        ram.put_cd(G1_CDS, &g1_cd(6));
        let before = io.regs_mut().consumed.len();
        assert_eq!(io.invalidate(1, &[cfgi, Command::sync()], &ram), Ok(1), "{cfgi:x?}");
        assert_eq!(io.shadow_cd(g1, 0), Some(g1_cd(6)), "{cfgi:x?}");
        assert_eq!(io.ste(g1), ste, "the STE stays");
        // V cleared (CFGI_CD + SYNC), the other words (CFGI_CD + SYNC), V set (CFGI_CD + SYNC),
        // then the VM's own command.
        let sent = io.regs_mut().consumed[before..].to_vec();
        let cd = Command::cfgi_cd(g1, 0).0;
        let sync = Command::sync().0;
        assert_eq!(&sent[..6], &[cd, sync, cd, sync, cd, sync], "{sent:x?}");
        assert_eq!(&sent[6..], &[cfgi.0, sync]);
        // Unchanged CDs: nothing more than the VM's command.
        let before = io.regs_mut().consumed.len();
        assert_eq!(io.invalidate(1, &[cfgi], &ram), Ok(1));
        assert_eq!(io.regs_mut().consumed[before..], [cfgi.0, sync]);
    }
}

#[test]
fn a_cd_becoming_invalid_is_shadowed_invalid() {
    let mut io = ready();
    let g1 = sid_of(1);
    let mut ram = Ram::default();
    ram.put_cd(G1_CDS, &g1_cd(5));
    io.attach(1, g1, g1_nested(), &ram).unwrap();
    ram.put_cd(G1_CDS, &g1_cd(5).with_v(0));
    let before = io.regs_mut().consumed.len();
    assert_eq!(io.invalidate(1, &[Command::cfgi_cd(g1, 0)], &ram), Ok(1));
    assert_eq!(io.shadow_cd(g1, 0), Some(Cd::default()));
    // V cleared and synced before anything else changes; then the rest, synced.
    assert_eq!(cfgi_cds(&mut io, before, g1), 3, "two for the shadow, one the VM's");
}

#[test]
fn a_refused_cd_at_cfgi_blocks_the_stream_and_names_the_command() {
    let mut io = ready();
    let g1 = sid_of(1);
    let mut ram = Ram::default();
    ram.put_cd(G1_CDS, &g1_cd(5));
    io.attach(1, g1, g1_nested(), &ram).unwrap();
    // IPS 0b110: 52 bits, beyond QEMU's OAS (its SMMU would abort the whole machine).
    ram.put_cd(G1_CDS, &g1_cd(5).with_ips(0b110));
    let before = io.regs_mut().consumed.len();
    let batch = [Command::tlbi_nh_all(0), Command::cfgi_cd(g1, 0), Command::sync()];
    assert_eq!(io.invalidate(1, &batch, &ram), Err((1, HypError::BadConfig)));
    assert_eq!(io.domain_of(g1), Some(Domain::Blocked), "as the SMMU would fault it");
    assert_eq!(ste::effective(&io.ste(g1)), None);
    assert_eq!(io.shadow_cd(g1, 0), Some(g1_cd(5)), "the shadow is never a refused CD");
    assert!(!io.regs_mut().consumed[before..].contains(&Command::tlbi_nh_all(2).0), "not sent");
    // Each refusal reason reaches the caller.
    for (bad, e) in [
        (g1_cd(5).with_ips(0b111), HypError::ReservedField),
        (with_ttb(g1_cd(5), 0x4020_0000), HypError::BadConfig),
        (with_ttb(g1_cd(5), MANIFEST.vms[1].shadow_cds().base), HypError::BadConfig),
        (Cd([g1_cd(5).0[0], g1_cd(5).0[1], 0, 0, 1, 0, 0, 0]), HypError::ForbiddenField),
    ] {
        ram.put_cd(G1_CDS, &g1_cd(5));
        io.attach(1, g1, g1_nested(), &ram).unwrap();
        ram.put_cd(G1_CDS, &bad);
        assert_eq!(io.invalidate(1, &[Command::cfgi_cd_all(g1)], &ram), Err((0, e)), "{bad:x?}");
        assert_eq!(io.domain_of(g1), Some(Domain::Blocked));
    }
}

#[test]
fn a_vms_cds_are_not_read_through_another_vms_memory() {
    let mut io = ready();
    let g1 = sid_of(1);
    let mut ram = Ram::default();
    ram.put_cd(G1_CDS, &g1_cd(5));
    io.attach(1, g1, Domain::Identity, &ram).unwrap();
    let ste = io.ste(g1);
    let before = io.regs_mut().consumed.len();
    // Guest 1's bytes, as memory that serves guest 2: its CD table is not read through it.
    let other = ServingOnly { vm: 2, mem: &mut ram };
    assert_eq!(io.attach(1, g1, g1_nested(), &other), Err(HypError::InvalidAddress));
    assert_eq!(io.domain_of(g1), Some(Domain::Identity), "nothing changed");
    assert_eq!(io.ste(g1), ste);
    assert_eq!(io.shadow_cd(g1, 0), Some(Cd::default()));
    assert_eq!(io.regs_mut().consumed.len(), before, "nothing sent");
    // Nor refreshed through it: refused at that command, as a refused CD is (stream blocked).
    io.attach(1, g1, g1_nested(), &ram).unwrap();
    ram.put_cd(G1_CDS, &g1_cd(6));
    let other = ServingOnly { vm: 2, mem: &mut ram };
    let batch = [Command::tlbi_nh_all(0), Command::cfgi_cd(g1, 0)];
    assert_eq!(io.invalidate(1, &batch, &other), Err((1, HypError::InvalidAddress)));
    assert_eq!(io.shadow_cd(g1, 0), Some(g1_cd(5)), "never read");
    assert_eq!(io.domain_of(g1), Some(Domain::Blocked));
}

fn with_ttb(c: Cd, ttb: u64) -> Cd {
    c.with_ttb0(ttb)
}

#[test]
fn a_refused_cd_at_attach_changes_nothing() {
    let mut io = ready();
    let g1 = sid_of(1);
    let mut ram = Ram::default();
    io.attach(1, g1, Domain::Identity, &ram).unwrap();
    let ste = io.ste(g1);
    let before = io.regs_mut().consumed.len();
    for (bad, e) in [
        (g1_cd(5).with_ips(0b110), HypError::BadConfig),
        (g1_cd(5).with_ips(0b111), HypError::ReservedField),
        (g1_cd(5).with_t0sz(40), HypError::BadConfig),
        (g1_cd(5).with_aa64(0), HypError::BadConfig),
    ] {
        ram.put_cd(G1_CDS, &bad);
        assert_eq!(io.attach(1, g1, g1_nested(), &ram), Err(e), "{bad:x?}");
        assert_eq!(io.domain_of(g1), Some(Domain::Identity));
        assert_eq!(io.ste(g1), ste);
        assert_eq!(io.shadow_cd(g1, 0), Some(Cd::default()));
    }
    assert_eq!(io.regs_mut().consumed.len(), before, "nothing sent");
}

#[test]
fn shadows_written_while_off_cost_no_command_and_survive_resume() {
    let mut io = ready();
    let g1 = sid_of(1);
    let mut ram = Ram::default();
    ram.put_cd(G1_CDS, &g1_cd(5));
    io.attach(1, g1, g1_nested(), &ram).unwrap();
    vote_all(&mut io, Vote::AllowOff);
    assert_eq!(io.power(), Power::Off);
    let elided = io.pm_counters().elided;
    ram.put_cd(G1_CDS, &g1_cd(7));
    assert_eq!(io.invalidate(1, &[Command::cfgi_cd(g1, 0)], &ram), Ok(0));
    assert_eq!(io.shadow_cd(g1, 0), Some(g1_cd(7)));
    assert_eq!(io.pm_counters().elided, elided + 4, "three shadow syncs and the VM's CFGI_CD");
    io.vote(0, Vote::NeedOn);
    assert_eq!(io.shadow_cd(g1, 0), Some(g1_cd(7)));
    assert!(ste::effective(&io.ste(g1)).is_some());
}

#[test]
fn a_detached_streams_old_shadow_is_invalidated_before_it_is_used_again() {
    let mut io = ready();
    let g1 = sid_of(1);
    let mut ram = Ram::default();
    ram.put_cd(G1_CDS, &g1_cd(5));
    io.attach(1, g1, g1_nested(), &ram).unwrap();
    io.attach(1, g1, Domain::Blocked, &ram).unwrap();
    ram.put_cd(G1_CDS, &g1_cd(9));
    let before = io.regs_mut().consumed.len();
    io.attach(1, g1, g1_nested(), &ram).unwrap();
    let sent = io.regs_mut().consumed[before..].to_vec();
    let all = Command::cfgi_cd_all(g1).0;
    let first_ste = sent.iter().position(|c| c[0] & 0xff == 0x03).unwrap();
    assert_eq!(sent.iter().position(|c| *c == all), Some(0), "{sent:x?}");
    assert!(first_ste > 0);
    assert_eq!(io.shadow_cd(g1, 0), Some(g1_cd(9)));
}

#[test]
fn reattaching_the_same_cds_costs_no_cd_invalidation() {
    let mut io = ready();
    let g1 = sid_of(1);
    let mut ram = Ram::default();
    ram.put_cd(G1_CDS, &g1_cd(5));
    io.attach(1, g1, g1_nested(), &ram).unwrap();
    io.attach(1, g1, Domain::Blocked, &ram).unwrap();
    let before = io.regs_mut().consumed.len();
    io.attach(1, g1, g1_nested(), &ram).unwrap();
    let sent = io.regs_mut().consumed[before..].to_vec();
    assert!(sent.iter().all(|c| c[0] & 0xff != 0x05 && c[0] & 0xff != 0x06), "{sent:x?}");
}

#[test]
fn a_failed_resume_hands_out_no_driver_is_reported_once_and_retried_until_it_works() {
    let mut io = ready();
    let g1 = sid_of(1);
    io.attach(1, g1, Domain::Identity, &NoMemory).unwrap();
    assert_eq!(io.take_report(), None, "nothing to say yet");
    // Power lost, and the power domain then drops again each time SMMUEN is set: every attempt
    // of a resume is lost, so the resume fails (twice: two entries).
    io.regs_mut().power_loss(Gbpa::ABORT);
    io.regs_mut().power_drops_at_smmuen = 2 * crate::iommu::driver::smmu::RESUME_ATTEMPTS;
    assert_eq!(io.invalidate(1, &[Command::tlbi_nh_all(0)], &NoMemory), Ok(0), "elided");
    let r = io.take_report().expect("the failed resume is reported");
    assert!(r.resume_failed.is_some() && r.failed.is_none(), "{r:?}");
    assert!(!io.regs_mut().smmu.cr0().contains(host_abi::smmu::regs::Cr0::SMMUEN));
    assert!(io.regs_mut().aborts(), "GBPA aborts while the SMMU is disabled");
    // Every later entry tries again; the run of failures is reported and counted once.
    let writes = io.regs_mut().writes.len();
    assert_eq!(
        io.attach(1, g1, Domain::Blocked, &NoMemory),
        Ok(()),
        "memory only, while it cannot serve"
    );
    assert!(io.regs_mut().writes.len() > writes, "the resume was tried again");
    assert_eq!(ste::effective(&io.ste(g1)), None, "the table in memory says abort");
    assert_eq!(io.take_report(), None, "reported once");
    assert_eq!(io.pm_counters().resume_failures, 1);
    assert_eq!(io.pm_counters().losses, 1, "one loss, however many retries");
    assert_eq!(io.failures(), (1, 0, 0));
    // The power domain holds again: the next entry resumes the SMMU, and it serves.
    assert_eq!(io.invalidate(1, &[Command::tlbi_nh_all(0)], &NoMemory), Ok(1));
    assert!(io.regs_mut().smmu.cr0().contains(host_abi::smmu::regs::Cr0::RUNNING));
    io.attach(1, g1, Domain::Identity, &NoMemory).unwrap();
    assert_eq!(io.ste(g1), ste::encode(&Domain::Identity, &s2(1)));
    assert_eq!(in_use(&mut io, g1), io.ste(g1));
    assert_eq!(io.take_report(), None);
}

#[test]
fn a_hung_smmu_is_given_up_once_and_every_later_call_that_needs_it_is_refused() {
    let mut io = ready();
    let (g1, g2) = (sid_of(1), sid_of(2));
    let mut ram = Ram::default();
    ram.put_cd(G1_CDS, &g1_cd(5));
    io.attach(1, g1, Domain::Identity, &NoMemory).unwrap();
    io.regs_mut().post_event(ev(g1, 0x1000));
    io.hw.driver_mut().poll_limit = 16;
    // The SMMU stops consuming commands: guest 2's attach times out at its first sync point.
    io.regs_mut().hold_commands = true;
    assert_eq!(io.attach(2, g2, Domain::Identity, &NoMemory), Err(HypError::DeviceError));
    // Translation no weaker: GBPA.ABORT, then SMMUEN off (every stream aborts); the table in
    // memory stays valid (guest 1's entry as it was, guest 2's back to abort, word 0 first).
    let fake = io.regs_mut();
    assert!(fake.aborts());
    assert_eq!(fake.smmu.cr0(), host_abi::smmu::regs::Cr0::empty());
    assert_eq!(io.ste(g1), ste::encode(&Domain::Identity, &s2(1)));
    assert_eq!(ste::effective(&io.ste(g2)), None);
    assert_eq!(
        (io.domain_of(g1), io.domain_of(g2)),
        (Some(Domain::Identity), Some(Domain::Blocked))
    );
    // Said once, in words.
    let r = io.take_report().expect("reported");
    let f = r.failed.expect("the failure is reported");
    assert_eq!(
        f.to_string(),
        "a CMD_SYNC was not consumed within 16 reads of SMMU_CMDQ_CONS; GBPA.ABORT set and SMMUEN cleared: every stream aborts; the stream table in memory stays valid"
    );
    assert_eq!(r.attach_failed, Some((2, g2)));
    assert_eq!((r.resume_failed, r.block_failed), (None, None));
    assert_eq!(io.take_report(), None, "once");
    assert!(!io.hw.has_news(), "and the fast path knows it");
    // From now on: every call that needs the hardware answers DEVICE_ERROR and changes
    // nothing, power transitions are refused, and no register is touched at all.
    let (reads, writes) = (io.regs_mut().reads, io.regs_mut().writes.len());
    let table = [io.ste(g1), io.ste(g2)];
    let err = Err(HypError::DeviceError);
    assert_eq!(io.attach(1, g1, Domain::Blocked, &NoMemory), err);
    assert_eq!(io.attach(1, g1, g1_nested(), &ram), err);
    let calls: &mut dyn SmmuCalls = &mut io;
    assert_eq!(calls.clear_ste(2, g2, &NoMemory), err);
    let cmds = [Command::tlbi_nh_all(0), Command::cfgi_ste(g1)];
    assert_eq!(io.invalidate(1, &cmds, &NoMemory), Err((2, HypError::DeviceError)));
    assert_eq!(
        io.invalidate(1, &[Command::atc_inv_all(g1)], &NoMemory),
        Err((1, HypError::DeviceError))
    );
    // Validation still comes first: a caller's mistake is still its own.
    assert_eq!(io.attach(1, g2, Domain::Identity, &NoMemory), Err(HypError::NotOwned));
    assert_eq!(io.invalidate(1, &[Command::cfgi_ste(g2)], &NoMemory), Err((0, HypError::NotOwned)));
    let r = vote_all(&mut io, Vote::AllowOff);
    assert_eq!((r.powered_off, r.refusal), (false, Some(Refusal::SmmuFailed)));
    let r = io.vote(1, Vote::NeedOn);
    assert_eq!((r.powered_off, r.refusal), (false, Some(Refusal::SmmuFailed)));
    let s = io.pm_status();
    assert_eq!((s.power, s.refusal), (0, Refusal::SmmuFailed.code()));
    io.injector = Some(0);
    assert_eq!(io.inject_power_loss(0), Err(InjectError::Refused(Refusal::SmmuFailed)));
    io.vm_stopped(2);
    // What needs no hardware still answers: what was routed before, the counters.
    let mut out = [[0u64; 4]; 4];
    assert_eq!(io.read_events(1, &mut out).written, 1);
    assert_eq!(out[0], ev(g1, 0x1000));
    assert_eq!(io.stats().command_errors, 0);
    assert_eq!([io.ste(g1), io.ste(g2)], table, "the table is not touched");
    assert_eq!((io.regs_mut().reads, io.regs_mut().writes.len()), (reads, writes));
    assert_eq!(io.take_report(), None);
}

#[test]
fn a_resume_that_times_out_fails_the_smmu_instead_of_retrying() {
    let mut io = ready();
    io.hw.driver_mut().poll_limit = 16;
    assert!(vote_all(&mut io, Vote::AllowOff).powered_off);
    io.regs_mut().hold_commands = true;
    // Power comes back on a vote, and the resume's CFGI_ALL never completes.
    let r = io.vote(1, Vote::NeedOn);
    assert_eq!((r.powered_off, r.refusal), (false, None));
    let r = io.take_report().expect("reported");
    assert!(r.resume_failed.is_none(), "hung, not unpowered: {r:?}");
    assert_eq!(r.failed.map(|f| f.timeout), Some(Timeout::CmdSync { polls: 16 }));
    assert_eq!(io.pm_counters().resume_failures, 0);
    // Not "off": a call that needs the SMMU is refused instead of being done in memory only.
    assert_eq!(io.attach(1, sid_of(1), Domain::Identity, &NoMemory), Err(HypError::DeviceError));
    assert_eq!(io.ste(sid_of(1)), ste::abort());
    let writes = io.regs_mut().writes.len();
    assert_eq!(vote_all(&mut io, Vote::AllowOff).refusal, Some(Refusal::SmmuFailed));
    assert_eq!(io.power(), Power::On);
    assert_eq!(io.regs_mut().writes.len(), writes, "not tried again");
}

#[test]
fn a_failed_attach_is_reported_once_per_vm_and_counted_every_time() {
    let mut io = service_with(FakeSmmu::qemu(), max_sid(), GbpaReset::Abort);
    io.add_streams(2, 0x4000, 2);
    for _ in 0..3 {
        assert_eq!(io.attach(2, 0x4000, Domain::Identity, &NoMemory), Err(HypError::DeviceError));
    }
    let r = io.take_report().expect("reported");
    assert_eq!(r.attach_failed, Some((2, 0x4000)));
    assert_eq!(io.attach(2, 0x4001, Domain::Identity, &NoMemory), Err(HypError::DeviceError));
    assert_eq!(io.take_report(), None, "once per VM, whatever the stream");
    assert_eq!(io.failures().1, 4, "every failure counted");
}

#[test]
fn a_queues_batch_submits_what_comes_before_its_refused_command_once() {
    // The emulated SMMU's call: the commands before the one validation refuses are one batch
    // with one SYNC, submitted once; the error names the refused one.
    let mut io = ready();
    let vmid = MANIFEST.vms[1].vmid();
    let (before, sent) = (io.driver().counters, io.regs_mut().consumed.len());
    let b = [
        Command::tlbi_nh_all(0),
        Command::sync(),
        Command::tlbi_nh_asid(0, 3),
        Command::cfgi_ste(sid_of(2)),
        Command::tlbi_nh_asid(0, 4),
    ];
    assert_eq!(io.invalidate_prefix(1, &b, &NoMemory), Err((3, HypError::NotOwned)));
    assert_eq!(
        io.regs_mut().consumed[sent..],
        [Command::tlbi_nh_all(vmid).0, Command::tlbi_nh_asid(vmid, 3).0, Command::sync().0]
    );
    let after = io.driver().counters;
    assert_eq!(after.syncs - before.syncs, 1, "one submission");
    assert_eq!(after.commands - before.commands, 3);
    // A guest's call with the same commands fails whole.
    let before = io.driver().counters;
    assert_eq!(io.invalidate(1, &b, &NoMemory), Err((3, HypError::NotOwned)));
    assert_eq!(io.driver().counters, before, "nothing submitted");
    // Refused at its first command: nothing at all, not even a SYNC.
    assert_eq!(io.invalidate_prefix(1, &b[3..], &NoMemory), Err((0, HypError::NotOwned)));
    assert_eq!(io.driver().counters, before);
    // A SYNC alone before it: a batch of nothing, with its SYNC (as the queue would run it).
    assert_eq!(io.invalidate_prefix(1, &b[1..4], &NoMemory), Err((2, HypError::NotOwned)));
    assert_eq!(io.driver().counters.syncs, before.syncs + 1);
    // Nothing refused: the whole batch, as a guest's.
    assert_eq!(io.invalidate_prefix(1, &b[..3], &NoMemory), Ok(2));
    let calls: &mut dyn SmmuCalls = &mut io;
    assert_eq!(calls.invalidate_prefix(1, &b, &NoMemory), Err((3, HypError::NotOwned)));
}

#[test]
fn a_queues_batch_refreshes_the_cds_of_its_prefix_and_ends_at_a_refused_cd() {
    let mut io = ready();
    let g1 = sid_of(1);
    let vmid = MANIFEST.vms[1].vmid();
    let mut ram = Ram::default();
    ram.put_cd(G1_CDS, &g1_cd(5));
    io.attach(1, g1, g1_nested(), &ram).unwrap();
    // A CFGI_CD before the refused command: its stream's CDs are refreshed first.
    ram.put_cd(G1_CDS, &g1_cd(6));
    let b = [Command::cfgi_cd(g1, 0), Command::cfgi_ste(sid_of(2))];
    assert_eq!(io.invalidate_prefix(1, &b, &ram), Err((1, HypError::NotOwned)));
    assert_eq!(io.shadow_cd(g1, 0), Some(g1_cd(6)));
    // A CFGI_CD whose CD is now refused, before a command validation refuses: the stream is
    // blocked, the batch ends at the CFGI_CD (the first command refused), and what comes
    // before it is submitted.
    ram.put_cd(G1_CDS, &g1_cd(5).with_ips(0b110));
    let sent = io.regs_mut().consumed.len();
    let b = [
        Command::tlbi_nh_asid(0, 1),
        Command::sync(),
        Command::tlbi_nh_asid(0, 5),
        Command::cfgi_cd(g1, 0),
        Command::tlbi_nh_asid(0, 2),
        Command::cfgi_ste(sid_of(2)),
    ];
    assert_eq!(io.invalidate_prefix(1, &b, &ram), Err((3, HypError::BadConfig)));
    assert_eq!(io.domain_of(g1), Some(Domain::Blocked));
    assert_eq!(io.shadow_cd(g1, 0), Some(g1_cd(6)), "never a refused CD");
    let done = io.regs_mut().consumed[sent..].to_vec();
    let before_it =
        [Command::tlbi_nh_asid(vmid, 1).0, Command::tlbi_nh_asid(vmid, 5).0, Command::sync().0];
    assert!(done.ends_with(&before_it), "{done:x?}");
    assert!(!done.contains(&Command::tlbi_nh_asid(vmid, 2).0));
    // Refused at the first command: nothing submitted.
    io.attach(1, g1, Domain::Identity, &ram).unwrap();
    io.attach(1, g1, Domain::Blocked, &ram).unwrap();
    ram.put_cd(G1_CDS, &g1_cd(5));
    io.attach(1, g1, g1_nested(), &ram).unwrap();
    ram.put_cd(G1_CDS, &g1_cd(5).with_ips(0b110));
    let before = io.driver().counters;
    assert_eq!(io.invalidate_prefix(1, &b[3..], &ram), Err((0, HypError::BadConfig)));
    assert_eq!(io.domain_of(g1), Some(Domain::Blocked));
    assert_eq!(io.driver().counters.syncs, before.syncs + 2, "the block's install only");
}

#[test]
fn a_configuration_batch_wakes_the_smmu_for_an_atc_invalidation_of_its_own() {
    let mut io = ready();
    let g1 = sid_of(1);
    let mut ram = Ram::default();
    ram.put_cd(G1_CDS, &g1_cd(5));
    io.attach(1, g1, g1_nested(), &ram).unwrap();
    // Off, a CFGI_CD of a nested stream with an ATC_INV: powered on for it, once.
    assert!(vote_all(&mut io, Vote::AllowOff).powered_off);
    ram.put_cd(G1_CDS, &g1_cd(6));
    let b = [Command::atc_inv_all(g1), Command::cfgi_cd(g1, 0)];
    assert_eq!(io.invalidate(1, &b, &ram), Ok(1), "the ATC_INV elided: no ATS");
    assert_eq!(io.pm_counters().wakeups, 1);
    assert_eq!(io.shadow_cd(g1, 0), Some(g1_cd(6)));
    // The host's queue: an ATC_INV after a CFGI whose CD is refused is not in its batch, and
    // wakes nothing.
    assert!(vote_all(&mut io, Vote::AllowOff).powered_off);
    ram.put_cd(G1_CDS, &g1_cd(6).with_ips(0b110));
    let b = [Command::tlbi_nh_all(0), Command::cfgi_cd(g1, 0), Command::atc_inv_all(g1)];
    assert_eq!(io.invalidate_prefix(1, &b, &ram), Err((1, HypError::BadConfig)));
    assert_eq!(io.pm_counters().wakeups, 1);
    assert_eq!(io.power(), Power::Off);
    // On, one before it: nothing to wake.
    io.vote(0, Vote::NeedOn);
    ram.put_cd(G1_CDS, &g1_cd(5));
    io.attach(1, g1, g1_nested(), &ram).unwrap();
    ram.put_cd(G1_CDS, &g1_cd(5).with_ips(0b110));
    let b = [Command::atc_inv_all(g1), Command::cfgi_cd(g1, 0)];
    assert_eq!(io.invalidate_prefix(1, &b, &ram), Err((1, HypError::BadConfig)));
    assert_eq!(io.pm_counters().wakeups, 1);
}

#[test]
fn a_batch_refreshes_the_cds_of_each_nested_stream_it_names_once() {
    // Two of the host's streams nested, both CD tables changed: one batch refreshes both.
    let mut io = ready();
    let mut ram = Ram::default();
    let (a, b) = (MANIFEST.vms[0].devices[0].rid(), MANIFEST.vms[0].devices[1].rid());
    let nested = |ctx| {
        Domain::Nested(S1Config { ctx_ptr: ctx, cdmax: 0, fmt: 0, dss: 0, cir: 1, cor: 1, csh: 3 })
    };
    let cd = |asid| crate::iommu::validate::linux_cd(0x4450_0000, asid, 0x0000_00f4_0044_04ff);
    let (ca, cb) = (0x4440_0000, 0x4440_1000);
    ram.put_cd(ca, &cd(1));
    ram.put_cd(cb, &cd(2));
    // The host's memory (the test's Ram serves guest 1 alone).
    io.attach(0, a, nested(ca), &ServingOnly { vm: 0, mem: &mut ram }).unwrap();
    io.attach(0, b, nested(cb), &ServingOnly { vm: 0, mem: &mut ram }).unwrap();
    ram.put_cd(ca, &cd(3));
    ram.put_cd(cb, &cd(4));
    let batch = [Command::cfgi_cd(a, 0), Command::cfgi_cd_all(a), Command::cfgi_cd(b, 0)];
    assert_eq!(io.invalidate(0, &batch, &ServingOnly { vm: 0, mem: &mut ram }), Ok(3));
    assert_eq!(io.shadow_cd(a, 0), Some(cd(3)));
    assert_eq!(io.shadow_cd(b, 0), Some(cd(4)));
}

#[test]
fn a_queues_batch_the_smmu_fails_names_the_first_failure() {
    let mut io = ready();
    let b = [Command::tlbi_nh_all(0), Command::tlbi_nh_asid(0, 3), Command::cfgi_ste(sid_of(2))];
    // The SMMU rejects a command before the refused one: that one is named.
    io.regs_mut().reject_opcode = Some(b[1].opcode_byte());
    assert_eq!(io.invalidate_prefix(1, &b, &NoMemory), Err((1, HypError::DeviceError)));
    // The submission fails as a whole (its SYNC rejected): the refused command is named.
    io.regs_mut().reject_opcode = Some(Command::sync().opcode_byte());
    assert_eq!(io.invalidate_prefix(1, &b, &NoMemory), Err((2, HypError::DeviceError)));
    // An SMMU that rejects every SYNC never completes one: it is given up (issue 18), so a
    // working one shows the refusal itself.
    assert!(io.driver().failure().is_some());
    let mut io = ready();
    assert_eq!(io.invalidate_prefix(1, &b, &NoMemory), Err((2, HypError::NotOwned)));
}

/// The STE the fake SMMU uses for stream `sid` now: the one it holds, or the one it fetches
/// through the stream table as the CPU's barriers published it.
fn in_use(io: &mut SmmuService<FakeSmmu>, sid: u32) -> Ste {
    Ste(io.regs_mut().ste_in_use(sid).expect("SMMUEN is set").expect("the STE is reachable"))
}

#[test]
fn the_smmu_uses_the_ste_the_table_holds_after_every_attach() {
    // The SMMU reads STEs and commands only as published (a barrier before CMDQ_PROD, and a
    // level-2 table before the level-1 descriptor that links it): a stale command would leave
    // the old STE in use, a level-2 table seen before it was published a garbage (bypass) one.
    let mut ram = Ram::default();
    ram.put_cd(G1_CDS, &g1_cd(5));
    let g1 = sid_of(1);
    let walk = [Domain::Identity, g1_nested(), Domain::Blocked, g1_nested(), Domain::Identity];
    let mut io = ready();
    for d in walk {
        io.attach(1, g1, d, &ram).unwrap();
        assert_eq!(in_use(&mut io, g1), io.ste(g1), "{d}");
    }
    // A two-level table: each stream's first attach links a new level-2 table while the SMMU
    // is running.
    let mut io = service_with(FakeSmmu::qemu(), 0x3ff, GbpaReset::Abort);
    io.add_streams(0, 0x2a5, 1);
    io.add_streams(0, 0x3ff, 1);
    for sid in [0x2a5, 0x3ff] {
        for d in [Domain::Identity, Domain::Blocked, Domain::Identity] {
            io.attach(0, sid, d, &NoMemory).unwrap();
            assert_eq!(in_use(&mut io, sid), io.ste(sid), "{sid:#x} {d}");
        }
    }
    let fake = io.regs_mut();
    assert!(fake.unpublished_stes.is_empty(), "{:x?}", fake.unpublished_stes);
    assert_eq!(fake.visible.unpublished_reads, 0);
    // A span never linked is no STE at all (C_BAD_STREAMID), not a stale one.
    assert_eq!(
        fake.ste_in_use(0x1a0),
        Some(Err(crate::iommu::soft::SteFault::NoLevel2)),
        "never linked"
    );
}

#[test]
fn a_stream_attached_while_off_is_used_as_the_table_holds_it_after_resume() {
    // Memory-only changes while off (a new level-2 table among them) are published before the
    // SMMU is enabled again.
    let mut io = service_with(FakeSmmu::qemu(), 0x3ff, GbpaReset::Abort);
    io.add_streams(0, 0x2a5, 1);
    assert!(vote_all(&mut io, Vote::AllowOff).powered_off);
    io.attach(0, 0x2a5, Domain::Identity, &NoMemory).unwrap();
    io.vote(0, Vote::NeedOn);
    assert_eq!(in_use(&mut io, 0x2a5), ste::encode(&Domain::Identity, &s2(0)));
}

/// CD `ssid` of stream `sid`'s shadow table as the SMMU reads it from memory now.
fn cd_seen(io: &mut SmmuService<FakeSmmu>, sid: u32, ssid: usize) -> Cd {
    let at = io.shadow_cd_addr(sid, ssid).unwrap();
    let mut cd = [0; 8];
    io.regs_mut().visible.read(at, &mut cd);
    Cd(cd)
}

fn non_coherent(max_sid: u32) -> SmmuService<FakeSmmu> {
    service_with(FakeSmmu::non_coherent(), max_sid, GbpaReset::Abort)
}

#[test]
fn a_non_coherent_smmu_uses_each_ste_as_attached() {
    // Each step of the update cleaned before its CFGI_STE: otherwise the SMMU fetches the STE
    // it had (abort), or a step's state, and keeps it.
    let mut io = non_coherent(max_sid());
    let g1 = sid_of(1);
    let mut ram = Ram::default();
    ram.put_cd(G1_CDS, &g1_cd(5));
    for d in [Domain::Identity, g1_nested(), Domain::Blocked, g1_nested(), Domain::Identity] {
        io.attach(1, g1, d, &ram).unwrap();
        let want = io.encoded(g1, &d).unwrap_or(ste::abort());
        assert_eq!(io.ste(g1), want);
        assert_eq!(in_use(&mut io, g1), want, "{d}");
    }
    // Its walks are non-cacheable: stage 2, and the CD fetches of the shadow table.
    let s = io.encoded(g1, &g1_nested()).unwrap();
    assert_eq!(s, ste::encode_for(&g1_nested_shadow(&io), &s2(1), Coherency::NonCoherent));
    assert_eq!(
        [s.s2ir0(), s.s2or0(), s.s2sh0(), s.s1cir(), s.s1cor(), s.s1csh()],
        [0, 0, 2, 0, 0, 2]
    );
}

/// `g1_nested()` as the service installs it: on the stream's shadow CD table.
fn g1_nested_shadow(io: &SmmuService<FakeSmmu>) -> Domain {
    let Domain::Nested(s1) = g1_nested() else { unreachable!() };
    let ctx_ptr = io.encoded(sid_of(1), &g1_nested()).unwrap().s1_context_ptr();
    Domain::Nested(S1Config { ctx_ptr, ..s1 })
}

#[test]
fn a_non_coherent_smmu_walks_a_new_level2_table_through_its_cleaned_descriptor() {
    let mut io = non_coherent(0x10ff);
    io.add_streams(0, 0x1000, 0x100);
    assert!(io.is_two_level());
    io.attach(0, 0x1005, Domain::Identity, &NoMemory).unwrap();
    let want = io.encoded(0x1005, &Domain::Identity).unwrap();
    assert_eq!(in_use(&mut io, 0x1005), want);
    // The rest of the new table: abort, as cleaned (not whatever memory held).
    assert_eq!(in_use(&mut io, 0x10ff), ste::abort());
    io.attach(0, 0x10ff, Domain::Identity, &NoMemory).unwrap();
    assert_eq!(in_use(&mut io, 0x10ff), want);
}

#[test]
fn a_non_coherent_smmu_walks_the_shadow_cds_as_written() {
    let mut io = non_coherent(max_sid());
    let g1 = sid_of(1);
    let mut ram = Ram::default();
    ram.put_cd(G1_CDS, &g1_cd(5));
    io.attach(1, g1, g1_nested(), &ram).unwrap();
    assert_eq!(in_use(&mut io, g1), io.encoded(g1, &g1_nested()).unwrap());
    // Written whole (not in use yet), cleaned before the CFGI_CD_ALL.
    assert_eq!(cd_seen(&mut io, g1, 0), g1_cd(5));
    // A live update: each step cleaned before its CFGI_CD, the last one included.
    ram.put_cd(G1_CDS, &g1_cd(6));
    assert_eq!(io.invalidate(1, &[Command::cfgi_cd(g1, 0), Command::sync()], &ram), Ok(1));
    assert_eq!(io.shadow_cd(g1, 0), Some(g1_cd(6)));
    assert_eq!(cd_seen(&mut io, g1, 0), g1_cd(6));
}

#[test]
fn a_non_coherent_smmu_finds_what_was_written_while_it_was_off() {
    let mut io = non_coherent(0x1000 + 9);
    io.add_streams(0, 0x1000, 10);
    let g1 = sid_of(1);
    let mut ram = Ram::default();
    ram.put_cd(G1_CDS, &g1_cd(7));
    assert!(vote_all(&mut io, Vote::AllowOff).powered_off);
    io.attach(0, 0x1003, Domain::Identity, &NoMemory).unwrap();
    io.attach(1, g1, g1_nested(), &ram).unwrap();
    vote_all(&mut io, Vote::NeedOn);
    assert_eq!(io.power(), Power::On);
    assert_eq!(in_use(&mut io, 0x1003), io.encoded(0x1003, &Domain::Identity).unwrap());
    assert_eq!(in_use(&mut io, g1), io.encoded(g1, &g1_nested()).unwrap());
    assert_eq!(cd_seen(&mut io, g1, 0), g1_cd(7));
}

#[test]
fn a_coherent_smmu_gets_no_cache_maintenance_at_all() {
    // The coherent path pays a branch per point, nothing more: no clean, no invalidate, in
    // every path that has one on a non-coherent SMMU.
    let mut io = service_with(FakeSmmu::qemu(), 0x10ff, GbpaReset::Abort);
    io.add_streams(0, 0x1000, 0x100);
    let g1 = sid_of(1);
    let mut ram = Ram::default();
    ram.put_cd(G1_CDS, &g1_cd(5));
    io.attach(0, 0x1005, Domain::Identity, &NoMemory).unwrap();
    io.attach(1, g1, g1_nested(), &ram).unwrap();
    ram.put_cd(G1_CDS, &g1_cd(6));
    assert_eq!(io.invalidate(1, &[Command::cfgi_cd(g1, 0)], &ram), Ok(1));
    io.regs_mut().reject_opcode = Some(0x10);
    assert!(io.invalidate(1, &[Command::tlbi_nh_all(0)], &ram).is_err(), "rejected");
    io.regs_mut().reject_opcode = None;
    io.regs_mut().post_event(ev(g1, 0x1000));
    assert_eq!(io.poll_events(), 1);
    assert!(vote_all(&mut io, Vote::AllowOff).powered_off);
    io.attach(0, 0x1006, Domain::Identity, &NoMemory).unwrap();
    vote_all(&mut io, Vote::NeedOn);
    assert_eq!(in_use(&mut io, 0x1006), io.encoded(0x1006, &Domain::Identity).unwrap());
    let maintenance = io
        .regs_mut()
        .barriers
        .iter()
        .filter(|b| {
            use crate::iommu::driver::Barrier::{Clean, Invalidate};
            matches!(b.1, Clean(_) | Invalidate(_))
        })
        .count();
    assert_eq!(maintenance, 0);
}

/// Guest 1's memory at `ipa` holding `cmds`.
fn ram_with_commands(ipa: u64, cmds: &[Command]) -> Ram {
    let mut ram = Ram::default();
    for (i, b) in cmds.as_bytes().iter().enumerate() {
        ram.0.insert(ipa + i as u64, *b);
    }
    ram
}

#[test]
fn invalidate_from_sends_exactly_the_commands_of_this_call_through_its_kept_buffer() {
    // The commands are copied into a buffer the service keeps between calls: a call of one
    // command after a call of three sends its one command, never what the longer call left.
    let mut io = ready();
    let g1 = MANIFEST.vms[1].mem.base + 0x8000;
    let vmid = MANIFEST.vms[1].vmid();
    let three = [
        Command::tlbi_nh_va(0, 1, 0x1000),
        Command::tlbi_nh_va(0, 2, 0x2000),
        Command::tlbi_nh_all(0),
    ];
    let ram = ram_with_commands(g1, &three);
    let range = GuestRange::of(&MANIFEST.vms[1], g1, 48).unwrap();
    let before = io.regs_mut().consumed.len();
    assert_eq!(io.invalidate_from(1, range, &ram), Ok(3));
    let sent = io.regs_mut().consumed[before..].to_vec();
    assert_eq!(
        sent[..3],
        [
            Command::tlbi_nh_va(vmid, 1, 0x1000).0,
            Command::tlbi_nh_va(vmid, 2, 0x2000).0,
            Command::tlbi_nh_all(vmid).0,
        ]
    );
    assert_eq!(sent.len(), 4, "and one SYNC");
    // One command, at another address: only it.
    let one = ram_with_commands(g1 + 0x100, &[Command::tlbi_nh_va(0, 7, 0x7000)]);
    let range = GuestRange::of(&MANIFEST.vms[1], g1 + 0x100, 16).unwrap();
    let before = io.regs_mut().consumed.len();
    let calls: &mut dyn SmmuCalls = &mut io;
    assert_eq!(calls.invalidate_from(1, range, &one), Ok(1));
    let sent = io.regs_mut().consumed[before..].to_vec();
    assert_eq!(sent, [Command::tlbi_nh_va(vmid, 7, 0x7000).0, Command::sync().0]);
    // Validation sees the copy: a refused command refuses the batch, nothing sent, and the
    // buffer still serves the next call.
    let bad = ram_with_commands(g1, &[Command::tlbi_nh_all(0), Command::cfgi_ste(sid_of(2))]);
    let range = GuestRange::of(&MANIFEST.vms[1], g1, 32).unwrap();
    let before = io.driver().counters;
    assert_eq!(io.invalidate_from(1, range, &bad), Err((1, HypError::NotOwned)));
    assert_eq!(io.driver().counters, before, "nothing submitted");
    let range = GuestRange::of(&MANIFEST.vms[1], g1 + 0x100, 16).unwrap();
    assert_eq!(io.invalidate_from(1, range, &one), Ok(1));
}

#[test]
fn invalidate_from_refuses_memory_that_is_not_the_ranges_vm_and_reads_nothing_else() {
    let mut io = ready();
    let g2 = MANIFEST.vms[2].mem.base + 0x8000;
    // The memory serves VM 1 only: a range of VM 2 is INVALID_ADDRESS at index 0, nothing sent.
    let ram = ram_with_commands(g2, &[Command::tlbi_nh_all(0)]);
    let range = GuestRange::of(&MANIFEST.vms[2], g2, 16).unwrap();
    let before = io.driver().counters;
    assert_eq!(io.invalidate_from(2, range, &ram), Err((0, HypError::InvalidAddress)));
    // More than INVALIDATE_MAX commands, or a part of one: refused before any copy.
    let g1 = MANIFEST.vms[1].mem.base + 0x8000;
    let long = GuestRange::of(&MANIFEST.vms[1], g1, 16 * (INVALIDATE_MAX + 1)).unwrap();
    assert_eq!(io.invalidate_from(1, long, &Ram::default()), Err((0, HypError::InvalidAddress)));
    let partial = GuestRange::of(&MANIFEST.vms[1], g1, 24).unwrap();
    assert_eq!(io.invalidate_from(1, partial, &Ram::default()), Err((0, HypError::InvalidAddress)));
    assert_eq!(io.driver().counters, before, "nothing submitted");
    // INVALIDATE_MAX commands exactly: all of them.
    let all: std::vec::Vec<Command> =
        (0..INVALIDATE_MAX).map(|i| Command::tlbi_nh_va(0, 1, i << 12)).collect();
    let ram = ram_with_commands(g1, &all);
    let full = GuestRange::of(&MANIFEST.vms[1], g1, 16 * INVALIDATE_MAX).unwrap();
    assert_eq!(io.invalidate_from(1, full, &ram), Ok(INVALIDATE_MAX as usize));
}

#[test]
fn read_events_into_writes_exactly_the_records_taken_into_the_callers_range() {
    let mut io = ready();
    let g1 = sid_of(1);
    for i in 0..3u64 {
        io.regs_mut().post_event(ev(g1, 0x1000 * (i + 1)));
    }
    let at = MANIFEST.vms[1].mem.base + 0x9000;
    let mut ram = Ram::default();
    // Room for two: the two oldest, in order; one left pending.
    let range = GuestRange::of(&MANIFEST.vms[1], at, 64).unwrap();
    let r = io.read_events_into(1, range, &mut ram).unwrap();
    assert_eq!((r.written, r.pending), (2, 1));
    let word = |ram: &Ram, a: u64| {
        let b: std::vec::Vec<u8> = (0..8).map(|i| *ram.0.get(&(a + i)).unwrap_or(&0)).collect();
        u64::from_le_bytes(b.try_into().unwrap())
    };
    assert_eq!((word(&ram, at + 16), word(&ram, at + 48)), (0x1000, 0x2000));
    assert_eq!(ram.0.len(), 64, "exactly two records written");
    // Room for sixteen, one left: one record written, the rest of the range untouched (the
    // kept buffer's older records never leak out).
    let mut ram = Ram::default();
    let range = GuestRange::of(&MANIFEST.vms[1], at, 32 * EVENT_READ_MAX).unwrap();
    let calls: &mut dyn SmmuCalls = &mut io;
    let r = calls.read_events_into(1, range, &mut ram).unwrap();
    assert_eq!((r.written, r.pending), (1, 0));
    assert_eq!((ram.0.len(), word(&ram, at + 16)), (32, 0x3000));
    // None left: nothing written at all.
    let mut ram = Ram::default();
    assert_eq!(io.read_events_into(1, range, &mut ram).unwrap().written, 0);
    assert!(ram.0.is_empty());
    // Memory that does not serve the range's VM: INVALID_ADDRESS.
    io.regs_mut().post_event(ev(sid_of(2), 0x5000));
    let g2 = GuestRange::of(&MANIFEST.vms[2], MANIFEST.vms[2].mem.base + 0x9000, 32).unwrap();
    assert_eq!(io.read_events_into(2, g2, &mut ram), Err(HypError::InvalidAddress));
    assert!(ram.0.is_empty());
}

#[test]
fn an_entry_tallies_the_records_it_routed_for_the_vm_it_was_made_for() {
    // The EL2 side charges each CPU the records its entries took: the tally of the entry's own
    // VM's and the host's, reset when taken.
    let mut io = ready();
    assert_eq!(io.take_tally(), None);
    io.regs_mut().post_event(ev(sid_of(1), 0x1000));
    io.regs_mut().post_event(ev(sid_of(0), 0x2000));
    io.regs_mut().post_event(ev(sid_of(1), 0x3000));
    io.tally_for(1);
    let _ = io.stats();
    assert_eq!(io.take_tally(), Some(Tally { records: 3, own: 2, host: 1 }));
    assert_eq!(io.take_tally(), None, "taken");
    io.regs_mut().post_event(ev(sid_of(2), 0x4000));
    io.tally_for(2);
    let _ = io.stats();
    assert_eq!(io.take_tally(), Some(Tally { records: 1, own: 1, host: 0 }));
}
