//! One software SMMUv3: the architected register file and the memory structures an SMMU reads
//! and writes, without any policy.
//!
//! * registers ([`SoftSmmu::read32`] / [`SoftSmmu::write32`]): CR0 with CR0ACK, GBPA with the
//!   UPDATE handshake, GERROR/GERRORN toggle semantics, IRQ_CTRL with IRQ_CTRLACK, base
//!   registers writable only while their unit is disabled, ID registers read-only, anything
//!   else RAZ/WI and remembered;
//! * the command queue as a consumer ([`SoftSmmu::next_command`], [`SoftSmmu::consume`],
//!   [`SoftSmmu::fail_command`]) on [`QueuePtr`] arithmetic;
//! * stream-table lookup, linear and two-level ([`SoftSmmu::lookup_ste`]);
//! * the event queue as a producer ([`SoftSmmu::post_event`]), with overflow and abort
//!   reported as hardware does;
//! * reset to power-on values ([`SoftSmmu::reset`], from [`regs::RESET`]).
//!
//! Memory is reached through [`SmmuMemory`]. What happens to a command is the caller's: the
//! driver's test double executes them, the model explorer tracks what the SMMU caches, and the
//! SMMU the Linux host is given hands them to the hypervisor's validation.

use crate::iommu::driver::queue::{self, QueuePtr};
use host_abi::smmu::regs::{
    self, cerror, off, strtab_cfg, Cr0, Gbpa, Gerror, Idr0, Idr1, IrqCtrl, CMDQ_CONS_ERR_MASK,
    Q_OVFLG,
};
use host_abi::smmu::Command;
use zerocopy::{FromBytes, IntoBytes};

#[cfg(test)]
pub(crate) mod fake;
pub mod visible;

/// Memory as the SMMU sees it (physical addresses, or a VM's IPAs for an emulated SMMU).
pub trait SmmuMemory {
    /// Reads `out.len()` little-endian 64-bit words at `addr` (8-byte aligned).
    fn read(&mut self, addr: u64, out: &mut [u64]) -> Result<(), MemFault>;
    /// Writes `data` at `addr` (8-byte aligned).
    fn write(&mut self, addr: u64, data: &[u64]) -> Result<(), MemFault>;
}

/// The words of `cmds` (each command two little-endian 64-bit words), for [`SmmuMemory`].
fn words(cmds: &mut [Command]) -> &mut [u64] {
    <[u64]>::mut_from_bytes(cmds.as_mut_bytes()).expect("a command is two aligned words")
}

/// An access the memory refused (outside what the SMMU may reach).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemFault {
    /// The address.
    pub addr: u64,
}

/// The ID registers of a software SMMU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmmuIdRegs {
    /// IDR0..IDR5.
    pub idr: [u32; 6],
    /// IIDR.
    pub iidr: u32,
    /// AIDR.
    pub aidr: u32,
}

impl SmmuIdRegs {
    /// What QEMU 10's SMMUv3 reports with `stage=nested` (checked on the machine).
    pub const QEMU: SmmuIdRegs = SmmuIdRegs {
        idr: [0x0d44_101b, Idr1::new(16, 0, 19, 19).0, 0, 0, 0, 0x74],
        iidr: 0,
        aidr: 0,
    };

    /// IDR0.
    pub const fn idr0(&self) -> Idr0 {
        Idr0(self.idr[0])
    }

    /// IDR1.
    pub const fn idr1(&self) -> Idr1 {
        Idr1(self.idr[1])
    }
}

/// What a register write did, beyond storing the value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteEffect {
    /// Stored, nothing else to do.
    Stored,
    /// CR0 changed from `old` to `new` (CR0ACK follows at once).
    Cr0 {
        /// Before.
        old: Cr0,
        /// After.
        new: Cr0,
    },
    /// GBPA took a new value (written with UPDATE).
    Gbpa,
    /// CMDQ_PROD moved: commands may be waiting.
    CmdqProd,
    /// GERRORN acknowledged these errors (a CMDQ_ERR acknowledgement restarts the queue).
    GerrorAck(Gerror),
    /// EVENTQ_CONS moved.
    EvtqCons,
    /// IRQ_CTRL changed (IRQ_CTRLACK follows at once).
    IrqCtrl,
    /// Not written: the register is read-only, or writable only while its unit is disabled
    /// (a base register while SMMUEN or the queue is on), or GBPA without UPDATE.
    Ignored,
    /// No register at this offset: write ignored, reads as zero.
    Unknown,
}

/// Why a stream has no STE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SteFault {
    /// The stream ID is beyond the table (C_BAD_STREAMID).
    BadStreamId,
    /// The level-1 descriptor is invalid or does not span the stream (C_BAD_STREAMID).
    NoLevel2,
    /// Reading the table faulted (F_STE_FETCH).
    Fetch(MemFault),
}

/// What posting an event record did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventPost {
    /// Written, PROD advanced.
    Written,
    /// The event queue is disabled: the record is discarded.
    Disabled,
    /// The queue is full: the record is discarded and EVENTQ_PROD.OVFLG toggled.
    Overflow,
    /// The queue write faulted: GERROR.EVENTQ_ABT_ERR raised.
    Abort,
}

/// The interrupts a software SMMU raised since they were last taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Irqs {
    /// An event was written (or an overflow signalled) with EVENTQ_IRQEN set.
    pub eventq: bool,
    /// A global error was raised with GERROR_IRQEN set.
    pub gerror: bool,
}

/// A software SMMUv3: its registers and its view of its memory structures.
#[derive(Clone, Debug)]
pub struct SoftSmmu {
    id: SmmuIdRegs,
    gbpa_reset: u32,
    cr0: u32,
    cr0ack: u32,
    cr1: u32,
    cr2: u32,
    gbpa: u32,
    irq_ctrl: u32,
    irq_ctrlack: u32,
    gerror: u32,
    gerrorn: u32,
    gerror_irq_cfg: [u32; 4],
    strtab_base: [u32; 2],
    strtab_cfg: u32,
    cmdq_base: [u32; 2],
    cmdq_prod: u32,
    cmdq_cons: u32,
    evtq_base: [u32; 2],
    evtq_prod: u32,
    evtq_cons: u32,
    evtq_irq_cfg: [u32; 4],
    irqs: Irqs,
    /// The first offset written or read that is no register, if any.
    pub first_unknown: Option<usize>,
    /// Accesses to offsets that are no register.
    pub unknown_accesses: u64,
}

impl SoftSmmu {
    /// An SMMU with these ID registers, just powered on: every register at its reset value,
    /// GBPA = `gbpa_reset` (IMPLEMENTATION DEFINED: abort or bypass).
    pub fn new(id: SmmuIdRegs, gbpa_reset: u32) -> Self {
        let mut s = SoftSmmu {
            id,
            gbpa_reset,
            cr0: 0,
            cr0ack: 0,
            cr1: 0,
            cr2: 0,
            gbpa: gbpa_reset,
            irq_ctrl: 0,
            irq_ctrlack: 0,
            gerror: 0,
            gerrorn: 0,
            gerror_irq_cfg: [0; 4],
            strtab_base: [0; 2],
            strtab_cfg: 0,
            cmdq_base: [0; 2],
            cmdq_prod: 0,
            cmdq_cons: 0,
            evtq_base: [0; 2],
            evtq_prod: 0,
            evtq_cons: 0,
            evtq_irq_cfg: [0; 4],
            irqs: Irqs::default(),
            first_unknown: None,
            unknown_accesses: 0,
        };
        s.reset();
        s
    }

    /// Power-on: every register in [`regs::RESET`] at its reset value, the read-only mirrors
    /// following, GBPA at the reset value this SMMU was built with. ID registers are kept.
    pub fn reset(&mut self) {
        for (o, v) in regs::RESET {
            let slot = self.slot(o).expect("every RESET register is modelled");
            *slot = v;
        }
        self.cr0ack = 0;
        self.irq_ctrlack = 0;
        self.gerror = 0;
        self.gbpa = self.gbpa_reset;
        self.irqs = Irqs::default();
    }

    /// The ID registers.
    pub fn id(&self) -> &SmmuIdRegs {
        &self.id
    }

    fn slot(&mut self, o: usize) -> Option<&mut u32> {
        Some(match o {
            off::CR0 => &mut self.cr0,
            off::CR1 => &mut self.cr1,
            off::CR2 => &mut self.cr2,
            off::GBPA => &mut self.gbpa,
            off::IRQ_CTRL => &mut self.irq_ctrl,
            off::GERRORN => &mut self.gerrorn,
            off::GERROR_IRQ_CFG0 => &mut self.gerror_irq_cfg[0],
            o if o == off::GERROR_IRQ_CFG0 + 4 => &mut self.gerror_irq_cfg[1],
            off::GERROR_IRQ_CFG1 => &mut self.gerror_irq_cfg[2],
            off::GERROR_IRQ_CFG2 => &mut self.gerror_irq_cfg[3],
            off::STRTAB_BASE => &mut self.strtab_base[0],
            o if o == off::STRTAB_BASE + 4 => &mut self.strtab_base[1],
            off::STRTAB_BASE_CFG => &mut self.strtab_cfg,
            off::CMDQ_BASE => &mut self.cmdq_base[0],
            o if o == off::CMDQ_BASE + 4 => &mut self.cmdq_base[1],
            off::CMDQ_PROD => &mut self.cmdq_prod,
            off::CMDQ_CONS => &mut self.cmdq_cons,
            off::EVTQ_BASE => &mut self.evtq_base[0],
            o if o == off::EVTQ_BASE + 4 => &mut self.evtq_base[1],
            off::EVTQ_PROD => &mut self.evtq_prod,
            off::EVTQ_CONS => &mut self.evtq_cons,
            off::EVTQ_IRQ_CFG0 => &mut self.evtq_irq_cfg[0],
            o if o == off::EVTQ_IRQ_CFG0 + 4 => &mut self.evtq_irq_cfg[1],
            off::EVTQ_IRQ_CFG1 => &mut self.evtq_irq_cfg[2],
            off::EVTQ_IRQ_CFG2 => &mut self.evtq_irq_cfg[3],
            _ => return None,
        })
    }

    /// Reads the 32-bit register at `o` (RAZ if there is none).
    pub fn read32(&mut self, o: usize) -> u32 {
        match o {
            off::IDR0..=off::IDR5 if o.is_multiple_of(4) => self.id.idr[o / 4],
            off::IIDR => self.id.iidr,
            off::AIDR => self.id.aidr,
            off::CR0ACK => self.cr0ack,
            off::IRQ_CTRLACK => self.irq_ctrlack,
            off::GERROR => self.gerror,
            off::STATUSR | off::AGBPA => 0,
            _ => match self.slot(o) {
                Some(v) => *v,
                None => {
                    self.first_unknown.get_or_insert(o);
                    self.unknown_accesses += 1;
                    0
                }
            },
        }
    }

    /// Writes the 32-bit register at `o` with the architecture's side effects.
    pub fn write32(&mut self, o: usize, v: u32) -> WriteEffect {
        if o == off::CMDQ_PROD {
            // The write of every batch, first (never locked).
            self.cmdq_prod = v & self.ptr_mask(self.cmdq_log2());
            return WriteEffect::CmdqProd;
        }
        let cr0 = Cr0::from_bits_retain(self.cr0ack);
        // Base registers and their pointers may only change while their unit is off.
        let locked = match o {
            off::STRTAB_BASE | off::STRTAB_BASE_CFG | off::CR1 | off::CR2 => {
                cr0.contains(Cr0::SMMUEN)
            }
            _ if o == off::STRTAB_BASE + 4 => cr0.contains(Cr0::SMMUEN),
            off::CMDQ_BASE | off::CMDQ_CONS => cr0.contains(Cr0::CMDQEN),
            _ if o == off::CMDQ_BASE + 4 => cr0.contains(Cr0::CMDQEN),
            off::EVTQ_BASE | off::EVTQ_PROD => cr0.contains(Cr0::EVENTQEN),
            _ if o == off::EVTQ_BASE + 4 => cr0.contains(Cr0::EVENTQEN),
            _ => false,
        };
        if locked {
            return WriteEffect::Ignored;
        }
        match o {
            off::IDR0..=off::AIDR | off::CR0ACK | off::IRQ_CTRLACK | off::GERROR => {
                WriteEffect::Ignored
            }
            off::STATUSR | off::AGBPA => WriteEffect::Ignored,
            off::CR0 => {
                let old = Cr0::from_bits_retain(self.cr0);
                self.cr0 = v;
                self.cr0ack = v;
                WriteEffect::Cr0 { old, new: Cr0::from_bits_retain(v) }
            }
            off::GBPA => {
                if !Gbpa(v).update_pending() {
                    return WriteEffect::Ignored;
                }
                self.gbpa = v & !Gbpa::UPDATE;
                WriteEffect::Gbpa
            }
            off::IRQ_CTRL => {
                self.irq_ctrl = v & IrqCtrl::all().bits();
                self.irq_ctrlack = self.irq_ctrl;
                WriteEffect::IrqCtrl
            }
            off::GERRORN => {
                let acked = Gerror::from_bits_truncate((self.gerrorn ^ v) & self.active_bits());
                self.gerrorn = v;
                WriteEffect::GerrorAck(acked)
            }
            off::EVTQ_CONS => {
                self.evtq_cons = v & (self.ptr_mask(self.evtq_log2()) | Q_OVFLG);
                WriteEffect::EvtqCons
            }
            _ => match self.slot(o) {
                Some(slot) => {
                    *slot = v;
                    WriteEffect::Stored
                }
                None => {
                    self.first_unknown.get_or_insert(o);
                    self.unknown_accesses += 1;
                    WriteEffect::Unknown
                }
            },
        }
    }

    fn active_bits(&self) -> u32 {
        self.gerror ^ self.gerrorn
    }

    /// Global errors raised and not acknowledged.
    pub fn active_errors(&self) -> Gerror {
        Gerror::from_bits_truncate(self.active_bits())
    }

    /// Raises global errors `e` (those already active stay as they are).
    pub fn raise(&mut self, e: Gerror) {
        let new = e.bits() & !self.active_bits();
        if new != 0 {
            self.gerror ^= new;
            if IrqCtrl::from_bits_retain(self.irq_ctrlack).contains(IrqCtrl::GERROR_IRQEN) {
                self.irqs.gerror = true;
            }
        }
    }

    /// Interrupts raised since the last call (edge-triggered wires).
    pub fn take_irqs(&mut self) -> Irqs {
        core::mem::take(&mut self.irqs)
    }

    /// CR0 as acknowledged.
    pub fn cr0(&self) -> Cr0 {
        Cr0::from_bits_retain(self.cr0ack)
    }

    /// GBPA.
    pub fn gbpa(&self) -> Gbpa {
        Gbpa(self.gbpa)
    }

    /// SMMU_STRTAB_BASE (64-bit).
    pub fn strtab_base(&self) -> u64 {
        join(self.strtab_base)
    }

    /// SMMU_STRTAB_BASE_CFG.
    pub fn strtab_cfg(&self) -> u32 {
        self.strtab_cfg
    }

    /// SMMU_CMDQ_BASE (64-bit).
    pub fn cmdq_base(&self) -> u64 {
        join(self.cmdq_base)
    }

    /// SMMU_EVENTQ_BASE (64-bit).
    pub fn evtq_base(&self) -> u64 {
        join(self.evtq_base)
    }

    fn ptr_mask(&self, log2: u32) -> u32 {
        (2 << log2) - 1
    }

    /// log2 of the command queue's size: the base register's LOG2SIZE, capped by IDR1.CMDQS.
    pub fn cmdq_log2(&self) -> u32 {
        (self.cmdq_base[0] & 0x1f).min(self.id.idr1().cmdqs())
    }

    /// log2 of the event queue's size, capped by IDR1.EVENTQS.
    pub fn evtq_log2(&self) -> u32 {
        (self.evtq_base[0] & 0x1f).min(self.id.idr1().eventqs())
    }

    /// CMDQ_PROD and CMDQ_CONS as queue pointers.
    pub fn cmdq_ptrs(&self) -> (QueuePtr, QueuePtr) {
        let l = self.cmdq_log2();
        (QueuePtr::new(l, self.cmdq_prod), QueuePtr::new(l, self.cmdq_cons))
    }

    /// Whether the command queue is stopped on an error (CMDQ_ERR active).
    pub fn cmdq_stopped(&self) -> bool {
        self.active_errors().contains(Gerror::CMDQ_ERR)
    }

    /// The command at CONS, if the queue is enabled, not stopped and not empty.
    pub fn next_command(&self, mem: &mut dyn SmmuMemory) -> Option<Result<[u64; 2], MemFault>> {
        let (cons, used) = self.pending_commands()?;
        if used == 0 {
            return None;
        }
        let mut c = [0u64; 2];
        Some(mem.read(self.cmdq_entry(cons), &mut c).map(|()| c))
    }

    /// CONS and how many commands follow it up to PROD, if the queue is enabled and not stopped.
    #[inline]
    fn pending_commands(&self) -> Option<(QueuePtr, u32)> {
        if !self.cr0().contains(Cr0::CMDQEN) || self.cmdq_stopped() {
            return None;
        }
        let (prod, cons) = self.cmdq_ptrs();
        Some((cons, queue::used(prod, cons)))
    }

    /// The address of the command queue's entry `at`.
    #[inline]
    fn cmdq_entry(&self, at: QueuePtr) -> u64 {
        (self.cmdq_base() & regs::BASE_ADDR_MASK) + at.index() as u64 * 16
    }

    /// Reads the commands from `k` entries after CONS on, as many as fit in `out` without
    /// wrapping around the queue's end: `Some(Ok(m))` for `m` (at least one) commands read,
    /// `Some(Err(fault))` if the command `k` entries after CONS is outside what `mem` reaches,
    /// `None` if the queue is disabled, stopped or holds no command there. One memory read for
    /// the whole run unless it faults (then the commands before the fault are returned).
    pub fn fetch_commands(
        &self,
        mem: &mut dyn SmmuMemory,
        k: u32,
        out: &mut [Command],
    ) -> Option<Result<usize, MemFault>> {
        let (cons, used) = self.pending_commands()?;
        if used <= k || out.is_empty() {
            return None;
        }
        let at = cons.advance(k);
        let m = ((used - k).min(at.capacity() - at.index()) as usize).min(out.len());
        let base = self.cmdq_entry(at);
        if mem.read(base, words(&mut out[..m])).is_ok() {
            return Some(Ok(m));
        }
        // Some entry is out of reach: the ones before it are good.
        for i in 0..m {
            if let Err(fault) = mem.read(base + i as u64 * 16, words(&mut out[i..i + 1])) {
                return Some(if i == 0 { Err(fault) } else { Ok(i) });
            }
        }
        Some(Ok(m))
    }

    /// Every command from CONS up to PROD into `out`, if the queue (enabled, not stopped) holds
    /// 1 to `out.len()` of them: `Ok(n)`. `Err(m)` otherwise, with the first `m` of them in
    /// `out` (as [`Self::fetch_commands`] from CONS would give them): 0 if the queue is empty,
    /// holds more than `out.len()`, or any entry of them is out of reach; the commands before
    /// the queue's end if they wrap round it. One look at the pointers, one memory read.
    #[inline]
    pub fn fetch_all(&self, mem: &mut dyn SmmuMemory, out: &mut [Command]) -> Result<usize, usize> {
        let (cons, used) = self.pending_commands().ok_or(0usize)?;
        let used = used as usize;
        if used == 0 || used > out.len() {
            return Err(0);
        }
        let m = used.min((cons.capacity() - cons.index()) as usize);
        if mem.read(self.cmdq_entry(cons), words(&mut out[..m])).is_err() {
            // Which entries are good is the planner's business (it fetches them one by one).
            return Err(0);
        }
        if m < used {
            Err(m)
        } else {
            Ok(m)
        }
    }

    /// Commands in the queue beyond the first `k` after CONS.
    pub fn commands_after(&self, k: u32) -> u32 {
        if self.cmdq_prod == self.cmdq_cons & !CMDQ_CONS_ERR_MASK {
            // Equal pointers (wrap bit included) whatever the queue's size: empty. The common
            // answer, without the size.
            return 0;
        }
        let (prod, cons) = self.cmdq_ptrs();
        queue::used(prod, cons).saturating_sub(k)
    }

    /// Consumes the command at CONS (CONS advances; ERR is cleared).
    pub fn consume(&mut self) {
        self.consume_n(1);
    }

    /// Consumes `n` commands (CONS advances by `n`; ERR is cleared when `n` > 0).
    pub fn consume_n(&mut self, n: u32) {
        if n > 0 {
            let (_, cons) = self.cmdq_ptrs();
            self.cmdq_cons = cons.advance(n).raw();
        }
    }

    /// Stops the command queue on the command at CONS: CONS.ERR = `err` (a [`cerror`]
    /// value), GERROR.CMDQ_ERR raised. CONS stays on the command.
    pub fn fail_command(&mut self, err: u32) {
        self.cmdq_cons = (self.cmdq_cons & !CMDQ_CONS_ERR_MASK) | (err & 0x7f) << 24;
        self.raise(Gerror::CMDQ_ERR);
    }

    /// Where STE `sid` lives in memory, walking a linear or two-level table.
    pub fn ste_address(&self, mem: &mut dyn SmmuMemory, sid: u32) -> Result<u64, SteFault> {
        let cfg = self.strtab_cfg;
        let base = self.strtab_base() & regs::STRTAB_ADDR_MASK;
        let log2size = strtab_cfg::log2size_of(cfg).min(self.id.idr1().sidsize());
        if log2size < 32 && sid >> log2size != 0 {
            return Err(SteFault::BadStreamId);
        }
        if strtab_cfg::fmt_of(cfg) != 1 {
            return Ok(base + sid as u64 * 64);
        }
        let split = strtab_cfg::split_of(cfg).min(log2size);
        let mut desc = [0u64];
        let l1 = base + (sid >> split) as u64 * 8;
        mem.read(l1, &mut desc).map_err(SteFault::Fetch)?;
        let span = (desc[0] & 0x1f) as u32;
        let index = sid & ((1u32 << split) - 1);
        if span == 0 || span > split + 1 || index >> (span - 1) != 0 {
            return Err(SteFault::NoLevel2);
        }
        Ok((desc[0] & regs::STRTAB_ADDR_MASK) + index as u64 * 64)
    }

    /// Fetches STE `sid` (linear or two-level table).
    pub fn lookup_ste(&self, mem: &mut dyn SmmuMemory, sid: u32) -> Result<[u64; 8], SteFault> {
        let addr = self.ste_address(mem, sid)?;
        let mut ste = [0u64; 8];
        mem.read(addr, &mut ste).map_err(SteFault::Fetch)?;
        Ok(ste)
    }

    /// EVENTQ_PROD and EVENTQ_CONS as queue pointers (overflow flags stripped).
    pub fn evtq_ptrs(&self) -> (QueuePtr, QueuePtr) {
        let l = self.evtq_log2();
        (QueuePtr::new(l, self.evtq_prod), QueuePtr::new(l, self.evtq_cons))
    }

    /// Whether an overflow was signalled and not yet acknowledged (PROD.OVFLG != CONS.OVACKFLG).
    pub fn evtq_overflow_pending(&self) -> bool {
        (self.evtq_prod ^ self.evtq_cons) & Q_OVFLG != 0
    }

    /// Writes an event record to the event queue as the SMMU would.
    pub fn post_event(&mut self, mem: &mut dyn SmmuMemory, record: &[u64; 4]) -> EventPost {
        if !self.cr0().contains(Cr0::EVENTQEN) {
            return EventPost::Disabled;
        }
        let irq = IrqCtrl::from_bits_retain(self.irq_ctrlack).contains(IrqCtrl::EVENTQ_IRQEN);
        let (prod, cons) = self.evtq_ptrs();
        if queue::space(prod, cons) == 0 {
            if !self.evtq_overflow_pending() {
                self.evtq_prod ^= Q_OVFLG;
                self.irqs.eventq |= irq;
            }
            return EventPost::Overflow;
        }
        let addr = (self.evtq_base() & regs::BASE_ADDR_MASK) + prod.index() as u64 * 32;
        if mem.write(addr, record).is_err() {
            self.raise(Gerror::EVENTQ_ABT_ERR);
            return EventPost::Abort;
        }
        self.evtq_prod = (self.evtq_prod & Q_OVFLG) | prod.advance(1).raw();
        self.irqs.eventq |= irq;
        EventPost::Written
    }

    /// Whether an opcode is one the architecture defines (others are CERROR_ILL).
    pub fn known_opcode(op: u8) -> bool {
        host_abi::smmu::Opcode::from_u8(op).is_some()
    }

    /// The CONS.ERR a command with an undefined opcode gets.
    pub const ILLEGAL: u32 = cerror::ILL;
}

fn join(r: [u32; 2]) -> u64 {
    r[0] as u64 | (r[1] as u64) << 32
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Word-addressed memory with a hole the SMMU may not touch.
    #[derive(Default)]
    struct Mem {
        words: BTreeMap<u64, u64>,
        hole: Option<(u64, u64)>,
    }
    impl SmmuMemory for Mem {
        fn read(&mut self, addr: u64, out: &mut [u64]) -> Result<(), MemFault> {
            for (i, w) in out.iter_mut().enumerate() {
                let a = addr + i as u64 * 8;
                if self.hole.is_some_and(|(b, e)| a >= b && a < e) {
                    return Err(MemFault { addr: a });
                }
                *w = *self.words.get(&a).unwrap_or(&0);
            }
            Ok(())
        }
        fn write(&mut self, addr: u64, data: &[u64]) -> Result<(), MemFault> {
            for (i, w) in data.iter().enumerate() {
                let a = addr + i as u64 * 8;
                if self.hole.is_some_and(|(b, e)| a >= b && a < e) {
                    return Err(MemFault { addr: a });
                }
                self.words.insert(a, *w);
            }
            Ok(())
        }
    }

    fn smmu() -> SoftSmmu {
        SoftSmmu::new(SmmuIdRegs::QEMU, 0)
    }

    #[test]
    fn reset_values_and_read_only_registers() {
        let mut s = SoftSmmu::new(SmmuIdRegs::QEMU, Gbpa::ABORT);
        assert_eq!(s.read32(off::IDR0), 0x0d44_101b);
        assert_eq!(s.read32(off::GBPA), Gbpa::ABORT, "the platform's reset value");
        assert_eq!(s.write32(off::IDR0, 0), WriteEffect::Ignored);
        assert_eq!(s.write32(off::CR0ACK, 5), WriteEffect::Ignored);
        assert_eq!(s.write32(off::GERROR, 1), WriteEffect::Ignored);
        assert_eq!(s.read32(off::GERROR), 0);
        s.write32(off::CR1, 0x55);
        s.write32(off::CR0, Cr0::CMDQEN.bits());
        s.reset();
        assert_eq!((s.read32(off::CR0), s.read32(off::CR0ACK), s.read32(off::CR1)), (0, 0, 0));
        assert_eq!(s.read32(off::IDR0), 0x0d44_101b, "ID registers survive");
        assert_eq!(s.read32(0x1234), 0);
        assert_eq!(s.write32(0x1238, 1), WriteEffect::Unknown);
        assert_eq!(s.write32(0x123c, 1), WriteEffect::Unknown);
        assert_eq!((s.first_unknown, s.unknown_accesses), (Some(0x1234), 3), "reads and writes");
    }

    #[test]
    fn gbpa_changes_only_with_update_and_cr0ack_follows() {
        let mut s = smmu();
        assert_eq!(s.write32(off::GBPA, Gbpa::ABORT), WriteEffect::Ignored);
        assert!(!s.gbpa().abort());
        assert_eq!(s.write32(off::GBPA, Gbpa::ABORT | Gbpa::UPDATE), WriteEffect::Gbpa);
        assert_eq!(s.read32(off::GBPA), Gbpa::ABORT, "UPDATE clears once applied");
        let e = s.write32(off::CR0, Cr0::RUNNING.bits());
        assert_eq!(e, WriteEffect::Cr0 { old: Cr0::empty(), new: Cr0::RUNNING });
        assert_eq!(s.read32(off::CR0ACK), Cr0::RUNNING.bits());
    }

    #[test]
    fn base_registers_are_locked_while_their_unit_is_on() {
        let mut s = smmu();
        s.write32(off::STRTAB_BASE, 0x1000);
        s.write32(off::CMDQ_BASE, 0x2005);
        s.write32(off::CR0, Cr0::RUNNING.bits());
        for o in [off::STRTAB_BASE, off::STRTAB_BASE_CFG, off::CMDQ_BASE, off::EVTQ_BASE, off::CR1]
        {
            assert_eq!(s.write32(o, 0xdead_0000), WriteEffect::Ignored, "{o:#x}");
        }
        assert_eq!((s.strtab_base(), s.cmdq_base()), (0x1000, 0x2005));
        s.write32(off::CR0, 0);
        assert_eq!(s.write32(off::STRTAB_BASE, 0x3000), WriteEffect::Stored);
    }

    #[test]
    fn gerror_toggles_and_gerrorn_acknowledges() {
        let mut s = smmu();
        s.write32(off::IRQ_CTRL, IrqCtrl::GERROR_IRQEN.bits());
        s.raise(Gerror::SFM_ERR | Gerror::EVENTQ_ABT_ERR);
        assert_eq!(s.active_errors(), Gerror::SFM_ERR | Gerror::EVENTQ_ABT_ERR);
        assert!(s.take_irqs().gerror);
        s.raise(Gerror::SFM_ERR);
        assert_eq!(s.read32(off::GERROR), 0x104, "an active error is not toggled again");
        let ack = s.write32(off::GERRORN, Gerror::SFM_ERR.bits());
        assert_eq!(ack, WriteEffect::GerrorAck(Gerror::SFM_ERR));
        assert_eq!(s.active_errors(), Gerror::EVENTQ_ABT_ERR);
        s.raise(Gerror::SFM_ERR);
        assert_eq!(s.read32(off::GERROR), 0x004, "raised again: toggled back");
        assert_eq!(s.active_errors(), Gerror::EVENTQ_ABT_ERR | Gerror::SFM_ERR);
        // SFM_ERR is active with its GERRORN bit set: writing GERRORN back unchanged
        // acknowledges nothing; clearing the bit acknowledges it.
        let unchanged = s.read32(off::GERRORN);
        assert_eq!(s.write32(off::GERRORN, unchanged), WriteEffect::GerrorAck(Gerror::empty()));
        assert_eq!(s.active_errors(), Gerror::EVENTQ_ABT_ERR | Gerror::SFM_ERR);
        let ack = s.write32(off::GERRORN, unchanged ^ Gerror::SFM_ERR.bits());
        assert_eq!(ack, WriteEffect::GerrorAck(Gerror::SFM_ERR));
        assert_eq!(s.active_errors(), Gerror::EVENTQ_ABT_ERR);
    }

    #[test]
    fn identification_and_status_registers_are_registers() {
        // An SMMU with an implementation ID (Arm, product 0x43b) and SMMUv3.1.
        let id = SmmuIdRegs { iidr: 0x0430_043b, aidr: 0x1, ..SmmuIdRegs::QEMU };
        let mut s = SoftSmmu::new(id, Gbpa::ABORT);
        assert_eq!(s.read32(off::IIDR), 0x0430_043b);
        assert_eq!(s.read32(off::AIDR), 0x1);
        // No DORMANT state and no alternate bypass attributes: both read as zero and ignore
        // writes, as registers (not as holes in the register map).
        assert_eq!((s.read32(off::STATUSR), s.read32(off::AGBPA)), (0, 0));
        for o in [off::IIDR, off::AIDR, off::STATUSR, off::AGBPA] {
            assert_eq!(s.write32(o, 0xffff_ffff), WriteEffect::Ignored, "{o:#x}");
        }
        assert_eq!((s.read32(off::IIDR), s.read32(off::AGBPA)), (0x0430_043b, 0));
        assert_eq!((s.first_unknown, s.unknown_accesses), (None, 0));
        // A misaligned offset inside the ID registers is no register.
        assert_eq!(s.read32(off::IDR0 + 2), 0);
        assert_eq!(s.read32(off::IDR1 + 1), 0);
        assert_eq!((s.first_unknown, s.unknown_accesses), (Some(2), 2));
    }

    #[test]
    fn upper_halves_of_base_registers_are_written_and_locked_like_the_lower() {
        let mut s = smmu();
        let bases = [
            (off::STRTAB_BASE, 0x0000_0012_3456_7840u64, Cr0::SMMUEN),
            (off::CMDQ_BASE, 0x4000_0034_5678_0005, Cr0::CMDQEN),
            (off::EVTQ_BASE, 0x4000_0056_789a_0004, Cr0::EVENTQEN),
        ];
        // A driver without 64-bit MMIO writes each base register as two 32-bit halves.
        for (o, v, _) in bases {
            assert_eq!(s.write32(o, v as u32), WriteEffect::Stored, "{o:#x}");
            assert_eq!(s.write32(o + 4, (v >> 32) as u32), WriteEffect::Stored, "{o:#x} + 4");
        }
        let read = |s: &SoftSmmu| [s.strtab_base(), s.cmdq_base(), s.evtq_base()];
        assert_eq!(read(&s), bases.map(|b| b.1));
        assert_eq!(s.read32(off::STRTAB_BASE + 4), 0x12);
        assert_eq!(s.read32(off::CMDQ_BASE + 4), 0x4000_0034);
        assert_eq!(s.read32(off::EVTQ_BASE + 4), 0x4000_0056);
        // With its unit enabled, neither half of a base register changes; the others do.
        for (i, (o, _, unit)) in bases.into_iter().enumerate() {
            s.write32(off::CR0, unit.bits());
            for (j, (p, _, _)) in bases.into_iter().enumerate() {
                let want = if i == j { WriteEffect::Ignored } else { WriteEffect::Stored };
                assert_eq!(s.write32(p + 4, 0x7), want, "{p:#x} + 4 with CR0 {unit:?}");
                assert_eq!(s.write32(p, 0x40), want, "{p:#x} with CR0 {unit:?}");
            }
            assert_eq!(read(&s)[i], bases[i].1, "{o:#x} kept");
            s.write32(off::CR0, 0);
            for (p, v, _) in bases {
                s.write32(p, v as u32);
                s.write32(p + 4, (v >> 32) as u32);
            }
        }
        assert_eq!(read(&s), bases.map(|b| b.1));
        assert_eq!((s.first_unknown, s.unknown_accesses), (None, 0));
    }

    #[test]
    fn evtq_cons_keeps_the_pointer_and_the_overflow_acknowledgement_only() {
        let (mut s, mut m) = (smmu(), Mem::default());
        queue_setup(&mut s, &mut m); // 4 entries: index bits 1:0, wrap bit 2
        assert_eq!(s.write32(off::EVTQ_CONS, 0x7fff_fffe), WriteEffect::EvtqCons);
        assert_eq!(s.read32(off::EVTQ_CONS), 0x6, "index 2, wrap set, the rest RES0");
        assert_eq!(s.write32(off::EVTQ_CONS, Q_OVFLG | 0x1b), WriteEffect::EvtqCons);
        assert_eq!(s.read32(off::EVTQ_CONS), Q_OVFLG | 0x3);
        assert_eq!(s.evtq_ptrs().1, QueuePtr::new(2, 3));
    }

    #[test]
    fn a_32_bit_stream_id_space_is_looked_up_without_overflow() {
        let (mut s, mut m) = (
            SoftSmmu::new(
                SmmuIdRegs {
                    idr: [0x0d44_101b, Idr1::new(32, 16, 19, 19).0, 0, 0, 0, 0x55],
                    ..SmmuIdRegs::QEMU
                },
                0,
            ),
            Mem::default(),
        );
        // Two levels, SPLIT 8, 32 SID bits: every stream ID is in range.
        s.write32(off::STRTAB_BASE, 0x40_0000);
        s.write32(off::STRTAB_BASE_CFG, strtab_cfg::FMT_2LVL | strtab_cfg::split(8) | 32);
        let sid = 0xffff_ff03u32;
        m.write(0x40_0000 + (sid >> 8) as u64 * 8, &[0x8_0000 | 9]).unwrap();
        m.write(0x8_0000 + 3 * 64, &[0x9, 0, 0, 0, 0, 0, 0, 0]).unwrap();
        assert_eq!(s.ste_address(&mut m, sid), Ok(0x8_0000 + 3 * 64));
        assert_eq!(s.lookup_ste(&mut m, sid).unwrap()[0], 0x9);
        assert_eq!(s.lookup_ste(&mut m, 0x7fff_ff03), Err(SteFault::NoLevel2));
    }

    fn queue_setup(s: &mut SoftSmmu, mem: &mut Mem) {
        s.write32(off::CMDQ_BASE, 0x10_0000 | 3); // 8 entries
        s.write32(off::EVTQ_BASE, 0x20_0000 | 2); // 4 entries
        s.write32(off::CR0, Cr0::RUNNING.bits());
        for i in 0..8u64 {
            mem.write(0x10_0000 + i * 16, &[0x46 + (i << 56), i]).unwrap();
        }
    }

    #[test]
    fn command_queue_consumer() {
        let (mut s, mut m) = (smmu(), Mem::default());
        queue_setup(&mut s, &mut m);
        assert!(s.next_command(&mut m).is_none(), "empty");
        assert_eq!(s.write32(off::CMDQ_PROD, 3), WriteEffect::CmdqProd);
        assert_eq!(s.next_command(&mut m), Some(Ok([0x46, 0])));
        s.consume();
        assert_eq!(s.next_command(&mut m).unwrap().unwrap()[1], 1);
        s.fail_command(cerror::ILL);
        assert!(s.cmdq_stopped());
        assert_eq!(s.read32(off::CMDQ_CONS), 1 | 1 << 24);
        s.consume_n(0);
        assert_eq!(s.read32(off::CMDQ_CONS), 1 | 1 << 24, "no progress: ERR stays");
        assert!(s.next_command(&mut m).is_none(), "stopped on the error");
        s.write32(off::GERRORN, Gerror::CMDQ_ERR.bits());
        assert_eq!(s.next_command(&mut m).unwrap().unwrap()[1], 1, "restarted at CONS");
        s.consume();
        s.consume();
        assert_eq!(s.read32(off::CMDQ_CONS), 3, "ERR cleared by progress");
        // Wrap: 8 entries, PROD with the wrap bit.
        s.write32(off::CMDQ_PROD, 8 | 1);
        for _ in 0..6 {
            assert!(s.next_command(&mut m).is_some());
            s.consume();
        }
        assert!(s.next_command(&mut m).is_none());
        assert_eq!(s.read32(off::CMDQ_CONS), 9);
        m.hole = Some((0x10_0000, 0x10_0100));
        s.write32(off::CMDQ_PROD, 10);
        assert!(s.next_command(&mut m).unwrap().is_err(), "fetch abort reported");
    }

    #[test]
    fn commands_are_fetched_in_runs_up_to_the_queue_end_and_a_fault() {
        let (mut s, mut m) = (smmu(), Mem::default());
        queue_setup(&mut s, &mut m);
        let mut out = [Command::default(); 16];
        assert_eq!(s.fetch_commands(&mut m, 0, &mut out), None, "empty");
        // CONS 6, PROD 8 + wrap + 3: five commands, two before the queue's end.
        for _ in 0..6 {
            s.consume();
        }
        s.write32(off::CMDQ_PROD, 8 | 3);
        assert_eq!(s.commands_after(0), 5);
        assert_eq!(s.commands_after(4), 1);
        assert_eq!(s.commands_after(9), 0);
        assert_eq!(s.fetch_commands(&mut m, 0, &mut out), Some(Ok(2)), "up to the end");
        assert_eq!(out[..2], [Command([0x46 + (6 << 56), 6]), Command([0x46 + (7 << 56), 7])]);
        assert_eq!(s.fetch_commands(&mut m, 2, &mut out), Some(Ok(3)), "then from the start");
        assert_eq!(out[2].0[1], 2);
        assert_eq!(s.fetch_commands(&mut m, 1, &mut out[..1]), Some(Ok(1)), "at most out.len()");
        assert_eq!(out[0].0[1], 7);
        assert_eq!(s.fetch_commands(&mut m, 5, &mut out), None, "nothing beyond PROD");
        assert_eq!(s.fetch_commands(&mut m, 0, &mut []), None);
        // Entry 1 (second of the run from the start) out of reach: the good one before it.
        m.hole = Some((0x10_0010, 0x10_0020));
        assert_eq!(s.fetch_commands(&mut m, 2, &mut out), Some(Ok(1)));
        assert_eq!(s.fetch_commands(&mut m, 3, &mut out), Some(Err(MemFault { addr: 0x10_0010 })));
        // A stopped queue gives nothing.
        s.fail_command(cerror::ILL);
        assert_eq!(s.fetch_commands(&mut m, 0, &mut out), None);
    }

    #[test]
    fn the_whole_queue_is_fetched_at_once_only_if_it_fits_and_does_not_wrap() {
        let (mut s, mut m) = (smmu(), Mem::default());
        queue_setup(&mut s, &mut m);
        let mut out = [Command::default(); 4];
        assert_eq!(s.fetch_all(&mut m, &mut out), Err(0), "empty");
        s.write32(off::CMDQ_PROD, 3);
        assert_eq!(s.fetch_all(&mut m, &mut out), Ok(3));
        assert_eq!([out[0].0[1], out[1].0[1], out[2].0[1]], [0, 1, 2]);
        assert_eq!(s.fetch_all(&mut m, &mut out[..2]), Err(0), "more than fit");
        assert_eq!(s.fetch_all(&mut m, &mut out[..3]), Ok(3), "exactly as many as fit");
        // CONS 6, PROD 8 + wrap + 1: three commands, two before the queue's end.
        for _ in 0..6 {
            s.consume();
        }
        s.write32(off::CMDQ_PROD, 8 | 1);
        out = [Command::default(); 4];
        assert_eq!(s.fetch_all(&mut m, &mut out), Err(2), "the two before the end");
        assert_eq!((out[0].0[1], out[1].0[1], out[2]), (6, 7, Command::default()));
        // The first entry out of reach, or a stopped or disabled queue: nothing.
        m.hole = Some((0x10_0060, 0x10_0070));
        assert_eq!(s.fetch_all(&mut m, &mut out), Err(0));
        m.hole = None;
        s.fail_command(cerror::ILL);
        assert_eq!(s.fetch_all(&mut m, &mut out), Err(0), "stopped");
    }

    #[test]
    fn linear_and_two_level_ste_lookup() {
        let (mut s, mut m) = (smmu(), Mem::default());
        s.write32(off::STRTAB_BASE, 0x4_0000);
        s.write32(off::STRTAB_BASE_CFG, strtab_cfg::log2size(6));
        m.write(0x4_0000 + 5 * 64, &[0xb, 1, 2, 3, 4, 5, 6, 7]).unwrap();
        assert_eq!(s.lookup_ste(&mut m, 5), Ok([0xb, 1, 2, 3, 4, 5, 6, 7]));
        assert_eq!(s.lookup_ste(&mut m, 64), Err(SteFault::BadStreamId));
        // Two levels, SPLIT 8, 10 SID bits: 4 level-1 descriptors.
        s.write32(off::STRTAB_BASE_CFG, strtab_cfg::FMT_2LVL | strtab_cfg::split(8) | 10);
        m.write(0x4_0000 + 8, &[0x8_0000 | 9]).unwrap(); // span covers 256 STEs
        m.write(0x4_0000 + 16, &[0x9_0000 | 2]).unwrap(); // span covers 2 STEs
        m.write(0x8_0000 + 0x23 * 64, &[0x77, 0, 0, 0, 0, 0, 0, 0]).unwrap();
        assert_eq!(s.lookup_ste(&mut m, 0x123).unwrap()[0], 0x77);
        assert_eq!(s.lookup_ste(&mut m, 0x023), Err(SteFault::NoLevel2), "invalid L1");
        assert_eq!(s.ste_address(&mut m, 0x201), Ok(0x9_0000 + 64));
        assert_eq!(s.lookup_ste(&mut m, 0x202), Err(SteFault::NoLevel2), "beyond the span");
        assert_eq!(s.lookup_ste(&mut m, 0x400), Err(SteFault::BadStreamId));
        m.hole = Some((0x4_0000, 0x4_1000));
        assert!(matches!(s.lookup_ste(&mut m, 0x123), Err(SteFault::Fetch(_))));
    }

    #[test]
    fn event_queue_producer_overflow_and_abort() {
        let (mut s, mut m) = (smmu(), Mem::default());
        queue_setup(&mut s, &mut m);
        s.write32(off::IRQ_CTRL, IrqCtrl::EVENTQ_IRQEN.bits());
        for i in 0..4 {
            assert_eq!(s.post_event(&mut m, &[0x10, 0, i, 0]), EventPost::Written);
        }
        assert!(s.take_irqs().eventq);
        let mut r = [0u64; 4];
        m.read(0x20_0000 + 3 * 32, &mut r).unwrap();
        assert_eq!(r[2], 3);
        assert_eq!(s.post_event(&mut m, &[0x10, 0, 9, 0]), EventPost::Overflow);
        assert!(s.evtq_overflow_pending());
        assert_eq!(s.read32(off::EVTQ_PROD), Q_OVFLG | 4);
        // The consumer takes two and acknowledges the overflow.
        s.write32(off::EVTQ_CONS, Q_OVFLG | 2);
        assert!(!s.evtq_overflow_pending());
        assert_eq!(s.post_event(&mut m, &[0x10, 0, 5, 0]), EventPost::Written);
        assert_eq!(s.read32(off::EVTQ_PROD), Q_OVFLG | 5, "the flag stays as toggled");
        // The consumer takes everything; filled again, a second overflow toggles OVFLG back,
        // with an interrupt.
        s.write32(off::EVTQ_CONS, Q_OVFLG | 5);
        for i in 0..4 {
            assert_eq!(s.post_event(&mut m, &[0x10, 0, 10 + i, 0]), EventPost::Written);
        }
        assert_eq!(s.read32(off::EVTQ_PROD), Q_OVFLG | 1, "index 1, wrap clear");
        assert!(s.take_irqs().eventq);
        assert_eq!(s.post_event(&mut m, &[0x10, 0, 14, 0]), EventPost::Overflow);
        assert_eq!(s.read32(off::EVTQ_PROD), 1, "OVFLG toggled back");
        assert!(s.evtq_overflow_pending());
        assert!(s.take_irqs().eventq, "an overflow is signalled with the event interrupt");
        assert_eq!(s.post_event(&mut m, &[0x10, 0, 15, 0]), EventPost::Overflow);
        assert_eq!(s.read32(off::EVTQ_PROD), 1, "signalled once until acknowledged");
        assert!(!s.take_irqs().eventq);
        s.write32(off::EVTQ_CONS, 1);
        assert!(!s.evtq_overflow_pending());
        m.hole = Some((0x20_0000, 0x20_0080));
        assert_eq!(s.post_event(&mut m, &[0x10, 0, 6, 0]), EventPost::Abort);
        assert!(s.active_errors().contains(Gerror::EVENTQ_ABT_ERR));
        s.write32(off::CR0, Cr0::CMDQEN.bits());
        assert_eq!(s.post_event(&mut m, &[0x10, 0, 7, 0]), EventPost::Disabled);
    }
}
