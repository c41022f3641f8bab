//! The planning step on its own: what one access plans to do with a queue, nothing done.

use crate::iommu::emulated::plan::{
    End, Msi, Plan, Queue, Seen, Short, Step, MAX_COMMANDS, MAX_STEPS, SHORT_MAX,
};
use crate::iommu::emulated::{ACCESS_BUDGET, REFRESH_COST, SEND_COST};
use crate::iommu::soft::MemFault;
use crate::vm::memory::GuestRange;
use host_abi::smmu::regs::cerror;
use host_abi::smmu::{cmd, Command};
use std::vec;
use std::vec::Vec;

/// The host's streams in these tests.
const STREAMS: [u32; 3] = [0x10, 0x28, 0x30];

/// A host queue of `cap` entries whose commands from CONS on are `cmds`, CONS at entry `cons`
/// (a fetch stops at the queue's end), entries `fault..` outside the host's RAM.
struct FakeQueue {
    cmds: Vec<Command>,
    cons: usize,
    cap: usize,
    fault: Option<usize>,
    /// Each fetch: (k, commands returned).
    fetches: Vec<(u32, usize)>,
}

impl FakeQueue {
    fn new(cmds: &[Command]) -> Self {
        FakeQueue { cmds: cmds.to_vec(), cons: 0, cap: 1 << 12, fault: None, fetches: Vec::new() }
    }
}

impl Queue for FakeQueue {
    fn fetch(&mut self, k: u32, out: &mut [Command]) -> Option<Result<usize, MemFault>> {
        let k = k as usize;
        if k >= self.cmds.len() || out.is_empty() {
            return None;
        }
        if self.fault.is_some_and(|f| k >= f) {
            return Some(Err(MemFault { addr: k as u64 }));
        }
        let at = (self.cons + k) % self.cap;
        let mut m = (self.cmds.len() - k).min(self.cap - at).min(out.len());
        if let Some(f) = self.fault {
            m = m.min(f - k);
        }
        out[..m].copy_from_slice(&self.cmds[k..k + m]);
        self.fetches.push((k as u32, m));
        Some(Ok(m))
    }
    fn after(&self, k: u32) -> u32 {
        (self.cmds.len() as u32).saturating_sub(k)
    }
    fn fetch_all(&mut self, out: &mut [Command]) -> Result<usize, usize> {
        let used = self.after(0) as usize;
        if used == 0 || used > out.len() {
            return Err(0);
        }
        match self.fetch(0, &mut out[..used]) {
            Some(Ok(n)) if n == used => Ok(n),
            Some(Ok(n)) => Err(n),
            _ => Err(0),
        }
    }
    fn msi_target(&self, addr: u64) -> Option<GuestRange> {
        // The host's RAM, as the manifest says.
        GuestRange::of(&platform::qemu_virt::MANIFEST.vms[0], addr, 4)
            .ok()
            .filter(|_| addr.is_multiple_of(4))
    }
}

fn plan(q: &mut FakeQueue) -> Plan {
    let mut p = Plan::new(STREAMS.len());
    p.make(&STREAMS, q);
    p
}

fn tlbi(i: u64) -> Command {
    Command::tlbi_nh_va(0, 1, i << 12)
}

fn submit(start: u16, end: u16, commands: u16, syncs: u16) -> Step {
    Step::Submit { start, end, seen: Seen { commands, syncs, budget_stop: false } }
}

fn with(mut c: Command, f: host_abi::smmu::Field, v: u64) -> Command {
    f.set(&mut c.0, v);
    c
}

#[test]
fn a_run_for_the_guests_path_is_one_submission_and_cons_moves_past_it() {
    let pf = Command([0x01 | 0x10 << 32, 0]); // PREFETCH_CONFIG
    let sev = with(Command::sync(), cmd::SYNC_CS, 2);
    let cs = [tlbi(1), Command::sync(), pf, Command::tlbi_nsnh_all(), sev, tlbi(2)];
    let p = plan(&mut FakeQueue::new(&cs));
    assert_eq!(p.steps(), [submit(0, 6, 6, 2)]);
    assert_eq!(p.end(), End::Advance { consumed: 6 });
    assert_eq!(p.seen(), Seen { commands: 6, syncs: 2, budget_stop: false });
    // As the guests' path gets them: SYNCs and prefetches plain SYNCs, TLBI_NSNH_ALL the
    // host's TLBI_NH_ALL (VMID forced there), invalidations as written.
    let sync = Command::sync();
    assert_eq!(p.commands()[..6], [tlbi(1), sync, sync, Command::tlbi_nh_all(0), sync, tlbi(2)]);
    // SYNCs and prefetches alone: nothing to send, CONS moves past them.
    let p = plan(&mut FakeQueue::new(&[Command::sync(), pf, sev]));
    assert_eq!(p.steps(), []);
    assert_eq!(p.end(), End::Advance { consumed: 3 });
    assert_eq!(p.seen().syncs, 2, "the host's SYNCs, not its prefetch");
    // An empty queue: nothing at all.
    let p = plan(&mut FakeQueue::new(&[]));
    assert_eq!((p.steps(), p.end()), (&[][..], End::Advance { consumed: 0 }));
    assert_eq!(p.seen(), Seen::default());
}

#[test]
fn msi_syncs_are_noted_in_order_and_one_outside_the_hosts_ram_stops_the_queue() {
    let ram = platform::qemu_virt::MANIFEST.vms[0].mem.base;
    let msi = |addr: u64, data: u64| {
        let c = with(Command::sync(), cmd::SYNC_CS, cmd::SYNC_CS_IRQ);
        with(with(c, cmd::SYNC_MSIADDR, addr >> 2), cmd::SYNC_MSIDATA, data)
    };
    let cs = [tlbi(1), msi(ram, 7), tlbi(2), msi(ram + 4, 8), msi(0x4020_0000, 9), tlbi(3)];
    let p = plan(&mut FakeQueue::new(&cs));
    let noted: Vec<(u16, u64, u32)> =
        p.msis().iter().map(|m| (m.at, m.range.ipa(), m.data)).collect();
    assert_eq!(noted, [(1, ram, 7), (3, ram + 4, 8)], "in queue order, with their entries");
    assert_eq!(p.steps(), [submit(0, 4, 4, 2)], "what came before the refused one");
    assert_eq!(p.end(), End::Stop { at: 4, err: cerror::ILL, cmd: cs[4] });
    // A SYNC without CS = SIG_IRQ notes nothing, whatever address it carries.
    let sev = with(msi(ram, 1), cmd::SYNC_CS, cmd::SYNC_CS_SEV);
    let p = plan(&mut FakeQueue::new(&[sev, with(msi(0, 1), cmd::SYNC_CS, 0)]));
    assert!(p.msis().is_empty());
    assert_eq!(p.end(), End::Advance { consumed: 2 });
}

#[test]
fn an_illegal_command_stops_the_queue_at_its_index_after_what_came_before() {
    let bad = Command::tlbi_s12_vmall(0);
    let cs = [tlbi(1), tlbi(2), bad, tlbi(3)];
    let mut q = FakeQueue::new(&cs);
    let p = plan(&mut q);
    assert_eq!(p.steps(), [submit(0, 2, 2, 0)]);
    assert_eq!(p.end(), End::Stop { at: 2, err: cerror::ILL, cmd: bad });
    assert_eq!(p.seen().commands, 3, "the one after it is not looked at");
    // Refused first: nothing before it.
    let sync_irq = with(Command::sync(), cmd::SYNC_CS, 1);
    let p = plan(&mut FakeQueue::new(&[sync_irq, tlbi(1)]));
    assert_eq!(p.steps(), []);
    assert_eq!(p.end(), End::Stop { at: 0, err: cerror::ILL, cmd: sync_irq });
    // After STE refreshes: they are done before the queue stops.
    let secure = with(Command::cfgi_ste(0x10), cmd::SSEC, 1);
    let p = plan(&mut FakeQueue::new(&[Command::cfgi_ste(0x28), Command::sync(), secure]));
    assert_eq!(p.steps(), [Step::Refresh { from: 0, to: 1 }]);
    assert_eq!(p.refreshes(), [0x28]);
    assert_eq!(p.end(), End::Stop { at: 2, err: cerror::ILL, cmd: secure });
    // A later run's refused command is named at its own index.
    let cs = [tlbi(1), Command::cfgi_ste(0x10), tlbi(2), bad];
    let p = plan(&mut FakeQueue::new(&cs));
    assert_eq!(
        p.steps(),
        [submit(0, 1, 1, 0), Step::Refresh { from: 0, to: 1 }, submit(2, 3, 3, 0)]
    );
    assert_eq!(p.end(), End::Stop { at: 3, err: cerror::ILL, cmd: bad });
}

#[test]
fn an_entry_outside_the_hosts_ram_stops_the_queue_with_abt() {
    let mut q = FakeQueue::new(&[tlbi(1), tlbi(2), tlbi(3)]);
    q.fault = Some(2);
    let p = plan(&mut q);
    assert_eq!(q.fetches, [(0, 2)]);
    // The two before it were gathered (more commands followed them), then sent.
    assert_eq!(p.steps(), [submit(0, 2, 2, 0)]);
    assert_eq!(p.end(), End::Stop { at: 2, err: cerror::ABT, cmd: Command::default() });
    q.fault = Some(0);
    let p = plan(&mut q);
    assert_eq!(p.steps(), []);
    assert_eq!(p.end(), End::Stop { at: 0, err: cerror::ABT, cmd: Command::default() });
}

#[test]
fn refreshes_are_coalesced_each_stream_once_before_what_follows() {
    // 50 CFGI_STEs of one stream, a SYNC, a CFGI_ALL, then a TLBI and a SYNC: one refresh of
    // each stream (0x10 once), planned before the TLBI's submission.
    let mut cs = vec![Command::cfgi_ste(0x10); 50];
    cs.extend([Command::sync(), Command::cfgi_all(), tlbi(1), Command::sync()]);
    let p = plan(&mut FakeQueue::new(&cs));
    assert_eq!(p.steps(), [Step::Refresh { from: 0, to: 3 }, submit(52, 54, 54, 2)]);
    assert_eq!(p.refreshes(), STREAMS);
    assert_eq!(p.end(), End::Advance { consumed: 54 });
    // A CFGI after the TLBI: a second refresh, at the end.
    let cs = [Command::cfgi_ste(0x10), tlbi(1), Command::cfgi_ste(0x10)];
    let p = plan(&mut FakeQueue::new(&cs));
    assert_eq!(
        p.steps(),
        [Step::Refresh { from: 0, to: 1 }, submit(1, 2, 2, 0), Step::Refresh { from: 1, to: 2 }]
    );
    assert_eq!(p.refreshes(), [0x10, 0x10]);
    // Streams the host does not own are not refreshed; a range covers its aligned power of
    // two (0x28..0x30 from 0x2b with Range 2).
    let range = Command([0x04 | 0x2b << 32, 2]);
    let cs = [Command::cfgi_ste(0x99), range, Command::cfgi_ste(0x11)];
    let p = plan(&mut FakeQueue::new(&cs));
    assert_eq!(p.steps(), [Step::Refresh { from: 0, to: 1 }]);
    assert_eq!(p.refreshes(), [0x28]);
    let p = plan(&mut FakeQueue::new(&[Command::cfgi_ste(0x99)]));
    assert_eq!(p.steps(), [], "nothing to refresh");
}

#[test]
fn the_budget_stops_an_access_with_commands_left() {
    // 300 TLBIs: 256 looked at (the budget), one submission, planned before the budget ran
    // out; 44 left.
    let cs: Vec<Command> = (0..300).map(tlbi).collect();
    let p = plan(&mut FakeQueue::new(&cs));
    assert_eq!(p.steps(), [submit(0, 256, 256, 0)]);
    assert_eq!(p.end(), End::Advance { consumed: MAX_COMMANDS as u32 });
    assert_eq!(p.seen(), Seen { commands: 256, syncs: 0, budget_stop: true });
    // The same across the queue's end: gathered, sent when it holds INVALIDATE_MAX commands
    // (its submission counted: the access ends there), planned before the budget ran out.
    let mut q = FakeQueue::new(&cs);
    (q.cap, q.cons) = (512, 300);
    let p = plan(&mut q);
    assert_eq!(q.fetches, [(0, 212), (212, 44)]);
    assert_eq!(p.steps(), [submit(0, 256, 256, 0)]);
    assert_eq!(p.end(), End::Advance { consumed: 256 });
    assert!(p.seen().budget_stop);
    // The budget spent exactly at the queue's end: nothing left, no budget stop.
    let p = plan(&mut FakeQueue::new(&[Command::cfgi_ste(0x99); 256]));
    assert_eq!(p.end(), End::Advance { consumed: 256 });
    assert!(!p.seen().budget_stop);
    // Exactly the budget (248 commands and their submission), nothing left: no budget stop.
    let n = ACCESS_BUDGET - SEND_COST;
    let p = plan(&mut FakeQueue::new(&cs[..n as usize]));
    assert_eq!(p.end(), End::Advance { consumed: n });
    assert!(!p.seen().budget_stop);
    // A queue full of CFGI_ALL: 256 looked at, every stream refreshed once, at the end.
    let p = plan(&mut FakeQueue::new(&vec![Command::cfgi_all(); 4096]));
    assert_eq!(p.steps(), [Step::Refresh { from: 0, to: 3 }]);
    assert_eq!(p.end(), End::Advance { consumed: 256 });
    assert!(p.seen().budget_stop);
    // Refreshes and submissions count: CFGI_ALL and a TLBI alternating, each pair 2 commands,
    // 3 refreshes and a submission.
    let cs: Vec<Command> =
        (0..512).map(|i| if i % 2 == 0 { Command::cfgi_all() } else { tlbi(i) }).collect();
    let p = plan(&mut FakeQueue::new(&cs));
    let pair = 2 + 3 * REFRESH_COST + SEND_COST;
    let pairs = ACCESS_BUDGET.div_ceil(pair);
    assert_eq!(p.end(), End::Advance { consumed: 2 * pairs });
    assert_eq!(p.refreshes().len() as u32, 3 * pairs);
    assert!(p.seen().budget_stop);
}

#[test]
fn a_run_across_the_queue_end_is_one_submission() {
    // Two TLBIs before the queue's end and two after it: two fetches, one submission.
    let mut q = FakeQueue::new(&[tlbi(1), tlbi(2), tlbi(3), tlbi(4)]);
    (q.cap, q.cons) = (256, 254);
    let p = plan(&mut q);
    assert_eq!(q.fetches, [(0, 2), (2, 2)]);
    assert_eq!(p.steps(), [submit(0, 4, 4, 0)]);
    // A run of SYNCs alone after the end is not part of it (it ends at the last command
    // gathered), and the refresh after it comes after it.
    let mut q = FakeQueue::new(&[tlbi(1), tlbi(2), Command::sync(), Command::cfgi_ste(0x10)]);
    (q.cap, q.cons) = (256, 254);
    let p = plan(&mut q);
    assert_eq!(p.steps(), [submit(0, 2, 4, 1), Step::Refresh { from: 0, to: 1 }]);
    assert_eq!(p.end(), End::Advance { consumed: 4 });
    // A SYNC in a run gathered after the end is part of it.
    let mut q = FakeQueue::new(&[tlbi(1), Command::sync(), tlbi(2)]);
    (q.cap, q.cons) = (256, 255);
    let p = plan(&mut q);
    assert_eq!(p.steps(), [submit(0, 3, 3, 1)]);
    // A whole queue's worth across its end: one submission of INVALIDATE_MAX commands.
    let cs: Vec<Command> = (0..256).map(tlbi).collect();
    let mut q = FakeQueue::new(&cs);
    (q.cap, q.cons) = (256, 47);
    let p = plan(&mut q);
    assert_eq!(p.steps(), [submit(0, 256, 256, 0)]);
    assert_eq!(p.end(), End::Advance { consumed: 256 });
}

#[test]
fn a_submission_carries_what_was_looked_at_when_it_was_planned() {
    // A submission gathered up to a CFGI_STE is planned once the CFGI_STE was looked at.
    let mut q = FakeQueue::new(&[tlbi(1), Command::sync(), tlbi(2), Command::cfgi_ste(0x30)]);
    (q.cap, q.cons) = (256, 255);
    let p = plan(&mut q);
    assert_eq!(p.steps(), [submit(0, 3, 4, 1), Step::Refresh { from: 0, to: 1 }]);
    assert_eq!(p.seen(), Seen { commands: 4, syncs: 1, budget_stop: false });
    // The last one, planned once the budget ran out with commands left, says so: a refresh,
    // then TLBIs gathered across the queue's end until the budget is spent.
    let mut cs: Vec<Command> = (0..300).map(tlbi).collect();
    cs[0] = Command::cfgi_ste(0x10);
    let mut q = FakeQueue::new(&cs);
    (q.cap, q.cons) = (512, 510);
    let p = plan(&mut q);
    let last = Seen { commands: 240, syncs: 0, budget_stop: true };
    assert_eq!(
        p.steps(),
        [Step::Refresh { from: 0, to: 1 }, Step::Submit { start: 1, end: 240, seen: last }]
    );
    assert_eq!(p.seen(), last);
    assert_eq!(p.end(), End::Advance { consumed: 240 });
    // Without the queue's end: the TLBIs after the refresh are one run that spends the
    // budget, sent straight (before the budget ran out).
    let p = plan(&mut FakeQueue::new(&cs));
    assert_eq!(p.steps(), [Step::Refresh { from: 0, to: 1 }, submit(1, 256, 256, 0)]);
    assert!(p.seen().budget_stop);
}

#[test]
fn the_largest_plans_fit_their_capacity() {
    // The patterns with the most steps per unit of budget: a submission for every command,
    // a refresh and a submission for every two, across the queue's end or not.
    let patterns: [&dyn Fn(u64) -> Command; 6] = [
        &|i| if i % 2 == 0 { tlbi(i) } else { Command::cfgi_ste(0x99) },
        &|i| if i % 2 == 0 { tlbi(i) } else { Command::cfgi_ste(0x10) },
        &|i| if i % 2 == 0 { Command::sync() } else { Command::cfgi_all() },
        &|i| if i % 3 == 0 { Command::cfgi_all() } else { tlbi(i) },
        &|i| if i % 2 == 0 { Command::cfgi_all() } else { tlbi(i) },
        &|i| {
            if i % 16 == 15 {
                tlbi(i)
            } else {
                Command::cfgi_ste([0x10, 0x28, 0x30][i as usize % 3])
            }
        },
    ];
    for (n, f) in patterns.iter().enumerate() {
        for cons in [0, 255, 254] {
            let cs: Vec<Command> = (0..600).map(f).collect();
            let mut q = FakeQueue::new(&cs);
            (q.cap, q.cons) = (256, cons);
            let p = plan(&mut q);
            assert!(p.steps().len() <= MAX_STEPS, "pattern {n}: {} steps", p.steps().len());
            let most = (ACCESS_BUDGET / REFRESH_COST) as usize + STREAMS.len();
            assert!(p.refreshes().len() <= most, "pattern {n}: {}", p.refreshes().len());
            assert!(p.seen().budget_stop);
        }
    }
    // A hundred streams: refreshes of a few before the one that spends the budget, or one of
    // every stream at the end.
    let streams: Vec<u32> = (0x100..0x164).collect();
    let patterns: [&dyn Fn(u64) -> Command; 3] = [
        &|i| if i % 20 == 19 { tlbi(i) } else { Command::cfgi_all() },
        &|i| if i % 4 == 3 { tlbi(i) } else { Command::cfgi_ste(0x100 + (i % 100) as u32) },
        &|i| if i < 255 { Command::cfgi_ste(0x100 + (i % 100) as u32) } else { tlbi(i) },
    ];
    for (n, f) in patterns.iter().enumerate() {
        let cs: Vec<Command> = (0..600).map(f).collect();
        let mut p = Plan::new(streams.len());
        p.make(&streams, &mut FakeQueue::new(&cs));
        let most = (ACCESS_BUDGET / REFRESH_COST) as usize + streams.len();
        assert!(p.refreshes().len() <= most, "pattern {n}: {}", p.refreshes().len());
        if n != 1 {
            assert!(p.refreshes().len() >= streams.len(), "pattern {n}: each stream once at least");
        }
    }
}

/// What [`Plan::make`] plans for a queue [`Plan::short`] recognised: one submission of all its
/// commands (none for a SYNC alone), its MSI, CONS past it.
fn as_made(q: &mut FakeQueue) -> (Vec<Step>, End, Vec<Msi>, Vec<Command>, Seen) {
    let p = plan(q);
    let n = q.cmds.len().min(MAX_COMMANDS);
    (p.steps().to_vec(), p.end(), p.msis().to_vec(), p.commands()[..n].to_vec(), p.seen())
}

#[test]
fn the_short_path_is_exactly_what_the_planner_plans_for_the_queues_it_takes() {
    let ram = platform::qemu_virt::MANIFEST.vms[0].mem.base;
    let msi = |addr: u64, data: u64| {
        let c = with(Command::sync(), cmd::SYNC_CS, cmd::SYNC_CS_IRQ);
        with(with(c, cmd::SYNC_MSIADDR, addr >> 2), cmd::SYNC_MSIDATA, data)
    };
    // Every kind of command a host may write: invalidations the guests' path takes as they are,
    // and everything that is not (rewritten, refreshes, prefetches, illegal ones), SYNCs of
    // every completion and MSI address (the host's RAM, the hypervisor's, a guest's; MSIADDR
    // holds bits 51:2 only), and fields set where they must not be.
    let palette = [
        tlbi(1),
        Command::tlbi_nh_asid(0, 3),
        Command::cfgi_cd(0x10, 0),
        Command::tlbi_nsnh_all(),
        Command::cfgi_ste(0x10),
        Command([0x01 | 0x10 << 32, 0]),
        Command::tlbi_s12_vmall(0),
        Command([0xff, 0]),
        Command::sync(),
        with(Command::sync(), cmd::SYNC_CS, cmd::SYNC_CS_SEV),
        with(Command::sync(), cmd::SYNC_CS, 3),
        msi(ram + 0x40, 5),
        msi(0x4020_0000, 6),
        msi(platform::qemu_virt::MANIFEST.vms[1].mem.base, 7),
        with(msi(ram, 8), cmd::SSEC, 1),
    ];
    // The oracle, from the architecture and the host's rules rather than from the code: every
    // command but the last a stage-1 TLB or CD invalidation with no reserved field set, the last
    // a CMD_SYNC the emulated SMMU completes (CS none, SEV, or an MSI into the host's RAM).
    let takes = |cs: &[Command]| {
        let (last, before) = cs.split_last().unwrap();
        let invalidations = [tlbi(1), Command::tlbi_nh_asid(0, 3), Command::cfgi_cd(0x10, 0)];
        before.iter().all(|c| invalidations.contains(c))
            && [palette[8], palette[9], palette[11]].iter().chain(&invalidations).any(|c| c == last)
    };
    let mut queues: Vec<Vec<Command>> = Vec::new();
    for a in palette {
        queues.push(vec![a]);
        for b in palette {
            queues.push(vec![a, b]);
            for c in palette {
                queues.push(vec![a, b, c]);
            }
        }
    }
    // As long as the short path takes, and one longer; one with its SYNC not last.
    queues.push([vec![tlbi(1); SHORT_MAX - 1], vec![palette[11]]].concat());
    queues.push([vec![tlbi(1); SHORT_MAX], vec![palette[11]]].concat());
    queues.push(vec![tlbi(1), palette[11], tlbi(1)]);
    let mut taken = 0;
    for cs in &queues {
        let mut p = Plan::new(STREAMS.len());
        let short = p.short(&mut FakeQueue::new(cs));
        let long = cs.len() > SHORT_MAX;
        assert_eq!(short.is_ok(), !long && takes(cs), "{cs:x?}");
        let (steps, end, msis, commands, seen) = as_made(&mut FakeQueue::new(cs));
        let s = match short {
            Ok(s) => s,
            Err(fetched) => {
                // Refused: the planner goes on from what it fetched, to the very same plan.
                let want = if cs.len() > SHORT_MAX { 0 } else { cs.len() };
                assert_eq!(fetched, want, "{cs:x?}");
                let mut q = FakeQueue::new(cs);
                p.make_after(&STREAMS, &mut q, fetched);
                assert!(q.fetches.iter().all(|&(k, _)| k as usize >= fetched), "{cs:x?}");
                let n = cs.len();
                let after = (p.steps(), p.end(), p.msis(), &p.commands()[..n], p.seen());
                assert_eq!(after, (&steps[..], end, &msis[..], &commands[..], seen), "{cs:x?}");
                continue;
            }
        };
        taken += 1;
        let n = cs.len() as u16;
        assert_eq!(s.n, n);
        assert_eq!(s.seen(), seen, "{cs:x?}");
        assert_eq!(end, End::Advance { consumed: n as u32 }, "{cs:x?}");
        let sync = cs[cs.len() - 1].opcode_byte() == 0x46; // CMD_SYNC
        assert_eq!(s.sync, sync, "{cs:x?}");
        let sent = if n > sync as u16 { vec![submit(0, n, n, sync as u16)] } else { vec![] };
        assert_eq!(steps, sent, "{cs:x?}");
        assert_eq!(s.msi.into_iter().collect::<Vec<_>>(), msis, "{cs:x?}");
        assert_eq!(p.commands()[..n as usize], commands[..], "{cs:x?}");
    }
    // Linux's strict unmap among them (a TLBI_NH_VA and an MSI SYNC), and no vacuous check.
    assert!(queues[..].iter().any(|q| q[..] == [tlbi(1), msi(ram + 0x40, 5)]));
    // SYNCs alone; 1, 2 or 3 invalidations, a SYNC after 1 or 2 of them, or after 7.
    assert_eq!(taken, 3 + (3 + 9 + 27) + (3 * 3 + 9 * 3) + 1);
}

#[test]
fn the_short_path_leaves_a_wrapped_faulting_or_unfinished_queue_to_the_planner() {
    let ram = platform::qemu_virt::MANIFEST.vms[0].mem.base;
    let sync = with(Command::sync(), cmd::SYNC_CS, cmd::SYNC_CS_SEV);
    let mut p = Plan::new(STREAMS.len());
    // Across the queue's end: the first run ends before the SYNC.
    let mut q = FakeQueue::new(&[tlbi(1), tlbi(2), sync]);
    q.cap = 4;
    q.cons = 2;
    assert_eq!(p.short(&mut q), Err(2), "the two before the queue's end fetched");
    q.cons = 1;
    let s = Short { n: 3, msi: None, sync: true };
    assert_eq!(p.short(&mut q), Ok(s), "ends right at the queue's end");
    // An entry outside the host's RAM.
    let mut q = FakeQueue::new(&[tlbi(1), sync]);
    q.fault = Some(1);
    assert_eq!(p.short(&mut q), Err(1), "the one before the fault fetched");
    q.fault = Some(0);
    assert_eq!(p.short(&mut q), Err(0));
    // Nothing in the queue.
    assert_eq!(p.short(&mut FakeQueue::new(&[])), Err(0));
    // The MSI's address checked like the planner's: the host's RAM only.
    let msi = with(with(sync, cmd::SYNC_CS, cmd::SYNC_CS_IRQ), cmd::SYNC_MSIADDR, ram >> 2);
    let s = p.short(&mut FakeQueue::new(&[tlbi(1), msi])).expect("taken");
    assert_eq!(s.msi.map(|m| (m.at, m.range.ipa(), m.range.len())), Some((1, ram, 4)));
    assert_eq!(p.commands()[..2], [tlbi(1), Command::sync()], "the SYNC made plain");
    let outside = with(msi, cmd::SYNC_MSIADDR, 0x4020_0000 >> 2);
    assert_eq!(p.short(&mut FakeQueue::new(&[tlbi(1), outside])), Err(2));
    assert_eq!(p.commands()[..2], [tlbi(1), outside], "as the queue holds them");
}
