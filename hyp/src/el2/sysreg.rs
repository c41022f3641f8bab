//! The system registers the hypervisor uses, each behind a named accessor: the only place with
//! `mrs`/`msr`.

use core::arch::asm;

macro_rules! sysreg_rw {
    ($($reg:ident),* $(,)?) => {
        $( sysreg_rw!(@one $reg, stringify!($reg)); )*
    };
    // Registers the assembler only names with a target feature enabled: by encoding.
    ($($reg:ident = $enc:literal),* $(,)?) => {
        $( sysreg_rw!(@one $reg, $enc); )*
    };
    (@one $reg:ident, $name:expr) => {
            pub mod $reg {
                use super::asm;
                /// Reads the register.
                #[inline(always)]
                #[allow(dead_code)]
                pub fn read() -> u64 {
                    let v: u64;
                    // SAFETY: reading this system register has no side effect at EL2.
                    unsafe { asm!(concat!("mrs {}, ", $name), out(reg) v, options(nomem, nostack, preserves_flags)) };
                    v
                }
                /// Writes the register.
                ///
                /// # Safety
                ///
                /// The caller must make sure the new value keeps the hypervisor's memory and
                /// execution state sound (translation regime, vectors, VM configuration).
                #[inline(always)]
                #[allow(dead_code)]
                pub unsafe fn write(v: u64) {
                    // SAFETY: the caller upholds this function's contract.
                    unsafe { asm!(concat!("msr ", $name, ", {}"), in(reg) v, options(nostack, preserves_flags)) };
                }
            }
    };
}

sysreg_rw!(
    mpidr_el1,
    midr_el1,
    esr_el2,
    far_el2,
    hpfar_el2,
    elr_el2,
    spsr_el2,
    hcr_el2,
    vtcr_el2,
    vttbr_el2,
    vmpidr_el2,
    vpidr_el2,
    cnthctl_el2,
    cntvoff_el2,
    mair_el2,
    tcr_el2,
    ttbr0_el2,
    sctlr_el2,
    sctlr_el1,
    cpacr_el1,
    esr_el1,
    far_el1,
    elr_el1,
    spsr_el1,
    vbar_el1,
    id_aa64mmfr0_el1,
    id_aa64mmfr1_el1,
    id_aa64pfr0_el1,
    id_aa64pfr1_el1,
    cntfrq_el0,
    cntpct_el0,
    tpidr_el2,
    id_aa64mmfr3_el1,
    id_aa64isar2_el1,
    cptr_el2,
    mdcr_el2,
    pmcr_el0,
);

sysreg_rw!(
    zcr_el2 = "s3_4_c1_c2_0",
    smcr_el2 = "s3_4_c1_c2_6",
    hcrx_el2 = "s3_4_c1_c2_2",
    id_aa64smfr0_el1 = "s3_0_c0_c4_5",
    ich_hcr_el2 = "s3_4_c12_c11_0",
    ich_vmcr_el2 = "s3_4_c12_c11_7",
);

/// Data and instruction synchronization barriers.
#[inline(always)]
pub fn dsb_isb() {
    // SAFETY: barriers have no effect besides ordering.
    unsafe { asm!("dsb sy", "isb", options(nostack, preserves_flags)) };
}

/// Invalidates every stage-1 and stage-2 EL1&0 TLB entry (all VMIDs) and the EL2 TLB.
pub fn tlbi_all() {
    // SAFETY: TLB invalidation only discards cached translations.
    unsafe {
        asm!(
            "dsb ishst",
            "tlbi alle1is",
            "tlbi alle2is",
            "dsb ish",
            "isb",
            options(nostack, preserves_flags)
        )
    };
}

/// This CPU's linear index (MPIDR_EL1.Aff0 on QEMU `virt`, which numbers CPUs 0..n in Aff0).
pub fn cpu_index() -> u32 {
    (mpidr_el1::read() & 0xff) as u32
}

/// The affinity (MPIDR_EL1 Aff3..Aff0 layout, as GICD_IROUTER takes it) of CPU `cpu`: Aff0 on
/// QEMU `virt` (see [`cpu_index`]).
pub fn affinity(cpu: u32) -> u64 {
    cpu as u64 & 0xff
}
