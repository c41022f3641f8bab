// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * sgi_to_others: what the Linux host's kernel can do with SGIs, which it sends through
 * ICC_SGI1R_EL1 (a system register the hypervisor does not trap). On load it sends each of
 * SGIs 0..15 to every other CPU (IRM = 1: "all but self"), then to CPUs 1 and 2 by target list,
 * logs what it did, and stays loaded doing nothing. The guests' CPUs must carry on (their tests
 * pass in the same run) and the hypervisor must not crash; xtask checks its log.
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
MODULE_PARM_DESC(rounds, "how many times to send the 32 SGIs");

static int __init sgi_to_others_init(void)
{
	int r, id;

	for (r = 0; r < rounds; r++) {
		for (id = 0; id < 16; id++) {
			write_sysreg_s(SGI1R_IRM | SGI1R_INTID(id), SYS_ICC_SGI1R_EL1);
			isb();
			/* CPUs 1 and 2 of affinity cluster 0 (Aff0 bits in the target list). */
			write_sysreg_s(SGI1R_TARGETS(0x6) | SGI1R_INTID(id), SYS_ICC_SGI1R_EL1);
			isb();
		}
	}
	pr_info("sgi_to_others: sent SGIs 0..15 to all other CPUs and to CPUs 1 and 2, %d round(s)\n",
		rounds);
	return 0;
}

static void __exit sgi_to_others_exit(void)
{
}

module_init(sgi_to_others_init);
module_exit(sgi_to_others_exit);
MODULE_LICENSE("Dual MIT/GPL");
MODULE_DESCRIPTION("Sends SGIs to the CPUs the host does not own (a hypervisor test)");
