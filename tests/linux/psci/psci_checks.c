// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * psci_checks: the PSCI calls Linux itself would never make, because its device tree names
 * only its own CPUs. On load it asks the hypervisor (SMC, trapped) to start, and to report on,
 * each CPU of `foreign` (the guests' CPUs, and one the board does not have), with an entry
 * point in the host's own RAM (`entry`), through both the SMC64 and the SMC32 calls; then
 * CPU_ON and AFFINITY_INFO of its boot CPU (on); and, if `offline` names one of its CPUs that
 * is off, AFFINITY_INFO of it and CPU_ON of it at an entry point outside its RAM (`outside`).
 * Each answer is logged as `psci_checks: CALL cpu=N -> R`; the host's /init compares them with
 * what PSCI says they must be. It stays loaded doing nothing.
 */
#include <linux/arm-smccc.h>
#include <linux/init.h>
#include <linux/kernel.h>
#include <linux/module.h>
#include <uapi/linux/psci.h>

static int foreign[8];
static int nforeign;
module_param_array(foreign, int, &nforeign, 0444);
MODULE_PARM_DESC(foreign, "CPUs (linear index = MPIDR.Aff0) that are not the host's");
static int offline = -1;
module_param(offline, int, 0444);
MODULE_PARM_DESC(offline, "one of the host's CPUs that is off now, or -1");
static unsigned long entry;
module_param(entry, ulong, 0444);
MODULE_PARM_DESC(entry, "an entry point inside the host's RAM");
static unsigned long outside;
module_param(outside, ulong, 0444);
MODULE_PARM_DESC(outside, "an entry point outside the host's RAM");

static long call(u32 fn, unsigned long a1, unsigned long a2, unsigned long a3)
{
	struct arm_smccc_res res;

	arm_smccc_smc(fn, a1, a2, a3, 0, 0, 0, 0, &res);
	return (long)res.a0;
}

static void check(const char *what, u32 fn, int cpu, unsigned long a2)
{
	long r = call(fn, cpu, a2, 0x5a5a);

	/* SMC32 answers are 32-bit: sign-extend them for the log. */
	if (!(fn & PSCI_0_2_64BIT))
		r = (int)r;
	pr_info("psci_checks: %s cpu=%d -> %ld\n", what, cpu, r);
}

static int __init psci_checks_init(void)
{
	int i;

	for (i = 0; i < nforeign; i++) {
		check("CPU_ON", PSCI_0_2_FN64_CPU_ON, foreign[i], entry);
		check("CPU_ON32", PSCI_0_2_FN_CPU_ON, foreign[i], entry);
		check("AFFINITY_INFO", PSCI_0_2_FN64_AFFINITY_INFO, foreign[i], 0);
		check("AFFINITY_INFO32", PSCI_0_2_FN_AFFINITY_INFO, foreign[i], 0);
	}
	check("CPU_ON", PSCI_0_2_FN64_CPU_ON, 0, entry);
	check("AFFINITY_INFO", PSCI_0_2_FN64_AFFINITY_INFO, 0, 0);
	if (offline >= 0) {
		check("AFFINITY_INFO", PSCI_0_2_FN64_AFFINITY_INFO, offline, 0);
		check("CPU_ON_OUTSIDE", PSCI_0_2_FN64_CPU_ON, offline, outside);
		check("AFFINITY_INFO", PSCI_0_2_FN64_AFFINITY_INFO, offline, 0);
	}
	pr_info("psci_checks: done\n");
	return 0;
}

static void __exit psci_checks_exit(void)
{
}

module_init(psci_checks_init);
module_exit(psci_checks_exit);
MODULE_LICENSE("Dual MIT/GPL");
MODULE_DESCRIPTION("PSCI calls naming CPUs the host does not own (a hypervisor test)");
