// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * smmu_pviommu: a paravirtual IOMMU for a Linux guest of the SMMU-owning hypervisor. The
 * guest's device tree has a node `compatible = "smmu-hyp,pv-iommu"` (`#iommu-cells = <1>`, no
 * registers) and its PCIe bridge an `iommu-map` from requester IDs to stream IDs on it; this
 * driver registers it with Linux's IOMMU core and turns the core's domains into the
 * hypervisor's calls on the guest's own streams:
 *   identity domain -> SET_STE with a bypass virtual STE (the hypervisor makes it its stage 2
 *                      alone: device addresses are the guest's IPAs, its RAM only)
 *   blocked domain  -> CLEAR_STE (abort); also the release domain, so a device the core lets
 *                      go (its removal) goes back to abort
 *   DMA domain      -> page tables from Linux's own io-pgtable library (ARM_64_LPAE_S1, 4 KiB
 *                      granule, 39-bit IOVAs, 40-bit output: the guest's IPAs), one context
 *                      descriptor per domain in the guest's memory, attached with SET_STE of a
 *                      stage-1 virtual STE (the hypervisor checks the CD, shadows it and nests
 *                      it on the guest's stage 2); unmaps are gathered and `iotlb_sync` /
 *                      `flush_iotlb_all` send the TLB invalidations as one INVALIDATE batch
 *                      (TLBI_NH_VA per gathered page, or TLBI_NH_ASID past PV_MAX_VA_CMDS; the
 *                      hypervisor forces the VMID and ends the batch with its one CMD_SYNC),
 *                      a batch of up to SMMU_HYP_INVALIDATE_INLINE_MAX commands in registers
 *                      (INVALIDATE_INLINE: a strict unmap's one TLBI_NH_VA), a larger one
 *                      through a page (INVALIDATE); neither sleeps (unmaps come from interrupts)
 * Power: the guest's SMMU power vote (PM_VOTE) follows its streams: need-on while any of them
 * is in a domain that lets DMA through (identity or DMA), allow-off once all are blocked (and at
 * load, before any is attached); the module parameter `vote` (read-only) says which it last
 * cast, and what the hypervisor answered.
 * Unload: the IOMMU core holds a reference to the module for every device it probed, so rmmod
 * is refused until they are gone: removed, or released by unbinding the IOMMU's platform
 * device (sysfs `unbind` of its driver), which stops the EVENT_READ poller, releases the
 * devices' drivers and unregisters the IOMMU, the core attaching each device to the blocked
 * release domain (CLEAR_STE). The exit then blocks any stream still open (CLEAR_STE) and
 * votes allow-off, so no stream of the guest's carries DMA without the module; loaded again,
 * the module takes the devices whose drivers probe again (a probe waits for it meanwhile).
 * Faults: the hypervisor routes the SMMU's event records of the guest's streams to its ring
 * (it raises no interrupt in a guest), so a delayed work reads them with EVENT_READ every
 * PV_EVENT_POLL_MS (and at once when a read left some pending), and reports each through
 * report_iommu_fault() on the domain of the device owning the stream, with one log line per
 * record (rate-limited).
 *
 * The ABI comes only from host-abi/include/smmu_hyp.h. Calls are SMCCC 1.1 fast calls through
 * HVC #0; the one buffer the hypervisor reads (a virtual STE) is a page from the page
 * allocator, its IPA its physical address (the hypervisor maps a VM's RAM at IPA == PA).
 * On load the module checks CALL_UID and REVISION as smmu_hyp does, and refuses to load
 * otherwise.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/arm-smccc.h>
#include <linux/device.h>
#include <linux/gfp.h>
#include <linux/idr.h>
#include <linux/iommu.h>
#include <linux/io-pgtable.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/of.h>
#include <linux/pci.h>
#include <linux/platform_device.h>
#include <linux/slab.h>
#include <linux/sysfs.h>
#include <linux/workqueue.h>

#include "smmu_hyp.h"

/* The one page the hypervisor reads a virtual STE from, under ste_lock. */
static struct smmu_hyp_ste *ste_buf;
static DEFINE_MUTEX(ste_lock);

static struct iommu_device pv_iommu;
static struct device *pv_dev;
static bool pv_registered;

/*
 * The page INVALIDATE batches of more than SMMU_HYP_INVALIDATE_INLINE_MAX commands are written
 * to, under cmd_lock: a spinlock taken with interrupts off, since DMA unmaps (and so
 * iotlb_sync) may come from interrupt context. Smaller batches go in registers
 * (INVALIDATE_INLINE) and need neither.
 */
static struct smmu_hyp_cmd *cmd_buf;
static DEFINE_SPINLOCK(cmd_lock);
#define PV_CMDS_PER_PAGE (PAGE_SIZE / sizeof(struct smmu_hyp_cmd))
/* Past this many gathered pages one TLBI_NH_ASID replaces the TLBI_NH_VAs. */
#define PV_MAX_VA_CMDS 32
static_assert(PV_MAX_VA_CMDS <= PV_CMDS_PER_PAGE);

/* ASIDs of DMA domains (8 bits: every SMMU has at least those). */
static DEFINE_IDA(pv_asids);

/* IOVA bits of a DMA domain (three levels of 4 KiB tables) and its output (IPA) bits. */
#define PV_IAS 39
#define PV_OAS 40

struct pv_domain {
	struct iommu_domain domain;
	struct io_pgtable_ops *pgtbl;
	struct io_pgtable_cfg cfg;
	/* Its one context descriptor (a page: 64-byte aligned, in the guest's RAM). */
	struct smmu_hyp_cd *cd;
	u16 asid;
	/* Invalidation batches sent and commands in them (for the log). */
	atomic_t batches, cmds;
};

/*
 * The streams, by stream ID, under devs_lock: the device probed on each (the fault reports'
 * lookup), and whether the stream is open. An entry is in use while it has a device or its
 * stream is open (a stream outlives its device only if blocking it failed: unload blocks it).
 */
#define PV_MAX_DEVS 32
static struct {
	u32 sid;
	struct device *dev;
	/* Its stream is in a domain that lets DMA through (under vote_lock). */
	bool open;
} pv_devs[PV_MAX_DEVS];
static DEFINE_SPINLOCK(devs_lock);

/* The power vote: streams open, and the last vote and its answer (the `vote` parameter). */
static DEFINE_MUTEX(vote_lock);
static unsigned int open_streams;
static char vote_text[96] = "none";
static char *vote = vote_text;
module_param(vote, charp, 0444);
MODULE_PARM_DESC(vote, "the module's last PM_VOTE and the hypervisor's answer (read-only)");

/* EVENT_READ: the records land in this page; the poller runs every PV_EVENT_POLL_MS. */
#define PV_EVENT_POLL_MS 100
static struct smmu_hyp_event *evt_buf;
static void pv_events(struct work_struct *w);
static DECLARE_DELAYED_WORK(pv_event_work, pv_events);
static atomic_t faults_reported;

static struct pv_domain *to_pv(struct iommu_domain *d)
{
	return container_of(d, struct pv_domain, domain);
}

/* Calls made and refused, for the log when the module goes; INVALIDATE calls among them. */
static atomic_t calls, refused, invalidates;

/* A read-only module parameter showing an atomic_t counter. */
static int pv_count_get(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%d\n", atomic_read((atomic_t *)kp->arg));
}

static const struct kernel_param_ops pv_count_ops = {
	.get = pv_count_get,
};

/*
 * `hypercalls`: every call this module made since it loaded; `invalidates`: the INVALIDATE
 * calls among them (what `cargo xtask bench` divides by the guest's I/Os).
 */
module_param_cb(hypercalls, &pv_count_ops, &calls, 0444);
MODULE_PARM_DESC(hypercalls, "hypercalls made since the module loaded (read-only)");
module_param_cb(invalidates, &pv_count_ops, &invalidates, 0444);
MODULE_PARM_DESC(invalidates, "INVALIDATE hypercalls made since the module loaded (read-only)");

static long hyp_call(u32 fn, u64 a1, u64 a2, u64 a3, struct arm_smccc_res *res)
{
	unsigned long f = fn, x1 = a1, x2 = a2, x3 = a3;

	arm_smccc_1_1_hvc(f, x1, x2, x3, res);
	atomic_inc(&calls);
	if (fn == SMMU_HYP_FN_INVALIDATE)
		atomic_inc(&invalidates);
	return (long)res->a0;
}

/* INVALIDATE_INLINE of `n` (1..SMMU_HYP_INVALIDATE_INLINE_MAX) commands, in x2..x7. */
static long hyp_invalidate_inline(const struct smmu_hyp_cmd *c, size_t n, struct arm_smccc_res *res)
{
	unsigned long f = SMMU_HYP_FN_INVALIDATE_INLINE, x1 = n;
	unsigned long w[2 * SMMU_HYP_INVALIDATE_INLINE_MAX] = { 0 };
	size_t i;

	for (i = 0; i < n; i++) {
		w[2 * i] = c[i].word[0];
		w[2 * i + 1] = c[i].word[1];
	}
	arm_smccc_1_1_hvc(f, x1, w[0], w[1], w[2], w[3], w[4], w[5], res);
	atomic_inc(&calls);
	atomic_inc(&invalidates);
	return (long)res->a0;
}

/* The errno of a status (smmu_hyp_errno() of smmu_hyp.h), refusals counted for the log. */
static int pv_errno(long status)
{
	if (status < 0)
		atomic_inc(&refused);
	return smmu_hyp_errno(status);
}

/* A device's one stream (its requester ID through the bridge's iommu-map). */
static int pv_sid(struct device *dev, u32 *sid)
{
	struct iommu_fwspec *fw = dev_iommu_fwspec_get(dev);

	if (!fw || fw->num_ids != 1)
		return -ENODEV;
	*sid = fw->ids[0];
	return 0;
}

/* PM_VOTE: allow-off (true) or need-on; the answer kept for the `vote` parameter. */
static void pv_vote(bool allow_off)
{
	struct arm_smccc_res r;
	long status;

	status = hyp_call(SMMU_HYP_FN_PM_VOTE, allow_off, 0, 0, &r);
	if (status < 0) {
		pv_errno(status);
		snprintf(vote_text, sizeof(vote_text), "%s refused %ld",
			 allow_off ? "allow-off" : "need-on", status);
	} else {
		snprintf(vote_text, sizeof(vote_text), "%s power %s refusal %lu dma_streams %lu",
			 allow_off ? "allow-off" : "need-on", r.a1 ? "off" : "on", r.a2, r.a3);
	}
	pr_info("vote: %s\n", vote_text);
}

/* Stream `sid` is now open (a domain that lets DMA through) or blocked: the vote follows. */
static void pv_stream_state(u32 sid, bool open)
{
	unsigned long flags;
	int i;
	bool was = false, found = false;

	mutex_lock(&vote_lock);
	spin_lock_irqsave(&devs_lock, flags);
	for (i = 0; i < PV_MAX_DEVS; i++)
		if ((pv_devs[i].dev || pv_devs[i].open) && pv_devs[i].sid == sid) {
			was = pv_devs[i].open;
			pv_devs[i].open = open;
			found = true;
			break;
		}
	spin_unlock_irqrestore(&devs_lock, flags);
	if (found && was != open) {
		if (open && open_streams++ == 0)
			pv_vote(false);
		else if (!open && --open_streams == 0)
			pv_vote(true);
	}
	mutex_unlock(&vote_lock);
}

/* SET_STE of `sid` with the virtual STE `ste` (copied into the page the hypervisor reads). */
static int pv_set_ste(u32 sid, const struct smmu_hyp_ste *ste, long *domain)
{
	struct arm_smccc_res r;
	long status;

	mutex_lock(&ste_lock);
	memcpy(ste_buf, ste, sizeof(*ste));
	status = hyp_call(SMMU_HYP_FN_SET_STE, sid, virt_to_phys(ste_buf), 0, &r);
	mutex_unlock(&ste_lock);
	if (domain)
		*domain = (long)r.a1;
	return pv_errno(status);
}

static int pv_clear_ste(u32 sid)
{
	struct arm_smccc_res r;

	return pv_errno(hyp_call(SMMU_HYP_FN_CLEAR_STE, sid, 0, 0, &r));
}

/*
 * SET_STE of the device's stream with a valid virtual STE of `config` (for stage 1, the CD of
 * `d`), its vote need-on first; `what` names the domain in the log line.
 */
static int pv_attach_ste(struct device *dev, u64 config, struct pv_domain *d, const char *what)
{
	struct smmu_hyp_ste ste = {};
	long kind = -1;
	u32 sid;
	int err;

	err = pv_sid(dev, &sid);
	if (err)
		return err;
	ste.word[SMMU_HYP_STE_V_WORD] |= SMMU_HYP_FIELD_PREP(SMMU_HYP_STE_V, 1);
	ste.word[SMMU_HYP_STE_CONFIG_WORD] |= SMMU_HYP_FIELD_PREP(SMMU_HYP_STE_CONFIG, config);
	if (d)
		ste.word[SMMU_HYP_STE_S1_CONTEXT_PTR_WORD] |= virt_to_phys(d->cd) &
							      SMMU_HYP_STE_S1_CONTEXT_PTR_MASK;
	/* Need-on before the stream can carry DMA. */
	pv_stream_state(sid, true);
	err = pv_set_ste(sid, &ste, &kind);
	if (err)
		dev_err(dev, "stream %#x: %s) refused: %d\n", sid, what, err);
	else
		dev_info(dev, "stream %#x: %s: domain %ld)\n", sid, what, kind);
	return err;
}

static int pv_attach_identity(struct iommu_domain *domain, struct device *dev)
{
	return pv_attach_ste(dev, SMMU_HYP_STE_CONFIG_BYPASS, NULL,
			     "identity domain (SET_STE bypass");
}

static int pv_attach_blocked(struct iommu_domain *domain, struct device *dev)
{
	u32 sid;
	int err;

	err = pv_sid(dev, &sid);
	if (err)
		return err;
	err = pv_clear_ste(sid);
	if (err) {
		dev_err(dev, "stream %#x: CLEAR_STE refused: %d\n", sid, err);
	} else {
		dev_info(dev, "stream %#x: blocked (CLEAR_STE)\n", sid);
		/* Allow-off only once it can carry no DMA. */
		pv_stream_state(sid, false);
	}
	return err;
}

static const struct iommu_domain_ops pv_identity_ops = {
	.attach_dev = pv_attach_identity,
};

static const struct iommu_domain_ops pv_blocked_ops = {
	.attach_dev = pv_attach_blocked,
};

static struct iommu_domain pv_identity_domain = {
	.type = IOMMU_DOMAIN_IDENTITY,
	.ops = &pv_identity_ops,
};

static struct iommu_domain pv_blocked_domain = {
	.type = IOMMU_DOMAIN_BLOCKED,
	.ops = &pv_blocked_ops,
};

/*
 * INVALIDATE of the `n` commands at `c`: in registers (INVALIDATE_INLINE) up to
 * SMMU_HYP_INVALIDATE_INLINE_MAX, otherwise copied into cmd_buf under cmd_lock. Never sleeps.
 */
static int pv_invalidate(const struct smmu_hyp_cmd *c, size_t n)
{
	struct arm_smccc_res r;
	unsigned long flags;
	long status;

	if (!n)
		return 0;
	if (n <= SMMU_HYP_INVALIDATE_INLINE_MAX) {
		status = hyp_invalidate_inline(c, n, &r);
	} else {
		spin_lock_irqsave(&cmd_lock, flags);
		memcpy(cmd_buf, c, n * sizeof(*c));
		status = hyp_call(SMMU_HYP_FN_INVALIDATE, virt_to_phys(cmd_buf), n, 0, &r);
		spin_unlock_irqrestore(&cmd_lock, flags);
	}
	if (status < 0)
		pr_err_ratelimited("INVALIDATE of %zu commands refused at command %lu: %ld\n", n,
				   r.a1, status);
	return pv_errno(status);
}

static void pv_cmd_asid(struct smmu_hyp_cmd *c, u16 asid)
{
	memset(c, 0, sizeof(*c));
	c->word[0] = SMMU_HYP_FIELD_PREP(SMMU_HYP_CMD_OPCODE, SMMU_HYP_OP_TLBI_NH_ASID) |
		     SMMU_HYP_FIELD_PREP(SMMU_HYP_CMD_ASID, asid);
}

static void pv_cmd_va(struct smmu_hyp_cmd *c, u16 asid, unsigned long iova, bool leaf)
{
	memset(c, 0, sizeof(*c));
	c->word[0] = SMMU_HYP_FIELD_PREP(SMMU_HYP_CMD_OPCODE, SMMU_HYP_OP_TLBI_NH_VA) |
		     SMMU_HYP_FIELD_PREP(SMMU_HYP_CMD_ASID, asid);
	c->word[1] = SMMU_HYP_FIELD_PREP(SMMU_HYP_CMD_LEAF, leaf ? 1 : 0) |
		     (iova & SMMU_HYP_CMD_ADDR_MASK);
}

/* Every TLB entry of the domain's ASID: one TLBI_NH_ASID in one batch. */
static void pv_flush_asid(struct pv_domain *d)
{
	struct smmu_hyp_cmd c;

	pv_cmd_asid(&c, d->asid);
	pv_invalidate(&c, 1);
	atomic_inc(&d->batches);
	atomic_inc(&d->cmds);
}

/* [iova, iova + size) in `granule` steps: one batch of TLBI_NH_VA, or TLBI_NH_ASID if long. */
static void pv_flush_range(struct pv_domain *d, unsigned long iova, size_t size, size_t granule,
			   bool leaf)
{
	size_t pages = granule ? DIV_ROUND_UP(size, granule) : 0, i;
	struct smmu_hyp_cmd cmds[PV_MAX_VA_CMDS];

	if (!pages)
		return;
	if (pages > PV_MAX_VA_CMDS) {
		pv_flush_asid(d);
		return;
	}
	for (i = 0; i < pages; i++)
		pv_cmd_va(&cmds[i], d->asid, iova + i * granule, leaf);
	pv_invalidate(cmds, pages);
	atomic_inc(&d->batches);
	atomic_add(pages, &d->cmds);
}

static void pv_tlb_flush_all(void *cookie)
{
	pv_flush_asid(cookie);
}

static void pv_tlb_flush_walk(unsigned long iova, size_t size, size_t granule, void *cookie)
{
	pv_flush_range(cookie, iova, size, granule, false);
}

static void pv_tlb_add_page(struct iommu_iotlb_gather *gather, unsigned long iova, size_t granule,
			    void *cookie)
{
	struct pv_domain *d = cookie;

	iommu_iotlb_gather_add_page(&d->domain, gather, iova, granule);
}

static const struct iommu_flush_ops pv_flush_ops = {
	.tlb_flush_all = pv_tlb_flush_all,
	.tlb_flush_walk = pv_tlb_flush_walk,
	.tlb_add_page = pv_tlb_add_page,
};

static int pv_map_pages(struct iommu_domain *domain, unsigned long iova, phys_addr_t paddr,
			size_t pgsize, size_t pgcount, int prot, gfp_t gfp, size_t *mapped)
{
	struct io_pgtable_ops *ops = to_pv(domain)->pgtbl;

	return ops->map_pages(ops, iova, paddr, pgsize, pgcount, prot, gfp, mapped);
}

static size_t pv_unmap_pages(struct iommu_domain *domain, unsigned long iova, size_t pgsize,
			     size_t pgcount, struct iommu_iotlb_gather *gather)
{
	struct io_pgtable_ops *ops = to_pv(domain)->pgtbl;

	return ops->unmap_pages(ops, iova, pgsize, pgcount, gather);
}

static phys_addr_t pv_iova_to_phys(struct iommu_domain *domain, dma_addr_t iova)
{
	struct io_pgtable_ops *ops = to_pv(domain)->pgtbl;

	return ops->iova_to_phys(ops, iova);
}

/* The gathered unmaps, invalidated in one INVALIDATE batch before the IOVAs are reused. */
static void pv_iotlb_sync(struct iommu_domain *domain, struct iommu_iotlb_gather *gather)
{
	if (!gather->pgsize || gather->end < gather->start)
		return;
	pv_flush_range(to_pv(domain), gather->start, gather->end - gather->start + 1,
		       gather->pgsize, true);
}

static void pv_flush_iotlb_all(struct iommu_domain *domain)
{
	pv_flush_asid(to_pv(domain));
}

/* The domain's context descriptor, from io-pgtable's configuration. */
static void pv_write_cd(struct pv_domain *d)
{
	typeof(&d->cfg.arm_lpae_s1_cfg) s1 = &d->cfg.arm_lpae_s1_cfg;
	struct smmu_hyp_cd cd = {};

	cd.word[0] = SMMU_HYP_FIELD_PREP(SMMU_HYP_CD_T0SZ, s1->tcr.tsz) |
		     SMMU_HYP_FIELD_PREP(SMMU_HYP_CD_TG0, s1->tcr.tg) |
		     SMMU_HYP_FIELD_PREP(SMMU_HYP_CD_IR0, s1->tcr.irgn) |
		     SMMU_HYP_FIELD_PREP(SMMU_HYP_CD_OR0, s1->tcr.orgn) |
		     SMMU_HYP_FIELD_PREP(SMMU_HYP_CD_SH0, s1->tcr.sh) |
		     SMMU_HYP_FIELD_PREP(SMMU_HYP_CD_EPD1, 1) |
		     SMMU_HYP_FIELD_PREP(SMMU_HYP_CD_IPS, s1->tcr.ips) |
		     SMMU_HYP_FIELD_PREP(SMMU_HYP_CD_AA64, 1) |
		     SMMU_HYP_FIELD_PREP(SMMU_HYP_CD_R, 1) |
		     SMMU_HYP_FIELD_PREP(SMMU_HYP_CD_A, 1) |
		     SMMU_HYP_FIELD_PREP(SMMU_HYP_CD_ASET, 1) |
		     SMMU_HYP_FIELD_PREP(SMMU_HYP_CD_ASID, d->asid) |
		     SMMU_HYP_FIELD_PREP(SMMU_HYP_CD_V, 1);
	cd.word[SMMU_HYP_CD_TTB0_WORD] = s1->ttbr & SMMU_HYP_CD_TTB0_MASK;
	cd.word[SMMU_HYP_CD_MAIR_WORD] = s1->mair;
	memcpy(d->cd, &cd, sizeof(cd));
}

static int pv_attach_paging(struct iommu_domain *domain, struct device *dev)
{
	struct pv_domain *d = to_pv(domain);
	char what[80];

	snprintf(what, sizeof(what), "DMA domain (SET_STE stage 1, ASID %u, CD at %pa", d->asid,
		 &(phys_addr_t){ virt_to_phys(d->cd) });
	return pv_attach_ste(dev, SMMU_HYP_STE_CONFIG_S1, d, what);
}

static void pv_domain_free(struct iommu_domain *domain)
{
	struct pv_domain *d = to_pv(domain);

	free_io_pgtable_ops(d->pgtbl);
	/* Nothing of the ASID may stay in a TLB when it is given out again. */
	pv_flush_asid(d);
	pr_info("DMA domain of ASID %u freed after %d invalidation batches (%d commands)\n",
		d->asid, atomic_read(&d->batches), atomic_read(&d->cmds));
	ida_free(&pv_asids, d->asid);
	free_page((unsigned long)d->cd);
	kfree(d);
}

static const struct iommu_domain_ops pv_paging_ops = {
	.attach_dev = pv_attach_paging,
	.map_pages = pv_map_pages,
	.unmap_pages = pv_unmap_pages,
	.iova_to_phys = pv_iova_to_phys,
	.iotlb_sync = pv_iotlb_sync,
	.flush_iotlb_all = pv_flush_iotlb_all,
	.free = pv_domain_free,
};

static struct iommu_domain *pv_domain_alloc_paging(struct device *dev)
{
	struct pv_domain *d;
	int asid;

	d = kzalloc(sizeof(*d), GFP_KERNEL);
	if (!d)
		return ERR_PTR(-ENOMEM);
	d->cd = (void *)get_zeroed_page(GFP_KERNEL);
	asid = ida_alloc_range(&pv_asids, 1, 255, GFP_KERNEL);
	if (!d->cd || asid < 0)
		goto fail;
	d->asid = asid;
	d->cfg = (struct io_pgtable_cfg){
		.pgsize_bitmap = SZ_4K | SZ_2M | SZ_1G,
		.ias = PV_IAS,
		.oas = PV_OAS,
		/* QEMU's SMMU is coherent (see the README: non-coherent walks are not done yet). */
		.coherent_walk = true,
		.tlb = &pv_flush_ops,
		.iommu_dev = pv_dev,
	};
	d->pgtbl = alloc_io_pgtable_ops(ARM_64_LPAE_S1, &d->cfg, d);
	if (!d->pgtbl)
		goto fail;
	pv_write_cd(d);
	d->domain.ops = &pv_paging_ops;
	d->domain.pgsize_bitmap = d->cfg.pgsize_bitmap;
	d->domain.geometry.aperture_start = 0;
	d->domain.geometry.aperture_end = (1ULL << PV_IAS) - 1;
	d->domain.geometry.force_aperture = true;
	return &d->domain;
fail:
	if (asid >= 0)
		ida_free(&pv_asids, asid);
	free_page((unsigned long)d->cd);
	kfree(d);
	return ERR_PTR(-ENOMEM);
}

static struct device *pv_dev_of(u32 sid)
{
	struct device *dev = NULL;
	unsigned long flags;
	int i;

	spin_lock_irqsave(&devs_lock, flags);
	for (i = 0; i < PV_MAX_DEVS; i++)
		if (pv_devs[i].dev && pv_devs[i].sid == sid) {
			dev = get_device(pv_devs[i].dev);
			break;
		}
	spin_unlock_irqrestore(&devs_lock, flags);
	return dev;
}

static void pv_report(const struct smmu_hyp_event *e)
{
	u32 type = SMMU_HYP_FIELD_GET(SMMU_HYP_EVT_TYPE, e->word[SMMU_HYP_EVT_TYPE_WORD]);
	u32 sid = SMMU_HYP_FIELD_GET(SMMU_HYP_EVT_SID, e->word[SMMU_HYP_EVT_SID_WORD]);
	u64 iova = e->word[SMMU_HYP_EVT_INPUT_ADDR_WORD];
	bool read = SMMU_HYP_FIELD_GET(SMMU_HYP_EVT_RNW, e->word[SMMU_HYP_EVT_RNW_WORD]);
	struct device *dev = pv_dev_of(sid);
	struct iommu_domain *domain;
	int r = -ENODEV;

	if (dev) {
		domain = iommu_get_domain_for_dev(dev);
		if (domain)
			r = report_iommu_fault(domain, dev, iova,
					       read ? IOMMU_FAULT_READ : IOMMU_FAULT_WRITE);
		dev_err_ratelimited(dev, "SMMU fault: stream %#x event %#x %s at IOVA %#llx (%s)\n",
				    sid, type, read ? "read" : "write", iova,
				    r == -ENOSYS ? "no fault handler" : r ? "reported" : "handled");
		put_device(dev);
	} else {
		pr_err_ratelimited("SMMU fault: stream %#x (no device of ours) event %#x at %#llx\n",
				   sid, type, iova);
	}
	atomic_inc(&faults_reported);
}

/* Reads this guest's pending event records (EVENT_READ) and reports each. */
static void pv_events(struct work_struct *w)
{
	struct smmu_hyp_event recs[SMMU_HYP_EVENT_READ_MAX];
	struct arm_smccc_res r;
	unsigned long i, n;
	long status;

	status = hyp_call(SMMU_HYP_FN_EVENT_READ, virt_to_phys(evt_buf), sizeof(recs), 0, &r);
	n = status < 0 ? 0 : min_t(unsigned long, r.a1, SMMU_HYP_EVENT_READ_MAX);
	memcpy(recs, evt_buf, n * sizeof(recs[0]));
	for (i = 0; i < n; i++)
		pv_report(&recs[i]);
	if (status >= 0 && (r.a2 >> 32))
		pr_warn_ratelimited("the SMMU may have dropped event records (%lu notices)\n",
				    r.a2 >> 32);
	/* Records left: read on at once; otherwise at the next poll. */
	schedule_delayed_work(&pv_event_work,
			      (status >= 0 && (u32)r.a2) ? 0 : msecs_to_jiffies(PV_EVENT_POLL_MS));
}

static int pv_of_xlate(struct device *dev, const struct of_phandle_args *args)
{
	if (args->args_count != 1)
		return -EINVAL;
	return iommu_fwspec_add_ids(dev, args->args, 1);
}

static struct iommu_device *pv_probe_device(struct device *dev)
{
	struct iommu_fwspec *fw = dev_iommu_fwspec_get(dev);
	unsigned long flags;
	int i;

	if (!fw || fw->iommu_fwnode != pv_iommu.fwnode || fw->num_ids != 1)
		return ERR_PTR(-ENODEV);
	spin_lock_irqsave(&devs_lock, flags);
	/* Its stream's entry if it is still open, else a free one. */
	for (i = 0; i < PV_MAX_DEVS; i++)
		if (!pv_devs[i].dev && pv_devs[i].open && pv_devs[i].sid == fw->ids[0])
			break;
	if (i == PV_MAX_DEVS)
		for (i = 0; i < PV_MAX_DEVS && (pv_devs[i].dev || pv_devs[i].open); i++)
			;
	if (i < PV_MAX_DEVS) {
		pv_devs[i].sid = fw->ids[0];
		pv_devs[i].dev = dev;
	}
	spin_unlock_irqrestore(&devs_lock, flags);
	if (i == PV_MAX_DEVS)
		return ERR_PTR(-ENOSPC);
	return &pv_iommu;
}

static void pv_release_device(struct device *dev)
{
	unsigned long flags;
	int i;

	spin_lock_irqsave(&devs_lock, flags);
	for (i = 0; i < PV_MAX_DEVS; i++)
		if (pv_devs[i].dev == dev)
			pv_devs[i].dev = NULL;
	spin_unlock_irqrestore(&devs_lock, flags);
}

static struct iommu_group *pv_device_group(struct device *dev)
{
	if (dev_is_pci(dev))
		return pci_device_group(dev);
	return generic_device_group(dev);
}

static const struct iommu_ops pv_ops = {
	.identity_domain = &pv_identity_domain,
	.blocked_domain = &pv_blocked_domain,
	.release_domain = &pv_blocked_domain,
	.probe_device = pv_probe_device,
	.release_device = pv_release_device,
	.device_group = pv_device_group,
	.of_xlate = pv_of_xlate,
	.domain_alloc_paging = pv_domain_alloc_paging,
	.pgsize_bitmap = SZ_4K | SZ_2M | SZ_1G,
	.owner = THIS_MODULE,
};

static int pv_probe(struct platform_device *pdev)
{
	int err;

	pv_dev = &pdev->dev;
	err = iommu_device_sysfs_add(&pv_iommu, &pdev->dev, NULL, "pviommu");
	if (err)
		return err;
	err = iommu_device_register(&pv_iommu, &pv_ops, &pdev->dev);
	if (err) {
		iommu_device_sysfs_remove(&pv_iommu);
		return err;
	}
	pv_registered = true;
	schedule_delayed_work(&pv_event_work, 0);
	dev_info(&pdev->dev, "paravirtual IOMMU registered: DMA (io-pgtable, SET_STE stage 1, INVALIDATE batches), identity (SET_STE bypass) and blocked (CLEAR_STE) domains\n");
	return 0;
}

/*
 * Before the IOMMU goes, every device of ours loses its driver (the core frees a device's
 * domains when it releases it: a driver still bound would go on mapping DMA through them).
 */
static void pv_release_drivers(void)
{
	struct device *dev;
	unsigned long flags;
	int i;

	for (i = 0; i < PV_MAX_DEVS; i++) {
		dev = NULL;
		spin_lock_irqsave(&devs_lock, flags);
		if (pv_devs[i].dev)
			dev = get_device(pv_devs[i].dev);
		spin_unlock_irqrestore(&devs_lock, flags);
		if (!dev)
			continue;
		if (dev->driver) {
			dev_info(dev, "its driver %s released: the IOMMU is going\n", dev->driver->name);
			device_release_driver(dev);
		}
		put_device(dev);
	}
}

/*
 * Unbinding the IOMMU (sysfs unbind of its platform device, or module unload): the poller
 * stops, the devices' drivers are released, and the core releases every device, attaching
 * the blocked release domain (CLEAR_STE; the vote becomes allow-off) and dropping its module
 * reference.
 */
static void pv_remove(struct platform_device *pdev)
{
	if (!pv_registered)
		return;
	cancel_delayed_work_sync(&pv_event_work);
	pv_release_drivers();
	iommu_device_unregister(&pv_iommu);
	iommu_device_sysfs_remove(&pv_iommu);
	pv_registered = false;
	dev_info(&pdev->dev, "paravirtual IOMMU unregistered, EVENT_READ poller stopped\n");
}

static const struct of_device_id pv_of_match[] = {
	{ .compatible = "smmu-hyp,pv-iommu" },
	{}
};
MODULE_DEVICE_TABLE(of, pv_of_match);

static struct platform_driver pv_driver = {
	.driver = {
		.name = "smmu-pviommu",
		.of_match_table = pv_of_match,
	},
	.probe = pv_probe,
	.remove_new = pv_remove,
};

static int __init pv_init(void)
{
	struct arm_smccc_res r;
	int err = 0;

	hyp_call(SMMU_HYP_FN_CALL_UID, 0, 0, 0, &r);
	if ((u32)r.a0 != SMMU_HYP_CALL_UID_0 || (u32)r.a1 != SMMU_HYP_CALL_UID_1 ||
	    (u32)r.a2 != SMMU_HYP_CALL_UID_2 || (u32)r.a3 != SMMU_HYP_CALL_UID_3) {
		pr_err("the hypervisor is not the SMMU-owning hypervisor (CALL_UID); not loading\n");
		return -ENODEV;
	}
	hyp_call(SMMU_HYP_FN_REVISION, 0, 0, 0, &r);
	if ((u32)r.a0 != SMMU_HYP_ABI_VERSION_MAJOR || (u32)r.a1 < SMMU_HYP_ABI_VERSION_MINOR) {
		pr_err("the hypervisor's ABI is %u.%u; this module needs %u.%u or a later %u.x; not loading\n",
		       (u32)r.a0, (u32)r.a1, SMMU_HYP_ABI_VERSION_MAJOR,
		       SMMU_HYP_ABI_VERSION_MINOR, SMMU_HYP_ABI_VERSION_MAJOR);
		return -ENODEV;
	}
	ste_buf = (void *)get_zeroed_page(GFP_KERNEL);
	cmd_buf = (void *)get_zeroed_page(GFP_KERNEL);
	evt_buf = (void *)get_zeroed_page(GFP_KERNEL);
	if (!ste_buf || !cmd_buf || !evt_buf)
		goto fail;
	/* No stream of ours is attached yet: nothing of ours needs the SMMU powered. */
	pv_vote(true);
	err = platform_driver_register(&pv_driver);
	if (!err)
		return 0;
fail:
	free_page((unsigned long)ste_buf);
	free_page((unsigned long)cmd_buf);
	free_page((unsigned long)evt_buf);
	return err ? err : -ENOMEM;
}

/*
 * At unload, once nothing can attach any more: CLEAR_STE of every stream still open, then the
 * vote allow-off, so that no stream of ours carries DMA once the module is gone. Normally none
 * is open: the IOMMU core holds a reference to the module for every device it probed (rmmod is
 * refused while one is), and a device it lets go is attached to the blocked release domain
 * first. Returns how many were blocked here; a stream the hypervisor will not block keeps the
 * vote need-on (the safe side).
 */
static unsigned int pv_block_all(void)
{
	unsigned int blocked = 0;
	int i, err;

	mutex_lock(&vote_lock);
	for (i = 0; i < PV_MAX_DEVS; i++) {
		if (!pv_devs[i].open)
			continue;
		err = pv_clear_ste(pv_devs[i].sid);
		if (err) {
			pr_err("stream %#x: CLEAR_STE at unload refused: %d\n", pv_devs[i].sid, err);
			continue;
		}
		pr_info("stream %#x: blocked (CLEAR_STE) at unload\n", pv_devs[i].sid);
		pv_devs[i].open = false;
		open_streams--;
		blocked++;
	}
	pv_vote(open_streams == 0);
	mutex_unlock(&vote_lock);
	return blocked;
}

static void __exit pv_exit(void)
{
	unsigned int blocked;

	/* Unregisters the IOMMU and stops the EVENT_READ poller (pv_remove). */
	platform_driver_unregister(&pv_driver);
	blocked = pv_block_all();
	pr_info("unloaded after %d hypercalls (%d refused), %d faults reported; %u streams open at unload, blocked now; vote %s\n",
		atomic_read(&calls), atomic_read(&refused), atomic_read(&faults_reported), blocked,
		vote_text);
	free_page((unsigned long)ste_buf);
	free_page((unsigned long)cmd_buf);
	free_page((unsigned long)evt_buf);
}

module_init(pv_init);
module_exit(pv_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Paravirtual IOMMU of the SMMU-owning hypervisor (a guest's streams through its hypercalls)");
