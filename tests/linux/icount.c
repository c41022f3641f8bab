// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * icount: the Linux host's instruction counter for `cargo xtask bench` (static, arm64; built by
 * xtask with aarch64-linux-gnu-gcc-12 into the initramfs' /bin/icount).
 *
 *   icount now           prints "cntvct N": the virtual counter (CNTVCT_EL0, readable at EL0 on
 *                        Linux arm64). Under QEMU -icount shift=0 it advances one tick per
 *                        instruction executed, but ALSO jumps over idle time (sleep=off warps
 *                        the clock to the next timer when every CPU waits), so it is time, not
 *                        instructions.
 *   icount drain         waits until everything written to stdout (the console) has been sent
 *                        (tcdrain): under -icount sleep=off a `sleep` takes no real time, and a
 *                        poweroff right after an echo can cut the 16550's output short.
 *   icount run CMD ARGS  runs CMD and prints "instructions N el2 A el1 B el0 C cntvct M cpus K":
 *                        N = instructions retired on every online CPU (K of them, numbered
 *                        0..K-1) at every exception level (EL0, EL1 and, below a hypervisor,
 *                        EL2: perf's exclude_hv = 0), and A, B, C the same split by level
 *                        (three counters in one group per CPU: all levels; EL0 and EL1
 *                        (exclude_hv); EL0 alone (exclude_kernel too)), counted by the PMU's
 *                        INST_RETIRED event through perf_event_open(pid = -1, cpu = c) for each
 *                        CPU c from just before the fork to just after the wait, and summed
 *                        over the CPUs; M = CNTVCT_EL0 ticks over the same span. Under -icount
 *                        QEMU's INST_RETIRED is its exact instruction count. Everything that
 *                        ran on any CPU in the span is counted (CMD, the kernel's work for it
 *                        on whichever CPU it ran, and anything else that ran then).
 *
 * Exits 1 with a message on stderr if the counters cannot be opened or did not count the whole
 * span (multiplexed); otherwise with CMD's status.
 */
#include <errno.h>
#include <linux/perf_event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

static uint64_t cntvct(void)
{
	uint64_t v;

	__asm__ volatile("isb; mrs %0, cntvct_el0" : "=r"(v)::"memory");
	return v;
}

/* The most CPUs counted. */
#define MAX_CPUS 16

/* One instruction counter on CPU `cpu`; `group` -1 makes it a group leader. */
static int counter_open(int cpu, int exclude_kernel, int exclude_hv, int group)
{
	struct perf_event_attr a;

	memset(&a, 0, sizeof(a));
	a.size = sizeof(a);
	a.type = PERF_TYPE_HARDWARE;
	a.config = PERF_COUNT_HW_INSTRUCTIONS;
	a.disabled = group < 0;
	a.exclude_user = 0;
	a.exclude_kernel = exclude_kernel;
	a.exclude_hv = exclude_hv;
	a.read_format = PERF_FORMAT_GROUP | PERF_FORMAT_TOTAL_TIME_ENABLED |
			PERF_FORMAT_TOTAL_TIME_RUNNING;
	return (int)syscall(SYS_perf_event_open, &a, -1, cpu, group, 0);
}

int main(int argc, char **argv)
{
	struct {
		uint64_t nr, enabled, running, value[3];
	} r;
	uint64_t t0, t1, sum[3] = { 0, 0, 0 };
	int fd[MAX_CPUS], ncpus, cpu, status;
	pid_t pid;

	if (argc == 2 && !strcmp(argv[1], "now")) {
		printf("cntvct %llu\n", (unsigned long long)cntvct());
		return 0;
	}
	if (argc == 2 && !strcmp(argv[1], "drain")) {
		fflush(stdout);
		return tcdrain(STDOUT_FILENO) ? 1 : 0;
	}
	if (argc < 3 || strcmp(argv[1], "run")) {
		fprintf(stderr, "usage: icount now | icount drain | icount run CMD [ARGS...]\n");
		return 2;
	}
	ncpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (ncpus < 1 || ncpus > MAX_CPUS) {
		fprintf(stderr, "icount: %d CPUs online: not 1..%d\n", ncpus, MAX_CPUS);
		return 1;
	}
	for (cpu = 0; cpu < ncpus; cpu++) {
		int el01, el0;

		fd[cpu] = counter_open(cpu, 0, 0, -1);
		el01 = fd[cpu] < 0 ? -1 : counter_open(cpu, 0, 1, fd[cpu]);
		el0 = el01 < 0 ? -1 : counter_open(cpu, 1, 1, fd[cpu]);
		if (el0 < 0) {
			fprintf(stderr, "icount: perf_event_open(instructions, cpu %d): %s\n", cpu,
				strerror(errno));
			return 1;
		}
	}
	for (cpu = 0; cpu < ncpus; cpu++) {
		ioctl(fd[cpu], PERF_EVENT_IOC_RESET, PERF_IOC_FLAG_GROUP);
		ioctl(fd[cpu], PERF_EVENT_IOC_ENABLE, PERF_IOC_FLAG_GROUP);
	}
	t0 = cntvct();
	pid = fork();
	if (pid == 0) {
		execvp(argv[2], argv + 2);
		fprintf(stderr, "icount: %s: %s\n", argv[2], strerror(errno));
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid) {
		fprintf(stderr, "icount: fork/wait: %s\n", strerror(errno));
		return 1;
	}
	t1 = cntvct();
	for (cpu = 0; cpu < ncpus; cpu++)
		ioctl(fd[cpu], PERF_EVENT_IOC_DISABLE, PERF_IOC_FLAG_GROUP);
	for (cpu = 0; cpu < ncpus; cpu++) {
		if (read(fd[cpu], &r, sizeof(r)) != (ssize_t)sizeof(r) || r.nr != 3) {
			fprintf(stderr, "icount: reading the counters of cpu %d: %s\n", cpu,
				strerror(errno));
			return 1;
		}
		if (r.enabled != r.running) {
			fprintf(stderr,
				"icount: the counters of cpu %d were multiplexed (%llu of %llu ns): not exact\n",
				cpu, (unsigned long long)r.running, (unsigned long long)r.enabled);
			return 1;
		}
		for (int i = 0; i < 3; i++)
			sum[i] += r.value[i];
	}
	printf("instructions %llu el2 %llu el1 %llu el0 %llu cntvct %llu cpus %d\n",
	       (unsigned long long)sum[0], (unsigned long long)(sum[0] - sum[1]),
	       (unsigned long long)(sum[1] - sum[2]), (unsigned long long)sum[2],
	       (unsigned long long)(t1 - t0), ncpus);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
