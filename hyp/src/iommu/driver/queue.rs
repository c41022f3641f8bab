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
/// yet read): `prod - cons` modulo twice the capacity, the distance the wrap flag encodes.
/// More than the capacity when the two are inconsistent (one of them written by software that
/// does not follow the protocol, like an emulated SMMU's guest: a PROD "behind" CONS, or a CONS
/// "ahead of" PROD); never more than twice the capacity minus one.
pub const fn used(prod: QueuePtr, cons: QueuePtr) -> u32 {
    prod.value.wrapping_sub(cons.value) & ((2 << prod.log2size) - 1)
}

/// Free entries the producer may still write (none when the pointers say more than full).
pub const fn space(prod: QueuePtr, cons: QueuePtr) -> u32 {
    prod.capacity().saturating_sub(used(prod, cons))
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
    fn inconsistent_pointers_give_a_bounded_distance() {
        // A PROD "behind" CONS with the same wrap flag (more than full): the distance the wrap
        // encoding gives, not an underflow (a panic in debug builds, and about 2^32 commands
        // for an emulated SMMU's consumer in release builds).
        let cons = QueuePtr::new(3, 3);
        assert_eq!(used(QueuePtr::new(3, 1), cons), 14);
        assert_eq!(space(QueuePtr::new(3, 1), cons), 0, "more than full: no room");
        // Different wraps, PROD beyond CONS by more than the queue.
        assert_eq!(used(QueuePtr::new(3, 8 | 5), QueuePtr::new(3, 2)), 11);
        assert_eq!(space(QueuePtr::new(3, 8 | 5), QueuePtr::new(3, 2)), 0);
        // Every pair of pointers of a small queue: below twice the capacity, and exactly the
        // protocol's answer when consistent.
        for p in 0..16 {
            for c in 0..16 {
                let (p, c) = (QueuePtr::new(3, p), QueuePtr::new(3, c));
                let u = used(p, c);
                assert!(u < 16);
                assert_eq!(c.advance(u), p, "CONS advanced by `used` reaches PROD");
                assert_eq!(space(p, c), 8u32.saturating_sub(u));
            }
        }
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
