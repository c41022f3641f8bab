// SPDX-License-Identifier: MIT
//
// smmu-attack: what root on the Linux host can try against the hypervisor's SMMU isolation.
// xtask builds it statically (aarch64-linux-gnu-gcc-12 -static -I host-abi/include,
// xtask/src/kmod.rs) into the host's initramfs; the host's test script (xtask/src/linux.rs)
// runs it. Each command prints what it did and exits 0 if the isolation held as expected, 1
// (with the reason on the last line) if not.
//
//   smmu-attack dma DEV ADDR...
//       The edu device DEV (its sysfs directory) DMAs its buffer to each ADDR (4 bytes, then a
//       whole page), through whatever the host's own SMMU driver configured. Prints one line
//       per DMA.
//
//   smmu-attack reprogram DEV SID CASE HYP GUEST...
//       Takes the emulated SMMU away from the host's driver for a moment (saves its registers,
//       disables it, points it at tables in this process's pages), makes DEV (stream SID) try
//       CASE, then gives the driver its SMMU back exactly as it was. HYP is an address in the
//       hypervisor's memory, GUEST... addresses in the guests' RAM. CASEs:
//         bypass          a bypass STE: the hypervisor makes it identity over host memory, so
//                         DMA to our own page lands and DMA to HYP/GUEST faults at stage 2
//         stage2          a stage-2 STE whose tables map everything: refused (abort)
//         cd-in-hyp       a stage-1 STE whose CD table is at HYP: refused (abort)
//         cd-in-guest     a stage-1 STE whose CD table is at GUEST: refused (abort)
//         s1-maps-out     a valid stage-1 STE whose page tables map IOVAs to HYP and GUEST:
//                         accepted (nested on the host's stage 2), the mapping to our own
//                         page works, the others fault at stage 2
//         strtab-in-guest the stream table itself at GUEST: no STE of it is used (abort)
//         strtab-in-hyp   the stream table at HYP: no STE of it is used (abort)
//         illegal-command a stage-2 TLBI naming another VM's VMID: the queue stops with
//                         CMDQ_ERR and CONS.ERR = ILL, and restarts once the command is
//                         replaced and GERROR acknowledged, as on hardware
//         cmdq-in-hyp     the command queue at HYP: the queue stops with CONS.ERR = ABT
//         bad-cds         a stage-1 STE whose CD asks for IPS 0b110 (52 bits, which QEMU 10.0.2's
//                         SMMU cannot handle: it aborts the machine), IPS 0b111 (reserved), T0SZ
//                         12 and 40 (out of range): each refused, the stream aborts, QEMU lives;
//                         the same CD made valid again works
//         flood           a 2 MiB command queue (2^17 entries, a huge page) full of CFGI_ALL,
//                         PROD written once: the hypervisor consumes a bounded amount per
//                         trapped access (CONS never moves by more than 256 between two reads),
//                         the queue drains as CONS is polled, and the stream still works
//         flood-msi       the same flood with a CMD_SYNC at its end whose MSI (data 0) goes to
//                         its own entry, as Linux's MSI polling does, after one such SYNC alone:
//                         the hypervisor consumes the flood a bounded amount at a time by itself
//                         (its own interrupt) and the final MSI arrives without one CONS read
//         illegal-flood   2,000 illegal commands, each recovered from as Linux does: the queue
//                         restarts every time (the hypervisor logs the first one only: xtask
//                         counts its lines)
//
// The SMMU registers are reached through /dev/mem (the kernel runs with iomem=relaxed); our
// pages' physical addresses come from /proc/self/pagemap.

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

// The SMMU's encodings (register offsets and bits, descriptor fields, opcodes) come from the
// ABI's generated header (host-abi/include/smmu_hyp.h: SMMU_HYP_REG_*, SMMU_HYP_STE_*, ...),
// one definition with the hypervisor's.
#include "smmu_hyp.h"

// Field f (SMMU_HYP_<f>) with value v, in place in its word.
#define FIELD(f, v) SMMU_HYP_FIELD_PREP(SMMU_HYP_##f, v)
// Field f of the descriptor whose words are `words`.
#define FIELD_OF(f, words) SMMU_HYP_FIELD_GET(SMMU_HYP_##f, (words)[SMMU_HYP_##f##_WORD])

// --- SMMUv3 registers (offsets in the 128 KiB register space) -------------------------------

#define SMMU_BASE 0x09050000UL

#define CONS_ERR(c) (((c) & SMMU_HYP_CMDQ_CONS_ERR_MASK) >> SMMU_HYP_CMDQ_CONS_ERR_SHIFT)

// Queues of one 4 KiB page each: 256 commands of 16 bytes, 128 events of 32 bytes.
#define CMDQ_LOG2 8
#define EVTQ_LOG2 7
// A linear stream table of one page: 64 STEs of 64 bytes (stream IDs 0..63).
#define STRTAB_LOG2 6

// --- STE, CD, commands, page tables ----------------------------------------------------------

#define STE_V FIELD(STE_V, 1)
#define STE_CFG_BYPASS FIELD(STE_CONFIG, SMMU_HYP_STE_CONFIG_BYPASS)
#define STE_CFG_S1 FIELD(STE_CONFIG, SMMU_HYP_STE_CONFIG_S1)
#define STE_CFG_S2 FIELD(STE_CONFIG, SMMU_HYP_STE_CONFIG_S2)
#define STE_S1CTXPTR(pa) ((pa) & SMMU_HYP_STE_S1_CONTEXT_PTR_MASK)

// CMD_CFGI_ALL: CFGI_STE_RANGE with Range 31 (every stream).
#define CFGI_ALL_W0 SMMU_HYP_OP_CFGI_STE_RANGE
#define CFGI_ALL_W1 FIELD(CMD_RANGE, 31)

// The flood's queue: one 2 MiB huge page of 16-byte commands.
#define FLOOD_LOG2 17
// The most commands the hypervisor consumes for the host in one trapped access (README).
#define ACCESS_BUDGET 256

#define EDU_BUFFER 0x40000ull
#define EDU_DMA_SRC 0x80
#define EDU_DMA_DST 0x88
#define EDU_DMA_CNT 0x90
#define EDU_DMA_CMD 0x98
#define DMA_LEN 64

static const char *progname = "smmu-attack";

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	printf("%s: ", progname);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	exit(1);
}

// Device accesses as single plain loads and stores: the SMMU page traps to the hypervisor,
// which decodes the access from the syndrome (no writeback addressing, no pairs).
static uint32_t rd32(volatile void *base, unsigned long off)
{
	uint32_t v;
	__asm__ volatile("ldr %w0, [%1]" : "=r"(v) : "r"((char *)base + off) : "memory");
	return v;
}

static void wr32(volatile void *base, unsigned long off, uint32_t v)
{
	__asm__ volatile("str %w0, [%1]" : : "r"(v), "r"((char *)base + off) : "memory");
}

static uint64_t rd64(volatile void *base, unsigned long off)
{
	uint64_t v;
	__asm__ volatile("ldr %0, [%1]" : "=r"(v) : "r"((char *)base + off) : "memory");
	return v;
}

static void wr64(volatile void *base, unsigned long off, uint64_t v)
{
	__asm__ volatile("str %0, [%1]" : : "r"(v), "r"((char *)base + off) : "memory");
}

static void barrier(void)
{
	__asm__ volatile("dsb sy" : : : "memory");
}

static void sleep_ms(long ms)
{
	struct timespec t = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&t, NULL);
}

static uint64_t parse(const char *s)
{
	char *end;
	errno = 0;
	uint64_t v = strtoull(s, &end, 0);
	if (errno || *end || end == s)
		die("not a number: %s", s);
	return v;
}

// --- our pages -------------------------------------------------------------------------------

struct page {
	volatile uint64_t *va;
	uint64_t pa;
};

static struct page page_alloc(void)
{
	struct page p;
	void *va = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE | MAP_LOCKED, -1, 0);
	if (va == MAP_FAILED)
		die("mmap: %s", strerror(errno));
	memset(va, 0, 4096);
	int fd = open("/proc/self/pagemap", O_RDONLY);
	if (fd < 0)
		die("/proc/self/pagemap: %s", strerror(errno));
	uint64_t e = 0;
	if (pread(fd, &e, 8, ((uintptr_t)va / 4096) * 8) != 8)
		die("pagemap read: %s", strerror(errno));
	close(fd);
	if (!(e & (1ull << 63)) || !(e & ((1ull << 55) - 1)))
		die("page %p not present or PFN hidden (pagemap entry %#llx)", va,
		    (unsigned long long)e);
	p.va = va;
	p.pa = (e & ((1ull << 55) - 1)) << 12;
	return p;
}

static void page_fill(struct page p, uint8_t b)
{
	memset((void *)p.va, b, 4096);
	barrier();
}

// Whether the first `len` bytes of `p` all equal `b`.
static int page_is(struct page p, unsigned len, uint8_t b)
{
	barrier();
	for (unsigned i = 0; i < len; i++)
		if (((volatile uint8_t *)p.va)[i] != b)
			return 0;
	return 1;
}

// --- the edu device --------------------------------------------------------------------------

struct edu {
	volatile void *bar;
	const char *dev;
};

static struct edu edu_open(const char *dev)
{
	char path[512];
	struct edu e = { NULL, dev };
	// Memory decoding and bus mastering on (uio_pci_generic enables the device, not DMA).
	snprintf(path, sizeof(path), "%s/config", dev);
	int fd = open(path, O_RDWR);
	if (fd < 0)
		die("%s: %s", path, strerror(errno));
	uint16_t cmd;
	if (pread(fd, &cmd, 2, 4) != 2)
		die("%s: read: %s", path, strerror(errno));
	cmd |= 0x6;
	if (pwrite(fd, &cmd, 2, 4) != 2)
		die("%s: write: %s", path, strerror(errno));
	close(fd);
	snprintf(path, sizeof(path), "%s/resource0", dev);
	fd = open(path, O_RDWR | O_SYNC);
	if (fd < 0)
		die("%s: %s", path, strerror(errno));
	void *bar = mmap(NULL, 0x1000, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (bar == MAP_FAILED)
		die("mmap %s: %s", path, strerror(errno));
	close(fd);
	e.bar = bar;
	if (rd32(bar, 0) != 0x010000ed)
		die("%s is not an edu device (ID %#x)", dev, rd32(bar, 0));
	return e;
}

// One DMA of the edu engine; returns once it has completed (edu completes even when the SMMU
// aborts the transaction).
static void edu_dma(struct edu *e, uint64_t src, uint64_t dst, uint64_t len, int to_ram)
{
	wr64(e->bar, EDU_DMA_SRC, src);
	wr64(e->bar, EDU_DMA_DST, dst);
	wr64(e->bar, EDU_DMA_CNT, len);
	wr64(e->bar, EDU_DMA_CMD, 1 | (to_ram ? 2 : 0));
	for (int i = 0; i < 500; i++) {
		if (!(rd64(e->bar, EDU_DMA_CMD) & 1))
			return;
		sleep_ms(10);
	}
	die("edu DMA %#llx -> %#llx did not complete in 5 s", (unsigned long long)src,
	    (unsigned long long)dst);
}

// From RAM at device address `src` into edu's buffer.
static void edu_load(struct edu *e, uint64_t src)
{
	edu_dma(e, src, EDU_BUFFER, DMA_LEN, 0);
}

// From edu's buffer to RAM at device address `dst`.
static void edu_store(struct edu *e, uint64_t dst)
{
	edu_dma(e, EDU_BUFFER, dst, DMA_LEN, 1);
}

// --- the emulated SMMU -----------------------------------------------------------------------

static volatile void *smmu;

static void smmu_map(void)
{
	int fd = open("/dev/mem", O_RDWR | O_SYNC);
	if (fd < 0)
		die("/dev/mem: %s", strerror(errno));
	void *p = mmap(NULL, SMMU_HYP_REGS_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, SMMU_BASE);
	if (p == MAP_FAILED)
		die("mmap /dev/mem at %#lx: %s", SMMU_BASE, strerror(errno));
	close(fd);
	smmu = p;
}

static void wait_eq(unsigned long off, uint32_t want, const char *what)
{
	for (int i = 0; i < 1000; i++) {
		if (rd32(smmu, off) == want)
			return;
		sleep_ms(1);
	}
	die("%s: register %#lx reads %#x, not %#x", what, off, rd32(smmu, off), want);
}

static void set_cr0(uint32_t v)
{
	wr32(smmu, SMMU_HYP_REG_CR0, v);
	wait_eq(SMMU_HYP_REG_CR0ACK, v, "CR0ACK");
}

static void set_irq_ctrl(uint32_t v)
{
	wr32(smmu, SMMU_HYP_REG_IRQ_CTRL, v);
	wait_eq(SMMU_HYP_REG_IRQ_CTRLACK, v, "IRQ_CTRLACK");
}

// The host driver's configuration, to give back.
static struct {
	uint32_t cr0, cr1, cr2, irq_ctrl, strtab_cfg;
	uint64_t strtab, cmdq, evtq;
	uint32_t cmdq_prod, cmdq_cons, evtq_prod, evtq_cons;
} saved;

static int taken;

static void smmu_take(void)
{
	saved.cr0 = rd32(smmu, SMMU_HYP_REG_CR0);
	saved.cr1 = rd32(smmu, SMMU_HYP_REG_CR1);
	saved.cr2 = rd32(smmu, SMMU_HYP_REG_CR2);
	saved.irq_ctrl = rd32(smmu, SMMU_HYP_REG_IRQ_CTRL);
	saved.strtab = rd64(smmu, SMMU_HYP_REG_STRTAB_BASE);
	saved.strtab_cfg = rd32(smmu, SMMU_HYP_REG_STRTAB_BASE_CFG);
	saved.cmdq = rd64(smmu, SMMU_HYP_REG_CMDQ_BASE);
	saved.evtq = rd64(smmu, SMMU_HYP_REG_EVTQ_BASE);
	// The driver's queues must be idle (no command in flight) for the give-back to be exact.
	saved.cmdq_prod = rd32(smmu, SMMU_HYP_REG_CMDQ_PROD);
	saved.cmdq_cons = rd32(smmu, SMMU_HYP_REG_CMDQ_CONS);
	if (saved.cmdq_prod != saved.cmdq_cons)
		die("the driver's command queue is busy (PROD %#x, CONS %#x)", saved.cmdq_prod,
		    saved.cmdq_cons);
	if (!(saved.cr0 & SMMU_HYP_CR0_SMMUEN))
		die("the driver's SMMU is not enabled (CR0 %#x)", saved.cr0);
	set_irq_ctrl(0);
	set_cr0(0);
	taken = 1;
	saved.evtq_prod = rd32(smmu, SMMU_HYP_REG_EVTQ_PROD);
	saved.evtq_cons = rd32(smmu, SMMU_HYP_REG_EVTQ_CONS);
	printf("took the SMMU from the driver: CR0 %#x, stream table %#llx (cfg %#x), cmdq %#llx, evtq %#llx\n",
	       saved.cr0, (unsigned long long)saved.strtab, saved.strtab_cfg,
	       (unsigned long long)saved.cmdq, (unsigned long long)saved.evtq);
}

static void smmu_give_back(void)
{
	if (!taken)
		return;
	taken = 0;
	set_cr0(0);
	// Acknowledge what we caused, so the driver starts with no active global error.
	wr32(smmu, SMMU_HYP_REG_GERRORN, rd32(smmu, SMMU_HYP_REG_GERROR));
	wr64(smmu, SMMU_HYP_REG_STRTAB_BASE, saved.strtab);
	wr32(smmu, SMMU_HYP_REG_STRTAB_BASE_CFG, saved.strtab_cfg);
	wr64(smmu, SMMU_HYP_REG_CMDQ_BASE, saved.cmdq);
	wr32(smmu, SMMU_HYP_REG_CMDQ_PROD, saved.cmdq_prod);
	wr32(smmu, SMMU_HYP_REG_CMDQ_CONS, saved.cmdq_cons);
	wr64(smmu, SMMU_HYP_REG_EVTQ_BASE, saved.evtq);
	wr32(smmu, SMMU_HYP_REG_EVTQ_PROD, saved.evtq_prod);
	wr32(smmu, SMMU_HYP_REG_EVTQ_CONS, saved.evtq_cons);
	wr32(smmu, SMMU_HYP_REG_CR1, saved.cr1);
	wr32(smmu, SMMU_HYP_REG_CR2, saved.cr2);
	set_irq_ctrl(saved.irq_ctrl);
	set_cr0(saved.cr0);
	printf("gave the SMMU back to the driver (CR0 %#x)\n", saved.cr0);
}

// Our configuration: the stream table, the queues, a CD and page tables, DMA pages.
static struct page st, cmdq, evtq, cd, l1, l2, l3, s2, src, dst;
static uint32_t prod;

static void cmd(uint64_t w0, uint64_t w1)
{
	volatile uint64_t *slot = cmdq.va + 2 * (prod & ((1u << CMDQ_LOG2) - 1));
	slot[0] = w0;
	slot[1] = w1;
	barrier();
	prod = (prod + 1) & ((2u << CMDQ_LOG2) - 1);
	wr32(smmu, SMMU_HYP_REG_CMDQ_PROD, prod);
}

// Waits until CONS has caught up with PROD; returns 0, or CONS.ERR if the queue stopped.
static uint32_t cmd_wait(void)
{
	for (int i = 0; i < 1000; i++) {
		uint32_t gerr = rd32(smmu, SMMU_HYP_REG_GERROR) ^ rd32(smmu, SMMU_HYP_REG_GERRORN);
		uint32_t cons = rd32(smmu, SMMU_HYP_REG_CMDQ_CONS);
		if (gerr & SMMU_HYP_GERROR_CMDQ_ERR)
			return CONS_ERR(cons) ? CONS_ERR(cons) : 0x7f;
		if ((cons & ((2u << CMDQ_LOG2) - 1)) == prod)
			return 0;
		sleep_ms(1);
	}
	die("command queue stuck: PROD %#x, CONS %#x", prod, rd32(smmu, SMMU_HYP_REG_CMDQ_CONS));
}

static void cfgi(uint32_t sid)
{
	cmd(SMMU_HYP_OP_CFGI_STE | FIELD(CMD_SID, sid), FIELD(CMD_LEAF, 1));
	cmd(SMMU_HYP_OP_SYNC, 0);
	uint32_t err = cmd_wait();
	if (err)
		die("CFGI_STE %#x stopped the queue (CONS.ERR %u)", sid, err);
}

static void cfgi_all(void)
{
	cmd(CFGI_ALL_W0, CFGI_ALL_W1);
	cmd(SMMU_HYP_OP_SYNC, 0);
	uint32_t err = cmd_wait();
	if (err)
		die("CFGI_ALL stopped the queue (CONS.ERR %u)", err);
}

// Linux's recovery from a stopped queue: a CMD_SYNC in place of the command at `at`, then
// the error acknowledged. Returns what cmd_wait() says after it (0: the queue drained).
static uint32_t recover(uint32_t at)
{
	volatile uint64_t *slot = cmdq.va + 2 * (at & ((1u << CMDQ_LOG2) - 1));
	slot[0] = SMMU_HYP_OP_SYNC;
	slot[1] = 0;
	barrier();
	wr32(smmu, SMMU_HYP_REG_GERRORN, rd32(smmu, SMMU_HYP_REG_GERROR));
	return cmd_wait();
}

static void smmu_ours(uint64_t strtab_pa, uint64_t cmdq_pa)
{
	wr64(smmu, SMMU_HYP_REG_STRTAB_BASE, strtab_pa);
	wr32(smmu, SMMU_HYP_REG_STRTAB_BASE_CFG, STRTAB_LOG2);
	wr64(smmu, SMMU_HYP_REG_CMDQ_BASE, cmdq_pa | CMDQ_LOG2);
	wr32(smmu, SMMU_HYP_REG_CMDQ_PROD, 0);
	wr32(smmu, SMMU_HYP_REG_CMDQ_CONS, 0);
	prod = 0;
	wr64(smmu, SMMU_HYP_REG_EVTQ_BASE, evtq.pa | EVTQ_LOG2);
	wr32(smmu, SMMU_HYP_REG_EVTQ_PROD, 0);
	wr32(smmu, SMMU_HYP_REG_EVTQ_CONS, 0);
	set_cr0(SMMU_HYP_CR0_SMMUEN | SMMU_HYP_CR0_EVENTQEN | SMMU_HYP_CR0_CMDQEN);
}

static void ste(uint32_t sid, uint64_t w0, uint64_t w1, uint64_t w2, uint64_t w3)
{
	volatile uint64_t *e = st.va + 8 * sid;
	e[1] = w1;
	e[2] = w2;
	e[3] = w3;
	for (int i = 4; i < 8; i++)
		e[i] = 0;
	barrier();
	e[0] = w0;
	barrier();
	cfgi(sid);
}

// Whether our event queue holds a translation fault for `iova` at stage 2 from `sid`.
static int saw_s2_fault(uint32_t sid, uint64_t iova)
{
	barrier();
	uint32_t p = rd32(smmu, SMMU_HYP_REG_EVTQ_PROD) & ((2u << EVTQ_LOG2) - 1);
	uint32_t c = rd32(smmu, SMMU_HYP_REG_EVTQ_CONS) & ((2u << EVTQ_LOG2) - 1);
	int seen = 0;
	while (c != p) {
		volatile uint64_t *r = evtq.va + 4 * (c & ((1u << EVTQ_LOG2) - 1));
		if (FIELD_OF(EVT_TYPE, r) == SMMU_HYP_EVT_F_TRANSLATION &&
		    FIELD_OF(EVT_SID, r) == sid && FIELD_OF(EVT_INPUT_ADDR, r) == iova &&
		    FIELD_OF(EVT_S2, r))
			seen = 1;
		c = (c + 1) & ((2u << EVTQ_LOG2) - 1);
	}
	wr32(smmu, SMMU_HYP_REG_EVTQ_CONS, c);
	return seen;
}

// DMA through the stream as it is now: edu loads its buffer from our page `src` (device
// address `src_da`) and stores it to our page `dst` (device address `dst_da`). Returns whether
// the data arrived.
static int dma_round_trip(struct edu *e, uint64_t src_da, uint64_t dst_da)
{
	page_fill(src, 0x5a);
	page_fill(dst, 0xee);
	edu_load(e, src_da);
	edu_store(e, dst_da);
	return page_is(dst, DMA_LEN, 0x5a);
}

static void usage(void)
{
	die("usage: smmu-attack dma DEV ADDR... | reprogram DEV SID CASE HYP GUEST...");
}

static void s1_tables(uint64_t *targets, int n)
{
	// 39-bit IOVAs, 4 KiB granule: level 1, 2 and 3 tables, IOVA i * 4 KiB -> targets[i].
	l1.va[0] = l2.pa | 3;
	l2.va[0] = l3.pa | 3;
	for (int i = 0; i < n; i++)
		l3.va[i] = (targets[i] & ~0xfffull) | (1ull << 10) | (3ull << 8) | (1ull << 6) | 3;
	// CD: T0SZ 25, TG0 4K, WBWA walks, inner shareable, EPD1, valid, IPS 36 bits, AArch64,
	// record and abort faults, ASID 1; MAIR attribute 0 normal write-back.
	cd.va[0] = FIELD(CD_T0SZ, 25) | FIELD(CD_IR0, 1) | FIELD(CD_OR0, 1) | FIELD(CD_SH0, 3) |
		    FIELD(CD_EPD1, 1) | FIELD(CD_V, 1) | FIELD(CD_IPS, 1) | FIELD(CD_AA64, 1) |
		    FIELD(CD_R, 1) | FIELD(CD_A, 1) | FIELD(CD_ASID, 1);
	cd.va[SMMU_HYP_CD_TTB0_WORD] = l1.pa;
	cd.va[SMMU_HYP_CD_MAIR_WORD] = FIELD(CD_MAIR, 0xff);
	barrier();
}

// Word 0 of a CMD_SYNC that completes with an MSI (CS = SIG_IRQ, MSIDATA 0) and word 1 with
// its address `pa`, as Linux's driver writes them with MSI polling.
#define MSI_SYNC_W0 (SMMU_HYP_OP_SYNC | FIELD(CMD_SYNC_CS, 1) | FIELD(CMD_SYNC_MSH, 3) | \
		     FIELD(CMD_SYNC_MSIATTR, 0xf))
#define MSI_SYNC_W1(pa) ((pa) & SMMU_HYP_CMD_SYNC_MSIADDR_MASK)

static long ms_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

// Waits (at most `ms`) for the first 32 bits of queue entry `e` to become 0 (its MSI), reading
// memory only. Returns whether it did.
static int wait_msi(volatile uint64_t *e, long ms)
{
	struct timespec t0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while ((uint32_t)e[0] != 0) {
		if (ms_since(&t0) > ms)
			return 0;
		sched_yield();
	}
	return 1;
}

// A 2 MiB queue full of CFGI_ALL, PROD written once (one lap ahead of CONS: every entry), then
// CONS polled as Linux's driver polls it: the hypervisor must consume it a bounded amount per
// trapped access, so CONS never moves by more than ACCESS_BUDGET between two reads.
// With `msi`: first one CMD_SYNC alone whose MSI goes to its own entry (the host asks for MSIs,
// as Linux's driver does from its first SYNC), then the flood with such a SYNC as its last
// entry, and only memory is read until that MSI arrives: the hypervisor goes on by itself.
static void flood(uint32_t sid, int msi)
{
	FILE *f = fopen("/proc/sys/vm/nr_hugepages", "w");
	if (!f || fprintf(f, "1\n") < 0 || fclose(f))
		die("cannot reserve a huge page: %s", strerror(errno));
	size_t len = 1ul << (FLOOD_LOG2 + 4);
	void *va = mmap(NULL, len, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_POPULATE | MAP_LOCKED, -1, 0);
	if (va == MAP_FAILED)
		die("mmap of a 2 MiB huge page: %s", strerror(errno));
	int fd = open("/proc/self/pagemap", O_RDONLY);
	uint64_t e = 0;
	if (fd < 0 || pread(fd, &e, 8, ((uintptr_t)va / 4096) * 8) != 8)
		die("pagemap: %s", strerror(errno));
	close(fd);
	uint64_t pa = (e & ((1ull << 55) - 1)) << 12;
	if (!(e & (1ull << 63)) || !pa || (pa & (len - 1)))
		die("huge page not present or not aligned (pagemap entry %#llx)", (unsigned long long)e);
	volatile uint64_t *q = va;
	for (size_t i = 0; i < (1ul << FLOOD_LOG2); i++) {
		q[2 * i] = CFGI_ALL_W0;
		q[2 * i + 1] = CFGI_ALL_W1;
	}
	barrier();
	set_cr0(0);
	wr64(smmu, SMMU_HYP_REG_STRTAB_BASE, st.pa);
	wr32(smmu, SMMU_HYP_REG_STRTAB_BASE_CFG, STRTAB_LOG2);
	wr64(smmu, SMMU_HYP_REG_CMDQ_BASE, pa | FLOOD_LOG2);
	wr32(smmu, SMMU_HYP_REG_CMDQ_PROD, 0);
	wr32(smmu, SMMU_HYP_REG_CMDQ_CONS, 0);
	set_cr0(SMMU_HYP_CR0_SMMUEN | SMMU_HYP_CR0_EVENTQEN | SMMU_HYP_CR0_CMDQEN);
	uint32_t mask = (2u << FLOOD_LOG2) - 1;
	uint32_t full = 1u << FLOOD_LOG2; // wrap bit set, index 0: every entry
	struct timespec t0, t1;
	if (msi) {
		size_t last = (1ul << FLOOD_LOG2) - 1;
		q[0] = MSI_SYNC_W0;
		q[1] = MSI_SYNC_W1(pa);
		q[2 * last] = MSI_SYNC_W0;
		q[2 * last + 1] = MSI_SYNC_W1(pa + last * 16);
		barrier();
		wr32(smmu, SMMU_HYP_REG_CMDQ_PROD, 1);
		if (!wait_msi(&q[0], 1000))
			die("flood-msi: a lone CMD_SYNC's MSI did not arrive (CONS %#x)",
			    rd32(smmu, SMMU_HYP_REG_CMDQ_CONS));
		clock_gettime(CLOCK_MONOTONIC, &t0);
		// Entries 1 to the last: CONS is at 1, PROD one lap ahead of index 0.
		wr32(smmu, SMMU_HYP_REG_CMDQ_PROD, full);
		if (!wait_msi(&q[2 * last], 120000))
			die("flood-msi: the final CMD_SYNC's MSI did not arrive within 120 s (CONS %#x)",
			    rd32(smmu, SMMU_HYP_REG_CMDQ_CONS));
		long ms = ms_since(&t0);
		uint32_t cons = rd32(smmu, SMMU_HYP_REG_CMDQ_CONS);
		if (CONS_ERR(cons) || (cons & mask) != full)
			die("flood-msi: after the final MSI, CONS %#x (not %#x)", cons, full);
		set_cr0(0);
		smmu_ours(st.pa, cmdq.pa);
		cfgi(sid);
		munmap(va, len);
		printf("flood-msi: %lu CFGI_ALL consumed and the final CMD_SYNC's MSI written in %ld ms, "
		       "no CMDQ_CONS read while waiting\n",
		       last - 1, ms);
		return;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	wr32(smmu, SMMU_HYP_REG_CMDQ_PROD, full);
	uint32_t last = 0, reads = 0, most = 0;
	for (;;) {
		uint32_t cons = rd32(smmu, SMMU_HYP_REG_CMDQ_CONS);
		reads++;
		if (CONS_ERR(cons) ||
		    ((rd32(smmu, SMMU_HYP_REG_GERROR) ^ rd32(smmu, SMMU_HYP_REG_GERRORN)) &
		     SMMU_HYP_GERROR_CMDQ_ERR))
			die("the flood stopped the queue (CONS %#x)", cons);
		uint32_t moved = ((cons & mask) - last) & mask;
		if (moved > most)
			most = moved;
		// The first read follows two accesses (the PROD write and itself), the others one.
		uint32_t allowed = reads == 1 ? 2 * ACCESS_BUDGET : ACCESS_BUDGET;
		if (moved > allowed)
			die("%u commands consumed between two CONS reads (%#x -> %#x): more than %u",
			    moved, last, cons & mask, allowed);
		last = cons & mask;
		if (last == full)
			break;
		if (reads > 4u * (1u << FLOOD_LOG2))
			die("the flood is not consumed: CONS %#x after %u reads", cons, reads);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	// Back to our one-page queue, and the stream still works.
	set_cr0(0);
	smmu_ours(st.pa, cmdq.pa);
	cfgi(sid);
	munmap(va, len);
	printf("flood: %u CFGI_ALL consumed over %u CONS reads in %ld ms, at most %u per access\n",
	       1u << FLOOD_LOG2, reads, ms, most);
}

static int reprogram(int argc, char **argv)
{
	if (argc < 6)
		usage();
	const char *dev = argv[2];
	uint32_t sid = (uint32_t)parse(argv[3]);
	const char *what = argv[4];
	uint64_t hyp = parse(argv[5]);
	int nguests = argc - 6;
	uint64_t guests[8];
	if (sid >= (1u << STRTAB_LOG2) || nguests < 1 || nguests > 8)
		usage();
	for (int i = 0; i < nguests; i++)
		guests[i] = parse(argv[6 + i]);

	struct edu e = edu_open(dev);
	smmu_map();
	st = page_alloc();
	cmdq = page_alloc();
	evtq = page_alloc();
	cd = page_alloc();
	l1 = page_alloc();
	l2 = page_alloc();
	l3 = page_alloc();
	s2 = page_alloc();
	src = page_alloc();
	dst = page_alloc();
	atexit(smmu_give_back);
	smmu_take();
	smmu_ours(st.pa, cmdq.pa);

	if (!strcmp(what, "bypass")) {
		ste(sid, STE_V | STE_CFG_BYPASS, 0, 0, 0);
		if (!dma_round_trip(&e, src.pa, dst.pa))
			die("bypass STE: DMA to our own page did not land (identity over host memory expected)");
		printf("bypass STE: DMA to our own page %#llx landed (identity)\n",
		       (unsigned long long)dst.pa);
		uint64_t all[9] = { hyp };
		memcpy(all + 1, guests, nguests * sizeof(uint64_t));
		for (int i = 0; i <= nguests; i++) {
			edu_store(&e, all[i]);
			if (!saw_s2_fault(sid, all[i]))
				die("bypass STE: DMA to %#llx: no stage-2 fault in our event queue",
				    (unsigned long long)all[i]);
			printf("bypass STE: DMA to %#llx faulted at stage 2 (event delivered)\n",
			       (unsigned long long)all[i]);
		}
	} else if (!strcmp(what, "stage2")) {
		// Stage-2 tables that map the first 1 GiB blocks of the address space, read-write.
		for (int i = 0; i < 4; i++)
			s2.va[i] = ((uint64_t)i << 30) | (1ull << 10) | (3ull << 8) | (3ull << 6) |
				   (0xfull << 2) | 1;
		uint64_t w2 = FIELD(STE_S2VMID, 1) | FIELD(STE_S2T0SZ, 25) | FIELD(STE_S2SL0, 1) |
			      FIELD(STE_S2IR0, 1) | FIELD(STE_S2OR0, 1) | FIELD(STE_S2SH0, 3) |
			      FIELD(STE_S2PS, 2) | FIELD(STE_S2AA64, 1) | FIELD(STE_S2PTW, 1) |
			      FIELD(STE_S2R, 1);
		ste(sid, STE_V | STE_CFG_S2, 0, w2, s2.pa);
		if (dma_round_trip(&e, src.pa, dst.pa))
			die("stage-2 STE: DMA landed: the STE was used");
		edu_store(&e, hyp);
		printf("stage-2 STE: refused, the stream aborts (DMA to our page did not land)\n");
	} else if (!strcmp(what, "cd-in-hyp") || !strcmp(what, "cd-in-guest")) {
		uint64_t at = !strcmp(what, "cd-in-hyp") ? hyp : guests[0];
		ste(sid, STE_V | STE_CFG_S1 | STE_S1CTXPTR(at), 0, 0, 0);
		if (dma_round_trip(&e, src.pa, dst.pa))
			die("%s: DMA landed: the STE was used", what);
		printf("%s: a CD table at %#llx: refused, the stream aborts\n", what,
		       (unsigned long long)at);
	} else if (!strcmp(what, "s1-maps-out")) {
		uint64_t targets[10] = { src.pa, dst.pa, hyp };
		memcpy(targets + 3, guests, nguests * sizeof(uint64_t));
		s1_tables(targets, 3 + nguests);
		ste(sid, STE_V | STE_CFG_S1 | STE_S1CTXPTR(cd.pa), 0, 0, 0);
		if (!dma_round_trip(&e, 0, 0x1000))
			die("stage-1 STE: DMA through our own mapping did not land");
		printf("stage-1 STE: IOVA 0x1000 -> our page %#llx: DMA landed\n",
		       (unsigned long long)dst.pa);
		for (int i = 2; i < 3 + nguests; i++) {
			uint64_t iova = (uint64_t)i << 12;
			edu_store(&e, iova);
			if (!saw_s2_fault(sid, iova))
				die("stage-1 STE: IOVA %#llx -> %#llx: no stage-2 fault in our event queue",
				    (unsigned long long)iova, (unsigned long long)targets[i]);
			printf("stage-1 STE: IOVA %#llx -> %#llx: faulted at stage 2 (event delivered)\n",
			       (unsigned long long)iova, (unsigned long long)targets[i]);
		}
	} else if (!strcmp(what, "strtab-in-guest") || !strcmp(what, "strtab-in-hyp")) {
		uint64_t at = (!strcmp(what, "strtab-in-hyp") ? hyp : guests[0]) & ~0xfffull;
		// First a bypass STE in our own table that works, then the table moved.
		ste(sid, STE_V | STE_CFG_BYPASS, 0, 0, 0);
		if (!dma_round_trip(&e, src.pa, dst.pa))
			die("%s: DMA through our own bypass STE did not land", what);
		set_cr0(0);
		smmu_ours(at, cmdq.pa);
		cfgi_all();
		if (dma_round_trip(&e, src.pa, dst.pa))
			die("%s: DMA landed with the stream table at %#llx", what,
			    (unsigned long long)at);
		printf("%s: stream table at %#llx: no STE of it used, the stream aborts\n", what,
		       (unsigned long long)at);
	} else if (!strcmp(what, "illegal-command")) {
		// A stage-2 TLBI for VMID 2 (not the host's): stage 2 is not advertised.
		uint32_t at = prod;
		cmd(SMMU_HYP_OP_TLBI_S12_VMALL | FIELD(CMD_VMID, 2), 0);
		uint32_t err = cmd_wait();
		if (err != SMMU_HYP_CERROR_ILL)
			die("TLBI_S12_VMALL: CONS.ERR %u, not ILL", err);
		uint32_t cons = rd32(smmu, SMMU_HYP_REG_CMDQ_CONS) & ((2u << CMDQ_LOG2) - 1);
		if (cons != at)
			die("the queue stopped at %#x, not at the bad command (%#x)", cons, at);
		if (recover(at))
			die("the queue did not restart after the error was acknowledged");
		cfgi(sid);
		printf("illegal-command: TLBI_S12_VMALL stopped the queue (CMDQ_ERR, CONS.ERR ILL); it restarted after recovery\n");
	} else if (!strcmp(what, "cmdq-in-hyp")) {
		set_cr0(0);
		smmu_ours(st.pa, hyp & ~0xfffull);
		wr32(smmu, SMMU_HYP_REG_CMDQ_PROD, ++prod);
		uint32_t err = cmd_wait();
		if (err != SMMU_HYP_CERROR_ABT)
			die("command queue in hypervisor memory: CONS.ERR %u, not ABT", err);
		printf("cmdq-in-hyp: the command fetch aborted (CMDQ_ERR, CONS.ERR ABT)\n");
	} else if (!strcmp(what, "bad-cds")) {
		uint64_t targets[2] = { src.pa, dst.pa };
		s1_tables(targets, 2);
		uint64_t good = cd.va[0];
		ste(sid, STE_V | STE_CFG_S1 | STE_S1CTXPTR(cd.pa), 0, 0, 0);
		if (!dma_round_trip(&e, 0, 0x1000))
			die("bad-cds: DMA through the valid CD did not land");
		const struct {
			const char *what;
			uint64_t w0;
		} bad[] = {
			{ "IPS 0b110", (good & ~SMMU_HYP_CD_IPS_MASK) | FIELD(CD_IPS, 6) },
			{ "IPS 0b111", (good & ~SMMU_HYP_CD_IPS_MASK) | FIELD(CD_IPS, 7) },
			{ "T0SZ 12", (good & ~SMMU_HYP_CD_T0SZ_MASK) | FIELD(CD_T0SZ, 12) },
			{ "T0SZ 40", (good & ~SMMU_HYP_CD_T0SZ_MASK) | FIELD(CD_T0SZ, 40) },
		};
		for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			cd.va[0] = bad[i].w0;
			barrier();
			cfgi(sid); // the STE re-read, and its CDs with it
			if (dma_round_trip(&e, 0, 0x1000))
				die("bad-cds: a CD with %s was used: DMA landed", bad[i].what);
			printf("bad-cds: a CD with %s: refused, the stream aborts\n", bad[i].what);
		}
		cd.va[0] = good;
		barrier();
		cfgi(sid);
		if (!dma_round_trip(&e, 0, 0x1000))
			die("bad-cds: the valid CD again: DMA did not land");
		printf("bad-cds: the same CD made valid again: DMA lands\n");
	} else if (!strcmp(what, "flood")) {
		flood(sid, 0);
	} else if (!strcmp(what, "flood-msi")) {
		flood(sid, 1);
	} else if (!strcmp(what, "illegal-flood")) {
		for (int i = 0; i < 2000; i++) {
			uint32_t at = prod;
			cmd(SMMU_HYP_OP_TLBI_S12_VMALL | FIELD(CMD_VMID, 2), 0);
			if (cmd_wait() != SMMU_HYP_CERROR_ILL)
				die("illegal command %d did not stop the queue", i);
			if (recover(at))
				die("the queue did not restart after illegal command %d", i);
		}
		cfgi(sid);
		printf("illegal-flood: 2000 illegal commands, each stopped the queue and each recovery restarted it\n");
	} else {
		die("unknown case %s", what);
	}
	return 0;
}

static int dma(int argc, char **argv)
{
	if (argc < 4)
		usage();
	struct edu e = edu_open(argv[2]);
	// First 4 bytes to each address (one fault event each: Linux prints only the first few
	// events of a burst), then a whole page to each.
	for (unsigned len = 4; len <= 4096; len *= 1024) {
		for (int i = 3; i < argc; i++) {
			uint64_t a = parse(argv[i]);
			edu_dma(&e, EDU_BUFFER, a, len, 1);
			printf("edu DMA of %u bytes to %#llx completed\n", len, (unsigned long long)a);
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2)
		usage();
	if (!strcmp(argv[1], "dma"))
		return dma(argc, argv);
	if (!strcmp(argv[1], "reprogram"))
		return reprogram(argc, argv);
	usage();
}
