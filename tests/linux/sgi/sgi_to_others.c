// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * sgi_to_others: what the Linux host's kernel can do with SGIs, which it sends through
 * ICC_SGI1R_EL1 (a system register the hypervisor does not trap). On load it sends each of
 * SGIs 0..15 to the CPUs of `targets` (the guests', by target list), and SGIs 8..15 (which
 * Linux does not use) to every other CPU (IRM = 1: "all but self", its own second CPU too),
 * logs what it did, and stays loaded doing nothing. The guests' CPUs must carry on (their tests
 * pass in the same run) and the hypervisor must not crash; xtask checks its log. (SGIs 0..7
 * are Linux's IPIs: sent to its own CPU they would stop it, SGI 2 being IPI_CPU_STOP.)
 */
#include <linux/init.h>
#include <linux/kernel.h>
#include <linux/module.h>
#include <asm/barrier.h>
#include <asm/sysreg.h>

/* ICC_SGI1R_EL1 fields. */
#define SGI1R_TARGETS(list) ((u64)(list) & 0xffff)
#define SGI1R_INTID(id) ((u64)(id) << 24)
#define SGI1R_IRM (1ULL << 40)

static int rounds = 1;
module_param(rounds, int, 0444);
MODULE_PARM_DESC(rounds, "how many times to send the SGIs");
static ulong targets = 0xc;
module_param(targets, ulong, 0444);
MODULE_PARM_DESC(targets, "target list (one bit per Aff0 in affinity cluster 0): the guests' CPUs");

static int __init sgi_to_others_init(void)
{
	int r, id;

	for (r = 0; r < rounds; r++) {
		for (id = 0; id < 16; id++) {
			if (id >= 8) {
				write_sysreg_s(SGI1R_IRM | SGI1R_INTID(id), SYS_ICC_SGI1R_EL1);
				isb();
			}
			/* The CPUs of affinity cluster 0 named in the target list. */
			write_sysreg_s(SGI1R_TARGETS(targets) | SGI1R_INTID(id), SYS_ICC_SGI1R_EL1);
			isb();
		}
	}
	pr_info("sgi_to_others: sent SGIs 0..15 to target list %#lx and SGIs 8..15 to all other CPUs, %d round(s)\n",
		targets, rounds);
	return 0;
}

static void __exit sgi_to_others_exit(void)
{
}

module_init(sgi_to_others_init);
module_exit(sgi_to_others_exit);
MODULE_LICENSE("Dual MIT/GPL");
MODULE_DESCRIPTION("Sends SGIs to the CPUs the host does not own (a hypervisor test)");
