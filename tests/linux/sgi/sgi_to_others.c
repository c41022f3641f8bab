// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * sgi_to_others: what the Linux host's kernel can do with SGIs, which it sends through
 * ICC_SGI1R_EL1 (trapped: HCR_EL2.FMO is set on the host's CPUs, and the hypervisor sends the
 * host's SGIs itself, to the host's own CPUs only). On load it sends each of SGIs 0..15 to the
 * CPUs of `targets` (the guests', by target list), and SGIs 8..15 (which Linux does not use) to
 * every other CPU (IRM = 1: "all but self", its own second CPU too), `rounds` times, logs what
 * it did, and stays loaded doing nothing. The guests' CPUs must carry on (their tests pass in
 * the same run) and the hypervisor must not crash; xtask checks its log. (SGIs 0..7 are Linux's
 * IPIs: sent to its own CPUs they would stop them, SGI 2 being IPI_CPU_STOP.)
 *
 * With `resched_from_x19=N` it also sends N rescheduling IPIs (SGI 0, IPI_RESCHEDULE: harmless)
 * to the host's other online CPU, by target list, each written to ICC_SGI1R_EL1 from register
 * x19. The hypervisor emulates the write from the trap frame's slot of the register the
 * syndrome names, and x19..x29 are callee-saved, so they reach the frame only if entry.S saves
 * them for system-register traps: otherwise the SGI named a stale value. Each IPI is sent only
 * once the previous one was counted on the target (its IPI0 count in /proc/interrupts moved),
 * so none merges with the next in the target's pending bit; the module gives up at the first
 * one not counted within a second, and logs how many were.
 */
#include <linux/cpumask.h>
#include <linux/init.h>
#include <linux/interrupt.h>
#include <linux/irq.h>
#include <linux/irqdesc.h>
#include <linux/kernel.h>
#include <linux/ktime.h>
#include <linux/module.h>
#include <linux/preempt.h>
#include <linux/smp.h>
#include <linux/string.h>
#include <asm/barrier.h>
#include <asm/cputype.h>
#include <asm/sysreg.h>

/* ICC_SGI1R_EL1 fields. */
#define SGI1R_TARGETS(list) ((u64)(list) & 0xffff)
#define SGI1R_AFF1(a) ((u64)(a) << 16)
#define SGI1R_INTID(id) ((u64)(id) << 24)
#define SGI1R_AFF2(a) ((u64)(a) << 32)
#define SGI1R_IRM (1ULL << 40)
#define SGI1R_RS(rs) ((u64)(rs) << 44)
#define SGI1R_AFF3(a) ((u64)(a) << 48)

/* Linux arm64's IPI_RESCHEDULE: SGI 0. */
#define SGI_RESCHEDULE 0
/* How long one rescheduling IPI may take to be counted on its target. */
#define TAKEN_WITHIN_MS 1000

static int rounds = 1;
module_param(rounds, int, 0444);
MODULE_PARM_DESC(rounds, "how many times to send the SGIs");
static ulong targets = 0xc;
module_param(targets, ulong, 0444);
MODULE_PARM_DESC(targets, "target list (one bit per Aff0 in affinity cluster 0): the guests' CPUs");
static int resched_from_x19;
module_param(resched_from_x19, int, 0444);
MODULE_PARM_DESC(resched_from_x19,
		 "how many rescheduling IPIs to send the host's other CPU, each written from x19 (0: none)");

/* The descriptor of Linux's IPI 0 (IPI_RESCHEDULE): the per-CPU interrupt named "IPI" on SGI 0. */
static struct irq_desc *resched_ipi_desc(void)
{
	unsigned int irq;

	for (irq = 1; irq < nr_irqs; irq++) {
		struct irq_data *d = irq_get_irq_data(irq);
		struct irq_desc *desc;

		if (!d || d->hwirq != SGI_RESCHEDULE)
			continue;
		desc = irq_data_to_desc(d);
		if (desc->action && desc->action->name && !strcmp(desc->action->name, "IPI"))
			return desc;
	}
	return NULL;
}

static void read_mpidr(void *mpidr)
{
	*(u64 *)mpidr = read_cpuid_mpidr();
}

/* The ICC_SGI1R_EL1 value of SGI `intid` to the CPU whose MPIDR is `mpidr`, by target list. */
static u64 sgi1r_to(u64 mpidr, unsigned int intid)
{
	u64 aff0 = MPIDR_AFFINITY_LEVEL(mpidr, 0);

	return SGI1R_AFF3(MPIDR_AFFINITY_LEVEL(mpidr, 3)) | SGI1R_AFF2(MPIDR_AFFINITY_LEVEL(mpidr, 2)) |
	       SGI1R_AFF1(MPIDR_AFFINITY_LEVEL(mpidr, 1)) | SGI1R_RS(aff0 / 16) | SGI1R_INTID(intid) |
	       SGI1R_TARGETS(1UL << (aff0 % 16));
}

/* Writes `value` to ICC_SGI1R_EL1 from x19: the trapped MSR's syndrome names Rt = 19. */
static __always_inline void write_sgi1r_from_x19(u64 value)
{
	register u64 x19 asm("x19") = value;

	/* S3_0_C12_C11_5 is ICC_SGI1R_EL1. */
	asm volatile("msr s3_0_c12_c11_5, %0" : : "r"(x19) : "memory");
	isb();
}

static int send_resched_from_x19(int n)
{
	struct irq_desc *desc = resched_ipi_desc();
	unsigned int self, target;
	unsigned int before;
	u64 mpidr = 0, value;
	int i, taken = 0;

	if (!desc) {
		pr_err("sgi_to_others: no IPI on SGI 0 found\n");
		return -ENODEV;
	}
	self = get_cpu();
	target = cpumask_any_but(cpu_online_mask, self);
	if (target >= nr_cpu_ids) {
		put_cpu();
		pr_err("sgi_to_others: CPU %u is the only one online\n", self);
		return -ENODEV;
	}
	/* Its MPIDR as it reads it (cpu_logical_map is not exported): a call-function IPI. */
	smp_call_function_single(target, read_mpidr, &mpidr, 1);
	value = sgi1r_to(mpidr, SGI_RESCHEDULE);
	before = irq_desc_kstat_cpu(desc, target);
	for (i = 0; i < n; i++) {
		unsigned int count = irq_desc_kstat_cpu(desc, target);
		u64 start;

		write_sgi1r_from_x19(value);
		start = ktime_get_ns();
		while (irq_desc_kstat_cpu(desc, target) == count &&
		       ktime_get_ns() - start < TAKEN_WITHIN_MS * NSEC_PER_MSEC)
			cpu_relax();
		if (irq_desc_kstat_cpu(desc, target) == count)
			break;
		taken++;
	}
	put_cpu();
	if (taken < n)
		pr_info("sgi_to_others: CPU %u: rescheduling IPI %d of %d written from x19 (ICC_SGI1R_EL1 %#llx) to CPU %u (MPIDR %#llx) not counted there within %d ms: gave up; %d counted, its IPI0 count %u -> %u\n",
			self, taken + 1, n, value, target, mpidr, TAKEN_WITHIN_MS, taken,
			before, irq_desc_kstat_cpu(desc, target));
	else
		pr_info("sgi_to_others: CPU %u: %d rescheduling IPIs written from x19 (ICC_SGI1R_EL1 %#llx) to CPU %u (MPIDR %#llx), each counted there: its IPI0 count %u -> %u\n",
			self, n, value, target, mpidr, before, irq_desc_kstat_cpu(desc, target));
	return 0;
}

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
	if (rounds > 0)
		pr_info("sgi_to_others: sent SGIs 0..15 to target list %#lx and SGIs 8..15 to all other CPUs, %d round(s)\n",
			targets, rounds);
	if (resched_from_x19 > 0)
		return send_resched_from_x19(resched_from_x19);
	return 0;
}

static void __exit sgi_to_others_exit(void)
{
}

module_init(sgi_to_others_init);
module_exit(sgi_to_others_exit);
MODULE_LICENSE("Dual MIT/GPL");
MODULE_DESCRIPTION("Sends SGIs to the CPUs the host does not own (a hypervisor test)");
