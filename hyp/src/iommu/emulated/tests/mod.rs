//! The emulated SMMU driven the way Linux's arm-smmu-v3 driver drives an SMMU, on top of the
//! real SMMU service and the software SMMU standing in for the hardware.

use super::*;
use crate::iommu::driver::ste::{self};
use crate::iommu::service::SmmuService;
use crate::iommu::soft::fake::FakeSmmu;
use crate::vm::memory::{with_coherency, ServedRange};
use core::cell::RefCell;
use host_abi::smmu::regs::{strtab_cfg, Idr0, IrqCtrl, EMULATED_IDR0, Q_OVFLG};
use host_abi::smmu::SteConfig;
use platform::power::GbpaReset;
use platform::qemu_virt::MANIFEST;
use std::collections::BTreeMap;
use std::vec;
use std::vec::Vec;

/// Sparse RAM of the host, optionally behind a model of EL2's data cache
/// ([`Ram::with_el2_cache`]).
///
/// With the model, what the hypervisor reads and writes (`copy_out`, `copy_in`) goes through
/// 64-byte lines: a line loaded once serves every later read until it is invalidated, and the
/// hypervisor's writes stay in their line (dirty) until cleaned or invalidated. The host's own
/// accesses ([`Ram::put`], [`Ram::get`]) are those of a Linux driving a non-coherent SMMU, which
/// maps these structures non-cacheable: straight to memory, behind the cache.
#[derive(Default)]
struct Ram {
    /// Memory (behind the cache: what the host and the SMMU see).
    bytes: RefCell<BTreeMap<u64, u8>>,
    cache: Option<RefCell<BTreeMap<u64, Line>>>,
}

/// One line of the cache model: its bytes and whether the hypervisor dirtied it.
struct Line {
    bytes: [u8; LINE as usize],
    dirty: bool,
}

const LINE: u64 = 64;

impl Ram {
    fn with_el2_cache() -> Self {
        Ram { bytes: Default::default(), cache: Some(RefCell::new(BTreeMap::new())) }
    }

    fn memory(&self, a: u64) -> u8 {
        *self.bytes.borrow().get(&a).unwrap_or(&0)
    }

    /// The hypervisor's view of byte `a`: through its line (loaded from memory if absent).
    fn cached(&self, a: u64, write: Option<u8>) -> u8 {
        let Some(cache) = &self.cache else { unreachable!() };
        let mut cache = cache.borrow_mut();
        let base = a & !(LINE - 1);
        let line = cache.entry(base).or_insert_with(|| Line {
            bytes: core::array::from_fn(|i| self.memory(base + i as u64)),
            dirty: false,
        });
        if let Some(b) = write {
            line.bytes[(a - base) as usize] = b;
            line.dirty = true;
        }
        line.bytes[(a - base) as usize]
    }

    /// Writes the dirty lines of `r` back to memory (`keep`: a clean; else a clean and
    /// invalidate, the lines dropped).
    fn maintain(&self, r: ServedRange, keep: bool) {
        let Some(cache) = &self.cache else { return };
        let mut cache = cache.borrow_mut();
        let mut a = r.ipa() & !(LINE - 1);
        while a < r.ipa() + r.len() {
            if let Some(line) = cache.get_mut(&a) {
                if line.dirty {
                    let mut mem = self.bytes.borrow_mut();
                    for (i, b) in line.bytes.iter().enumerate() {
                        mem.insert(a + i as u64, *b);
                    }
                    line.dirty = false;
                }
                if !keep {
                    cache.remove(&a);
                }
            }
            a += LINE;
        }
    }
}

impl GuestMemory for Ram {
    fn serves(&self, vm: u32) -> bool {
        vm == 0
    }
    fn copy_out(&self, r: ServedRange, out: &mut [u8]) {
        assert_eq!(r.vm(), 0);
        for (i, o) in out.iter_mut().enumerate() {
            let a = r.ipa() + i as u64;
            *o = if self.cache.is_some() { self.cached(a, None) } else { self.memory(a) };
        }
    }
    fn copy_in(&mut self, r: ServedRange, data: &[u8]) {
        assert_eq!(r.vm(), 0);
        for (i, b) in data.iter().enumerate() {
            let a = r.ipa() + i as u64;
            if self.cache.is_some() {
                self.cached(a, Some(*b));
            } else {
                self.bytes.get_mut().insert(a, *b);
            }
        }
    }
    fn invalidate_cached(&self, r: ServedRange) {
        self.maintain(r, false);
    }
    fn clean_cached(&self, r: ServedRange) {
        self.maintain(r, true);
    }
}

impl Ram {
    fn put(&mut self, ipa: u64, words: &[u64]) {
        for (i, w) in words.iter().enumerate() {
            for (j, b) in w.to_le_bytes().iter().enumerate() {
                self.bytes.get_mut().insert(ipa + i as u64 * 8 + j as u64, *b);
            }
        }
    }
    fn get(&self, ipa: u64) -> u64 {
        let mut b = [0u8; 8];
        for (j, x) in b.iter_mut().enumerate() {
            *x = self.memory(ipa + j as u64);
        }
        u64::from_le_bytes(b)
    }
}

const HOST: &VmSpec = &MANIFEST.vms[0];
static HOST_STREAMS: [u32; 1] = [0x10];
const STRTAB: u64 = 0x4410_0000;
const CMDQ: u64 = 0x4420_0000;
const EVTQ: u64 = 0x4430_0000;
const CD: u64 = 0x4440_0000;

struct World {
    io: SmmuService<FakeSmmu>,
    ram: Ram,
    v: VirtualSmmu,
    /// Entries the "driver" has written to the command queue (its PROD, wrap included).
    prod: u32,
}

use crate::iommu::service::tests::{s2, service_with};

impl World {
    fn new() -> Self {
        Self::with_streams(&HOST_STREAMS)
    }

    /// The host with these streams (the manifest's and device-less extra ones).
    fn with_streams(streams: &'static [u32]) -> Self {
        let mut io = service_with(FakeSmmu::qemu(), 0x20, GbpaReset::Abort);
        for &sid in streams {
            if !io.owns(0, sid) {
                io.add_streams(0, sid, 1);
            }
        }
        let caps = io.caps();
        World { io, ram: Ram::default(), v: VirtualSmmu::new(0, streams, &caps, true), prod: 0 }
    }

    /// The host's SMMU driven as `coherent` or not, its RAM behind a model of EL2's cache.
    fn behind_el2_cache(coherent: bool) -> Self {
        let mut w = Self::new();
        w.v = VirtualSmmu::new(0, &HOST_STREAMS, &w.io.caps(), coherent);
        w.ram = Ram::with_el2_cache();
        w
    }

    /// Runs `f` with the access context the EL2 side makes (`el2::front_door`): the host's
    /// memory as the emulated SMMU's coherency says ([`with_coherency`]).
    fn with_ctx<R>(&mut self, f: impl FnOnce(&mut VirtualSmmu, &mut Context<'_>) -> R) -> R {
        let (v, io) = (&mut self.v, &mut self.io);
        with_coherency(v.coherent(), &mut self.ram, |mem| {
            f(v, &mut Context { mem: HostMemory { spec: HOST, mem }, smmu: io })
        })
    }

    fn w(&mut self, off: usize, size: u8, val: u64) {
        self.with_ctx(|v, ctx| v.write(off, size, val, ctx));
    }

    fn r(&mut self, off: usize) -> u64 {
        self.v.read(off, 4)
    }

    /// Linux's reset sequence, with a linear stream table of 256 STEs, 256-entry command and
    /// 32-entry event queues, event and global-error interrupts on.
    fn linux_reset(&mut self) {
        self.w(off::CR0, 4, 0);
        self.w(off::GBPA, 4, (Gbpa::UPDATE | Gbpa::ABORT) as u64);
        self.w(off::IRQ_CTRL, 4, 0);
        self.w(off::CR1, 4, 0xd75);
        self.w(off::CR2, 4, 0x2);
        self.w(off::STRTAB_BASE, 8, STRTAB | 1 << 62);
        self.w(off::STRTAB_BASE_CFG, 4, strtab_cfg::log2size(8) as u64);
        self.w(off::CMDQ_BASE, 8, CMDQ | 8);
        self.w(off::CMDQ_PROD, 4, 0);
        self.w(off::CMDQ_CONS, 4, 0);
        self.w(off::CR0, 4, Cr0::CMDQEN.bits() as u64);
        self.cmds(&[Command::cfgi_all(), Command::tlbi_nsnh_all(), Command::sync()]);
        self.w(off::EVTQ_BASE, 8, EVTQ | 5);
        self.w(off::EVTQ_PROD, 4, 0);
        self.w(off::EVTQ_CONS, 4, 0);
        self.w(off::IRQ_CTRL, 4, (IrqCtrl::EVENTQ_IRQEN | IrqCtrl::GERROR_IRQEN).bits() as u64);
        self.w(off::CR0, 4, (Cr0::CMDQEN | Cr0::EVENTQEN).bits() as u64);
        self.w(off::CR0, 4, Cr0::RUNNING.bits() as u64);
    }

    /// Writes commands at the driver's PROD and moves PROD.
    fn cmds(&mut self, cs: &[Command]) {
        for c in cs {
            let i = (self.prod & 0xff) as u64;
            self.ram.put(CMDQ + i * 16, &c.0);
            self.prod = (self.prod + 1) & 0x1ff;
        }
        self.w(off::CMDQ_PROD, 4, self.prod as u64);
    }

    fn cons(&mut self) -> u32 {
        self.r(off::CMDQ_CONS) as u32
    }

    fn host_ste(&mut self, sid: u32, s: Ste) {
        self.ram.put(STRTAB + sid as u64 * 64, &s.0);
    }

    fn shadow(&mut self, sid: u32) -> Ste {
        self.io.ste(sid)
    }
}

fn s1_ste() -> Ste {
    Ste::default()
        .with_v(1)
        .with_config(SteConfig::S1)
        .with_s1_context_ptr(CD)
        .with_s1cir(1)
        .with_s1cor(1)
        .with_s1csh(3)
}

#[test]
fn the_host_sees_what_is_shadowed_correctly_and_nothing_more() {
    let mut w = World::new();
    let idr0 = Idr0(w.r(off::IDR0) as u32);
    assert!(idr0.s1p() && idr0.aarch64_tables() && idr0.coherent() && idr0.two_level_strtab());
    assert!(!idr0.s2p() && !idr0.ats() && !idr0.pri() && !idr0.btm());
    assert!(idr0.msi(), "a CMD_SYNC may complete with its MSI");
    assert_eq!(idr0.stall_model(), 1, "no stall");
    assert!(!idr0.cd2l(), "linear CD tables only: what validation accepts");
    let idr1 = Idr1(w.r(off::IDR1) as u32);
    assert_eq!(idr1.ssidsize(), 0, "the real SMMU's substream bits (QEMU: none)");
    assert!(!idr1.preset());
    let idr5 = Idr5(w.r(off::IDR5) as u32);
    assert!(idr5.gran4k() && !idr5.gran64k() && !idr5.gran16k());
    assert_eq!(idr5.oas_bits(), 36, "inside the host's 39-bit stage 2");
    // GBPA: always abort, whatever the host writes; UPDATE never shows.
    assert_eq!(w.r(off::GBPA), Gbpa::ABORT as u64);
    w.w(off::GBPA, 4, Gbpa::UPDATE as u64);
    assert_eq!(w.r(off::GBPA), Gbpa::ABORT as u64, "a bypass request changes nothing");
    // No such register: reads as zero, writes go nowhere, reported once.
    assert!(!w.v.has_notices());
    assert_eq!(w.r(0x7000), 0);
    assert!(w.v.has_notices(), "the EL2 side looks for notices only when told");
    w.w(0x7004, 4, 5);
    assert_eq!(w.v.counters.unknown_accesses, 2);
    let n = w.v.take_notices();
    assert_eq!(n[0], Some(Notice::UnknownRegister { offset: 0x7000 }));
    assert_eq!(n[1], None, "once");
    assert!(!w.v.has_notices(), "taken");
}

#[test]
fn linux_reset_enables_with_every_host_stream_blocked() {
    let mut w = World::new();
    let consumed = w.io.regs_mut().consumed.len();
    w.linux_reset();
    assert_eq!(w.cons(), 3, "the reset batch was consumed");
    assert_eq!(w.r(off::CR0ACK), Cr0::RUNNING.bits() as u64);
    // CFGI_ALL: every host STE read (none valid yet: blocked); TLBI_NSNH_ALL became the host's
    // TLBI_NH_ALL with its VMID.
    let sent: Vec<[u64; 2]> = w.io.regs_mut().consumed[consumed..].to_vec();
    assert!(sent.contains(&Command::tlbi_nh_all(MANIFEST.vms[0].vmid()).0), "{sent:x?}");
    assert_eq!(ste::effective(&w.shadow(0x10)), None);
    assert_eq!(w.io.pm_status().votes_allow_off & 1, 0, "SMMUEN = 1: the host needs it on");
    assert!(w.v.counters.syncs >= 1);
}

#[test]
fn host_stes_become_shadows_through_the_guests_validation() {
    let mut w = World::new();
    w.linux_reset();
    // Stage 1: nested on the host's stage 2, CD table as an IPA.
    w.host_ste(0x10, s1_ste());
    w.cmds(&[Command::cfgi_ste(0x10), Command::sync()]);
    let domain = validate::virtual_ste(&s1_ste(), HOST, &SmmuCaps::QEMU).unwrap();
    let want = w.io.encoded(0x10, &domain).unwrap();
    assert_eq!(w.shadow(0x10), want);
    assert_eq!(w.shadow(0x10).config(), Some(SteConfig::Nested));
    // Bypass: identity on the host's stage 2, never real bypass.
    w.host_ste(0x10, Ste::default().with_v(1).with_config(SteConfig::Bypass));
    w.cmds(&[Command::cfgi_ste(0x10), Command::sync()]);
    assert_eq!(w.shadow(0x10), ste::encode(&Domain::Identity, &s2(0)));
    // A stage-2 STE the host may not ask for: blocked, and said.
    let before = w.v.counters.stes_refused;
    w.host_ste(0x10, Ste::default().with_v(1).with_config(SteConfig::S2).with_s2vmid(5));
    w.cmds(&[Command::cfgi_ste(0x10), Command::sync()]);
    assert_eq!(ste::effective(&w.shadow(0x10)), None);
    assert_eq!(w.v.counters.stes_refused, before + 1);
    assert!(w
        .v
        .take_notices()
        .contains(&Some(Notice::SteRefused { sid: 0x10, why: HypError::ForbiddenField })));
    // A CD table in hypervisor memory: refused.
    w.host_ste(0x10, s1_ste().with_s1_context_ptr(0x4020_0000));
    w.cmds(&[Command::cfgi_ste(0x10), Command::sync()]);
    assert_eq!(ste::effective(&w.shadow(0x10)), None);
    // A guest's stream in the host's table: not the host's, never shadowed.
    w.host_ste(0x18, Ste::default().with_v(1).with_config(SteConfig::Bypass));
    w.cmds(&[Command::cfgi_ste(0x18), Command::sync()]);
    assert_eq!(ste::effective(&w.shadow(0x18)), None);
    // CFGI_STE_RANGE over the host's stream.
    w.host_ste(0x10, Ste::default().with_v(1).with_config(SteConfig::Bypass));
    let mut range = Command::cfgi_all();
    cmd::RANGE.set(&mut range.0, 4); // 32 streams from 0
    w.cmds(&[range, Command::sync()]);
    assert_eq!(w.shadow(0x10), ste::encode(&Domain::Identity, &s2(0)));
}

#[test]
fn a_stream_table_pointing_outside_the_hosts_ram_blocks_its_streams() {
    let mut w = World::new();
    w.linux_reset();
    w.host_ste(0x10, Ste::default().with_v(1).with_config(SteConfig::Bypass));
    w.cmds(&[Command::cfgi_ste(0x10), Command::sync()]);
    assert_eq!(w.shadow(0x10), ste::encode(&Domain::Identity, &s2(0)));
    // The host disables, points its table at a guest's RAM, enables: nothing there is read.
    w.w(off::CR0, 4, Cr0::CMDQEN.bits() as u64);
    assert_eq!(ste::effective(&w.shadow(0x10)), None, "SMMUEN = 0: GBPA, abort");
    assert_eq!(w.io.pm_status().votes_allow_off & 1, 1, "SMMUEN = 0: the host allows power-off");
    w.w(off::STRTAB_BASE, 8, MANIFEST.vms[1].mem.base);
    let refused = w.v.counters.stes_refused;
    w.w(off::CR0, 4, Cr0::RUNNING.bits() as u64);
    assert_eq!(ste::effective(&w.shadow(0x10)), None);
    assert!(w.v.take_notices().contains(&Some(Notice::SteUnreadable { sid: 0x10 })));
    assert_eq!(w.v.counters.stes_refused, refused + 1, "an unreadable STE is a refused one");
    // A two-level table whose level-1 descriptor points into the hypervisor: blocked too.
    w.w(off::CR0, 4, Cr0::CMDQEN.bits() as u64);
    w.w(off::STRTAB_BASE, 8, STRTAB);
    w.w(off::STRTAB_BASE_CFG, 4, (strtab_cfg::FMT_2LVL | strtab_cfg::split(8) | 16) as u64);
    w.ram.put(STRTAB, &[0x4020_0000 | 9]);
    w.w(off::CR0, 4, Cr0::RUNNING.bits() as u64);
    assert_eq!(ste::effective(&w.shadow(0x10)), None);
    // A proper two-level table: shadowed.
    w.w(off::CR0, 4, Cr0::CMDQEN.bits() as u64);
    w.ram.put(STRTAB, &[(STRTAB + 0x1_0000) | 9]);
    w.ram.put(
        STRTAB + 0x1_0000 + 0x10 * 64,
        &Ste::default().with_v(1).with_config(SteConfig::Bypass).0,
    );
    w.w(off::CR0, 4, Cr0::RUNNING.bits() as u64);
    assert_eq!(w.shadow(0x10), ste::encode(&Domain::Identity, &s2(0)));
}

#[test]
fn host_commands_are_validated_batched_and_synchronised() {
    let mut w = World::new();
    w.linux_reset();
    let vmid = MANIFEST.vms[0].vmid();
    let syncs = w.io.stats().syncs;
    let host_syncs = w.v.counters.syncs;
    let n = w.io.regs_mut().consumed.len();
    w.cmds(&[
        Command::tlbi_nh_asid(0, 3),
        Command::tlbi_nh_va(0, 3, 0x1000),
        Command::cfgi_cd(0x10, 0),
        Command::sync(),
        Command([0x01 | 0x10 << 32, 0]), // PREFETCH_CONFIG
        Command::tlbi_nh_va(0, 3, 0x2000),
        Command::sync(),
    ]);
    assert_eq!(w.cons(), w.prod, "everything consumed, every SYNC complete");
    assert_eq!(w.io.stats().syncs, syncs + 1, "one real SYNC for the whole PROD write");
    assert_eq!(w.v.counters.syncs, host_syncs + 2, "the host's two CMD_SYNCs (not PREFETCH)");
    let sent = &w.io.regs_mut().consumed[n..];
    assert_eq!(
        sent,
        [
            Command::tlbi_nh_asid(vmid, 3).0,
            Command::tlbi_nh_va(vmid, 3, 0x1000).0,
            Command::cfgi_cd(0x10, 0).0,
            Command::tlbi_nh_va(vmid, 3, 0x2000).0,
            Command::sync().0,
        ]
    );
}

#[test]
fn an_illegal_command_stops_the_queue_as_hardware_does() {
    let mut w = World::new();
    w.linux_reset();
    let vmid = MANIFEST.vms[0].vmid();
    let start = w.cons();
    let n = w.io.regs_mut().consumed.len();
    // A stage-2 invalidation on an SMMU without stage 2: illegal.
    w.cmds(&[Command::tlbi_nh_asid(0, 1), Command::tlbi_s12_vmall(0), Command::tlbi_nh_asid(0, 2)]);
    let cons = w.cons();
    assert_eq!(cons & 0xff, (start + 1) & 0xff, "CONS stops on the bad command");
    assert_eq!(cons >> 24 & 0x7f, cerror::ILL, "CONS.ERR");
    assert_eq!(w.r(off::GERROR) as u32 ^ w.r(off::GERRORN) as u32, Gerror::CMDQ_ERR.bits());
    assert!(w.v.take_irqs().gerror, "the host's global-error interrupt");
    // More commands before the host handles the error: the queue stays stopped, CONS.ERR
    // still says why.
    w.cmds(&[Command::tlbi_nh_asid(0, 3)]);
    assert_eq!(w.cons(), cons);
    assert_eq!(
        &w.io.regs_mut().consumed[n..],
        [Command::tlbi_nh_asid(vmid, 1).0, Command::sync().0],
        "what came before it was executed"
    );
    // Linux's recovery: replace the command with a SYNC, acknowledge; the queue goes on.
    let slot = (cons & 0xff) as u64;
    w.ram.put(CMDQ + slot * 16, &Command::sync().0);
    let gerror = w.r(off::GERROR);
    w.w(off::GERRORN, 4, gerror);
    assert_eq!(w.cons(), w.prod, "restarted and drained");
    assert!(w.io.regs_mut().consumed.ends_with(&[
        Command::tlbi_nh_asid(vmid, 2).0,
        Command::tlbi_nh_asid(vmid, 3).0,
        Command::sync().0
    ]));
    // Refused by the guests' validation (another VM's stream): illegal on the host's queue
    // too, and the valid command before it still executed.
    let n = w.io.regs_mut().consumed.len();
    w.cmds(&[Command::tlbi_nh_asid(0, 7), Command::cfgi_cd(0x18, 0)]);
    assert_eq!(w.cons() >> 24 & 0x7f, cerror::ILL);
    assert_eq!(w.cons() & 0xff, (w.prod - 1) & 0xff);
    assert_eq!(
        &w.io.regs_mut().consumed[n..],
        [Command::tlbi_nh_asid(vmid, 7).0, Command::sync().0]
    );
    assert_eq!(w.v.counters.command_errors, 2);
    // The log named the first illegal command; this one, of the same kind (CERROR_ILL), is
    // only counted: the host chooses how often it happens, not how much the hypervisor logs.
    let refused = Notice::IllegalCommand { cmd: Command::cfgi_cd(0x18, 0), err: cerror::ILL };
    assert!(!w.v.take_notices().contains(&Some(refused)), "logged once per kind");
    assert_eq!(w.v.counters.notices_unlogged, 1);
}

#[test]
fn a_run_of_invalidations_across_the_queue_end_is_one_batch() {
    let mut w = World::new();
    w.linux_reset();
    let vmid = MANIFEST.vms[0].vmid();
    // Up to entry 251 of the host's 256-entry queue.
    w.cmds(&[Command::sync(); 248]);
    assert_eq!(w.cons(), 251);
    // Three STE refreshes, then three TLBIs at entries 254, 255 and 0 (after the wrap).
    let tlbi = |va| Command::tlbi_nh_va(0, 3, va);
    w.cmds(&[
        Command::cfgi_ste(0x10),
        Command::cfgi_ste(0x10),
        Command::cfgi_ste(0x10),
        tlbi(0x1000),
        tlbi(0x2000),
        tlbi(0x3000),
    ]);
    assert_eq!(w.cons(), 0x100 | 1, "consumed across the wrap");
    let tlbi = |va| Command::tlbi_nh_va(vmid, 3, va).0;
    let consumed = &w.io.regs_mut().consumed;
    assert_eq!(
        consumed[consumed.len() - 4..],
        [tlbi(0x1000), tlbi(0x2000), tlbi(0x3000), Command::sync().0],
        "one batch, one SYNC"
    );
}

#[test]
fn a_command_queue_outside_the_hosts_ram_aborts_on_fetch() {
    let mut w = World::new();
    w.linux_reset();
    w.w(off::CR0, 4, 0);
    w.w(off::CMDQ_BASE, 8, 0x4020_0000 | 8);
    w.w(off::CMDQ_PROD, 4, 0);
    w.w(off::CMDQ_CONS, 4, 0);
    w.w(off::CR0, 4, Cr0::CMDQEN.bits() as u64);
    w.w(off::CMDQ_PROD, 4, 1);
    assert_eq!(w.cons() >> 24 & 0x7f, cerror::ABT);
    assert!(!Gerror::from_bits_retain((w.r(off::GERROR) ^ w.r(off::GERRORN)) as u32).is_empty());
}

#[test]
fn the_hosts_events_reach_its_own_event_queue() {
    let mut w = World::new();
    w.linux_reset();
    w.host_ste(0x10, Ste::default().with_v(1).with_config(SteConfig::Bypass));
    w.cmds(&[Command::cfgi_ste(0x10), Command::sync()]);
    // Its device faults three times; a guest's once.
    for i in 0..3u64 {
        w.io.regs_mut().post_event([0x10 | 0x10 << 32, 0, 0x1000 * i, 0]);
    }
    w.io.regs_mut().post_event([0x10 | 0x18 << 32, 0, 0x9999, 0]);
    let mut ctx = Context { mem: HostMemory { spec: HOST, mem: &mut w.ram }, smmu: &mut w.io };
    w.v.deliver_events(&mut ctx);
    assert_eq!(w.r(off::EVTQ_PROD), 3);
    assert!(w.v.take_irqs().eventq, "the host's event interrupt");
    for i in 0..3u64 {
        assert_eq!(w.ram.get(EVTQ + i * 32 + 16), 0x1000 * i, "record {i}: the input address");
        assert_eq!(w.ram.get(EVTQ + i * 32) >> 32, 0x10, "record {i}: the host's stream");
    }
    assert_eq!(w.v.counters.events_delivered, 3);
    // The host's 32-entry queue overflows as hardware's would.
    w.w(off::EVTQ_CONS, 4, 3);
    for i in 0..40u64 {
        w.io.regs_mut().post_event([0x10 | 0x10 << 32, 0, i, 0]);
        let _ = w.io.stats(); // the service drains (rings are 64 deep)
    }
    let mut ctx = Context { mem: HostMemory { spec: HOST, mem: &mut w.ram }, smmu: &mut w.io };
    w.v.deliver_events(&mut ctx);
    assert_eq!(w.r(off::EVTQ_PROD) & Q_OVFLG as u64, Q_OVFLG as u64, "overflow flagged");
    assert_eq!(w.v.counters.events_delivered, 3 + 32);
    assert_eq!(w.v.counters.events_discarded, 8);
}

#[test]
fn a_batch_larger_than_one_hypercall_is_sent_in_pieces() {
    let mut w = World::new();
    w.linux_reset();
    let syncs = w.io.stats().syncs;
    let cmds: Vec<Command> = (0..300u64).map(|i| Command::tlbi_nh_va(0, 1, i << 12)).collect();
    w.cmds(&cmds[..200]);
    w.cmds(&cmds[200..]);
    assert_eq!(w.cons(), w.prod);
    assert_eq!(w.io.stats().syncs, syncs + 2);
    assert_eq!(w.v.counters.commands, 3 + 300);
    // A full host queue (256 commands from entry 47 on, across its end): gathered into one
    // batch of exactly INVALIDATE_MAX, sent when it fills, and every command consumed.
    let cmds: Vec<Command> = (0..256u64).map(|i| Command::tlbi_nh_va(0, 2, i << 12)).collect();
    let syncs = w.io.stats().syncs;
    w.cmds(&cmds);
    assert_eq!(w.cons(), w.prod, "the whole queue consumed");
    assert_eq!(w.io.stats().syncs, syncs + 1, "one batch");
}

#[test]
fn pass_through_table_is_exactly_what_translate_passes_unchanged() {
    for op in 0..=255u64 {
        for (w0, w1) in [(op, 0), (op | 0xffff_ffff_ffff_ff00, u64::MAX), (op | 0x1234_5600, 0x77)]
        {
            let c = Command([w0, w1]);
            let unchanged = translate(&c) == HostCommand::Invalidate(c);
            assert_eq!(pass_through(op as u8), unchanged, "opcode {op:#x}");
        }
    }
}

#[test]
fn the_fast_path_does_exactly_what_translate_says() {
    for op in 0..=255u64 {
        for (w0, w1) in [
            (op, 0),
            (op | 0xffff_ffff_ffff_ff00, u64::MAX),
            (op | 0x1234_5600, 0x77),
            (op | 2 << 12 | 0xf << 24 | 3 << 22, 0), // Linux's CMD_SYNC fields
            (op | 1 << 12, 0),                       // CMD_SYNC with an interrupt
        ] {
            let c = Command([w0, w1]);
            let want = match translate(&c) {
                HostCommand::Invalidate(x) => Some(x),
                HostCommand::Sync | HostCommand::Nothing => Some(Command::sync()),
                HostCommand::RefreshStes { .. } | HostCommand::Illegal(_) => None,
            };
            assert_eq!(for_guest_path(&c), want, "{c:x?}");
        }
    }
}

/// `c` with field `f` set to `v`.
fn with(mut c: Command, f: host_abi::smmu::Field, v: u64) -> Command {
    f.set(&mut c.0, v);
    c
}

#[test]
fn a_sync_completes_by_polling_sev_or_its_msi() {
    let sync = Command::sync();
    assert_eq!(translate(&sync), HostCommand::Sync);
    assert_eq!(translate(&with(sync, cmd::SYNC_CS, 2)), HostCommand::Sync, "SEV");
    let ill = HostCommand::Illegal(cerror::ILL);
    // CS = SIG_IRQ with IDR0.MSI: the MSI write (its address is the planner's to check).
    assert_eq!(translate(&with(sync, cmd::SYNC_CS, 1)), HostCommand::Sync, "SIG_IRQ");
    let msi = msi_sync(0x4460_0000, 0x40);
    assert_eq!(translate(&msi), HostCommand::Sync);
    assert_eq!(crate::iommu::emulated::plan::msi_of(&msi), Some((0x4460_0000, 0x40)));
    assert_eq!(for_guest_path(&msi), Some(Command::sync()), "a plain SYNC on the guests' path");
    // Only CS = SIG_IRQ writes anything: an address and data beside another CS mean nothing.
    for cs in [0, 2] {
        let c = with(msi, cmd::SYNC_CS, cs);
        assert_eq!(translate(&c), HostCommand::Sync);
        assert_eq!(crate::iommu::emulated::plan::msi_of(&c), None, "CS {cs}");
    }
    // CS = 0b11 is reserved: illegal, not a SYNC.
    assert_eq!(translate(&with(sync, cmd::SYNC_CS, 3)), ill, "reserved CS");
    assert_eq!(for_guest_path(&with(sync, cmd::SYNC_CS, 3)), None);
    // MSH and MSIATTR say how the MSI is written: accepted; a reserved bit is not, and an MSI
    // address is 4-byte aligned (word 1 bits 1:0 are RES0).
    assert_eq!(translate(&with(sync, cmd::SYNC_MSH, 3)), HostCommand::Sync);
    assert_eq!(translate(&with(sync, cmd::SYNC_MSIATTR, 0xf)), HostCommand::Sync);
    assert_eq!(translate(&Command([0x46 | 1 << 8, 0])), ill, "word 0 bit 8 is RES0");
    assert_eq!(translate(&Command([0x46, 1])), ill, "word 1 bit 0 is RES0");
    assert_eq!(translate(&Command([msi.0[0], msi.0[1] | 2])), ill, "a misaligned MSI address");
}

/// A CMD_SYNC as Linux's driver writes it with MSI polling: CS = SIG_IRQ, inner shareable,
/// write-back, `data` to be written at `addr`.
fn msi_sync(addr: u64, data: u32) -> Command {
    let mut c = with(Command::sync(), cmd::SYNC_CS, cmd::SYNC_CS_IRQ);
    cmd::SYNC_MSH.set(&mut c.0, 3);
    cmd::SYNC_MSIATTR.set(&mut c.0, 0xf);
    cmd::SYNC_MSIADDR.set(&mut c.0, addr >> 2);
    cmd::SYNC_MSIDATA.set(&mut c.0, data as u64);
    c
}

impl World {
    /// `cs` then a CMD_SYNC whose MSI (data 0) goes to its own entry, as Linux's driver issues
    /// it with MSI polling; returns that entry.
    fn cmds_with_msi_sync(&mut self, cs: &[Command]) -> u64 {
        let at = CMDQ + ((self.prod + cs.len() as u32) & 0xff) as u64 * 16;
        let mut all = cs.to_vec();
        all.push(msi_sync(at, 0));
        self.cmds(&all);
        at
    }

    /// The 32-bit word at `a` (behind any cache: what the host sees).
    fn word(&self, a: u64) -> u32 {
        self.ram.get(a) as u32
    }
}

#[test]
fn an_msi_sync_writes_its_data_into_the_hosts_ram_once_the_commands_before_it_completed() {
    let mut w = World::new();
    w.linux_reset();
    let vmid = MANIFEST.vms[0].vmid();
    let sent = w.io.regs_mut().consumed.len();
    // As Linux polls: the SYNC's own entry, data 0.
    let tlbi = Command::tlbi_nh_va(0, 1, 0x1000);
    let at = w.cmds_with_msi_sync(&[tlbi]);
    assert_ne!(msi_sync(at, 0).0[0] as u32, 0, "the SYNC's first word before completion");
    let before_w1 = w.ram.get(at + 8);
    assert_eq!(w.v.counters.cons_reads, 0);
    assert_eq!(w.word(at), 0, "the MSI: MSIDATA at MSIADDR");
    assert_eq!(w.ram.get(at) >> 32, 0, "32 bits written: the rest of the entry is as it was");
    assert_eq!(w.ram.get(at + 8), before_w1);
    assert_eq!(w.v.counters.msi_writes, 1);
    assert_eq!(w.cons(), w.prod, "and CONS passed it");
    let real: Vec<[u64; 2]> = w.io.regs_mut().consumed[sent..].to_vec();
    assert_eq!(real[0], Command::tlbi_nh_va(vmid, 1, 0x1000).0, "the TLBI first, then the SYNC");
    // Any data, any 4 bytes of its RAM; exactly those four bytes.
    let a = 0x4460_0010;
    w.ram.put(a - 8, &[u64::MAX, u64::MAX, u64::MAX]);
    w.cmds(&[msi_sync(a, 0xdead_beef)]);
    assert_eq!(w.ram.get(a), 0xffff_ffff_dead_beef);
    assert_eq!((w.ram.get(a - 8), w.ram.get(a + 8)), (u64::MAX, u64::MAX), "nothing beside");
    // Its last four bytes below the shadow CDs, its last four bytes.
    for a in [HOST.shadow_cds().base - 4, HOST.mem.base] {
        w.cmds(&[msi_sync(a, 0x1234_5678)]);
        assert_eq!(w.word(a), 0x1234_5678, "{a:#x}");
    }
    assert_eq!(w.v.counters.msi_writes, 4);
    assert_eq!(w.v.counters.command_errors, 0);
    // A command refused before the SYNC stops the queue there: the SYNC never completes, no
    // MSI is written.
    let at = w.cmds_with_msi_sync(&[Command::tlbi_s12_vmall(5)]);
    assert_ne!(w.word(at), 0, "no MSI");
    assert_eq!(w.cons() >> 24 & 0x7f, cerror::ILL);
    assert_eq!(w.v.counters.msi_writes, 4);
}

#[test]
fn an_msi_outside_the_hosts_own_ram_stops_the_queue_and_writes_nothing() {
    let guest = &MANIFEST.vms[1];
    let cases = [
        (0x4020_0000, "the hypervisor's image"),
        (guest.mem.base + 0x1000, "a guest's RAM"),
        (HOST.mem.end(), "just past the host's RAM"),
        (HOST.mem.base - 4, "just below it"),
        (HOST.shadow_cds().base, "the hypervisor's shadow CDs in the host's RAM"),
        (HOST.shadow_cds().end() - 4, "their last word"),
        (0, "address 0"),
    ];
    for (addr, what) in cases {
        let mut w = World::new();
        w.linux_reset();
        let (errors, cons) = (w.v.counters.command_errors, w.cons());
        w.cmds(&[Command::tlbi_nh_asid(0, 1), msi_sync(addr, 0xdead_beef), Command::sync()]);
        assert_eq!(w.cons(), (cons + 1) | cerror::ILL << 24, "{what}: stopped on the SYNC");
        assert_eq!(
            w.r(off::GERROR) as u32 ^ w.r(off::GERRORN) as u32,
            Gerror::CMDQ_ERR.bits(),
            "{what}"
        );
        assert_eq!(w.v.counters.command_errors, errors + 1, "{what}");
        assert_eq!(w.v.counters.msi_refused, 1, "{what}: counted with its reason");
        assert_eq!(w.v.counters.msi_writes, 0, "{what}");
        assert!(
            (0..4).all(|i| !w.ram.bytes.borrow().contains_key(&(addr + i))),
            "{what}: nothing written at {addr:#x}"
        );
        let notices = w.v.take_notices();
        assert!(
            notices
                .iter()
                .flatten()
                .any(|n| matches!(n, Notice::MsiRefused { addr: a, .. } if *a == addr)),
            "{what}: {notices:?}"
        );
    }
    // Misaligned: the address field cannot say so (bits 51:2), its RES0 bits 1:0 set are an
    // illegal command; the checked write refuses a misaligned or straddling word itself.
    let mut w = World::new();
    w.linux_reset();
    let mut c = msi_sync(0x4460_0000, 1);
    c.0[1] |= 2;
    w.cmds(&[c]);
    assert_eq!(w.cons() >> 24 & 0x7f, cerror::ILL);
    assert_eq!(w.word(0x4460_0000), 0);
    let mut mem = HostMemory { spec: HOST, mem: &mut w.ram };
    for a in [0x4460_0002, HOST.mem.end() - 2, HOST.shadow_cds().base - 2] {
        assert!(mem.write_word(a, 7).is_err(), "{a:#x}");
        assert!(mem.word_target(a).is_none(), "{a:#x}");
    }
    assert!(
        mem.word_target(HOST.mem.end() - 4).is_some() && mem.word_target(HOST.mem.end()).is_none()
    );
    assert!(mem.write_word(0x4460_0004, 7).is_ok());
    assert_eq!(w.ram.get(0x4460_0000), 7 << 32, "the aligned word, nothing else");
}

#[test]
fn syncs_without_an_msi_complete_as_before_whatever_address_they_carry() {
    let mut w = World::new();
    w.linux_reset();
    for cs in [cmd::SYNC_CS_NONE, cmd::SYNC_CS_SEV] {
        // An address (even the hypervisor's) and data beside CS none or SEV: nothing written.
        for addr in [0x4460_0000, 0x4020_0000] {
            let c = with(msi_sync(addr, 0xdead_beef), cmd::SYNC_CS, cs);
            let cons = w.cons();
            w.cmds(&[Command::tlbi_nh_asid(0, 1), c]);
            assert_eq!(w.cons(), cons + 2, "CS {cs}: consumed");
            assert!(!w.ram.bytes.borrow().contains_key(&addr), "CS {cs}: nothing at {addr:#x}");
        }
    }
    assert_eq!((w.v.counters.msi_writes, w.v.counters.msi_refused), (0, 0));
    assert_eq!(w.v.counters.command_errors, 0);
    assert!(!w.v.wants_continuation());
}

#[test]
fn a_non_coherent_hosts_msi_reaches_memory() {
    // Linux does not poll an MSI on a non-coherent SMMU, but one the host asks for is written
    // as its event records are: cleaned to memory, where a non-cacheable mapping reads it.
    let mut w = World::behind_el2_cache(false);
    w.linux_reset();
    let at = w.cmds_with_msi_sync(&[Command::tlbi_nh_asid(0, 1)]);
    assert_eq!(w.ram.memory(at) as u32 | (w.ram.memory(at + 1) as u32) << 8, 0);
    assert_eq!(w.word(at), 0, "in memory, behind the hypervisor's cache");
    assert_eq!(w.v.counters.msi_writes, 1);
}

/// A queue the budget stops: triples of CFGI_ALL (a refresh of each stream before what follows),
/// a TLBI and a CMD_SYNC whose MSI goes to its own entry, `n` of them; their SYNC entries.
fn triples(w: &mut World, n: usize) -> Vec<u64> {
    let mut syncs = Vec::new();
    let mut cs = Vec::new();
    for i in 0..n {
        cs.push(Command::cfgi_all());
        cs.push(Command::tlbi_nh_asid(0, 1));
        let at = CMDQ + ((w.prod + cs.len() as u32) & 0xff) as u64 * 16;
        cs.push(msi_sync(at, i as u32 & 1));
        syncs.push(at);
    }
    w.cmds(&cs);
    syncs
}

#[test]
fn a_budget_stopped_queue_of_a_host_polling_its_msis_finishes_without_any_cons_read() {
    let mut w = World::with_streams(&[0x10, 0x28, 0x30]);
    w.linux_reset();
    let stops = w.v.counters.budget_stops;
    let syncs = triples(&mut w, 40);
    assert!(w.v.counters.budget_stops > stops, "the PROD write stopped at its budget");
    let first_left = syncs.iter().position(|&a| w.word(a) != 0 && w.word(a) != 1).unwrap();
    assert!(first_left > 0, "the SYNCs the first access reached completed");
    assert!(w.v.wants_continuation(), "it asked for MSIs: the hypervisor goes on by itself");
    // The hypervisor's own interrupt, as often as it asks, each a bounded access; the host
    // never reads CMDQ_CONS.
    let mut rounds = 0;
    while w.v.wants_continuation() {
        let before = w.v.registers().cmdq_ptrs().1.raw();
        w.with_ctx(|v, ctx| v.continue_queue(ctx));
        let moved = w.v.registers().cmdq_ptrs().1.raw().wrapping_sub(before) & 0x1ff;
        assert!(moved > 0 && moved <= ACCESS_BUDGET, "one continuation consumed {moved}");
        rounds += 1;
        assert!(rounds < 120, "no progress");
    }
    assert!(rounds >= 2, "{rounds} continuations");
    for (i, &a) in syncs.iter().enumerate() {
        assert_eq!(w.word(a), i as u32 & 1, "SYNC {i}'s MSI");
    }
    assert_eq!(w.v.counters.cons_reads, 0, "not one CMDQ_CONS read");
    assert_eq!(w.v.counters.continued, 0);
    assert_eq!(w.v.counters.continued_async, rounds);
    assert_eq!(w.v.counters.msi_writes, syncs.len() as u64);
    assert_eq!(w.v.registers().cmdq_ptrs().1.raw(), w.prod, "everything consumed");
    // Nothing left: a continuation does nothing.
    w.with_ctx(|v, ctx| v.continue_queue(ctx));
    assert_eq!(w.v.counters.continued_async, rounds);
}

#[test]
fn a_host_polling_cons_goes_on_with_its_reads_not_the_hypervisors_interrupt() {
    let mut w = World::with_streams(&[0x10, 0x28, 0x30]);
    w.linux_reset();
    // The same queue with CS = SEV syncs: no MSI asked for.
    let mut cs = Vec::new();
    for _ in 0..40 {
        cs.extend([Command::cfgi_all(), Command::tlbi_nh_asid(0, 1), Command::sync()]);
    }
    w.cmds(&cs);
    assert!(w.v.commands_pending(), "the budget stopped it");
    assert!(!w.v.wants_continuation(), "its CONS reads go on");
    w.with_ctx(|v, ctx| v.continue_queue(ctx));
    assert_eq!(w.v.counters.continued_async, 0, "the interrupt does nothing");
    // (The EL2 side goes on at each CMDQ_CONS read: `poll`.)
    let mut reads = 0;
    while w.cons() != w.prod {
        w.with_ctx(|v, ctx| v.poll(ctx));
        reads += 1;
        assert!(reads < 120);
    }
    assert!(reads >= 2 && w.v.counters.continued >= 2);
    // A host that asked for an MSI, then enabled its queue afresh: by CONS again until it asks
    // for one.
    w.cmds_with_msi_sync(&[]);
    w.w(off::CR0, 4, (Cr0::EVENTQEN | Cr0::SMMUEN).bits() as u64);
    w.w(off::CR0, 4, Cr0::RUNNING.bits() as u64);
    w.cmds(&cs);
    assert!(w.v.commands_pending() && !w.v.wants_continuation());
}

#[test]
fn commands_the_emulated_smmu_executes_itself_check_their_fields() {
    let ill = HostCommand::Illegal(cerror::ILL);
    // CFGI_STE and CFGI_STE_RANGE with SSec = 1 name the secure stream table, which the
    // non-secure queue cannot reach: illegal.
    let cfgi = Command::cfgi_ste(0x10);
    assert_eq!(translate(&cfgi), HostCommand::RefreshStes { first: 0x10, count: 1 });
    assert_eq!(translate(&with(cfgi, cmd::SSEC, 1)), ill, "CFGI_STE SSec");
    assert_eq!(translate(&with(Command::cfgi_all(), cmd::SSEC, 1)), ill, "CFGI_ALL SSec");
    assert_eq!(translate(&Command([cfgi.0[0], 1 << 5])), ill, "CFGI_STE word 1 bit 5");
    assert_eq!(translate(&Command([0x04, 1 << 5])), ill, "CFGI_STE_RANGE word 1 bit 5");
    // Prefetches are hints: legal, nothing to do (both of them), unless secure or reserved.
    let pf_cfg = Command([0x01 | 0x10 << 32, 0]);
    let pf_addr = Command([0x02 | 0x10 << 32 | 1 << 11 | 5 << 12, 0x4400_0000 | 3 << 5 | 2]);
    assert_eq!(translate(&pf_cfg), HostCommand::Nothing);
    assert_eq!(translate(&pf_addr), HostCommand::Nothing, "PREFETCH_ADDR is legal");
    assert_eq!(for_guest_path(&pf_addr), Some(Command::sync()));
    assert_eq!(translate(&with(pf_cfg, cmd::SSEC, 1)), ill);
    assert_eq!(translate(&with(pf_addr, cmd::SSEC, 1)), ill);
    assert_eq!(for_guest_path(&with(pf_addr, cmd::SSEC, 1)), None);
    assert_eq!(translate(&Command([0x01, 1])), ill, "PREFETCH_CONFIG word 1 is RES0");
    assert_eq!(translate(&Command([0x02, 1 << 10])), ill, "PREFETCH_ADDR word 1 bit 10");
    // TLBI_NSNH_ALL has nothing but its opcode.
    assert_eq!(
        translate(&Command::tlbi_nsnh_all()),
        HostCommand::Invalidate(Command::tlbi_nh_all(0))
    );
    assert_eq!(translate(&Command([0x30 | 1 << 32, 0])), ill);
    assert_eq!(for_guest_path(&Command([0x30 | 1 << 32, 0])), None);
}

#[test]
fn a_prefetch_addr_in_the_hosts_queue_completes_like_prefetch_config() {
    let mut w = World::new();
    w.linux_reset();
    let pf_addr = Command([0x02 | 0x10 << 32, 0x4400_0000]);
    let before = w.v.counters.command_errors;
    w.cmds(&[pf_addr, Command([0x01 | 0x10 << 32, 0]), Command::sync()]);
    assert_eq!(w.cons(), w.prod, "consumed, the queue did not stop");
    assert_eq!(w.v.counters.command_errors, before);
}

/// A host that owns a queue of 2^`log2` entries (at CMDQ, the rest of the world as Linux left
/// it), filled with `c` from CONS on, PROD written once.
fn flood(w: &mut World, log2: u32, c: Command) {
    w.w(off::CR0, 4, (Cr0::EVENTQEN | Cr0::SMMUEN).bits() as u64);
    w.w(off::CMDQ_BASE, 8, CMDQ | log2 as u64);
    w.w(off::CMDQ_PROD, 4, 0);
    w.w(off::CMDQ_CONS, 4, 0);
    w.w(off::CR0, 4, Cr0::RUNNING.bits() as u64);
    let n = 1u64 << log2;
    for i in 0..n {
        w.ram.put(CMDQ + i * 16, &c.0);
    }
    // Every entry: PROD one lap ahead of CONS (wrap bit set, same index).
    w.w(off::CMDQ_PROD, 4, n);
}

#[test]
fn a_queue_full_of_cfgi_all_is_consumed_a_bounded_amount_per_access() {
    let mut w = World::with_streams(&[0x10, 0x28, 0x30]);
    w.linux_reset();
    for sid in [0x10, 0x28, 0x30] {
        w.host_ste(sid, Ste::default().with_v(1).with_config(SteConfig::Bypass));
    }
    let shadowed = w.v.counters.stes_shadowed;
    let consumed = w.io.regs_mut().consumed.len();
    let log2 = 12;
    flood(&mut w, log2, Command::cfgi_all());
    // The PROD write did one access's work: at most ACCESS_BUDGET commands, and each stream
    // refreshed once.
    let after_prod = w.v.counters.stes_shadowed - shadowed;
    let took = w.cons() & 0xfff;
    assert!(took > 0 && took <= ACCESS_BUDGET, "one access consumed {took}");
    assert_eq!(after_prod, 3, "the run of CFGI_ALL refreshed each stream once");
    assert_eq!(w.v.counters.budget_stops, 1);
    // Identity now (the STEs were read once): the run's real work was three installs.
    assert_eq!(
        ste::effective(&w.shadow(0x28)),
        ste::effective(&ste::encode(&Domain::Identity, &s2(0)))
    );
    // The host polls CONS: each poll is one more bounded access, until the queue is empty.
    let mut polls = 0;
    let mut last = took;
    loop {
        let mut ctx = Context { mem: HostMemory { spec: HOST, mem: &mut w.ram }, smmu: &mut w.io };
        w.v.poll(&mut ctx);
        polls += 1;
        let cons = w.v.read(off::CMDQ_CONS, 4) as u32;
        let moved = (cons.wrapping_sub(last)) & 0x1fff;
        assert!(moved <= ACCESS_BUDGET, "a poll consumed {moved}");
        last = cons;
        if cons == 1 << log2 {
            break;
        }
        assert!(polls < 1 << log2, "no progress");
    }
    assert!(polls >= (1 << log2) / ACCESS_BUDGET as usize - 1, "{polls} polls");
    assert_eq!(w.v.counters.continued, polls as u64);
    // Each access refreshed each stream once: never a refresh per command.
    let refreshes = w.v.counters.stes_shadowed - shadowed;
    assert_eq!(refreshes, 3 * (polls as u64 + 1));
    // An unchanged STE needs no CFGI on the real SMMU: the flood sent next to nothing.
    assert!(w.io.regs_mut().consumed.len() - consumed < 64);
    // A poll of an empty queue does nothing.
    let mut ctx = Context { mem: HostMemory { spec: HOST, mem: &mut w.ram }, smmu: &mut w.io };
    w.v.poll(&mut ctx);
    assert_eq!(w.v.counters.continued, polls as u64);
}

#[test]
fn repeated_cfgi_of_one_stream_refreshes_it_once_and_before_what_follows() {
    let mut w = World::new();
    w.linux_reset();
    let vmid = MANIFEST.vms[0].vmid();
    w.host_ste(0x10, Ste::default().with_v(1).with_config(SteConfig::Bypass));
    let shadowed = w.v.counters.stes_shadowed;
    let consumed = w.io.regs_mut().consumed.len();
    let mut cs = vec![Command::cfgi_ste(0x10); 50];
    cs.push(Command::sync());
    cs.extend([Command::cfgi_ste(0x10), Command::sync(), Command::cfgi_all()]);
    cs.push(Command::tlbi_nh_asid(0, 9));
    cs.push(Command::sync());
    w.cmds(&cs);
    assert_eq!(w.cons(), w.prod);
    assert_eq!(w.v.counters.stes_shadowed - shadowed, 1, "53 CFGIs, SYNCs between: one refresh");
    // The refresh (an STE change: CFGI_STE on the real SMMU) came before the TLBI after it.
    let sent: Vec<[u64; 2]> = w.io.regs_mut().consumed[consumed..].to_vec();
    let cfgi = sent.iter().position(|c| *c == Command::cfgi_ste(0x10).0).expect("installed");
    let tlbi = sent.iter().position(|c| *c == Command::tlbi_nh_asid(vmid, 9).0).expect("sent");
    assert!(cfgi < tlbi, "{sent:x?}");
    // A CFGI after the TLBI is a second refresh.
    w.cmds(&[Command::cfgi_ste(0x10), Command::tlbi_nh_asid(0, 1), Command::cfgi_ste(0x10)]);
    assert_eq!(w.v.counters.stes_shadowed - shadowed, 3);
}

#[test]
fn two_thousand_illegal_commands_give_one_log_line() {
    let mut w = World::new();
    w.linux_reset();
    let bad = Command([0x28 | 2 << 32, 0]); // TLBI_S12_VMALL: not advertised
    let mut lines = 0;
    for _ in 0..2000 {
        w.cmds(&[bad]);
        let cons = w.cons();
        assert_eq!(cons >> 24 & 0x7f, cerror::ILL);
        lines += w.v.take_notices().iter().flatten().count();
        // Linux's recovery: the command becomes a SYNC, the error is acknowledged.
        w.ram.put(CMDQ + (cons & 0xff) as u64 * 16, &Command::sync().0);
        let gerror = w.r(off::GERROR);
        w.w(off::GERRORN, 4, gerror);
        assert_eq!(w.cons() & 0x1ff, w.prod);
    }
    assert_eq!(w.v.counters.command_errors, 2000);
    assert_eq!(lines, 1, "one line, the rest counted");
    assert_eq!(w.v.counters.notices_unlogged, 1999);
    // A refusal of another kind is still logged (once).
    w.cmds(&[with(Command::cfgi_ste(0x10), cmd::SSEC, 1)]);
    assert_eq!(w.v.take_notices().iter().flatten().count(), 0, "also CERROR_ILL: counted");
    w.host_ste(0x10, Ste::default().with_v(1).with_config(SteConfig::S2));
    let cons = w.cons();
    w.ram.put(CMDQ + (cons & 0xff) as u64 * 16, &Command::sync().0);
    let gerror = w.r(off::GERROR);
    w.w(off::GERRORN, 4, gerror);
    w.cmds(&[Command::cfgi_ste(0x10), Command::cfgi_ste(0x10), Command::sync()]);
    w.cmds(&[Command::cfgi_ste(0x10)]);
    let n = w.v.take_notices();
    assert_eq!(n.iter().flatten().count(), 1, "{n:?}");
    assert!(matches!(n[0], Some(Notice::SteRefused { sid: 0x10, .. })));
}

#[test]
fn cfgi_ste_range_covers_its_aligned_power_of_two() {
    let range = |sid: u32, r: u64| translate(&with(Command::cfgi_ste(sid), cmd::RANGE, r));
    let refresh = |first, count| HostCommand::RefreshStes { first, count };
    // CFGI_STE_RANGE: 2^(Range + 1) streams from SID aligned down to that size.
    let cfgi_range = |sid: u32, r: u64| {
        let mut c = with(Command::cfgi_all(), cmd::SID, sid as u64);
        cmd::RANGE.set(&mut c.0, r);
        translate(&c)
    };
    assert_eq!(cfgi_range(0x25, 3), refresh(0x20, 16));
    assert_eq!(cfgi_range(0x25, 0), refresh(0x24, 2));
    assert_eq!(cfgi_range(0xffff_ffff, 30), refresh(0x8000_0000, 1 << 31));
    // Range 31: every stream (CFGI_ALL).
    assert_eq!(cfgi_range(0x25, 31), refresh(0, 1 << 32));
    assert_eq!(translate(&Command::cfgi_all()), refresh(0, 1 << 32));
    // CFGI_STE: its one stream (its RANGE bits are LEAF and reserved).
    assert_eq!(range(0x25, 1), refresh(0x25, 1));
}

#[test]
fn host_memory_is_reached_in_any_length() {
    let mut ram = Ram::default();
    let base = HOST.mem.base + 0x1000;
    let words: Vec<u64> = (1..=12).collect();
    let mut m = HostMemory { spec: HOST, mem: &mut ram };
    m.write(base, &words).unwrap();
    let mut back = [0u64; 12];
    m.read(base, &mut back).unwrap();
    assert_eq!(back[..], words[..]);
    for (i, w) in words.iter().enumerate() {
        assert_eq!(ram.get(base + i as u64 * 8), *w, "word {i}");
    }
    let mut m = HostMemory { spec: HOST, mem: &mut ram };
    let end = HOST.mem.base + HOST.mem.size;
    assert_eq!(m.read(end - 8, &mut back[..2]), Err(MemFault { addr: end - 8 }));
    assert_eq!(m.write(end, &words[..1]), Err(MemFault { addr: end }));
}

#[test]
fn the_hosts_ram_is_not_reached_through_another_vms_memory() {
    use crate::vm::memory::ServingOnly;
    let mut ram = Ram::default();
    let base = HOST.mem.base + 0x1000;
    ram.put(base, &[7, 8]);
    let mut back = [0u64; 2];
    // The host's RAM through memory that serves guest 1: a fault, nothing read or written.
    let mut other = ServingOnly { vm: 1, mem: &mut ram };
    let mut m = HostMemory { spec: HOST, mem: &mut other };
    assert_eq!(m.read(base, &mut back), Err(MemFault { addr: base }));
    assert_eq!(m.write(base, &[9, 9]), Err(MemFault { addr: base }));
    assert_eq!(back, [0, 0]);
    assert_eq!([ram.get(base), ram.get(base + 8)], [7, 8]);
    // Guest 1's RAM through the host's memory: a fault too.
    let g1 = &MANIFEST.vms[1];
    let mut m = HostMemory { spec: g1, mem: &mut ram };
    assert_eq!(m.read(g1.mem.base, &mut back), Err(MemFault { addr: g1.mem.base }));
    assert_eq!(m.write(g1.mem.base, &[9]), Err(MemFault { addr: g1.mem.base }));
    assert!(
        ram.bytes.borrow().keys().all(|a| HOST.mem.contains_range(*a, 1)),
        "nothing of guest 1's"
    );
    // The emulated SMMU given another VM's memory: the host's command is not fetched (the
    // fetch aborts, as for a queue outside its RAM) and nothing reaches the SMMU.
    let mut w = World::new();
    w.linux_reset();
    let sent = w.io.regs_mut().consumed.len();
    w.ram.put(CMDQ + (w.prod & 0xff) as u64 * 16, &Command::tlbi_nh_all(0).0);
    w.prod = (w.prod + 1) & 0x1ff;
    let prod = w.prod as u64;
    let mut other = ServingOnly { vm: 1, mem: &mut w.ram };
    let mut ctx = Context { mem: HostMemory { spec: HOST, mem: &mut other }, smmu: &mut w.io };
    w.v.write(off::CMDQ_PROD, 4, prod, &mut ctx);
    assert_eq!(w.cons() >> 24 & 0x7f, cerror::ABT);
    assert_eq!(w.io.regs_mut().consumed.len(), sent, "nothing sent");
}

#[test]
fn sixty_four_bit_registers_are_read_and_written_whole() {
    let mut w = World::new();
    let strtab = STRTAB | 1 << 62;
    w.w(off::STRTAB_BASE, 8, strtab);
    w.w(off::CMDQ_BASE, 8, 1 << 62 | CMDQ | 8);
    assert_eq!(w.v.read(off::STRTAB_BASE, 8), strtab);
    assert_eq!(w.v.read(off::CMDQ_BASE, 8), 1 << 62 | CMDQ | 8);
    assert_eq!(w.r(off::STRTAB_BASE + 4), 1 << 30, "the upper half");
    assert_eq!(w.v.registers().strtab_base(), strtab);
    assert_eq!(w.v.counters.unknown_accesses, 0);
}

#[test]
fn commands_written_while_the_queue_is_disabled_run_when_it_is_enabled() {
    let mut w = World::new();
    w.linux_reset();
    let vmid = MANIFEST.vms[0].vmid();
    w.w(off::CR0, 4, (Cr0::SMMUEN | Cr0::EVENTQEN).bits() as u64);
    let n = w.io.regs_mut().consumed.len();
    let cons = w.cons();
    w.cmds(&[Command::tlbi_nh_asid(0, 5), Command::sync()]);
    assert_eq!(w.cons(), cons, "disabled: nothing consumed");
    w.w(off::CR0, 4, Cr0::RUNNING.bits() as u64);
    assert_eq!(w.cons(), w.prod);
    assert_eq!(
        &w.io.regs_mut().consumed[n..],
        [Command::tlbi_nh_asid(vmid, 5).0, Command::sync().0]
    );
}

#[test]
fn a_cfgi_reads_the_stes_of_its_streams_only() {
    static STREAMS: [u32; 3] = [0x10, 0x11, 0x12];
    let mut w = World::with_streams(&STREAMS);
    w.linux_reset();
    let bypass = Ste::default().with_v(1).with_config(SteConfig::Bypass);
    for sid in STREAMS {
        w.host_ste(sid, bypass);
    }
    let before = w.v.counters.stes_shadowed;
    // 0x10 and 0x11 (2 streams from 0x11 aligned down); 0x12 keeps its STE until its own CFGI.
    let mut range = Command::cfgi_all();
    cmd::RANGE.set(&mut range.0, 0);
    cmd::SID.set(&mut range.0, 0x11);
    w.cmds(&[range, Command::sync()]);
    assert_eq!(w.v.counters.stes_shadowed, before + 2);
    assert_eq!(w.shadow(0x10), ste::encode(&Domain::Identity, &s2(0)));
    assert_eq!(w.shadow(0x11), ste::encode(&Domain::Identity, &s2(0)));
    assert_eq!(ste::effective(&w.shadow(0x12)), None, "not invalidated: not read");
    w.cmds(&[Command::cfgi_ste(0x12), Command::sync()]);
    assert_eq!(w.v.counters.stes_shadowed, before + 3);
    assert_eq!(w.shadow(0x12), ste::encode(&Domain::Identity, &s2(0)));
}

#[test]
fn a_first_command_refused_sends_nothing() {
    let mut w = World::new();
    w.linux_reset();
    let start = w.cons();
    let (n, syncs) = (w.io.regs_mut().consumed.len(), w.io.stats().syncs);
    w.cmds(&[Command::cfgi_cd(0x18, 0), Command::tlbi_nh_asid(0, 7)]);
    assert_eq!(w.cons(), start | cerror::ILL << 24, "stopped on the first");
    assert_eq!(w.io.regs_mut().consumed.len(), n, "nothing reached the SMMU");
    assert_eq!(w.io.stats().syncs, syncs, "not even a SYNC");
}

#[test]
fn a_batch_the_real_smmu_fails_stops_the_hosts_queue_on_its_last_command() {
    let mut w = World::new();
    w.linux_reset();
    let start = w.cons();
    // The real SMMU loses power just before the batch's PROD write.
    let writes = w.io.regs_mut().writes.len();
    w.io.regs_mut().lose_power_before_write = Some(writes);
    w.cmds(&[
        Command::tlbi_nh_asid(0, 1),
        Command::tlbi_nh_asid(0, 2),
        Command::tlbi_nh_asid(0, 3),
    ]);
    assert_eq!(w.cons(), (start + 2) | cerror::ILL << 24);
    assert_eq!(w.v.counters.command_errors, 1);
    assert!(w.io.regs_mut().smmu.cr0().contains(Cr0::RUNNING), "the real SMMU recovered");
    // As Linux sends them (invalidations, then a SYNC completing with an MSI): the queue stops
    // on the SYNC, whose MSI is never written.
    // (Linux's recovery first: the command replaced with a SYNC, the error acknowledged.)
    w.ram.put(CMDQ + ((start + 2) & 0xff) as u64 * 16, &Command::sync().0);
    let gerror = w.r(off::GERROR);
    w.w(off::GERRORN, 4, gerror);
    let start = w.cons();
    assert_eq!(start, w.prod, "drained");
    let writes = w.io.regs_mut().writes.len();
    w.io.regs_mut().lose_power_before_write = Some(writes);
    let msis = w.v.counters.msi_writes;
    let at = w.cmds_with_msi_sync(&[Command::tlbi_nh_asid(0, 1), Command::tlbi_nh_asid(0, 2)]);
    assert_eq!(w.cons(), (start + 2) | cerror::ILL << 24, "stopped on the SYNC");
    assert_ne!(w.word(at), 0, "no MSI");
    assert_eq!((w.v.counters.msi_writes, w.v.counters.command_errors), (msis, 2));
}

#[test]
fn a_consumer_write_delivers_the_records_that_arrived() {
    let mut w = World::new();
    w.linux_reset();
    w.host_ste(0x10, Ste::default().with_v(1).with_config(SteConfig::Bypass));
    w.cmds(&[Command::cfgi_ste(0x10), Command::sync()]);
    let _ = w.v.take_irqs();
    // The host's device faults twice; the host's next EVTQ_CONS write finds the records.
    for i in 0..2u64 {
        w.io.regs_mut().post_event([0x10 | 0x10 << 32, 0, 0x1000 * i, 0]);
    }
    w.w(off::EVTQ_CONS, 4, 0);
    assert_eq!(w.r(off::EVTQ_PROD), 2);
    assert_eq!(w.ram.get(EVTQ + 32 + 16), 0x1000);
    assert!(w.v.take_irqs().eventq);
}

#[test]
fn records_are_delivered_with_one_service_entry_per_sixteen() {
    let mut w = World::new();
    w.linux_reset();
    w.host_ste(0x10, Ste::default().with_v(1).with_config(SteConfig::Bypass));
    w.cmds(&[Command::cfgi_ste(0x10), Command::sync()]);
    // Register reads of the real SMMU while `n` routed records are delivered.
    let cost = |w: &mut World, n: u64| {
        for i in 0..n {
            w.io.regs_mut().post_event([0x10 | 0x10 << 32, 0, i, 0]);
        }
        let _ = w.io.stats(); // routed into the host's ring
        let (reads, delivered) = (w.io.regs_mut().reads, w.v.counters.events_delivered);
        let mut ctx = Context { mem: HostMemory { spec: HOST, mem: &mut w.ram }, smmu: &mut w.io };
        w.v.deliver_events(&mut ctx);
        let cost = w.io.regs_mut().reads - reads;
        let prod = w.r(off::EVTQ_PROD);
        w.w(off::EVTQ_CONS, 4, prod); // the host takes them all
        (cost, w.v.counters.events_delivered - delivered)
    };
    let (one, n) = cost(&mut w, 15);
    assert_eq!(n, 15);
    assert_eq!(cost(&mut w, 16), (one, 16), "16 records: still one service entry");
    let (two, n) = cost(&mut w, 17);
    assert_eq!((two, n), (2 * one, 17));
}

#[test]
fn a_command_the_real_smmu_rejects_after_dropped_syncs_stops_the_hosts_queue_on_it() {
    let mut w = World::new();
    w.linux_reset();
    // SYNCs (and a prefetch) are dropped on the guests' path before the command the real SMMU
    // refuses: the host's queue must stop on that command's own entry, not earlier.
    let at = w.prod;
    let cs = [
        Command::sync(),
        Command::tlbi_nh_all(0),
        Command::sync(),
        Command([0x01 | 0x10 << 32, 0]),
        Command::cfgi_cd(0x10, 0),
        Command::tlbi_nh_asid(0, 4),
        Command::sync(),
    ];
    w.io.regs_mut().reject_opcode = Some(Command::cfgi_cd(0x10, 0).opcode_byte());
    w.cmds(&cs);
    let cons = w.cons();
    assert_eq!(cons >> 24 & 0x7f, cerror::ILL);
    assert_eq!(cons & 0x1ff, (at + 4) & 0x1ff, "stopped on the refused CFGI_CD");
    assert_eq!(w.v.counters.command_errors, 1);
    w.io.regs_mut().reject_opcode = None;
}

#[test]
fn a_refusal_stops_the_queue_on_the_first_refused_command_with_what_came_before_it_sent() {
    // Two refusals in one run: the first in the queue's order is where it stops, and the
    // commands before it reach the SMMU (one submission: every command validated first).
    let mut w = World::new();
    w.linux_reset();
    let vmid = MANIFEST.vms[0].vmid();
    // A CFGI_CD whose CD is now refused, then another VM's stream.
    w.ram.put(CD, &host_cd(1).0);
    w.host_ste(0x10, s1_ste());
    w.cmds(&[Command::cfgi_ste(0x10), Command::sync()]);
    assert_eq!(w.io.domain_of(0x10).map(|d| d.kind()), Some(2));
    w.ram.put(CD, &host_cd(1).with_ips(0b110).0);
    let (at, consumed) = (w.prod, w.io.regs_mut().consumed.len());
    w.cmds(&[
        Command::tlbi_nh_asid(0, 1),
        Command::cfgi_cd(0x10, 0),
        Command::tlbi_nh_asid(0, 2),
        Command::cfgi_cd(0x18, 0),
    ]);
    assert_eq!(w.cons(), (at + 1) & 0x1ff | cerror::ILL << 24, "stopped on the CFGI_CD");
    assert_eq!(ste::effective(&w.shadow(0x10)), None, "its stream blocked");
    let sent = w.io.regs_mut().consumed[consumed..].to_vec();
    assert!(sent.contains(&Command::tlbi_nh_asid(vmid, 1).0), "{sent:x?}");
    assert!(!sent.contains(&Command::tlbi_nh_asid(vmid, 2).0));
    // Linux's recovery skips it; a command the real SMMU rejects, then another VM's stream:
    // it stops on the rejected one.
    let cons = w.cons();
    w.ram.put(CMDQ + (cons & 0xff) as u64 * 16, &Command::sync().0);
    let gerror = w.r(off::GERROR);
    w.w(off::GERRORN, 4, gerror);
    assert_eq!(w.cons() & 0xff, (at + 3) & 0xff, "on the other VM's stream");
    w.ram.put(CMDQ + ((at + 3) & 0xff) as u64 * 16, &Command::sync().0);
    let gerror = w.r(off::GERROR);
    w.w(off::GERRORN, 4, gerror);
    assert_eq!(w.cons(), w.prod);
    w.io.regs_mut().reject_opcode = Some(Command::tlbi_nh_va(0, 0, 0).opcode_byte());
    let at = w.prod;
    w.cmds(&[
        Command::tlbi_nh_asid(0, 3),
        Command::tlbi_nh_va(0, 3, 0x1000),
        Command::tlbi_nh_asid(0, 4),
        Command::cfgi_cd(0x18, 0),
    ]);
    assert_eq!(w.cons(), (at + 1) & 0x1ff | cerror::ILL << 24, "stopped on the rejected TLBI");
    w.io.regs_mut().reject_opcode = None;
}

#[test]
fn every_kind_of_notice_is_its_own_and_fits_the_logged_mask() {
    // Each refusal reason, each CONS.ERR value and each other notice is a different kind (a
    // kind logged once must not hide another), and every kind is a bit of the 64-bit mask.
    let mut all = std::vec![
        Notice::SteUnreadable { sid: 1 },
        Notice::SteInstallFailed { sid: 1 },
        Notice::UnknownRegister { offset: 0 },
    ];
    all.extend(HypError::ALL.iter().map(|&why| Notice::SteRefused { sid: 1, why }));
    all.extend(HypError::ALL.iter().map(|&why| Notice::CdRefused { sid: 1, why }));
    all.extend((0..8).map(|err| Notice::IllegalCommand { cmd: Command::sync(), err }));
    let kinds: std::collections::BTreeSet<u32> = all.iter().map(|n| n.kind()).collect();
    assert_eq!(kinds.len(), all.len(), "two notices share a kind");
    assert!(kinds.iter().all(|&k| k < 64));
    // The kind does not depend on the stream, offset or command.
    assert_eq!(
        Notice::SteRefused { sid: 2, why: HypError::BadConfig }.kind(),
        Notice::SteRefused { sid: 9, why: HypError::BadConfig }.kind()
    );
}

/// A CD as Linux's arm-smmu-v3 writes it for the host's DMA domain (its tables in its RAM).
fn host_cd(asid: u64) -> host_abi::smmu::Cd {
    crate::iommu::validate::linux_cd(0x4450_0000, asid, 0x0000_00f4_0044_04ff)
}

#[test]
fn host_cds_are_shadowed_and_refreshed_only_when_it_says_so() {
    let mut w = World::new();
    w.linux_reset();
    w.ram.put(CD, &host_cd(1).0);
    w.host_ste(0x10, s1_ste());
    w.cmds(&[Command::cfgi_ste(0x10), Command::sync()]);
    let shadow = HOST.shadow_cds();
    assert_eq!(w.shadow(0x10).s1_context_ptr(), shadow.base, "the SMMU walks the shadow");
    assert_eq!(w.io.shadow_cd(0x10, 0), Some(host_cd(1)));
    // Its driver rewrites the CD: nothing changes until its CFGI_CD.
    w.ram.put(CD, &host_cd(2).0);
    w.cmds(&[Command::tlbi_nh_asid(0, 1), Command::sync()]);
    assert_eq!(w.io.shadow_cd(0x10, 0), Some(host_cd(1)));
    w.cmds(&[Command::cfgi_cd(0x10, 0), Command::sync()]);
    assert_eq!(w.io.shadow_cd(0x10, 0), Some(host_cd(2)));
    assert_eq!(w.cons(), w.prod);
    // CFGI_CD_ALL too.
    w.ram.put(CD, &host_cd(3).0);
    w.cmds(&[Command::cfgi_cd_all(0x10), Command::sync()]);
    assert_eq!(w.io.shadow_cd(0x10, 0), Some(host_cd(3)));
    assert_eq!(w.v.counters.cds_refused, 0);
}

#[test]
fn a_refused_host_cd_blocks_its_stream() {
    let mut w = World::new();
    w.linux_reset();
    // At CFGI_STE: a 52-bit IPS (QEMU 10.0.2's SMMU would abort the whole machine on it).
    w.ram.put(CD, &host_cd(1).with_ips(0b110).0);
    w.host_ste(0x10, s1_ste());
    w.cmds(&[Command::cfgi_ste(0x10), Command::sync()]);
    assert_eq!(ste::effective(&w.shadow(0x10)), None);
    assert_eq!(w.v.counters.cds_refused, 1);
    assert!(w
        .v
        .take_notices()
        .contains(&Some(Notice::CdRefused { sid: 0x10, why: HypError::BadConfig })));
    assert_eq!(w.cons(), w.prod, "the queue goes on: the SMMU reads CDs, not commands");
    // A good CD, then a bad one at CFGI_CD: the stream is blocked and the command refused as
    // validation refuses any (CMDQ_ERR, the host's recovery skips it).
    w.ram.put(CD, &host_cd(1).0);
    w.cmds(&[Command::cfgi_ste(0x10), Command::sync()]);
    assert_eq!(w.io.domain_of(0x10).map(|d| d.kind()), Some(2));
    w.ram.put(CD, &host_cd(1).with_ttb0(MANIFEST.vms[1].mem.base).0);
    let at = w.prod;
    w.cmds(&[Command::tlbi_nh_asid(0, 1), Command::cfgi_cd(0x10, 0), Command::sync()]);
    assert_eq!(w.cons() & 0xff, (at + 1) & 0xff, "stopped on the CFGI_CD");
    assert_eq!(ste::effective(&w.shadow(0x10)), None);
    assert_eq!(w.io.shadow_cd(0x10, 0), Some(host_cd(1)), "never a refused CD");
    // Its CD table in the shadow pages: the STE is refused.
    // (Read when it enables its SMMU again.)
    w.host_ste(0x10, s1_ste().with_s1_context_ptr(HOST.shadow_cds().base));
    w.w(off::CR0, 4, Cr0::CMDQEN.bits() as u64);
    w.w(off::CR0, 4, Cr0::RUNNING.bits() as u64);
    assert!(w
        .v
        .take_notices()
        .contains(&Some(Notice::SteRefused { sid: 0x10, why: HypError::BadConfig })));
}

#[test]
fn the_hosts_queues_and_tables_may_not_be_its_shadow_cds() {
    let mut w = World::new();
    w.linux_reset();
    w.host_ste(0x10, Ste::default().with_v(1).with_config(SteConfig::Bypass));
    w.w(off::CR0, 4, Cr0::CMDQEN.bits() as u64);
    w.w(off::STRTAB_BASE, 8, HOST.shadow_cds().base);
    w.w(off::CR0, 4, Cr0::RUNNING.bits() as u64);
    assert_eq!(ste::effective(&w.shadow(0x10)), None);
    assert!(w.v.take_notices().contains(&Some(Notice::SteUnreadable { sid: 0x10 })));
}

/// `n` device-less host streams from 0x100, the edu's 0x10 first.
fn many_streams(n: u32) -> &'static [u32] {
    let v: Vec<u32> = core::iter::once(0x10).chain(0x100..0x100 + n).collect();
    Vec::leak(v)
}

#[test]
fn a_range_refresh_reads_exactly_the_streams_in_it_across_bitmap_words() {
    // 200 streams: the refresh bitmap spans four words; ranges starting and ending inside
    // words, and across them.
    let streams = many_streams(200);
    let mut w = World::with_streams(streams);
    w.linux_reset();
    // The host's stream table must cover SIDs up to 0x1c7: a 512-entry linear table.
    w.w(off::CR0, 4, 0);
    w.w(off::STRTAB_BASE_CFG, 4, strtab_cfg::log2size(9) as u64);
    w.w(off::CR0, 4, Cr0::RUNNING.bits() as u64);
    for (first, range) in [(0x100u32, 3u32), (0x108, 2), (0x140, 5), (0x180, 6), (0x1c0, 2)] {
        let n = 2u32 << range;
        let lo = first & !(n - 1);
        let want = streams.iter().filter(|&&s| s >= lo && s < lo + n).count() as u64;
        let before = w.v.counters.stes_shadowed;
        w.cmds(&[Command([0x04 | (first as u64) << 32, range as u64]), Command::sync()]);
        assert_eq!(w.cons(), w.prod);
        assert_eq!(w.v.counters.stes_shadowed - before, want, "range {first:#x}/{range}");
    }
    // Each stream once, whatever overlaps.
    let before = w.v.counters.stes_shadowed;
    w.cmds(&[
        Command([0x04 | 0x130 << 32, 3]),
        Command([0x04 | 0x138 << 32, 4]),
        Command::cfgi_ste(0x13f),
        Command::cfgi_ste(0x10),
        Command::sync(),
    ]);
    assert_eq!(w.v.counters.stes_shadowed - before, 32 + 1, "0x130..0x150 and 0x10");
    // And the streams refreshed are the ones named (bitmap words beyond the first included):
    // a refused STE says which stream was read.
    let _ = w.v.take_notices();
    w.host_ste(0x1c5, Ste::default().with_v(1).with_config(SteConfig::S2));
    w.cmds(&[Command([0x04 | 0x1c4 << 32, 1]), Command::sync()]);
    let n = w.v.take_notices();
    assert_eq!(n[0], Some(Notice::SteRefused { sid: 0x1c5, why: HypError::ForbiddenField }));
    assert_eq!(n[1], None, "{n:?}");
}

#[test]
fn refreshes_count_against_the_access_budget() {
    // CFGI_ALL and a TLBI alternating: nothing to coalesce, each CFGI_ALL is a refresh of
    // every stream before the TLBI after it. One access stops once refreshes and submissions
    // used its budget: far fewer refreshes than the 256 commands one fetch could hold.
    let mut w = World::with_streams(&[0x10, 0x28, 0x30]);
    w.linux_reset();
    let log2 = 9;
    flood(&mut w, log2, Command::tlbi_nh_all(0));
    for i in (0..1u64 << log2).step_by(2) {
        w.ram.put(CMDQ + i * 16, &Command::cfgi_all().0);
    }
    // (The flood's own PROD write ran on TLBIs only; start again on the mixed queue.)
    w.w(off::CR0, 4, (Cr0::EVENTQEN | Cr0::SMMUEN).bits() as u64);
    w.w(off::CMDQ_PROD, 4, 0);
    w.w(off::CMDQ_CONS, 4, 0);
    w.w(off::CR0, 4, Cr0::RUNNING.bits() as u64);
    let stops = w.v.counters.budget_stops;
    let shadowed_before = w.v.counters.stes_shadowed;
    w.w(off::CMDQ_PROD, 4, 1 << log2);
    let refreshed = w.v.counters.stes_shadowed - shadowed_before;
    let consumed = w.cons() & 0x3ff;
    // Each pair: 2 commands, 3 refreshes, one submission.
    let pair = 2 + 3 * REFRESH_COST + SEND_COST;
    let pairs = ACCESS_BUDGET.div_ceil(pair) as u64;
    assert_eq!(refreshed, 3 * pairs, "refreshes in one access");
    assert_eq!(consumed as u64, 2 * pairs, "commands in one access");
    assert_eq!(w.v.counters.budget_stops, stops + 1);
}

#[test]
fn a_shadow_the_smmu_fails_to_install_is_said_and_counted() {
    let mut w = World::new();
    w.linux_reset();
    w.host_ste(0x10, Ste::default().with_v(1).with_config(SteConfig::Bypass));
    // A hung SMMU: the install's CFGI_STE never completes.
    w.io.regs_mut().hold_commands = true;
    w.cmds(&[Command::cfgi_ste(0x10), Command::sync()]);
    assert_eq!(w.v.counters.ste_installs_failed, 1);
    assert!(w.v.take_notices().contains(&Some(Notice::SteInstallFailed { sid: 0x10 })));
    w.io.regs_mut().hold_commands = false;
}

#[test]
fn an_access_that_empties_the_queue_on_its_budget_is_no_budget_stop() {
    let mut w = World::new();
    w.linux_reset();
    let stops = w.v.counters.budget_stops;
    // 248 TLBIs: 248 units and one submission, exactly the budget; nothing left.
    let n = ACCESS_BUDGET - SEND_COST;
    w.cmds(&vec![Command::tlbi_nh_asid(0, 1); n as usize]);
    assert_eq!(w.cons(), w.prod);
    assert_eq!(w.v.counters.budget_stops, stops, "nothing was left for a later access");
}

#[test]
fn an_access_that_spends_its_budget_on_the_queues_last_command_is_no_budget_stop() {
    // 256 commands (a full queue), each costing one unit (CFGI_STEs of a stream nobody has):
    // the budget is spent on the last, and nothing is left.
    let mut w = World::new();
    w.linux_reset();
    let stops = w.v.counters.budget_stops;
    w.cmds(&[Command::cfgi_ste(0x99); ACCESS_BUDGET as usize]);
    assert_eq!(w.cons(), w.prod);
    assert_eq!(w.v.counters.budget_stops, stops);
    assert_eq!(w.v.counters.commands, 3 + ACCESS_BUDGET as u64);
}

#[test]
fn a_refusal_in_a_later_run_names_its_own_command() {
    let mut w = World::new();
    w.linux_reset();
    // A CFGI_STE first (not for the guests' path): the run after it starts at the second
    // entry fetched, and its second command (another VM's stream) is refused.
    let bad = Command::cfgi_cd(0x18, 0);
    w.cmds(&[Command::cfgi_ste(0x10), Command::tlbi_nh_asid(0, 2), bad, Command::sync()]);
    assert_eq!(w.cons() >> 24 & 0x7f, cerror::ILL);
    let n = w.v.take_notices();
    assert_eq!(n[0], Some(Notice::IllegalCommand { cmd: bad, err: cerror::ILL }), "{n:?}");
}

/// Moves the host's queue (256 entries) to `at` with SYNCs, all consumed.
fn queue_at(w: &mut World, at: u32) {
    while w.prod & 0xff != at {
        w.cmds(&[Command::sync()]);
    }
    assert_eq!(w.cons(), w.prod);
}

#[test]
fn invalidations_gathered_across_the_queue_end_go_before_a_refresh_and_cost_their_submission() {
    let mut w = World::new();
    w.linux_reset();
    let vmid = MANIFEST.vms[0].vmid();
    queue_at(&mut w, 250);
    // A changed STE, so that its refresh sends a CFGI_STE to the real SMMU.
    w.host_ste(0x10, Ste::default().with_v(1).with_config(SteConfig::Bypass));
    let consumed = w.io.regs_mut().consumed.len();
    let start = w.prod;
    // Entries 250..255 and 0..3: ten TLBIs across the queue's end (gathered in two runs), a
    // CFGI_STE, then 245 TLBIs: more than one access's budget.
    let tlbi = |i: u16| Command::tlbi_nh_asid(0, 100 + i);
    let mut cs: Vec<Command> = (0..10).map(tlbi).collect();
    cs.push(Command::cfgi_ste(0x10));
    cs.extend((10..255).map(tlbi));
    w.cmds(&cs);
    // The ten gathered TLBIs reached the SMMU before the refresh's CFGI_STE, and the TLBIs
    // after the CFGI_STE after it.
    let sent: Vec<[u64; 2]> = w.io.regs_mut().consumed[consumed..].to_vec();
    let cfgi = sent.iter().position(|c| *c == Command::cfgi_ste(0x10).0).expect("refreshed");
    let at = |i: u16| sent.iter().position(|c| *c == Command::tlbi_nh_asid(vmid, 100 + i).0);
    assert!(at(9).expect("gathered TLBIs sent") < cfgi, "{sent:x?}");
    assert!(at(10).expect("later TLBIs sent") > cfgi);
    // The access's budget: the 10 gathered TLBIs, the CFGI_STE and their submission (8) leave
    // room for 237 commands in the run after them (its refresh and submission are counted once
    // it is sized: an access may end past its budget by one refresh of each stream and one
    // submission, the documented bound).
    let done = (w.cons().wrapping_sub(start)) & 0x1ff;
    let want = ACCESS_BUDGET - SEND_COST;
    assert_eq!(done, want, "commands consumed by the PROD write");
}

#[test]
fn one_access_delivers_at_most_a_ring_of_host_records() {
    let mut w = World::new();
    w.linux_reset();
    w.host_ste(0x10, Ste::default().with_v(1).with_config(SteConfig::Bypass));
    w.cmds(&[Command::cfgi_ste(0x10), Command::sync()]);
    // The host's device made 2,000 records and nobody entered the service since.
    for i in 0..2000u64 {
        w.io.regs_mut().post_event([0x10 | 0x10 << 32, 0, i, 0]);
    }
    let drained = w.io.driver().counters.events;
    let delivered = w.v.counters.events_delivered;
    let mut ctx = Context { mem: HostMemory { spec: HOST, mem: &mut w.ram }, smmu: &mut w.io };
    w.v.deliver_events(&mut ctx);
    // Its 32-entry queue is filled (one read of 16 would not do it), the rest overflow.
    assert_eq!(w.v.counters.events_delivered - delivered, 32);
    let reads = crate::iommu::service::events::RING_CAPACITY.div_ceil(16) as u64;
    let routed = w.io.driver().counters.events - drained;
    assert!(routed <= reads * crate::iommu::service::DRAIN_PER_ENTRY as u64, "{routed} routed");
    assert!(routed > 0);
}

mod fuzz;
mod plan;
mod smp;

// A non-coherent SMMU: the host (Linux maps its SMMU structures non-cacheable then) writes
// memory behind EL2's cache, and reads it from there.

#[test]
fn a_non_coherent_smmu_is_advertised_without_coherent_access() {
    let mut w = World::behind_el2_cache(false);
    let idr0 = w.r(off::IDR0) as u32;
    assert!(!Idr0(idr0).coherent());
    assert_eq!(idr0, EMULATED_IDR0 & !Idr0::COHACC, "nothing else changes");
    let mut w = World::behind_el2_cache(true);
    assert_eq!(w.r(off::IDR0) as u32, EMULATED_IDR0);
    assert!(Idr0(EMULATED_IDR0).coherent());
}

/// The host rewrites its STE of stream 0x10 (bypass, then abort, then bypass again) and has
/// it read again by turning its SMMU off and on (no command involved): the emulated SMMU reads
/// the same stream-table line each time. The shadow after each rewrite.
fn rewrite_the_ste(w: &mut World) -> Vec<Ste> {
    w.linux_reset();
    let bypass = Ste::default().with_v(1).with_config(SteConfig::Bypass);
    let abort = Ste::default().with_v(1).with_config(SteConfig::Abort);
    let mut shadows = Vec::new();
    for s in [bypass, abort, bypass] {
        w.host_ste(0x10, s);
        w.w(off::CR0, 4, (Cr0::CMDQEN | Cr0::EVENTQEN).bits() as u64);
        w.w(off::CR0, 4, Cr0::RUNNING.bits() as u64);
        shadows.push(w.shadow(0x10));
    }
    shadows
}

/// The host writes its commands one at a time, each with its own PROD write (CFGI_STE of a
/// bypass STE, then CMD_SYNC, three times): the emulated SMMU reads each command-queue line
/// again after the host filled more of it. The commands that stopped the queue, and the shadow.
fn commands_one_at_a_time(w: &mut World) -> (u64, Ste) {
    w.linux_reset();
    w.host_ste(0x10, Ste::default().with_v(1).with_config(SteConfig::Bypass));
    for _ in 0..3 {
        w.cmds(&[Command::cfgi_ste(0x10)]);
        w.cmds(&[Command::sync()]);
    }
    (w.v.counters.command_errors, w.shadow(0x10))
}

#[test]
fn non_coherent_reads_see_what_the_host_wrote_behind_el2s_cache() {
    let identity = ste::encode(&Domain::Identity, &s2(0));
    let blocked = ste::encode(&Domain::Blocked, &s2(0));
    let mut w = World::behind_el2_cache(false);
    assert_eq!(rewrite_the_ste(&mut w), [identity, blocked, identity], "each STE as written");
    let mut w = World::behind_el2_cache(false);
    assert_eq!(commands_one_at_a_time(&mut w), (0, identity), "each command as written");
    assert_eq!(w.cons(), w.prod, "all consumed");
}

#[test]
fn the_cache_model_shows_what_a_coherent_emulation_would_read() {
    // The control: the same host on the coherent path, its memory behind the same cache model,
    // reads lines loaded before the host wrote them (what a missing invalidate would do at
    // EL2): the first STE read (at reset: all zeros, invalid) serves every later one, and a
    // command slot read before the host filled it is opcode 0, illegal.
    let blocked = ste::encode(&Domain::Blocked, &s2(0));
    let mut w = World::behind_el2_cache(true);
    assert_eq!(rewrite_the_ste(&mut w), [blocked, blocked, blocked]);
    let mut w = World::behind_el2_cache(true);
    assert!(commands_one_at_a_time(&mut w).0 > 0);
}

#[test]
fn non_coherent_event_records_reach_memory_before_prod_shows_them() {
    for coherent in [false, true] {
        let mut w = World::behind_el2_cache(coherent);
        w.linux_reset();
        w.host_ste(0x10, Ste::default().with_v(1).with_config(SteConfig::Bypass));
        w.cmds(&[Command::cfgi_ste(0x10), Command::sync()]);
        for i in 0..3u64 {
            w.io.regs_mut().post_event([0x10 | 0x10 << 32, 0, 0x1000 * (i + 1), 0]);
        }
        w.with_ctx(|v, ctx| v.deliver_events(ctx));
        assert_eq!(w.r(off::EVTQ_PROD), 3);
        // The host reads its queue from memory (non-cacheable).
        let seen: Vec<u64> = (0..3u64).map(|i| w.ram.get(EVTQ + i * 32 + 16)).collect();
        if coherent {
            // Control: EL2's records still in its cache, memory unchanged.
            assert_eq!(seen, [0, 0, 0], "coherent path, no clean");
        } else {
            assert_eq!(seen, [0x1000, 0x2000, 0x3000], "cleaned to memory");
            for i in 0..3u64 {
                assert_eq!(w.ram.get(EVTQ + i * 32) >> 32, 0x10, "record {i}: the host's stream");
            }
        }
    }
}

#[test]
fn non_coherent_cd_reads_see_what_the_host_wrote_behind_el2s_cache() {
    // The host's CD (read by the SMMU service through the same memory when it shadows the STE)
    // is rewritten with another ASID, and read again by turning the SMMU off and on. The
    // coherent path over the cache model (the control) shadows the first one again.
    for coherent in [false, true] {
        let mut w = World::behind_el2_cache(coherent);
        // STE and CD in place before the first read of either (the STE is never stale then).
        let ttb = HOST.mem.base + 0x20_0000;
        w.ram.put(CD, &validate::linux_cd(ttb, 5, 0x44).0);
        w.host_ste(0x10, s1_ste());
        w.linux_reset();
        let mut asids = Vec::new();
        for asid in [5, 6, 7] {
            w.ram.put(CD, &validate::linux_cd(ttb, asid, 0x44).0);
            w.w(off::CR0, 4, (Cr0::CMDQEN | Cr0::EVENTQEN).bits() as u64);
            w.w(off::CR0, 4, Cr0::RUNNING.bits() as u64);
            assert_eq!(w.shadow(0x10).config(), Some(SteConfig::Nested));
            asids.push(w.io.shadow_cd(0x10, 0).map(|c| c.asid()));
        }
        let want = if coherent { [Some(5); 3] } else { [Some(5), Some(6), Some(7)] };
        assert_eq!(asids, want, "coherent path: {coherent}");
    }
}
