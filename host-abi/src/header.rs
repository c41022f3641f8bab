//! Renders the C header `include/smmu_hyp.h` from the Rust definitions, so the two cannot drift:
//! the test `tests/header.rs` fails when the committed header differs from this output (run
//! `SMMU_HYP_BLESS=1 cargo test -p host-abi --test header` to regenerate it) and compiles it with the C compiler.

use crate::call::FunctionId;
use crate::error::HypError;
use crate::psci;
use crate::smmu::regs::{self, cerror, off, Cr0, Cr2, Gbpa, Gerror, IrqCtrl};
use crate::smmu::{cd, cmd, event_name, evt, ste, Field, Opcode, SteConfig};
use crate::types::{BOOT_INFO_MAGIC, VM_NAME_LEN};
use bitflags::Flags;
use core::fmt::{Debug, Result, Write};

/// `[("NAME", module::NAME), ...]`: constants with their Rust names, so the C names cannot
/// drift from them. That each list below names every constant of its module is checked by
/// `tests/header.rs`, which reads the modules' source.
macro_rules! named {
    ($m:ident: $($c:ident),* $(,)?) => { [$((stringify!($c), $m::$c)),*] };
}

/// Every command field, for C (`SMMU_HYP_CMD_<NAME>_*`).
const CMD_FIELDS: &[(&str, Field)] = &named!(cmd: OPCODE, SSEC, SSV, SSID, SID, VMID, ASID,
    NUM, SCALE, GLOBAL, LEAF, RANGE, SIZE, TTL, TG, ADDR, PREFETCH_SIZE, PREFETCH_STRIDE,
    SYNC_CS, SYNC_MSH, SYNC_MSIATTR, SYNC_MSIDATA, SYNC_MSIADDR);

/// Every STE field (`SMMU_HYP_STE_<NAME>_*`).
const STE_FIELDS: &[(&str, Field)] = &named!(ste: V, CONFIG, S1FMT, S1_CONTEXT_PTR, S1CDMAX,
    S1DSS, S1CIR, S1COR, S1CSH, S1STALLD, EATS, STRW, MEMATTR, MTCFG, ALLOCCFG, SHCFG, NSCFG,
    PRIVCFG, INSTCFG, S2VMID, S2T0SZ, S2SL0, S2IR0, S2OR0, S2SH0, S2TG, S2PS, S2AA64, S2ENDI,
    S2AFFD, S2PTW, S2S, S2R, S2TTB);

/// Every CD field (`SMMU_HYP_CD_<NAME>_*`).
const CD_FIELDS: &[(&str, Field)] = &named!(cd: T0SZ, TG0, IR0, OR0, SH0, EPD0, ENDI, T1SZ,
    TG1, IR1, OR1, SH1, EPD1, V, IPS, AFFD, WXN, UWXN, TBI, PAN, AA64, HD, HA, S, R, A, ASET,
    ASID, NSCFG0, HAD0, RES1_3_2, TTB0, RES1_59_52, HWU0, NSCFG1, HAD1, RES2_3_2, TTB1,
    RES2_59_52, HWU1, MAIR, AMAIR, IMPDEF, MPAM, RES7);

/// Every event record field (`SMMU_HYP_EVT_<NAME>_*`).
const EVT_FIELDS: &[(&str, Field)] =
    &named!(evt: TYPE, SSV, SSID, SID, PNU, IND, RNW, S2, CLASS, INPUT_ADDR, IPA);

/// The register offsets (`SMMU_HYP_REG_<NAME>`).
const REG_OFFSETS: &[(&str, usize)] = &named!(off: IDR0, IDR1, IDR2, IDR3, IDR4, IDR5, IIDR,
    AIDR, CR0, CR0ACK, CR1, CR2, STATUSR, GBPA, AGBPA, IRQ_CTRL, IRQ_CTRLACK, GERROR, GERRORN,
    GERROR_IRQ_CFG0, GERROR_IRQ_CFG1, GERROR_IRQ_CFG2, STRTAB_BASE, STRTAB_BASE_CFG, CMDQ_BASE,
    CMDQ_PROD, CMDQ_CONS, EVTQ_BASE, EVTQ_IRQ_CFG0, EVTQ_IRQ_CFG1, EVTQ_IRQ_CFG2, PRIQ_BASE,
    EVTQ_PROD, EVTQ_CONS, PRIQ_PROD, PRIQ_CONS);

/// CMDQ_CONS.ERR values (`SMMU_HYP_CERROR_<NAME>`).
const CERRORS: &[(&str, u32)] = &named!(cerror: NONE, ILL, ABT, ATC_INV_SYNC);

/// `CamelCase` (a `Debug` name) as `SNAKE_CASE`: `TlbiS12Vmall` is `TLBI_S12_VMALL`.
fn snake(w: &mut dyn Write, name: &dyn Debug) -> Result {
    struct Snake<'a>(&'a mut dyn Write, bool);
    impl Write for Snake<'_> {
        fn write_str(&mut self, s: &str) -> Result {
            for c in s.chars() {
                if c.is_ascii_uppercase() && self.1 {
                    self.0.write_char('_')?;
                }
                self.1 = c.is_ascii_lowercase() || c.is_ascii_digit();
                self.0.write_char(c.to_ascii_uppercase())?;
            }
            Ok(())
        }
    }
    write!(Snake(w, false), "{name:?}")
}

/// The errno a kernel caller returns for each error (`smmu_hyp_errno()` in C): the one
/// mapping of every C file, so that the host's module and the guest's driver cannot disagree.
pub const fn errno(e: HypError) -> &'static str {
    match e {
        HypError::NotSupported => "EOPNOTSUPP",
        HypError::InvalidParameter | HypError::ReservedField | HypError::BadConfig => "EINVAL",
        HypError::InvalidAddress => "EFAULT",
        HypError::NotOwned | HypError::ForbiddenField | HypError::BadCommand => "EPERM",
        HypError::DeviceError => "EIO",
        HypError::Refused => "EBUSY",
    }
}

/// Any other negative status (one this header does not know: a later ABI's).
const UNKNOWN_ERRNO: &str = "EPROTO";

/// `smmu_hyp_errno()`: a status in x0 as 0 or a negative errno ([`errno`]).
fn errno_of(w: &mut dyn Write) -> Result {
    write!(
        w,
        "#ifdef __KERNEL__\n#include <linux/errno.h>\n#else\n#include <errno.h>\n#endif\n\
         /*\n * The errno of a status in x0: 0 for success (x0 >= 0), else the negative errno\n\
         \x20* of its SMMU_HYP_ERR_* code, -{UNKNOWN_ERRNO} for a code this header does not know.\n */\n\
         static inline int smmu_hyp_errno(long status)\n{{\n\tif (status >= 0)\n\t\treturn 0;\n\
         \tswitch (status) {{\n"
    )?;
    for e in HypError::ALL {
        writeln!(w, "\tcase SMMU_HYP_ERR_{}:\n\t\treturn -{};", e.name(), errno(e))?;
    }
    writeln!(w, "\tdefault:\n\t\treturn -{UNKNOWN_ERRNO};\n\t}}\n}}")
}

/// One descriptor field: its word, lowest bit and bits in place.
fn field(w: &mut dyn Write, prefix: &str, name: &str, f: Field) -> Result {
    writeln!(w, "#define SMMU_HYP_{prefix}_{name}_WORD {}", f.word)?;
    writeln!(w, "#define SMMU_HYP_{prefix}_{name}_SHIFT {}", f.lsb)?;
    writeln!(w, "#define SMMU_HYP_{prefix}_{name}_MASK 0x{:016x}ull", f.mask())
}

/// The SMMUv3 encodings: descriptor fields and values, register offsets and bits.
fn smmu(w: &mut dyn Write) -> Result {
    writeln!(w, "/*")?;
    writeln!(w, " * SMMUv3 encodings (Arm IHI 0070; host-abi/src/smmu): the architecture's, not")?;
    writeln!(w, " * this ABI's, for the descriptors above and the SMMU's registers. Descriptor")?;
    writeln!(
        w,
        " * field F: F_WORD (its 64-bit word), F_SHIFT (its lowest bit), F_MASK (its bits"
    )?;
    writeln!(w, " * in place); register field F: F_SHIFT and F_MASK.")?;
    writeln!(w, " */")?;
    writeln!(w, "#define SMMU_HYP_FIELD_PREP(f, v) (((uint64_t)(v) << f##_SHIFT) & f##_MASK)")?;
    writeln!(w, "#define SMMU_HYP_FIELD_GET(f, x) (((uint64_t)(x) & f##_MASK) >> f##_SHIFT)")?;
    writeln!(w)?;
    writeln!(w, "/* Command opcodes (SMMU_HYP_CMD_OPCODE). */")?;
    for op in (0..=u8::MAX).filter_map(Opcode::from_u8) {
        write!(w, "#define SMMU_HYP_OP_")?;
        snake(w, &op)?;
        writeln!(w, " 0x{:02x}u", op as u8)?;
    }
    writeln!(w)?;
    writeln!(w, "/* Command fields. */")?;
    for &(name, f) in CMD_FIELDS {
        field(w, "CMD", name, f)?;
    }
    writeln!(w)?;
    writeln!(w, "/* Stream table entry fields, and the values of STE.Config. */")?;
    for &(name, f) in STE_FIELDS {
        field(w, "STE", name, f)?;
    }
    for c in (0..8).filter_map(SteConfig::from_bits) {
        write!(w, "#define SMMU_HYP_STE_CONFIG_")?;
        snake(w, &c)?;
        writeln!(w, " 0x{:x}u", c as u8)?;
    }
    writeln!(w)?;
    writeln!(w, "/* Context descriptor fields. */")?;
    for &(name, f) in CD_FIELDS {
        field(w, "CD", name, f)?;
    }
    writeln!(w)?;
    writeln!(w, "/* Event record fields, and the event types (SMMU_HYP_EVT_TYPE). */")?;
    for &(name, f) in EVT_FIELDS {
        field(w, "EVT", name, f)?;
    }
    for ty in 0..=u8::MAX {
        let name = event_name(ty);
        if name != event_name(0) {
            writeln!(w, "#define SMMU_HYP_EVT_{name} 0x{ty:02x}u")?;
        }
    }
    writeln!(w)?;
    writeln!(
        w,
        "/* Registers: offsets from the base of page 0 (page 1 at SMMU_HYP_REG_PAGE1). */"
    )?;
    writeln!(w, "#define SMMU_HYP_REGS_SIZE 0x{:05x}u", regs::SIZE)?;
    writeln!(w, "#define SMMU_HYP_REG_PAGE1 0x{:05x}u", regs::PAGE1)?;
    for &(name, o) in REG_OFFSETS {
        writeln!(w, "#define SMMU_HYP_REG_{name} 0x{o:05x}u")?;
    }
    writeln!(w)?;
    writeln!(w, "/* Register bits and fields. */")?;
    flags::<Cr0>(w, "CR0")?;
    flags::<Cr2>(w, "CR2")?;
    flags::<IrqCtrl>(w, "IRQ_CTRL")?;
    flags::<Gerror>(w, "GERROR")?;
    writeln!(w, "#define SMMU_HYP_GBPA_UPDATE 0x{:08x}u", Gbpa::UPDATE)?;
    writeln!(w, "#define SMMU_HYP_GBPA_ABORT 0x{:08x}u", Gbpa::ABORT)?;
    let err = regs::CMDQ_CONS_ERR_MASK;
    writeln!(w, "#define SMMU_HYP_CMDQ_CONS_ERR_SHIFT {}", err.trailing_zeros())?;
    writeln!(w, "#define SMMU_HYP_CMDQ_CONS_ERR_MASK 0x{err:08x}u")?;
    for &(name, v) in CERRORS {
        writeln!(w, "#define SMMU_HYP_CERROR_{name} {v}u")?;
    }
    writeln!(w, "#define SMMU_HYP_Q_OVFLG 0x{:08x}u /* EVENTQ_PROD, EVENTQ_CONS */", regs::Q_OVFLG)
}

/// Every named bit (or group of bits) of register `F`, as `SMMU_HYP_<reg>_<NAME>`.
fn flags<F: Flags<Bits = u32>>(w: &mut dyn Write, reg: &str) -> Result {
    for (name, f) in F::all().iter_names() {
        writeln!(w, "#define SMMU_HYP_{reg}_{name} 0x{:08x}u", f.bits())?;
    }
    Ok(())
}

/// Writes the whole C header.
pub fn render(w: &mut dyn Write) -> Result {
    writeln!(w, "/* SPDX-License-Identifier: MIT OR Apache-2.0 */")?;
    writeln!(w, "/*")?;
    writeln!(
        w,
        " * Hypercall ABI of the SMMU-owning hypervisor, for host-kernel and guest authors."
    )?;
    writeln!(w, " * GENERATED from the host-abi crate (host-abi/src/header.rs): do not edit.")?;
    writeln!(w, " * Calls: HVC #0, SMCCC 1.1 fast calls; x0 = function ID, args in x1..x7,")?;
    writeln!(w, " * results in x0..x3; x0 < 0 is an SMMU_HYP_ERR_* code.")?;
    writeln!(w, " * Also the SMMUv3 encodings (SMMU_HYP_OP_*, SMMU_HYP_CMD_*, SMMU_HYP_STE_*,")?;
    writeln!(
        w,
        " * SMMU_HYP_CD_*, SMMU_HYP_EVT_*, SMMU_HYP_REG_*, ...). For the kernel (__KERNEL__)"
    )?;
    writeln!(w, " * and for userspace (C11, <stdint.h>) alike.")?;
    writeln!(w, " */")?;
    writeln!(w, "#ifndef SMMU_HYP_H")?;
    writeln!(w, "#define SMMU_HYP_H")?;
    writeln!(w)?;
    // A kernel build has no C library headers (`-nostdinc`): the kernel's own types.h gives the
    // same fixed-width names, stddef.h offsetof.
    writeln!(w, "#ifdef __KERNEL__")?;
    writeln!(w, "#include <linux/types.h>")?;
    writeln!(w, "#include <linux/stddef.h>")?;
    writeln!(w, "#else")?;
    writeln!(w, "#include <stdint.h>")?;
    writeln!(w, "#include <stddef.h>")?;
    writeln!(w, "#endif")?;
    writeln!(w)?;
    writeln!(w, "#define SMMU_HYP_ABI_VERSION_MAJOR {}", crate::ABI_VERSION_MAJOR)?;
    writeln!(w, "#define SMMU_HYP_ABI_VERSION_MINOR {}", crate::ABI_VERSION_MINOR)?;
    writeln!(w, "#define SMMU_HYP_ABI_VERSION 0x{:08x}u", crate::ABI_VERSION)?;
    for (i, word) in crate::CALL_UID.iter().enumerate() {
        writeln!(w, "#define SMMU_HYP_CALL_UID_{i} 0x{word:08x}u")?;
    }
    writeln!(w, "#define SMMU_HYP_CONSOLE_WRITE_MAX {}u", crate::CONSOLE_WRITE_MAX)?;
    writeln!(w)?;
    writeln!(w, "/* Function IDs (vendor-specific hypervisor service, owner 6). */")?;
    for f in FunctionId::ALL {
        writeln!(w, "#define SMMU_HYP_FN_{} 0x{:08x}u", f.name(), f as u32)?;
    }
    writeln!(w)?;
    writeln!(w, "/* Status codes returned in x0. */")?;
    writeln!(w, "#define SMMU_HYP_SUCCESS 0")?;
    for e in HypError::ALL {
        writeln!(w, "#define SMMU_HYP_ERR_{} ({})", e.name(), e.code())?;
    }
    writeln!(w)?;
    errno_of(w)?;
    writeln!(w)?;
    writeln!(w, "/* PSCI 1.1 and SMCCC 1.1 functions offered to VMs through SMC #0. */")?;
    for (name, id) in [
        ("PSCI_VERSION", psci::VERSION),
        ("PSCI_CPU_SUSPEND", psci::CPU_SUSPEND),
        ("PSCI_CPU_OFF", psci::CPU_OFF),
        ("PSCI_CPU_ON", psci::CPU_ON),
        ("PSCI_AFFINITY_INFO", psci::AFFINITY_INFO),
        ("PSCI_MIGRATE_INFO_TYPE", psci::MIGRATE_INFO_TYPE),
        ("PSCI_SYSTEM_OFF", psci::SYSTEM_OFF),
        ("PSCI_SYSTEM_RESET", psci::SYSTEM_RESET),
        ("PSCI_FEATURES", psci::FEATURES),
        ("SMCCC_VERSION", psci::SMCCC_VERSION),
        ("SMCCC_ARCH_FEATURES", psci::SMCCC_ARCH_FEATURES),
    ] {
        writeln!(w, "#define SMMU_HYP_{name} 0x{id:08x}u")?;
    }
    writeln!(w)?;
    writeln!(w, "#define SMMU_HYP_BOOT_INFO_MAGIC 0x{BOOT_INFO_MAGIC:016x}ull")?;
    writeln!(w, "#define SMMU_HYP_VM_NAME_LEN {VM_NAME_LEN}")?;
    writeln!(
        w,
        "#define SMMU_HYP_BOOT_FLAG_HOST_IS_LINUX 0x{:x}ull /* VM 0 is a Linux kernel */",
        crate::types::BOOT_FLAG_HOST_IS_LINUX
    )?;
    writeln!(
        w,
        "#define SMMU_HYP_BOOT_FLAG_GUESTS_OFF 0x{:x}ull /* guests power off without waiting for the host */",
        crate::types::BOOT_FLAG_GUESTS_OFF
    )?;
    writeln!(w)?;
    writeln!(w, "/* At the IPA in x0 when a VM is entered. */")?;
    writeln!(w, "struct smmu_hyp_boot_info {{")?;
    writeln!(w, "\tuint64_t magic;        /* offset 0 */")?;
    writeln!(w, "\tuint32_t abi_version;  /* offset 8 */")?;
    writeln!(w, "\tuint32_t vm_id;        /* offset 12 */")?;
    writeln!(w, "\tuint64_t mem_base;     /* offset 16 */")?;
    writeln!(w, "\tuint64_t mem_size;     /* offset 24 */")?;
    writeln!(w, "\tuint32_t cpu;          /* offset 32 */")?;
    writeln!(w, "\tuint32_t vm_count;     /* offset 36 */")?;
    writeln!(w, "\tchar name[SMMU_HYP_VM_NAME_LEN]; /* offset 40 */")?;
    writeln!(w, "\tuint64_t flags;        /* offset 56: SMMU_HYP_BOOT_FLAG_* */")?;
    writeln!(w, "}};")?;
    writeln!(w, "_Static_assert(sizeof(struct smmu_hyp_boot_info) == 64, \"boot_info size\");")?;
    writeln!(w, "_Static_assert(offsetof(struct smmu_hyp_boot_info, flags) == 56, \"flags\");")?;
    writeln!(w, "_Static_assert(offsetof(struct smmu_hyp_boot_info, cpu) == 32, \"cpu\");")?;
    writeln!(w, "_Static_assert(offsetof(struct smmu_hyp_boot_info, name) == 40, \"name\");")?;
    writeln!(w)?;
    writeln!(w, "/* Written by SMMU_HYP_FN_VM_INFO. */")?;
    writeln!(w, "struct smmu_hyp_vm_info {{")?;
    writeln!(w, "\tuint32_t vm_id;        /* offset 0 */")?;
    writeln!(w, "\tuint32_t vm_count;     /* offset 4 */")?;
    writeln!(w, "\tuint64_t mem_base;     /* offset 8 */")?;
    writeln!(w, "\tuint64_t mem_size;     /* offset 16 */")?;
    writeln!(w, "\tuint32_t cpu;          /* offset 24 */")?;
    writeln!(w, "\tuint32_t peak_running; /* offset 28 */")?;
    writeln!(w, "\tuint64_t running_mask; /* offset 32 */")?;
    writeln!(w, "\tchar name[SMMU_HYP_VM_NAME_LEN]; /* offset 40 */")?;
    writeln!(w, "\tuint64_t stopped_mask; /* offset 56 */")?;
    writeln!(w, "}};")?;
    writeln!(w, "_Static_assert(sizeof(struct smmu_hyp_vm_info) == 64, \"vm_info size\");")?;
    writeln!(
        w,
        "_Static_assert(offsetof(struct smmu_hyp_vm_info, running_mask) == 32, \"mask\");"
    )?;
    writeln!(w, "_Static_assert(offsetof(struct smmu_hyp_vm_info, name) == 40, \"name\");")?;
    writeln!(w)?;
    writeln!(w, "/* Written by SMMU_HYP_FN_DEVICE_INFO. */")?;
    writeln!(w, "struct smmu_hyp_bar_info {{")?;
    writeln!(w, "\tuint64_t ipa;          /* offset 0 */")?;
    writeln!(w, "\tuint64_t size;         /* offset 8 */")?;
    writeln!(w, "}};")?;
    writeln!(w, "struct smmu_hyp_device_info {{")?;
    writeln!(w, "\tuint32_t stream_id;    /* offset 0 */")?;
    writeln!(w, "\tuint16_t vendor;       /* offset 4 */")?;
    writeln!(w, "\tuint16_t device;       /* offset 6 */")?;
    writeln!(w, "\tuint32_t pci_addr;     /* offset 8 */")?;
    writeln!(w, "\tuint32_t reserved;     /* offset 12 */")?;
    writeln!(w, "\tstruct smmu_hyp_bar_info bars[6]; /* offset 16 */")?;
    writeln!(w, "}};")?;
    writeln!(
        w,
        "_Static_assert(sizeof(struct smmu_hyp_device_info) == 112, \"device_info size\");"
    )?;
    writeln!(w, "_Static_assert(offsetof(struct smmu_hyp_device_info, bars) == 16, \"bars\");")?;
    writeln!(w)?;
    writeln!(w, "#define SMMU_HYP_EVENT_READ_MAX {}u", crate::EVENT_READ_MAX)?;
    writeln!(w, "#define SMMU_HYP_INVALIDATE_MAX {}u", crate::INVALIDATE_MAX)?;
    writeln!(w, "#define SMMU_HYP_INVALIDATE_INLINE_MAX {}u", crate::INVALIDATE_INLINE_MAX)?;
    writeln!(
        w,
        "/* SMMUv3 descriptors (little-endian 64-bit words, see host-abi/src/smmu.rs). */"
    )?;
    writeln!(w, "struct smmu_hyp_ste {{ uint64_t word[8]; }};")?;
    writeln!(w, "struct smmu_hyp_cd {{ uint64_t word[8]; }};")?;
    writeln!(w, "struct smmu_hyp_cmd {{ uint64_t word[2]; }};")?;
    writeln!(w, "struct smmu_hyp_event {{ uint64_t word[4]; }};")?;
    writeln!(w, "_Static_assert(sizeof(struct smmu_hyp_ste) == 64, \"ste\");")?;
    writeln!(w, "_Static_assert(sizeof(struct smmu_hyp_cmd) == 16, \"cmd\");")?;
    writeln!(w, "_Static_assert(sizeof(struct smmu_hyp_event) == 32, \"event\");")?;
    writeln!(w)?;
    smmu(w)?;
    writeln!(w)?;
    writeln!(w, "/* Written by SMMU_HYP_FN_SMMU_STATS. */")?;
    writeln!(w, "struct smmu_hyp_smmu_stats {{")?;
    for (i, f) in [
        "commands",
        "syncs",
        "ste_writes",
        "events",
        "events_routed",
        "events_dropped",
        "command_errors",
        "heap_in_use",
        "events_lost_hw",
        "global_errors",
    ]
    .iter()
    .enumerate()
    {
        writeln!(w, "\tuint64_t {f}; /* offset {} */", i * 8)?;
    }
    writeln!(w, "}};")?;
    writeln!(w, "_Static_assert(sizeof(struct smmu_hyp_smmu_stats) == 80, \"smmu_stats size\");")?;
    writeln!(w)?;
    writeln!(w, "/* Written by SMMU_HYP_FN_PM_STATUS. */")?;
    writeln!(w, "struct smmu_hyp_pm_status {{")?;
    writeln!(w, "\tuint32_t power;            /* offset 0: 0 on, 1 off */")?;
    writeln!(w, "\tuint32_t refusal;          /* offset 4 */")?;
    writeln!(w, "\tuint64_t votes_allow_off;  /* offset 8 */")?;
    writeln!(w, "\tuint32_t vm_count;         /* offset 16 */")?;
    writeln!(w, "\tuint32_t gbpa_reset;       /* offset 20: 0 abort, 1 bypass */")?;
    writeln!(w, "\tuint32_t dma_streams;      /* offset 24 */")?;
    writeln!(w, "\tuint32_t attached_streams; /* offset 28 */")?;
    writeln!(w, "\tuint64_t suspends;         /* offset 32 */")?;
    writeln!(w, "\tuint64_t resumes;          /* offset 40 */")?;
    writeln!(w, "\tuint64_t elided;           /* offset 48 */")?;
    writeln!(w, "\tuint32_t wakeups;          /* offset 56 */")?;
    writeln!(w, "\tuint32_t losses;           /* offset 60 */")?;
    writeln!(w, "}};")?;
    writeln!(w, "_Static_assert(sizeof(struct smmu_hyp_pm_status) == 64, \"pm_status size\");")?;
    writeln!(w)?;
    writeln!(w, "#endif /* SMMU_HYP_H */")?;
    Ok(())
}
