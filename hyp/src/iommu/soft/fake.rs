//! The driver's test double: the software SMMU ([`SoftSmmu`]) with QEMU's ID registers,
//! executing commands as soon as PROD moves (rejecting opcodes the architecture does not
//! define, as hardware does), recording every register write, barrier and consumed command, and
//! letting tests post events, raise errors and cut power.
//!
//! Unlike QEMU's it is as unforgiving as silicon may be about memory ordering
//! ([`super::visible`]): it reads commands and STEs as the CPU's last publishing barrier left
//! them (a level-1 descriptor possibly earlier: a device may walk it as soon as it is stored),
//! holds the STEs it fetched until a CFGI drops them, and shows the CPU an event record only
//! after the CPU loaded EVENTQ_PROD and executed an acquire barrier. It checks, when dropped,
//! that it never read memory no barrier had published and that no records were given back
//! while their loads could still be pending.
//!
//! [`FakeSmmu::non_coherent`] is a non-coherent one (the driver must drive it so): it sees only
//! what a clean has written back, the CPU sees its event records only after an invalidate, and
//! an event queue whose zeroed lines were never cleaned loses the records the SMMU writes
//! there (a dirty line written back over them).

use super::visible::{Posted, Visible};
use super::{MemFault, SmmuIdRegs, SmmuMemory, SoftSmmu, SteFault, WriteEffect};
use crate::iommu::driver::order::Coherency;
use crate::iommu::driver::{Barrier, SmmuBarriers, SmmuRegs};
use host_abi::smmu::regs::{self, off, strtab_cfg, Cr0, Gbpa, Gerror};
use host_abi::smmu::{cmd, Command, Opcode};
use platform::regs::DmaRange;
use std::collections::BTreeMap;
use std::vec::Vec;

/// The host's own memory, at the addresses the driver hands the SMMU (its heap buffers).
pub struct HostMemory;

impl SmmuMemory for HostMemory {
    fn read(&mut self, addr: u64, out: &mut [u64]) -> Result<(), MemFault> {
        // SAFETY: test-only; the driver gave the SMMU the address of its own live, aligned
        // heap buffer (a queue or table), which is what the fake reads (one copy: a barrier
        // reads every watched range again).
        out.copy_from_slice(unsafe { std::slice::from_raw_parts(addr as *const u64, out.len()) });
        Ok(())
    }
    fn write(&mut self, addr: u64, data: &[u64]) -> Result<(), MemFault> {
        for (i, w) in data.iter().enumerate() {
            // SAFETY: as for `read`: the driver's own event queue.
            unsafe { ((addr + i as u64 * 8) as *mut u64).write_volatile(*w) };
        }
        Ok(())
    }
}

pub struct FakeSmmu {
    /// The SMMU.
    pub smmu: SoftSmmu,
    /// Every register write, in order (`(usize::MAX, 0)` marks a power loss).
    pub writes: Vec<(usize, u32)>,
    /// Register reads so far.
    pub reads: u64,
    /// Every barrier, with the number of register writes before it.
    pub barriers: Vec<(usize, Barrier)>,
    /// Every command consumed, in order (rejected ones excluded).
    pub consumed: Vec<[u64; 2]>,
    /// Stop consuming commands (a hung SMMU).
    pub hold_commands: bool,
    /// Never apply a CR0 write (a hung SMMU: CR0ACK keeps its value).
    pub hold_cr0: bool,
    /// Never complete a GBPA update (a hung SMMU: the value written reads back with UPDATE
    /// set, and is not applied).
    pub hold_gbpa: bool,
    /// A GBPA write held by `hold_gbpa`.
    gbpa_held: Option<u32>,
    /// A power domain that drops just before each of the next this many writes setting SMMUEN
    /// (registers back to reset, GBPA abort).
    pub power_drops_at_smmuen: u32,
    /// The same, before writes setting CMDQEN without SMMUEN (the first enable of a sequence).
    pub power_drops_at_cmdqen: u32,
    /// A slow SMMU: commands held (`hold_commands`) are consumed when CMDQ_CONS is read for
    /// the n-th time from now, just before that read returns.
    pub consume_at_cons_read: Option<u32>,
    /// Lose power (GBPA back to abort) just before the register write with this index in
    /// `writes` (a power cut in the middle of a sequence).
    pub lose_power_before_write: Option<usize>,
    /// An implementation that refuses commands with this opcode (CMDQ_CONS.ERR = ILL), as it
    /// does unknown ones.
    pub reject_opcode: Option<u8>,
    /// What the SMMU can see of the memory it reads.
    pub visible: Visible,
    /// Event records written and not yet visible to the CPU.
    pub posted: Posted,
    /// The STEs the SMMU holds: fetched when a CFGI_STE is consumed (as early as it may) or on
    /// first use, dropped by CFGI_STE_RANGE, SMMUEN = 0 and power loss.
    ste_cache: BTreeMap<u32, Result<[u64; 8], SteFault>>,
    /// STEs a device could have walked to through a level-1 descriptor stored but not yet
    /// published, read from memory no barrier had published: (stream, the STE).
    pub unpublished_stes: Vec<(u32, [u64; 8])>,
    /// How the driver must drive this SMMU.
    pub coherency: Coherency,
    /// Non-coherent: the event queue whose every line was cleaned and invalidated after the
    /// CPU zeroed it (a queue at any other address has dirty lines of the CPU's).
    evtq_clean_base: Option<u64>,
}

impl FakeSmmu {
    /// QEMU 10's SMMU (stage=nested), coming out of reset in bypass as QEMU's does.
    pub fn qemu() -> Self {
        Self::with_ids(SmmuIdRegs::QEMU)
    }

    /// An SMMU with these ID registers.
    pub fn with_ids(ids: SmmuIdRegs) -> Self {
        // QEMU's GBPA reset value: bypass with SHCFG = 0b01.
        FakeSmmu {
            smmu: SoftSmmu::new(ids, 0x1000),
            writes: Vec::new(),
            reads: 0,
            barriers: Vec::new(),
            consumed: Vec::new(),
            hold_commands: false,
            hold_cr0: false,
            hold_gbpa: false,
            gbpa_held: None,
            power_drops_at_smmuen: 0,
            power_drops_at_cmdqen: 0,
            consume_at_cons_read: None,
            lose_power_before_write: None,
            reject_opcode: None,
            visible: Visible::default(),
            posted: Posted::default(),
            ste_cache: BTreeMap::new(),
            unpublished_stes: Vec::new(),
            coherency: Coherency::Coherent,
            evtq_clean_base: None,
        }
    }

    /// QEMU's SMMU, but not coherent with the CPU's caches (the system does not snoop it,
    /// although its IDR0.COHACC says it could).
    pub fn non_coherent() -> Self {
        Self::qemu().into_non_coherent()
    }

    /// This SMMU, not coherent with the CPU's caches.
    pub fn into_non_coherent(mut self) -> Self {
        self.coherency = Coherency::NonCoherent;
        self.visible.non_coherent = true;
        self.posted.non_coherent = true;
        self
    }

    /// Consumes commands from CONS up to PROD unless the queue is stopped.
    fn run_cmdq(&mut self) {
        if self.hold_commands {
            return;
        }
        if self.smmu.cmdq_base() & regs::BASE_ADDR_MASK == 0 {
            // Registers at reset under an enabled queue (power went under the sequence): the
            // fetch from address 0 aborts.
            if self.smmu.commands_after(0) > 0 && !self.smmu.cmdq_stopped() {
                self.smmu.fail_command(host_abi::smmu::regs::cerror::ABT);
            }
            return;
        }
        while let Some(c) = self.smmu.next_command(&mut self.visible.view()) {
            let c = c.expect("the fake's view of memory never faults");
            if !SoftSmmu::known_opcode(c[0] as u8) || self.reject_opcode == Some(c[0] as u8) {
                self.smmu.fail_command(SoftSmmu::ILLEGAL);
                return;
            }
            self.execute(Command(c));
            self.consumed.push(c);
            self.smmu.consume();
        }
    }

    /// What a consumed command does to the STEs the SMMU holds.
    fn execute(&mut self, c: Command) {
        let sid = c.field(cmd::SID) as u32;
        match Opcode::from_u8(c.opcode_byte()) {
            Some(Opcode::CfgiSte) => {
                // Fetched again at once: the earliest the SMMU may, the worst case for a
                // stale entry.
                let ste = self.smmu.lookup_ste(&mut self.visible.view(), sid);
                self.ste_cache.insert(sid, ste);
            }
            Some(Opcode::CfgiSteRange) => {
                let range = c.field(cmd::RANGE) as u32 + 1;
                if range >= 32 {
                    self.ste_cache.clear();
                } else {
                    let first = sid & !((1u32 << range) - 1);
                    self.ste_cache.retain(|s, _| s.wrapping_sub(first) >> range != 0);
                }
            }
            _ => {}
        }
    }

    /// The STE the SMMU uses for stream `sid` now: the one it holds, or the one it fetches
    /// (and holds from then on). `None` while SMMUEN is off.
    pub fn ste_in_use(&mut self, sid: u32) -> Option<Result<[u64; 8], SteFault>> {
        if !self.smmu.cr0().contains(Cr0::SMMUEN) {
            return None;
        }
        if !self.ste_cache.contains_key(&sid) {
            let ste = self.smmu.lookup_ste(&mut self.visible.view(), sid);
            self.ste_cache.insert(sid, ste);
        }
        self.ste_cache.get(&sid).copied()
    }

    /// Loses power: every register back to its reset value, GBPA to `gbpa` (the platform's
    /// IMPLEMENTATION DEFINED reset value), ID registers kept; the SMMU's caches and the
    /// records it had not yet made visible are gone.
    pub fn power_loss(&mut self, gbpa: u32) {
        self.smmu = SoftSmmu::new(*self.smmu.id(), gbpa);
        self.gbpa_held = None;
        self.ste_cache.clear();
        self.posted.clear();
        self.writes.push((usize::MAX, 0));
    }

    /// Writes an event record into the event queue, as a faulting device would make the SMMU
    /// (the CPU sees it once it has loaded EVENTQ_PROD and executed an acquire barrier).
    pub fn post_event(&mut self, record: [u64; 4]) {
        let before = self.posted.pending();
        let _ = self.smmu.post_event(&mut self.posted.capture(), &record);
        let evtq = self.smmu.evtq_base() & regs::BASE_ADDR_MASK;
        if self.coherency == Coherency::NonCoherent
            && self.posted.pending() > before
            && self.evtq_clean_base != Some(evtq)
        {
            self.posted.lose_last();
        }
    }

    /// The memory the SMMU's registers point at: the command queue while it is enabled, the
    /// stream table (linear, or its level-1 table) while SMMUEN is set. (Not registers back at
    /// their reset values after a power loss: they point at no memory of the host's.)
    fn watch_units(&mut self) {
        let cr0 = self.smmu.cr0();
        let pa = self.smmu.cmdq_base() & regs::BASE_ADDR_MASK;
        if cr0.contains(Cr0::CMDQEN) && pa != 0 {
            self.visible.watch(DmaRange { pa, len: 16 << self.smmu.cmdq_log2() });
        }
        if cr0.contains(Cr0::SMMUEN) && self.smmu.strtab_base() & regs::STRTAB_ADDR_MASK != 0 {
            let cfg = self.smmu.strtab_cfg();
            let log2 = strtab_cfg::log2size_of(cfg);
            let len = if strtab_cfg::fmt_of(cfg) == 1 {
                8u64 << log2.saturating_sub(strtab_cfg::split_of(cfg))
            } else {
                64u64 << log2
            };
            let pa = self.smmu.strtab_base() & regs::STRTAB_ADDR_MASK;
            self.visible.watch(DmaRange { pa, len });
        }
    }

    /// A device's transaction just before a barrier takes effect: through every level-1
    /// descriptor already stored (possibly visible) but not yet published, it walks to the
    /// level-2 table as published. Any STE it would read from memory no barrier published is
    /// recorded.
    fn walk_early_descriptors(&mut self) {
        let cfg = self.smmu.strtab_cfg();
        let l1 = self.smmu.strtab_base() & regs::STRTAB_ADDR_MASK;
        if !self.smmu.cr0().contains(Cr0::SMMUEN) || strtab_cfg::fmt_of(cfg) != 1 || l1 == 0 {
            return;
        }
        let split = strtab_cfg::split_of(cfg);
        let spans = 1u64 << strtab_cfg::log2size_of(cfg).saturating_sub(split);
        for i in 0..spans {
            let (mut stored, mut seen) = ([0u64], [0u64]);
            HostMemory.read(l1 + i * 8, &mut stored).expect("host memory");
            self.visible.read(l1 + i * 8, &mut seen);
            let span = (stored[0] & 0x1f) as u32;
            if stored == seen || span == 0 {
                continue;
            }
            let l2 = stored[0] & regs::STRTAB_ADDR_MASK;
            for index in 0..1u64 << (span - 1).min(split) {
                let mut ste = [0u64; 8];
                if !self.visible.read(l2 + index * 64, &mut ste) {
                    self.unpublished_stes.push(((i << split) as u32 | index as u32, ste));
                }
            }
        }
    }

    /// Raises global errors.
    pub fn raise(&mut self, e: Gerror) {
        self.smmu.raise(e);
    }

    /// Opcodes consumed, in order.
    pub fn opcodes(&self) -> Vec<u64> {
        self.consumed.iter().map(|c| c[0] & 0xff).collect()
    }

    /// GBPA says abort.
    pub fn aborts(&self) -> bool {
        self.smmu.gbpa().abort()
    }
}

impl SmmuBarriers for FakeSmmu {
    fn barrier(&mut self, b: Barrier) {
        self.barriers.push((self.writes.len(), b));
        let evtq = self.smmu.evtq_base() & regs::BASE_ADDR_MASK;
        match b {
            Barrier::Clean(named) if self.coherency == Coherency::NonCoherent => {
                // A descriptor stored before this clean may have been written back already.
                self.walk_early_descriptors();
                if named.pa != evtq {
                    self.visible.watch(named);
                }
                self.visible.clean(named, &mut HostMemory);
            }
            Barrier::Invalidate(r) if self.coherency == Coherency::NonCoherent => {
                let len = 32u64 << self.smmu.evtq_log2();
                if evtq != 0 && r.pa <= evtq && evtq + len <= r.pa + r.len {
                    self.evtq_clean_base = Some(evtq);
                }
            }
            _ => {}
        }
        if let Barrier::Publish(named) = b {
            self.walk_early_descriptors();
            // A named range is memory the SMMU may be pointed at later (a level-2 table), unless
            // it is the event queue, which the SMMU only writes.
            if named.pa != self.smmu.evtq_base() & regs::BASE_ADDR_MASK {
                self.visible.watch(named);
            }
            self.visible.publish(&mut HostMemory);
        }
        self.posted.barrier(b, &mut HostMemory);
    }
}

impl Drop for FakeSmmu {
    /// What no host test can show by behaviour alone is checked here, for every test.
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        assert_eq!(
            self.visible.unpublished_reads, 0,
            "the SMMU read memory no barrier had published (first at {:#x?})",
            self.visible.first_unpublished
        );
        assert!(
            self.unpublished_stes.is_empty(),
            "a device could walk a level-1 descriptor to a level-2 table not yet published: {:x?}",
            &self.unpublished_stes[..self.unpublished_stes.len().min(2)]
        );
        assert_eq!(
            self.posted.torn,
            0,
            "EVENTQ_CONS gave records back with no barrier after their loads (the SMMU may overwrite one still being read)"
        );
    }
}

impl SmmuRegs for FakeSmmu {
    fn read32(&mut self, o: usize) -> u32 {
        self.reads += 1;
        if o == off::EVTQ_PROD {
            self.posted.index_loaded();
        }
        if o == off::CMDQ_CONS {
            match self.consume_at_cons_read {
                Some(n) if n <= 1 => {
                    self.consume_at_cons_read = None;
                    self.hold_commands = false;
                    self.run_cmdq();
                }
                Some(n) => self.consume_at_cons_read = Some(n - 1),
                None => {}
            }
        }
        match self.gbpa_held {
            Some(held) if o == off::GBPA => held,
            _ => self.smmu.read32(o),
        }
    }

    fn write32(&mut self, o: usize, v: u32) {
        let cr0 = Cr0::from_bits_retain(v);
        let smmuen = o == off::CR0 && cr0.contains(Cr0::SMMUEN);
        let cmdqen = o == off::CR0 && cr0 == Cr0::CMDQEN;
        if self.lose_power_before_write == Some(self.writes.len())
            || smmuen && self.power_drops_at_smmuen > 0
            || cmdqen && self.power_drops_at_cmdqen > 0
        {
            self.lose_power_before_write = None;
            self.power_drops_at_smmuen = self.power_drops_at_smmuen.saturating_sub(smmuen as u32);
            self.power_drops_at_cmdqen = self.power_drops_at_cmdqen.saturating_sub(cmdqen as u32);
            self.power_loss(Gbpa::ABORT);
        }
        self.writes.push((o, v));
        if o == off::CR0 && self.hold_cr0 {
            return;
        }
        if o == off::GBPA && self.hold_gbpa {
            self.gbpa_held = Some(v | Gbpa::UPDATE);
            return;
        }
        match self.smmu.write32(o, v) {
            WriteEffect::Cr0 { new, .. } => {
                if !new.contains(Cr0::SMMUEN) {
                    self.ste_cache.clear();
                }
                self.watch_units();
                self.run_cmdq()
            }
            WriteEffect::CmdqProd | WriteEffect::GerrorAck(_) => self.run_cmdq(),
            WriteEffect::EvtqCons => self.posted.cons_written(),
            _ => {}
        }
    }
}
