//! The hypervisor's interrupt handlers, by INTID: a static table that hypervisor code fills with
//! [`Table::register`] (for example the SMMU's event-queue and global-error SPIs) and the EL2
//! interrupt path consults for every interrupt it acknowledges ([`Table::dispatch`]).
//!
//! Every interrupt reaches EL2 on CPUs whose VM does not drive the GIC itself (the guests':
//! `HCR_EL2.IMO/FMO` set); on a Linux host's CPUs only group 0 does (FIQs, `HCR_EL2.FMO`): the
//! hypervisor's own SPIs. Anything else that arrives (an SPI a host routed to a guest's CPU, a
//! group-0 interrupt a host made of its own) has no handler here: the EL2 path logs its INTID
//! once (per INTID), disables it so it cannot storm the CPU, and ends it.
#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicU64, Ordering};
use spin::Once;

/// INTIDs the table covers: SGIs, PPIs and SPIs (0..1019). 1020..1023 are special; LPIs
/// (8192+) are never enabled by the hypervisor.
pub const MAX_INTID: u32 = 1020;
/// First special INTID (1023: spurious, "no pending interrupt").
pub const SPECIAL_START: u32 = 1020;

/// A handler, called with the INTID on the CPU that took it, before end of interrupt.
pub type Handler = fn(intid: u32);

/// Why a handler could not be registered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterError {
    /// Not an SGI, PPI or SPI.
    OutOfRange(u32),
    /// Another handler has it.
    Taken(u32),
}

/// What to do with an acknowledged interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dispatch {
    /// Its handler ran; end it.
    Handled,
    /// No handler: disable it and end it (`first` = log it: not seen before).
    Unknown {
        /// The first time this INTID arrived.
        first: bool,
    },
    /// A special INTID (nothing was pending): nothing to end.
    Spurious,
}

/// The table.
pub struct Table {
    handlers: [Once<Handler>; MAX_INTID as usize],
    seen: [AtomicU64; (MAX_INTID as usize).div_ceil(64)],
    /// Unknown interrupts taken (every time, not only the first).
    unknown: AtomicU64,
}

impl Default for Table {
    fn default() -> Self {
        Self::new()
    }
}

impl Table {
    /// An empty table.
    pub const fn new() -> Self {
        Self {
            handlers: [const { Once::new() }; MAX_INTID as usize],
            seen: [const { AtomicU64::new(0) }; (MAX_INTID as usize).div_ceil(64)],
            unknown: AtomicU64::new(0),
        }
    }

    /// Installs `handler` for `intid` (once: a second registration is refused).
    pub fn register(&self, intid: u32, handler: Handler) -> Result<(), RegisterError> {
        let slot = self.handlers.get(intid as usize).ok_or(RegisterError::OutOfRange(intid))?;
        let mut installed = false;
        slot.call_once(|| {
            installed = true;
            handler
        });
        if installed {
            Ok(())
        } else {
            Err(RegisterError::Taken(intid))
        }
    }

    /// Whether `intid` has a handler.
    pub fn has_handler(&self, intid: u32) -> bool {
        self.handlers.get(intid as usize).is_some_and(|s| s.get().is_some())
    }

    /// Runs the handler of an acknowledged `intid`, or says it has none.
    pub fn dispatch(&self, intid: u32) -> Dispatch {
        if (SPECIAL_START..SPECIAL_START + 4).contains(&intid) {
            return Dispatch::Spurious;
        }
        if let Some(h) = self.handlers.get(intid as usize).and_then(|s| s.get()) {
            h(intid);
            return Dispatch::Handled;
        }
        self.unknown.fetch_add(1, Ordering::Relaxed);
        let first = match self.seen.get(intid as usize / 64) {
            Some(w) => {
                let bit = 1u64 << (intid % 64);
                w.fetch_or(bit, Ordering::Relaxed) & bit == 0
            }
            // An LPI or extended INTID: never ours, log every time (it cannot recur: nothing
            // enables them).
            None => true,
        };
        Dispatch::Unknown { first }
    }

    /// Unknown interrupts taken so far.
    pub fn unknown_count(&self) -> u64 {
        self.unknown.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::AtomicU32;

    static CALLS: AtomicU32 = AtomicU32::new(0);
    static LAST: AtomicU32 = AtomicU32::new(0);

    fn count(intid: u32) {
        CALLS.fetch_add(1, Ordering::SeqCst);
        LAST.store(intid, Ordering::SeqCst);
    }

    #[test]
    fn registered_handlers_run_unknown_ones_are_reported_once() {
        let t = Table::new();
        assert_eq!(t.register(74, count), Ok(()));
        assert_eq!(t.register(74, count), Err(RegisterError::Taken(74)));
        assert_eq!(t.register(1020, count), Err(RegisterError::OutOfRange(1020)));
        assert!(t.has_handler(74) && !t.has_handler(75));
        assert_eq!(t.dispatch(74), Dispatch::Handled);
        assert_eq!((CALLS.load(Ordering::SeqCst), LAST.load(Ordering::SeqCst)), (1, 74));
        assert_eq!(t.dispatch(100), Dispatch::Unknown { first: true });
        assert_eq!(t.dispatch(100), Dispatch::Unknown { first: false });
        assert_eq!(t.dispatch(1), Dispatch::Unknown { first: true }, "an SGI");
        assert_eq!(t.dispatch(1019), Dispatch::Unknown { first: true });
        assert_eq!(t.dispatch(8192), Dispatch::Unknown { first: true }, "an LPI");
        assert_eq!(t.unknown_count(), 5);
        for special in 1020..1024 {
            assert_eq!(t.dispatch(special), Dispatch::Spurious);
        }
        assert_eq!(CALLS.load(Ordering::SeqCst), 1);
    }
}
