//! Data-cache maintenance to the point of coherency, for a non-coherent SMMU: what the CPU
//! wrote reaches memory before the SMMU reads it ([`clean`]), and no stale line serves the
//! CPU's loads of what the SMMU (or a VM through a non-cacheable mapping) wrote
//! ([`clean_invalidate`]). Both operate on every line the range touches, by virtual address
//! (EL2's identity map: VA = PA), and end with `DSB SY` so that the maintenance is complete
//! before any later access, the SMMU's doorbell included.

use platform::regs::DmaRange;

/// The smallest data-cache line of the CPU (CTR_EL0.DminLine, log2 of words).
#[inline(always)]
fn line_bytes() -> u64 {
    let ctr: u64;
    // SAFETY: reads an ID register; no memory or state is touched.
    unsafe {
        core::arch::asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack, preserves_flags))
    };
    4 << ((ctr >> 16) & 0xf)
}

/// `op` on the address of every cache line `r` touches, then `DSB SY`.
#[inline(always)]
fn each_line(r: DmaRange, op: impl Fn(u64)) {
    let line = line_bytes();
    let mut a = r.pa & !(line - 1);
    while a < r.pa + r.len {
        op(a);
        a += line;
    }
    // SAFETY: a barrier; no data is touched.
    unsafe { core::arch::asm!("dsb sy", options(nostack, preserves_flags)) };
}

/// `DC CVAC` over `r`, then `DSB SY`.
#[inline(never)]
pub fn clean(r: DmaRange) {
    // SAFETY: a clean writes a dirty line back and changes no data; the range is inside EL2's
    // identity map (memory the hypervisor maps: its own tables and queues, or a VM's RAM).
    each_line(r, |a| unsafe {
        core::arch::asm!("dc cvac, {}", in(reg) a, options(nostack, preserves_flags))
    });
}

/// `DC CIVAC` over `r`, then `DSB SY`.
#[inline(never)]
pub fn clean_invalidate(r: DmaRange) {
    // SAFETY: clean and invalidate writes a dirty line back before dropping it: no data is
    // lost, the next load reads memory; the range is inside EL2's identity map (as above).
    each_line(r, |a| unsafe {
        core::arch::asm!("dc civac, {}", in(reg) a, options(nostack, preserves_flags))
    });
}
