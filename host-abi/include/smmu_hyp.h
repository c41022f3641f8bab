/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Hypercall ABI of the SMMU-owning hypervisor, for host-kernel and guest authors.
 * GENERATED from the host-abi crate (host-abi/src/header.rs): do not edit.
 * Calls: HVC #0, SMCCC 1.1 fast calls; x0 = function ID, args in x1..x7,
 * results in x0..x3; x0 < 0 is an SMMU_HYP_ERR_* code.
 */
#ifndef SMMU_HYP_H
#define SMMU_HYP_H

#ifdef __KERNEL__
#include <linux/types.h>
#include <linux/stddef.h>
#else
#include <stdint.h>
#include <stddef.h>
#endif

#define SMMU_HYP_ABI_VERSION_MAJOR 1
#define SMMU_HYP_ABI_VERSION_MINOR 1
#define SMMU_HYP_ABI_VERSION 0x00010001u
#define SMMU_HYP_CALL_UID_0 0x5d4f8a31u
#define SMMU_HYP_CALL_UID_1 0x4b6e9c02u
#define SMMU_HYP_CALL_UID_2 0x8a7e33c1u
#define SMMU_HYP_CALL_UID_3 0x2f16be54u
#define SMMU_HYP_CONSOLE_WRITE_MAX 256u

/* Function IDs (vendor-specific hypervisor service, owner 6). */
#define SMMU_HYP_FN_CALL_UID 0x8600ff01u
#define SMMU_HYP_FN_REVISION 0x8600ff03u
#define SMMU_HYP_FN_VERSION 0xc6000000u
#define SMMU_HYP_FN_FEATURES 0xc6000001u
#define SMMU_HYP_FN_CONSOLE_WRITE 0xc6000002u
#define SMMU_HYP_FN_VM_INFO 0xc6000003u
#define SMMU_HYP_FN_DEVICE_INFO 0xc6000004u
#define SMMU_HYP_FN_EVENT_READ 0xc6000008u
#define SMMU_HYP_FN_SMMU_STATS 0xc6000009u
#define SMMU_HYP_FN_SET_STE 0xc6000005u
#define SMMU_HYP_FN_CLEAR_STE 0xc6000006u
#define SMMU_HYP_FN_INVALIDATE 0xc6000007u
#define SMMU_HYP_FN_PM_VOTE 0xc600000au
#define SMMU_HYP_FN_PM_STATUS 0xc600000bu
#define SMMU_HYP_FN_PM_INJECT_LOSS 0xc600000cu

/* Status codes returned in x0. */
#define SMMU_HYP_SUCCESS 0
#define SMMU_HYP_ERR_NOT_SUPPORTED (-1)
#define SMMU_HYP_ERR_INVALID_PARAMETER (-3)
#define SMMU_HYP_ERR_INVALID_ADDRESS (-4)
#define SMMU_HYP_ERR_NOT_OWNED (-5)
#define SMMU_HYP_ERR_FORBIDDEN_FIELD (-6)
#define SMMU_HYP_ERR_RESERVED_FIELD (-7)
#define SMMU_HYP_ERR_BAD_CONFIG (-8)
#define SMMU_HYP_ERR_BAD_COMMAND (-9)
#define SMMU_HYP_ERR_DEVICE_ERROR (-10)
#define SMMU_HYP_ERR_REFUSED (-11)

/* PSCI 1.1 and SMCCC 1.1 functions offered to VMs through SMC #0. */
#define SMMU_HYP_PSCI_VERSION 0x84000000u
#define SMMU_HYP_PSCI_CPU_SUSPEND 0x84000001u
#define SMMU_HYP_PSCI_CPU_OFF 0x84000002u
#define SMMU_HYP_PSCI_CPU_ON 0xc4000003u
#define SMMU_HYP_PSCI_AFFINITY_INFO 0xc4000004u
#define SMMU_HYP_PSCI_MIGRATE_INFO_TYPE 0x84000006u
#define SMMU_HYP_PSCI_SYSTEM_OFF 0x84000008u
#define SMMU_HYP_PSCI_SYSTEM_RESET 0x84000009u
#define SMMU_HYP_PSCI_FEATURES 0x8400000au
#define SMMU_HYP_SMCCC_VERSION 0x80000000u
#define SMMU_HYP_SMCCC_ARCH_FEATURES 0x80000001u

#define SMMU_HYP_BOOT_INFO_MAGIC 0x00505948554d4d53ull
#define SMMU_HYP_VM_NAME_LEN 16
#define SMMU_HYP_BOOT_FLAG_HOST_IS_LINUX 0x1ull /* VM 0 is a Linux kernel */

/* At the IPA in x0 when a VM is entered. */
struct smmu_hyp_boot_info {
	uint64_t magic;        /* offset 0 */
	uint32_t abi_version;  /* offset 8 */
	uint32_t vm_id;        /* offset 12 */
	uint64_t mem_base;     /* offset 16 */
	uint64_t mem_size;     /* offset 24 */
	uint32_t cpu;          /* offset 32 */
	uint32_t vm_count;     /* offset 36 */
	char name[SMMU_HYP_VM_NAME_LEN]; /* offset 40 */
	uint64_t flags;        /* offset 56: SMMU_HYP_BOOT_FLAG_* */
};
_Static_assert(sizeof(struct smmu_hyp_boot_info) == 64, "boot_info size");
_Static_assert(offsetof(struct smmu_hyp_boot_info, flags) == 56, "flags");
_Static_assert(offsetof(struct smmu_hyp_boot_info, cpu) == 32, "cpu");
_Static_assert(offsetof(struct smmu_hyp_boot_info, name) == 40, "name");

/* Written by SMMU_HYP_FN_VM_INFO. */
struct smmu_hyp_vm_info {
	uint32_t vm_id;        /* offset 0 */
	uint32_t vm_count;     /* offset 4 */
	uint64_t mem_base;     /* offset 8 */
	uint64_t mem_size;     /* offset 16 */
	uint32_t cpu;          /* offset 24 */
	uint32_t peak_running; /* offset 28 */
	uint64_t running_mask; /* offset 32 */
	char name[SMMU_HYP_VM_NAME_LEN]; /* offset 40 */
	uint64_t stopped_mask; /* offset 56 */
};
_Static_assert(sizeof(struct smmu_hyp_vm_info) == 64, "vm_info size");
_Static_assert(offsetof(struct smmu_hyp_vm_info, running_mask) == 32, "mask");
_Static_assert(offsetof(struct smmu_hyp_vm_info, name) == 40, "name");

/* Written by SMMU_HYP_FN_DEVICE_INFO. */
struct smmu_hyp_bar_info {
	uint64_t ipa;          /* offset 0 */
	uint64_t size;         /* offset 8 */
};
struct smmu_hyp_device_info {
	uint32_t stream_id;    /* offset 0 */
	uint16_t vendor;       /* offset 4 */
	uint16_t device;       /* offset 6 */
	uint32_t pci_addr;     /* offset 8 */
	uint32_t reserved;     /* offset 12 */
	struct smmu_hyp_bar_info bars[6]; /* offset 16 */
};
_Static_assert(sizeof(struct smmu_hyp_device_info) == 112, "device_info size");
_Static_assert(offsetof(struct smmu_hyp_device_info, bars) == 16, "bars");

#define SMMU_HYP_EVENT_READ_MAX 16u
#define SMMU_HYP_INVALIDATE_MAX 256u
/* SMMUv3 descriptors (little-endian 64-bit words, see host-abi/src/smmu.rs). */
struct smmu_hyp_ste { uint64_t word[8]; };
struct smmu_hyp_cd { uint64_t word[8]; };
struct smmu_hyp_cmd { uint64_t word[2]; };
struct smmu_hyp_event { uint64_t word[4]; };
_Static_assert(sizeof(struct smmu_hyp_ste) == 64, "ste");
_Static_assert(sizeof(struct smmu_hyp_cmd) == 16, "cmd");
_Static_assert(sizeof(struct smmu_hyp_event) == 32, "event");

/* Written by SMMU_HYP_FN_SMMU_STATS. */
struct smmu_hyp_smmu_stats {
	uint64_t commands; /* offset 0 */
	uint64_t syncs; /* offset 8 */
	uint64_t ste_writes; /* offset 16 */
	uint64_t events; /* offset 24 */
	uint64_t events_routed; /* offset 32 */
	uint64_t events_dropped; /* offset 40 */
	uint64_t command_errors; /* offset 48 */
	uint64_t heap_in_use; /* offset 56 */
	uint64_t events_lost_hw; /* offset 64 */
	uint64_t global_errors; /* offset 72 */
};
_Static_assert(sizeof(struct smmu_hyp_smmu_stats) == 80, "smmu_stats size");

/* Written by SMMU_HYP_FN_PM_STATUS. */
struct smmu_hyp_pm_status {
	uint32_t power;            /* offset 0: 0 on, 1 off */
	uint32_t refusal;          /* offset 4 */
	uint64_t votes_allow_off;  /* offset 8 */
	uint32_t vm_count;         /* offset 16 */
	uint32_t gbpa_reset;       /* offset 20: 0 abort, 1 bypass */
	uint32_t dma_streams;      /* offset 24 */
	uint32_t attached_streams; /* offset 28 */
	uint64_t suspends;         /* offset 32 */
	uint64_t resumes;          /* offset 40 */
	uint64_t elided;           /* offset 48 */
	uint32_t wakeups;          /* offset 56 */
	uint32_t losses;           /* offset 60 */
};
_Static_assert(sizeof(struct smmu_hyp_pm_status) == 64, "pm_status size");

#endif /* SMMU_HYP_H */
