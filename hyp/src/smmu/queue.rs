//! Circular-queue index arithmetic of the SMMUv3 command, event and PRI queues (pure).
//!
//! A queue of `2^log2size` entries is described by PROD and CONS registers that each hold an
//! index in bits `[log2size-1:0]` and a wrap flag in bit `log2size`. The queue is empty when
//! index and wrap are equal, full when the indexes are equal and the wraps differ.

/// PROD or CONS value of one queue (index plus wrap bit; other register bits stripped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueuePtr {
    log2size: u32,
    value: u32,
}

impl QueuePtr {
    /// The pointer of a `2^log2size`-entry queue, from a register value (higher bits ignored).
    pub const fn new(log2size: u32, reg: u32) -> Self {
        Self { log2size, value: reg & ((2 << log2size) - 1) }
    }

    /// Index into the queue.
    pub const fn index(self) -> u32 {
        self.value & ((1 << self.log2size) - 1)
    }

    /// Wrap flag.
    pub const fn wrap(self) -> bool {
        self.value & (1 << self.log2size) != 0
    }

    /// The register value (index and wrap).
    pub const fn raw(self) -> u32 {
        self.value
    }

    /// The pointer `n` entries further on.
    pub const fn advance(self, n: u32) -> Self {
        Self {
            log2size: self.log2size,
            value: self.value.wrapping_add(n) & ((2 << self.log2size) - 1),
        }
    }

    /// Entries in the queue.
    pub const fn capacity(self) -> u32 {
        1 << self.log2size
    }
}

/// Entries between `cons` and `prod` (how many the producer has written and the consumer not
/// yet read).
pub const fn used(prod: QueuePtr, cons: QueuePtr) -> u32 {
    let cap = prod.capacity();
    if prod.wrap() == cons.wrap() {
        prod.index() - cons.index()
    } else {
        cap - cons.index() + prod.index()
    }
}

/// Free entries the producer may still write.
pub const fn space(prod: QueuePtr, cons: QueuePtr) -> u32 {
    prod.capacity() - used(prod, cons)
}

/// Whether the consumer has reached (or passed) `target`, a position the producer wrote up to
/// earlier, given the producer is now at `prod` (all three within one queue's worth).
pub const fn reached(cons: QueuePtr, target: QueuePtr, prod: QueuePtr) -> bool {
    used(prod, cons) <= used(prod, target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_wrap_and_advance() {
        let p = QueuePtr::new(3, 0xdead_000f);
        assert_eq!(p.index(), 7);
        assert!(p.wrap());
        let q = p.advance(1);
        assert_eq!((q.index(), q.wrap()), (0, false));
        assert_eq!(QueuePtr::new(3, 0).advance(9).raw(), 0b1001);
    }

    #[test]
    fn used_and_space() {
        let c = QueuePtr::new(2, 0);
        assert_eq!(used(c, c), 0);
        assert_eq!(space(c, c), 4);
        let full = c.advance(4);
        assert_eq!(used(full, c), 4, "same index, different wrap = full");
        assert_eq!(space(full, c), 0);
        let c3 = QueuePtr::new(2, 3);
        assert_eq!(used(c3.advance(2), c3), 2, "across the wrap");
    }

    #[test]
    fn consumption() {
        let start = QueuePtr::new(4, 14);
        let target = start.advance(5); // crosses the wrap
        let prod = target.advance(3); // someone produced more after us
        assert!(!reached(start, target, prod));
        assert!(!reached(start.advance(4), target, prod));
        assert!(reached(target, target, prod));
        assert!(reached(target.advance(2), target, prod));
        assert!(reached(prod, target, prod));
    }
}
