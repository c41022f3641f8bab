//! Routing of SMMU event records to the VM that owns the stream, through a bounded ring per VM.
//! A full ring drops the newest record and counts it, so a VM that never reads its events
//! cannot make the hypervisor allocate or block.

use crate::smmu::driver::EventWords;

/// Records kept per VM.
pub const RING_CAPACITY: usize = 64;

/// The stream ID of an event record (word 0, bits 63:32).
pub const fn event_sid(e: &EventWords) -> u32 {
    (e[0] >> 32) as u32
}

/// A bounded FIFO of event records.
#[derive(Debug)]
pub struct EventRing {
    buf: [EventWords; RING_CAPACITY],
    head: usize,
    len: usize,
    /// Records dropped because the ring was full.
    pub overflows: u64,
    /// Records ever routed here.
    pub routed: u64,
}

impl Default for EventRing {
    fn default() -> Self {
        Self::new()
    }
}

impl EventRing {
    /// An empty ring.
    pub const fn new() -> Self {
        Self { buf: [[0; 4]; RING_CAPACITY], head: 0, len: 0, overflows: 0, routed: 0 }
    }

    /// Appends a record, or counts an overflow if full.
    pub fn push(&mut self, e: EventWords) {
        self.routed += 1;
        if self.len == RING_CAPACITY {
            self.overflows += 1;
            return;
        }
        self.buf[(self.head + self.len) % RING_CAPACITY] = e;
        self.len += 1;
    }

    /// Takes the oldest record.
    pub fn pop(&mut self) -> Option<EventWords> {
        if self.len == 0 {
            return None;
        }
        let e = self.buf[self.head];
        self.head = (self.head + 1) % RING_CAPACITY;
        self.len -= 1;
        Some(e)
    }

    /// Records waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no record is waiting.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(sid: u32, n: u64) -> EventWords {
        [0x10 | (sid as u64) << 32, 0, n, 0]
    }

    #[test]
    fn fifo_order_and_bounded_overflow() {
        let mut r = EventRing::new();
        for i in 0..RING_CAPACITY as u64 + 3 {
            r.push(ev(0x18, i));
        }
        assert_eq!(r.len(), RING_CAPACITY);
        assert_eq!(r.overflows, 3);
        assert_eq!(r.routed, RING_CAPACITY as u64 + 3);
        assert_eq!(r.pop().unwrap()[2], 0, "oldest first; the newest were dropped");
        r.push(ev(0x18, 99));
        let mut last = 0;
        while let Some(e) = r.pop() {
            last = e[2];
        }
        assert_eq!(last, 99);
        assert!(r.is_empty());
        assert_eq!(event_sid(&ev(0x18, 0)), 0x18);
    }
}
