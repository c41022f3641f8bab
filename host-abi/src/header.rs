//! Renders the C header `include/smmu_hyp.h` from the Rust definitions, so the two cannot drift:
//! the test `tests/header.rs` fails when the committed header differs from this output (run
//! `SMMU_HYP_BLESS=1 cargo test -p host-abi --test header` to regenerate it) and compiles it with the C compiler.

use crate::call::FunctionId;
use crate::error::HypError;
use crate::psci;
use crate::types::{BOOT_INFO_MAGIC, VM_NAME_LEN};
use core::fmt::{Result, Write};

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
