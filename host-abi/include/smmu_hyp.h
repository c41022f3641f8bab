/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Hypercall ABI of the SMMU-owning hypervisor, for host-kernel and guest authors.
 * GENERATED from the host-abi crate (host-abi/src/header.rs): do not edit.
 * Calls: HVC #0, SMCCC 1.1 fast calls; x0 = function ID, args in x1..x7,
 * results in x0..x3; x0 < 0 is an SMMU_HYP_ERR_* code.
 * Also the SMMUv3 encodings (SMMU_HYP_OP_*, SMMU_HYP_CMD_*, SMMU_HYP_STE_*,
 * SMMU_HYP_CD_*, SMMU_HYP_EVT_*, SMMU_HYP_REG_*, ...). For the kernel (__KERNEL__)
 * and for userspace (C11, <stdint.h>) alike.
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
#define SMMU_HYP_ABI_VERSION_MINOR 2
#define SMMU_HYP_ABI_VERSION 0x00010002u
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
#define SMMU_HYP_FN_INVALIDATE_INLINE 0xc600000du
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

#ifdef __KERNEL__
#include <linux/errno.h>
#else
#include <errno.h>
#endif
/*
 * The errno of a status in x0: 0 for success (x0 >= 0), else the negative errno
 * of its SMMU_HYP_ERR_* code, -EPROTO for a code this header does not know.
 */
static inline int smmu_hyp_errno(long status)
{
	if (status >= 0)
		return 0;
	switch (status) {
	case SMMU_HYP_ERR_NOT_SUPPORTED:
		return -EOPNOTSUPP;
	case SMMU_HYP_ERR_INVALID_PARAMETER:
		return -EINVAL;
	case SMMU_HYP_ERR_INVALID_ADDRESS:
		return -EFAULT;
	case SMMU_HYP_ERR_NOT_OWNED:
		return -EPERM;
	case SMMU_HYP_ERR_FORBIDDEN_FIELD:
		return -EPERM;
	case SMMU_HYP_ERR_RESERVED_FIELD:
		return -EINVAL;
	case SMMU_HYP_ERR_BAD_CONFIG:
		return -EINVAL;
	case SMMU_HYP_ERR_BAD_COMMAND:
		return -EPERM;
	case SMMU_HYP_ERR_DEVICE_ERROR:
		return -EIO;
	case SMMU_HYP_ERR_REFUSED:
		return -EBUSY;
	default:
		return -EPROTO;
	}
}

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
#define SMMU_HYP_BOOT_FLAG_GUESTS_OFF 0x2ull /* guests power off without waiting for the host */

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
#define SMMU_HYP_INVALIDATE_INLINE_MAX 3u
/* SMMUv3 descriptors (little-endian 64-bit words, see host-abi/src/smmu.rs). */
struct smmu_hyp_ste { uint64_t word[8]; };
struct smmu_hyp_cd { uint64_t word[8]; };
struct smmu_hyp_cmd { uint64_t word[2]; };
struct smmu_hyp_event { uint64_t word[4]; };
_Static_assert(sizeof(struct smmu_hyp_ste) == 64, "ste");
_Static_assert(sizeof(struct smmu_hyp_cmd) == 16, "cmd");
_Static_assert(sizeof(struct smmu_hyp_event) == 32, "event");

/*
 * SMMUv3 encodings (Arm IHI 0070; host-abi/src/smmu): the architecture's, not
 * this ABI's, for the descriptors above and the SMMU's registers. Descriptor
 * field F: F_WORD (its 64-bit word), F_SHIFT (its lowest bit), F_MASK (its bits
 * in place); register field F: F_SHIFT and F_MASK.
 */
#define SMMU_HYP_FIELD_PREP(f, v) (((uint64_t)(v) << f##_SHIFT) & f##_MASK)
#define SMMU_HYP_FIELD_GET(f, x) (((uint64_t)(x) & f##_MASK) >> f##_SHIFT)

/* Command opcodes (SMMU_HYP_CMD_OPCODE). */
#define SMMU_HYP_OP_PREFETCH_CONFIG 0x01u
#define SMMU_HYP_OP_PREFETCH_ADDR 0x02u
#define SMMU_HYP_OP_CFGI_STE 0x03u
#define SMMU_HYP_OP_CFGI_STE_RANGE 0x04u
#define SMMU_HYP_OP_CFGI_CD 0x05u
#define SMMU_HYP_OP_CFGI_CD_ALL 0x06u
#define SMMU_HYP_OP_TLBI_NH_ALL 0x10u
#define SMMU_HYP_OP_TLBI_NH_ASID 0x11u
#define SMMU_HYP_OP_TLBI_NH_VA 0x12u
#define SMMU_HYP_OP_TLBI_NH_VAA 0x13u
#define SMMU_HYP_OP_TLBI_EL2_ALL 0x20u
#define SMMU_HYP_OP_TLBI_S12_VMALL 0x28u
#define SMMU_HYP_OP_TLBI_NSNH_ALL 0x30u
#define SMMU_HYP_OP_ATC_INV 0x40u
#define SMMU_HYP_OP_PRI_RESP 0x41u
#define SMMU_HYP_OP_RESUME 0x44u
#define SMMU_HYP_OP_SYNC 0x46u

/* Command fields. */
#define SMMU_HYP_CMD_OPCODE_WORD 0
#define SMMU_HYP_CMD_OPCODE_SHIFT 0
#define SMMU_HYP_CMD_OPCODE_MASK 0x00000000000000ffull
#define SMMU_HYP_CMD_SSEC_WORD 0
#define SMMU_HYP_CMD_SSEC_SHIFT 10
#define SMMU_HYP_CMD_SSEC_MASK 0x0000000000000400ull
#define SMMU_HYP_CMD_SSV_WORD 0
#define SMMU_HYP_CMD_SSV_SHIFT 11
#define SMMU_HYP_CMD_SSV_MASK 0x0000000000000800ull
#define SMMU_HYP_CMD_SSID_WORD 0
#define SMMU_HYP_CMD_SSID_SHIFT 12
#define SMMU_HYP_CMD_SSID_MASK 0x00000000fffff000ull
#define SMMU_HYP_CMD_SID_WORD 0
#define SMMU_HYP_CMD_SID_SHIFT 32
#define SMMU_HYP_CMD_SID_MASK 0xffffffff00000000ull
#define SMMU_HYP_CMD_VMID_WORD 0
#define SMMU_HYP_CMD_VMID_SHIFT 32
#define SMMU_HYP_CMD_VMID_MASK 0x0000ffff00000000ull
#define SMMU_HYP_CMD_ASID_WORD 0
#define SMMU_HYP_CMD_ASID_SHIFT 48
#define SMMU_HYP_CMD_ASID_MASK 0xffff000000000000ull
#define SMMU_HYP_CMD_NUM_WORD 0
#define SMMU_HYP_CMD_NUM_SHIFT 12
#define SMMU_HYP_CMD_NUM_MASK 0x000000000001f000ull
#define SMMU_HYP_CMD_SCALE_WORD 0
#define SMMU_HYP_CMD_SCALE_SHIFT 20
#define SMMU_HYP_CMD_SCALE_MASK 0x0000000001f00000ull
#define SMMU_HYP_CMD_GLOBAL_WORD 0
#define SMMU_HYP_CMD_GLOBAL_SHIFT 9
#define SMMU_HYP_CMD_GLOBAL_MASK 0x0000000000000200ull
#define SMMU_HYP_CMD_LEAF_WORD 1
#define SMMU_HYP_CMD_LEAF_SHIFT 0
#define SMMU_HYP_CMD_LEAF_MASK 0x0000000000000001ull
#define SMMU_HYP_CMD_RANGE_WORD 1
#define SMMU_HYP_CMD_RANGE_SHIFT 0
#define SMMU_HYP_CMD_RANGE_MASK 0x000000000000001full
#define SMMU_HYP_CMD_SIZE_WORD 1
#define SMMU_HYP_CMD_SIZE_SHIFT 0
#define SMMU_HYP_CMD_SIZE_MASK 0x000000000000003full
#define SMMU_HYP_CMD_TTL_WORD 1
#define SMMU_HYP_CMD_TTL_SHIFT 8
#define SMMU_HYP_CMD_TTL_MASK 0x0000000000000300ull
#define SMMU_HYP_CMD_TG_WORD 1
#define SMMU_HYP_CMD_TG_SHIFT 10
#define SMMU_HYP_CMD_TG_MASK 0x0000000000000c00ull
#define SMMU_HYP_CMD_ADDR_WORD 1
#define SMMU_HYP_CMD_ADDR_SHIFT 12
#define SMMU_HYP_CMD_ADDR_MASK 0xfffffffffffff000ull
#define SMMU_HYP_CMD_PREFETCH_SIZE_WORD 1
#define SMMU_HYP_CMD_PREFETCH_SIZE_SHIFT 0
#define SMMU_HYP_CMD_PREFETCH_SIZE_MASK 0x000000000000001full
#define SMMU_HYP_CMD_PREFETCH_STRIDE_WORD 1
#define SMMU_HYP_CMD_PREFETCH_STRIDE_SHIFT 5
#define SMMU_HYP_CMD_PREFETCH_STRIDE_MASK 0x00000000000003e0ull
#define SMMU_HYP_CMD_SYNC_CS_WORD 0
#define SMMU_HYP_CMD_SYNC_CS_SHIFT 12
#define SMMU_HYP_CMD_SYNC_CS_MASK 0x0000000000003000ull
#define SMMU_HYP_CMD_SYNC_MSH_WORD 0
#define SMMU_HYP_CMD_SYNC_MSH_SHIFT 22
#define SMMU_HYP_CMD_SYNC_MSH_MASK 0x0000000000c00000ull
#define SMMU_HYP_CMD_SYNC_MSIATTR_WORD 0
#define SMMU_HYP_CMD_SYNC_MSIATTR_SHIFT 24
#define SMMU_HYP_CMD_SYNC_MSIATTR_MASK 0x000000000f000000ull
#define SMMU_HYP_CMD_SYNC_MSIDATA_WORD 0
#define SMMU_HYP_CMD_SYNC_MSIDATA_SHIFT 32
#define SMMU_HYP_CMD_SYNC_MSIDATA_MASK 0xffffffff00000000ull
#define SMMU_HYP_CMD_SYNC_MSIADDR_WORD 1
#define SMMU_HYP_CMD_SYNC_MSIADDR_SHIFT 2
#define SMMU_HYP_CMD_SYNC_MSIADDR_MASK 0x000ffffffffffffcull

/* Stream table entry fields, and the values of STE.Config. */
#define SMMU_HYP_STE_V_WORD 0
#define SMMU_HYP_STE_V_SHIFT 0
#define SMMU_HYP_STE_V_MASK 0x0000000000000001ull
#define SMMU_HYP_STE_CONFIG_WORD 0
#define SMMU_HYP_STE_CONFIG_SHIFT 1
#define SMMU_HYP_STE_CONFIG_MASK 0x000000000000000eull
#define SMMU_HYP_STE_S1FMT_WORD 0
#define SMMU_HYP_STE_S1FMT_SHIFT 4
#define SMMU_HYP_STE_S1FMT_MASK 0x0000000000000030ull
#define SMMU_HYP_STE_S1_CONTEXT_PTR_WORD 0
#define SMMU_HYP_STE_S1_CONTEXT_PTR_SHIFT 6
#define SMMU_HYP_STE_S1_CONTEXT_PTR_MASK 0x000fffffffffffc0ull
#define SMMU_HYP_STE_S1CDMAX_WORD 0
#define SMMU_HYP_STE_S1CDMAX_SHIFT 59
#define SMMU_HYP_STE_S1CDMAX_MASK 0xf800000000000000ull
#define SMMU_HYP_STE_S1DSS_WORD 1
#define SMMU_HYP_STE_S1DSS_SHIFT 0
#define SMMU_HYP_STE_S1DSS_MASK 0x0000000000000003ull
#define SMMU_HYP_STE_S1CIR_WORD 1
#define SMMU_HYP_STE_S1CIR_SHIFT 2
#define SMMU_HYP_STE_S1CIR_MASK 0x000000000000000cull
#define SMMU_HYP_STE_S1COR_WORD 1
#define SMMU_HYP_STE_S1COR_SHIFT 4
#define SMMU_HYP_STE_S1COR_MASK 0x0000000000000030ull
#define SMMU_HYP_STE_S1CSH_WORD 1
#define SMMU_HYP_STE_S1CSH_SHIFT 6
#define SMMU_HYP_STE_S1CSH_MASK 0x00000000000000c0ull
#define SMMU_HYP_STE_S1STALLD_WORD 1
#define SMMU_HYP_STE_S1STALLD_SHIFT 27
#define SMMU_HYP_STE_S1STALLD_MASK 0x0000000008000000ull
#define SMMU_HYP_STE_EATS_WORD 1
#define SMMU_HYP_STE_EATS_SHIFT 28
#define SMMU_HYP_STE_EATS_MASK 0x0000000030000000ull
#define SMMU_HYP_STE_STRW_WORD 1
#define SMMU_HYP_STE_STRW_SHIFT 30
#define SMMU_HYP_STE_STRW_MASK 0x00000000c0000000ull
#define SMMU_HYP_STE_MEMATTR_WORD 1
#define SMMU_HYP_STE_MEMATTR_SHIFT 32
#define SMMU_HYP_STE_MEMATTR_MASK 0x0000000f00000000ull
#define SMMU_HYP_STE_MTCFG_WORD 1
#define SMMU_HYP_STE_MTCFG_SHIFT 36
#define SMMU_HYP_STE_MTCFG_MASK 0x0000001000000000ull
#define SMMU_HYP_STE_ALLOCCFG_WORD 1
#define SMMU_HYP_STE_ALLOCCFG_SHIFT 37
#define SMMU_HYP_STE_ALLOCCFG_MASK 0x000001e000000000ull
#define SMMU_HYP_STE_SHCFG_WORD 1
#define SMMU_HYP_STE_SHCFG_SHIFT 44
#define SMMU_HYP_STE_SHCFG_MASK 0x0000300000000000ull
#define SMMU_HYP_STE_NSCFG_WORD 1
#define SMMU_HYP_STE_NSCFG_SHIFT 46
#define SMMU_HYP_STE_NSCFG_MASK 0x0000c00000000000ull
#define SMMU_HYP_STE_PRIVCFG_WORD 1
#define SMMU_HYP_STE_PRIVCFG_SHIFT 48
#define SMMU_HYP_STE_PRIVCFG_MASK 0x0003000000000000ull
#define SMMU_HYP_STE_INSTCFG_WORD 1
#define SMMU_HYP_STE_INSTCFG_SHIFT 50
#define SMMU_HYP_STE_INSTCFG_MASK 0x000c000000000000ull
#define SMMU_HYP_STE_S2VMID_WORD 2
#define SMMU_HYP_STE_S2VMID_SHIFT 0
#define SMMU_HYP_STE_S2VMID_MASK 0x000000000000ffffull
#define SMMU_HYP_STE_S2T0SZ_WORD 2
#define SMMU_HYP_STE_S2T0SZ_SHIFT 32
#define SMMU_HYP_STE_S2T0SZ_MASK 0x0000003f00000000ull
#define SMMU_HYP_STE_S2SL0_WORD 2
#define SMMU_HYP_STE_S2SL0_SHIFT 38
#define SMMU_HYP_STE_S2SL0_MASK 0x000000c000000000ull
#define SMMU_HYP_STE_S2IR0_WORD 2
#define SMMU_HYP_STE_S2IR0_SHIFT 40
#define SMMU_HYP_STE_S2IR0_MASK 0x0000030000000000ull
#define SMMU_HYP_STE_S2OR0_WORD 2
#define SMMU_HYP_STE_S2OR0_SHIFT 42
#define SMMU_HYP_STE_S2OR0_MASK 0x00000c0000000000ull
#define SMMU_HYP_STE_S2SH0_WORD 2
#define SMMU_HYP_STE_S2SH0_SHIFT 44
#define SMMU_HYP_STE_S2SH0_MASK 0x0000300000000000ull
#define SMMU_HYP_STE_S2TG_WORD 2
#define SMMU_HYP_STE_S2TG_SHIFT 46
#define SMMU_HYP_STE_S2TG_MASK 0x0000c00000000000ull
#define SMMU_HYP_STE_S2PS_WORD 2
#define SMMU_HYP_STE_S2PS_SHIFT 48
#define SMMU_HYP_STE_S2PS_MASK 0x0007000000000000ull
#define SMMU_HYP_STE_S2AA64_WORD 2
#define SMMU_HYP_STE_S2AA64_SHIFT 51
#define SMMU_HYP_STE_S2AA64_MASK 0x0008000000000000ull
#define SMMU_HYP_STE_S2ENDI_WORD 2
#define SMMU_HYP_STE_S2ENDI_SHIFT 52
#define SMMU_HYP_STE_S2ENDI_MASK 0x0010000000000000ull
#define SMMU_HYP_STE_S2AFFD_WORD 2
#define SMMU_HYP_STE_S2AFFD_SHIFT 53
#define SMMU_HYP_STE_S2AFFD_MASK 0x0020000000000000ull
#define SMMU_HYP_STE_S2PTW_WORD 2
#define SMMU_HYP_STE_S2PTW_SHIFT 54
#define SMMU_HYP_STE_S2PTW_MASK 0x0040000000000000ull
#define SMMU_HYP_STE_S2S_WORD 2
#define SMMU_HYP_STE_S2S_SHIFT 57
#define SMMU_HYP_STE_S2S_MASK 0x0200000000000000ull
#define SMMU_HYP_STE_S2R_WORD 2
#define SMMU_HYP_STE_S2R_SHIFT 58
#define SMMU_HYP_STE_S2R_MASK 0x0400000000000000ull
#define SMMU_HYP_STE_S2TTB_WORD 3
#define SMMU_HYP_STE_S2TTB_SHIFT 4
#define SMMU_HYP_STE_S2TTB_MASK 0x000ffffffffffff0ull
#define SMMU_HYP_STE_CONFIG_ABORT 0x0u
#define SMMU_HYP_STE_CONFIG_BYPASS 0x4u
#define SMMU_HYP_STE_CONFIG_S1 0x5u
#define SMMU_HYP_STE_CONFIG_S2 0x6u
#define SMMU_HYP_STE_CONFIG_NESTED 0x7u

/* Context descriptor fields. */
#define SMMU_HYP_CD_T0SZ_WORD 0
#define SMMU_HYP_CD_T0SZ_SHIFT 0
#define SMMU_HYP_CD_T0SZ_MASK 0x000000000000003full
#define SMMU_HYP_CD_TG0_WORD 0
#define SMMU_HYP_CD_TG0_SHIFT 6
#define SMMU_HYP_CD_TG0_MASK 0x00000000000000c0ull
#define SMMU_HYP_CD_IR0_WORD 0
#define SMMU_HYP_CD_IR0_SHIFT 8
#define SMMU_HYP_CD_IR0_MASK 0x0000000000000300ull
#define SMMU_HYP_CD_OR0_WORD 0
#define SMMU_HYP_CD_OR0_SHIFT 10
#define SMMU_HYP_CD_OR0_MASK 0x0000000000000c00ull
#define SMMU_HYP_CD_SH0_WORD 0
#define SMMU_HYP_CD_SH0_SHIFT 12
#define SMMU_HYP_CD_SH0_MASK 0x0000000000003000ull
#define SMMU_HYP_CD_EPD0_WORD 0
#define SMMU_HYP_CD_EPD0_SHIFT 14
#define SMMU_HYP_CD_EPD0_MASK 0x0000000000004000ull
#define SMMU_HYP_CD_ENDI_WORD 0
#define SMMU_HYP_CD_ENDI_SHIFT 15
#define SMMU_HYP_CD_ENDI_MASK 0x0000000000008000ull
#define SMMU_HYP_CD_T1SZ_WORD 0
#define SMMU_HYP_CD_T1SZ_SHIFT 16
#define SMMU_HYP_CD_T1SZ_MASK 0x00000000003f0000ull
#define SMMU_HYP_CD_TG1_WORD 0
#define SMMU_HYP_CD_TG1_SHIFT 22
#define SMMU_HYP_CD_TG1_MASK 0x0000000000c00000ull
#define SMMU_HYP_CD_IR1_WORD 0
#define SMMU_HYP_CD_IR1_SHIFT 24
#define SMMU_HYP_CD_IR1_MASK 0x0000000003000000ull
#define SMMU_HYP_CD_OR1_WORD 0
#define SMMU_HYP_CD_OR1_SHIFT 26
#define SMMU_HYP_CD_OR1_MASK 0x000000000c000000ull
#define SMMU_HYP_CD_SH1_WORD 0
#define SMMU_HYP_CD_SH1_SHIFT 28
#define SMMU_HYP_CD_SH1_MASK 0x0000000030000000ull
#define SMMU_HYP_CD_EPD1_WORD 0
#define SMMU_HYP_CD_EPD1_SHIFT 30
#define SMMU_HYP_CD_EPD1_MASK 0x0000000040000000ull
#define SMMU_HYP_CD_V_WORD 0
#define SMMU_HYP_CD_V_SHIFT 31
#define SMMU_HYP_CD_V_MASK 0x0000000080000000ull
#define SMMU_HYP_CD_IPS_WORD 0
#define SMMU_HYP_CD_IPS_SHIFT 32
#define SMMU_HYP_CD_IPS_MASK 0x0000000700000000ull
#define SMMU_HYP_CD_AFFD_WORD 0
#define SMMU_HYP_CD_AFFD_SHIFT 35
#define SMMU_HYP_CD_AFFD_MASK 0x0000000800000000ull
#define SMMU_HYP_CD_WXN_WORD 0
#define SMMU_HYP_CD_WXN_SHIFT 36
#define SMMU_HYP_CD_WXN_MASK 0x0000001000000000ull
#define SMMU_HYP_CD_UWXN_WORD 0
#define SMMU_HYP_CD_UWXN_SHIFT 37
#define SMMU_HYP_CD_UWXN_MASK 0x0000002000000000ull
#define SMMU_HYP_CD_TBI_WORD 0
#define SMMU_HYP_CD_TBI_SHIFT 38
#define SMMU_HYP_CD_TBI_MASK 0x000000c000000000ull
#define SMMU_HYP_CD_PAN_WORD 0
#define SMMU_HYP_CD_PAN_SHIFT 40
#define SMMU_HYP_CD_PAN_MASK 0x0000010000000000ull
#define SMMU_HYP_CD_AA64_WORD 0
#define SMMU_HYP_CD_AA64_SHIFT 41
#define SMMU_HYP_CD_AA64_MASK 0x0000020000000000ull
#define SMMU_HYP_CD_HD_WORD 0
#define SMMU_HYP_CD_HD_SHIFT 42
#define SMMU_HYP_CD_HD_MASK 0x0000040000000000ull
#define SMMU_HYP_CD_HA_WORD 0
#define SMMU_HYP_CD_HA_SHIFT 43
#define SMMU_HYP_CD_HA_MASK 0x0000080000000000ull
#define SMMU_HYP_CD_S_WORD 0
#define SMMU_HYP_CD_S_SHIFT 44
#define SMMU_HYP_CD_S_MASK 0x0000100000000000ull
#define SMMU_HYP_CD_R_WORD 0
#define SMMU_HYP_CD_R_SHIFT 45
#define SMMU_HYP_CD_R_MASK 0x0000200000000000ull
#define SMMU_HYP_CD_A_WORD 0
#define SMMU_HYP_CD_A_SHIFT 46
#define SMMU_HYP_CD_A_MASK 0x0000400000000000ull
#define SMMU_HYP_CD_ASET_WORD 0
#define SMMU_HYP_CD_ASET_SHIFT 47
#define SMMU_HYP_CD_ASET_MASK 0x0000800000000000ull
#define SMMU_HYP_CD_ASID_WORD 0
#define SMMU_HYP_CD_ASID_SHIFT 48
#define SMMU_HYP_CD_ASID_MASK 0xffff000000000000ull
#define SMMU_HYP_CD_NSCFG0_WORD 1
#define SMMU_HYP_CD_NSCFG0_SHIFT 0
#define SMMU_HYP_CD_NSCFG0_MASK 0x0000000000000001ull
#define SMMU_HYP_CD_HAD0_WORD 1
#define SMMU_HYP_CD_HAD0_SHIFT 1
#define SMMU_HYP_CD_HAD0_MASK 0x0000000000000002ull
#define SMMU_HYP_CD_RES1_3_2_WORD 1
#define SMMU_HYP_CD_RES1_3_2_SHIFT 2
#define SMMU_HYP_CD_RES1_3_2_MASK 0x000000000000000cull
#define SMMU_HYP_CD_TTB0_WORD 1
#define SMMU_HYP_CD_TTB0_SHIFT 4
#define SMMU_HYP_CD_TTB0_MASK 0x000ffffffffffff0ull
#define SMMU_HYP_CD_RES1_59_52_WORD 1
#define SMMU_HYP_CD_RES1_59_52_SHIFT 52
#define SMMU_HYP_CD_RES1_59_52_MASK 0x0ff0000000000000ull
#define SMMU_HYP_CD_HWU0_WORD 1
#define SMMU_HYP_CD_HWU0_SHIFT 60
#define SMMU_HYP_CD_HWU0_MASK 0xf000000000000000ull
#define SMMU_HYP_CD_NSCFG1_WORD 2
#define SMMU_HYP_CD_NSCFG1_SHIFT 0
#define SMMU_HYP_CD_NSCFG1_MASK 0x0000000000000001ull
#define SMMU_HYP_CD_HAD1_WORD 2
#define SMMU_HYP_CD_HAD1_SHIFT 1
#define SMMU_HYP_CD_HAD1_MASK 0x0000000000000002ull
#define SMMU_HYP_CD_RES2_3_2_WORD 2
#define SMMU_HYP_CD_RES2_3_2_SHIFT 2
#define SMMU_HYP_CD_RES2_3_2_MASK 0x000000000000000cull
#define SMMU_HYP_CD_TTB1_WORD 2
#define SMMU_HYP_CD_TTB1_SHIFT 4
#define SMMU_HYP_CD_TTB1_MASK 0x000ffffffffffff0ull
#define SMMU_HYP_CD_RES2_59_52_WORD 2
#define SMMU_HYP_CD_RES2_59_52_SHIFT 52
#define SMMU_HYP_CD_RES2_59_52_MASK 0x0ff0000000000000ull
#define SMMU_HYP_CD_HWU1_WORD 2
#define SMMU_HYP_CD_HWU1_SHIFT 60
#define SMMU_HYP_CD_HWU1_MASK 0xf000000000000000ull
#define SMMU_HYP_CD_MAIR_WORD 3
#define SMMU_HYP_CD_MAIR_SHIFT 0
#define SMMU_HYP_CD_MAIR_MASK 0xffffffffffffffffull
#define SMMU_HYP_CD_AMAIR_WORD 4
#define SMMU_HYP_CD_AMAIR_SHIFT 0
#define SMMU_HYP_CD_AMAIR_MASK 0xffffffffffffffffull
#define SMMU_HYP_CD_IMPDEF_WORD 5
#define SMMU_HYP_CD_IMPDEF_SHIFT 0
#define SMMU_HYP_CD_IMPDEF_MASK 0xffffffffffffffffull
#define SMMU_HYP_CD_MPAM_WORD 6
#define SMMU_HYP_CD_MPAM_SHIFT 0
#define SMMU_HYP_CD_MPAM_MASK 0xffffffffffffffffull
#define SMMU_HYP_CD_RES7_WORD 7
#define SMMU_HYP_CD_RES7_SHIFT 0
#define SMMU_HYP_CD_RES7_MASK 0xffffffffffffffffull

/* Event record fields, and the event types (SMMU_HYP_EVT_TYPE). */
#define SMMU_HYP_EVT_TYPE_WORD 0
#define SMMU_HYP_EVT_TYPE_SHIFT 0
#define SMMU_HYP_EVT_TYPE_MASK 0x00000000000000ffull
#define SMMU_HYP_EVT_SSV_WORD 0
#define SMMU_HYP_EVT_SSV_SHIFT 11
#define SMMU_HYP_EVT_SSV_MASK 0x0000000000000800ull
#define SMMU_HYP_EVT_SSID_WORD 0
#define SMMU_HYP_EVT_SSID_SHIFT 12
#define SMMU_HYP_EVT_SSID_MASK 0x00000000fffff000ull
#define SMMU_HYP_EVT_SID_WORD 0
#define SMMU_HYP_EVT_SID_SHIFT 32
#define SMMU_HYP_EVT_SID_MASK 0xffffffff00000000ull
#define SMMU_HYP_EVT_PNU_WORD 1
#define SMMU_HYP_EVT_PNU_SHIFT 33
#define SMMU_HYP_EVT_PNU_MASK 0x0000000200000000ull
#define SMMU_HYP_EVT_IND_WORD 1
#define SMMU_HYP_EVT_IND_SHIFT 34
#define SMMU_HYP_EVT_IND_MASK 0x0000000400000000ull
#define SMMU_HYP_EVT_RNW_WORD 1
#define SMMU_HYP_EVT_RNW_SHIFT 35
#define SMMU_HYP_EVT_RNW_MASK 0x0000000800000000ull
#define SMMU_HYP_EVT_S2_WORD 1
#define SMMU_HYP_EVT_S2_SHIFT 39
#define SMMU_HYP_EVT_S2_MASK 0x0000008000000000ull
#define SMMU_HYP_EVT_CLASS_WORD 1
#define SMMU_HYP_EVT_CLASS_SHIFT 40
#define SMMU_HYP_EVT_CLASS_MASK 0x0000030000000000ull
#define SMMU_HYP_EVT_INPUT_ADDR_WORD 2
#define SMMU_HYP_EVT_INPUT_ADDR_SHIFT 0
#define SMMU_HYP_EVT_INPUT_ADDR_MASK 0xffffffffffffffffull
#define SMMU_HYP_EVT_IPA_WORD 3
#define SMMU_HYP_EVT_IPA_SHIFT 12
#define SMMU_HYP_EVT_IPA_MASK 0x000ffffffffff000ull
#define SMMU_HYP_EVT_F_UUT 0x01u
#define SMMU_HYP_EVT_C_BAD_STREAMID 0x02u
#define SMMU_HYP_EVT_F_STE_FETCH 0x03u
#define SMMU_HYP_EVT_C_BAD_STE 0x04u
#define SMMU_HYP_EVT_F_BAD_ATS_TREQ 0x05u
#define SMMU_HYP_EVT_F_STREAM_DISABLED 0x06u
#define SMMU_HYP_EVT_F_TRANSL_FORBIDDEN 0x07u
#define SMMU_HYP_EVT_C_BAD_SUBSTREAMID 0x08u
#define SMMU_HYP_EVT_F_CD_FETCH 0x09u
#define SMMU_HYP_EVT_C_BAD_CD 0x0au
#define SMMU_HYP_EVT_F_WALK_EABT 0x0bu
#define SMMU_HYP_EVT_F_TRANSLATION 0x10u
#define SMMU_HYP_EVT_F_ADDR_SIZE 0x11u
#define SMMU_HYP_EVT_F_ACCESS 0x12u
#define SMMU_HYP_EVT_F_PERMISSION 0x13u
#define SMMU_HYP_EVT_F_TLB_CONFLICT 0x20u
#define SMMU_HYP_EVT_F_CFG_CONFLICT 0x21u
#define SMMU_HYP_EVT_E_PAGE_REQUEST 0x24u
#define SMMU_HYP_EVT_F_VMS_FETCH 0x25u

/* Registers: offsets from the base of page 0 (page 1 at SMMU_HYP_REG_PAGE1). */
#define SMMU_HYP_REGS_SIZE 0x20000u
#define SMMU_HYP_REG_PAGE1 0x10000u
#define SMMU_HYP_REG_IDR0 0x00000u
#define SMMU_HYP_REG_IDR1 0x00004u
#define SMMU_HYP_REG_IDR2 0x00008u
#define SMMU_HYP_REG_IDR3 0x0000cu
#define SMMU_HYP_REG_IDR4 0x00010u
#define SMMU_HYP_REG_IDR5 0x00014u
#define SMMU_HYP_REG_IIDR 0x00018u
#define SMMU_HYP_REG_AIDR 0x0001cu
#define SMMU_HYP_REG_CR0 0x00020u
#define SMMU_HYP_REG_CR0ACK 0x00024u
#define SMMU_HYP_REG_CR1 0x00028u
#define SMMU_HYP_REG_CR2 0x0002cu
#define SMMU_HYP_REG_STATUSR 0x00040u
#define SMMU_HYP_REG_GBPA 0x00044u
#define SMMU_HYP_REG_AGBPA 0x00048u
#define SMMU_HYP_REG_IRQ_CTRL 0x00050u
#define SMMU_HYP_REG_IRQ_CTRLACK 0x00054u
#define SMMU_HYP_REG_GERROR 0x00060u
#define SMMU_HYP_REG_GERRORN 0x00064u
#define SMMU_HYP_REG_GERROR_IRQ_CFG0 0x00068u
#define SMMU_HYP_REG_GERROR_IRQ_CFG1 0x00070u
#define SMMU_HYP_REG_GERROR_IRQ_CFG2 0x00074u
#define SMMU_HYP_REG_STRTAB_BASE 0x00080u
#define SMMU_HYP_REG_STRTAB_BASE_CFG 0x00088u
#define SMMU_HYP_REG_CMDQ_BASE 0x00090u
#define SMMU_HYP_REG_CMDQ_PROD 0x00098u
#define SMMU_HYP_REG_CMDQ_CONS 0x0009cu
#define SMMU_HYP_REG_EVTQ_BASE 0x000a0u
#define SMMU_HYP_REG_EVTQ_IRQ_CFG0 0x000b0u
#define SMMU_HYP_REG_EVTQ_IRQ_CFG1 0x000b8u
#define SMMU_HYP_REG_EVTQ_IRQ_CFG2 0x000bcu
#define SMMU_HYP_REG_PRIQ_BASE 0x000c0u
#define SMMU_HYP_REG_EVTQ_PROD 0x100a8u
#define SMMU_HYP_REG_EVTQ_CONS 0x100acu
#define SMMU_HYP_REG_PRIQ_PROD 0x100c8u
#define SMMU_HYP_REG_PRIQ_CONS 0x100ccu

/* Register bits and fields. */
#define SMMU_HYP_CR0_SMMUEN 0x00000001u
#define SMMU_HYP_CR0_PRIQEN 0x00000002u
#define SMMU_HYP_CR0_EVENTQEN 0x00000004u
#define SMMU_HYP_CR0_CMDQEN 0x00000008u
#define SMMU_HYP_CR0_ATSCHK 0x00000010u
#define SMMU_HYP_CR0_VMW 0x000001c0u
#define SMMU_HYP_CR2_E2H 0x00000001u
#define SMMU_HYP_CR2_RECINVSID 0x00000002u
#define SMMU_HYP_CR2_PTM 0x00000004u
#define SMMU_HYP_IRQ_CTRL_GERROR_IRQEN 0x00000001u
#define SMMU_HYP_IRQ_CTRL_PRIQ_IRQEN 0x00000002u
#define SMMU_HYP_IRQ_CTRL_EVENTQ_IRQEN 0x00000004u
#define SMMU_HYP_GERROR_CMDQ_ERR 0x00000001u
#define SMMU_HYP_GERROR_EVENTQ_ABT_ERR 0x00000004u
#define SMMU_HYP_GERROR_PRIQ_ABT_ERR 0x00000008u
#define SMMU_HYP_GERROR_MSI_CMDQ_ABT_ERR 0x00000010u
#define SMMU_HYP_GERROR_MSI_EVENTQ_ABT_ERR 0x00000020u
#define SMMU_HYP_GERROR_MSI_PRIQ_ABT_ERR 0x00000040u
#define SMMU_HYP_GERROR_MSI_GERROR_ABT_ERR 0x00000080u
#define SMMU_HYP_GERROR_SFM_ERR 0x00000100u
#define SMMU_HYP_GBPA_UPDATE 0x80000000u
#define SMMU_HYP_GBPA_ABORT 0x00100000u
#define SMMU_HYP_CMDQ_CONS_ERR_SHIFT 24
#define SMMU_HYP_CMDQ_CONS_ERR_MASK 0x7f000000u
#define SMMU_HYP_CERROR_NONE 0u
#define SMMU_HYP_CERROR_ILL 1u
#define SMMU_HYP_CERROR_ABT 2u
#define SMMU_HYP_CERROR_ATC_INV_SYNC 3u
#define SMMU_HYP_Q_OVFLG 0x80000000u /* EVENTQ_PROD, EVENTQ_CONS */

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
