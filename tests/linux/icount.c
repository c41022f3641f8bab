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
 *   icount run CMD ARGS  runs CMD and prints "instructions N cntvct M": N = instructions retired
 *                        on CPU 0 at every exception level (EL0, EL1 and, below a hypervisor,
 *                        EL2: perf's exclude_hv = 0), counted by the PMU's INST_RETIRED event
 *                        through perf_event_open(pid = -1, cpu = 0), from just before the fork
 *                        to just after the wait; M = CNTVCT_EL0 ticks over the same span.
 *                        Under -icount QEMU's INST_RETIRED is its exact instruction count.
 *
 * Exits 1 with a message on stderr if the counter cannot be opened or does not count whole
 * (multiplexed); otherwise with CMD's status.
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
#include <unistd.h>

static uint64_t cntvct(void)
{
	uint64_t v;

	__asm__ volatile("isb; mrs %0, cntvct_el0" : "=r"(v)::"memory");
	return v;
}

static int counter_open(void)
{
	struct perf_event_attr a;

	memset(&a, 0, sizeof(a));
	a.size = sizeof(a);
	a.type = PERF_TYPE_HARDWARE;
	a.config = PERF_COUNT_HW_INSTRUCTIONS;
	a.disabled = 1;
	a.exclude_user = 0;
	a.exclude_kernel = 0;
	a.exclude_hv = 0;
	a.read_format = PERF_FORMAT_TOTAL_TIME_ENABLED | PERF_FORMAT_TOTAL_TIME_RUNNING;
	return (int)syscall(SYS_perf_event_open, &a, -1, 0, -1, 0);
}

int main(int argc, char **argv)
{
	struct {
		uint64_t value, enabled, running;
	} r;
	uint64_t t0, t1;
	int fd, status;
	pid_t pid;

	if (argc == 2 && !strcmp(argv[1], "now")) {
		printf("cntvct %llu\n", (unsigned long long)cntvct());
		return 0;
	}
	if (argc < 3 || strcmp(argv[1], "run")) {
		fprintf(stderr, "usage: icount now | icount run CMD [ARGS...]\n");
		return 2;
	}
	fd = counter_open();
	if (fd < 0) {
		fprintf(stderr, "icount: perf_event_open(instructions, cpu 0): %s\n",
			strerror(errno));
		return 1;
	}
	ioctl(fd, PERF_EVENT_IOC_RESET, 0);
	ioctl(fd, PERF_EVENT_IOC_ENABLE, 0);
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
	ioctl(fd, PERF_EVENT_IOC_DISABLE, 0);
	if (read(fd, &r, sizeof(r)) != (ssize_t)sizeof(r)) {
		fprintf(stderr, "icount: reading the counter: %s\n", strerror(errno));
		return 1;
	}
	if (r.enabled != r.running) {
		fprintf(stderr, "icount: the counter was multiplexed (%llu of %llu ns): not exact\n",
			(unsigned long long)r.running, (unsigned long long)r.enabled);
		return 1;
	}
	printf("instructions %llu cntvct %llu\n", (unsigned long long)r.value,
	       (unsigned long long)(t1 - t0));
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
