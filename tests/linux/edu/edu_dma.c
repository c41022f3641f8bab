// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * edu_dma: a PCI driver for QEMU's edu device (1234:11e8) that makes it DMA through the kernel's
 * DMA API, so through the IOMMU domain Linux gave the device (with the hypervisor's emulated
 * SMMU: the host's stage 1 nested on its stage 2). The stress run's third workload.
 *
 * Writing N to the device's `edu_dma_rounds` file does N round trips, each with buffers mapped
 * for this round alone (dma_map_single, then dma_unmap_single: in strict mode each unmap is a
 * TLB invalidation and a CMD_SYNC on the emulated SMMU): a page of a pattern that changes every
 * round is copied RAM -> edu buffer -> another page, and the copy compared. The write fails with
 * EIO at the first mismatch (the round's first differing offset is logged) and ETIMEDOUT if a
 * transfer never completes. Reading `edu_dma_stats` gives `rounds R bytes B mismatches M
 * timeouts T`.
 */
#include <linux/delay.h>
#include <linux/dma-mapping.h>
#include <linux/io.h>
#include <linux/jiffies.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/pci.h>
#include <linux/slab.h>

/* The edu device's registers (QEMU docs/specs/edu.rst) and its 4 KiB buffer. */
#define EDU_ID 0x00
#define EDU_DMA_SRC 0x80
#define EDU_DMA_DST 0x88
#define EDU_DMA_COUNT 0x90
#define EDU_DMA_CMD 0x98
#define EDU_CMD_START 0x1
#define EDU_CMD_TO_RAM 0x2
#define EDU_BUFFER 0x40000
#define EDU_BUFFER_SIZE 4096

struct edu {
	struct pci_dev *pdev;
	void __iomem *bar;
	struct mutex lock;
	void *src, *dst;
	u64 rounds, bytes, mismatches, timeouts;
};

/* One transfer of `len` bytes; polls the command register until START clears (about 100 ms
 * of QEMU's virtual time per transfer). */
static int edu_transfer(struct edu *e, u64 src, u64 dst, u64 len, bool to_ram)
{
	unsigned long deadline = jiffies + 5 * HZ;

	writeq(src, e->bar + EDU_DMA_SRC);
	writeq(dst, e->bar + EDU_DMA_DST);
	writeq(len, e->bar + EDU_DMA_COUNT);
	writeq(EDU_CMD_START | (to_ram ? EDU_CMD_TO_RAM : 0), e->bar + EDU_DMA_CMD);
	while (readq(e->bar + EDU_DMA_CMD) & EDU_CMD_START) {
		if (time_after(jiffies, deadline))
			return -ETIMEDOUT;
		usleep_range(1000, 2000);
	}
	return 0;
}

static int edu_round(struct edu *e)
{
	struct device *dev = &e->pdev->dev;
	dma_addr_t s, d;
	u32 *p = e->src;
	size_t i, len = EDU_BUFFER_SIZE;
	int r;

	for (i = 0; i < len / 4; i++)
		p[i] = (u32)(e->rounds * 0x9e3779b9u) ^ (u32)(i * 0x01000193u);
	memset(e->dst, 0, len);
	s = dma_map_single(dev, e->src, len, DMA_TO_DEVICE);
	if (dma_mapping_error(dev, s))
		return -ENOMEM;
	d = dma_map_single(dev, e->dst, len, DMA_FROM_DEVICE);
	if (dma_mapping_error(dev, d)) {
		dma_unmap_single(dev, s, len, DMA_TO_DEVICE);
		return -ENOMEM;
	}
	r = edu_transfer(e, s, EDU_BUFFER, len, false);
	if (!r)
		r = edu_transfer(e, EDU_BUFFER, d, len, true);
	dma_unmap_single(dev, d, len, DMA_FROM_DEVICE);
	dma_unmap_single(dev, s, len, DMA_TO_DEVICE);
	if (r) {
		e->timeouts++;
		dev_err(dev, "edu_dma: round %llu: a transfer did not complete (IOVAs %pad, %pad)\n",
			e->rounds, &s, &d);
		return r;
	}
	if (memcmp(e->src, e->dst, len)) {
		for (i = 0; i < len && ((u8 *)e->src)[i] == ((u8 *)e->dst)[i]; i++)
			;
		e->mismatches++;
		dev_err(dev, "edu_dma: round %llu: the copy differs from offset %zu (IOVAs %pad, %pad)\n",
			e->rounds, i, &s, &d);
		return -EIO;
	}
	e->rounds++;
	e->bytes += 2 * len;
	return 0;
}

static ssize_t edu_dma_rounds_store(struct device *dev, struct device_attribute *attr,
				    const char *buf, size_t count)
{
	struct edu *e = dev_get_drvdata(dev);
	unsigned int n, i;
	int r = 0;

	if (kstrtouint(buf, 0, &n))
		return -EINVAL;
	mutex_lock(&e->lock);
	for (i = 0; i < n && !r; i++)
		r = edu_round(e);
	mutex_unlock(&e->lock);
	return r ? r : count;
}
static DEVICE_ATTR_WO(edu_dma_rounds);

static ssize_t edu_dma_stats_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	struct edu *e = dev_get_drvdata(dev);
	ssize_t n;

	mutex_lock(&e->lock);
	n = sysfs_emit(buf, "rounds %llu bytes %llu mismatches %llu timeouts %llu\n", e->rounds,
		       e->bytes, e->mismatches, e->timeouts);
	mutex_unlock(&e->lock);
	return n;
}
static DEVICE_ATTR_RO(edu_dma_stats);

static struct attribute *edu_attrs[] = {
	&dev_attr_edu_dma_rounds.attr,
	&dev_attr_edu_dma_stats.attr,
	NULL,
};
ATTRIBUTE_GROUPS(edu);

static int edu_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct edu *e;
	int r;

	e = devm_kzalloc(&pdev->dev, sizeof(*e), GFP_KERNEL);
	if (!e)
		return -ENOMEM;
	e->pdev = pdev;
	mutex_init(&e->lock);
	r = pcim_enable_device(pdev);
	if (r)
		return r;
	r = dma_set_mask_and_coherent(&pdev->dev, DMA_BIT_MASK(64));
	if (r)
		return r;
	e->bar = pcim_iomap(pdev, 0, 0);
	if (!e->bar)
		return -ENOMEM;
	e->src = devm_kmalloc(&pdev->dev, EDU_BUFFER_SIZE, GFP_KERNEL);
	e->dst = devm_kmalloc(&pdev->dev, EDU_BUFFER_SIZE, GFP_KERNEL);
	if (!e->src || !e->dst)
		return -ENOMEM;
	pci_set_master(pdev);
	pci_set_drvdata(pdev, e);
	dev_info(&pdev->dev, "edu_dma: edu %#x bound, DMA through the DMA API\n",
		 readl(e->bar + EDU_ID));
	return 0;
}

static void edu_remove(struct pci_dev *pdev)
{
	pci_clear_master(pdev);
}

static const struct pci_device_id edu_ids[] = {
	{ PCI_DEVICE(0x1234, 0x11e8) },
	{ }
};
MODULE_DEVICE_TABLE(pci, edu_ids);

static struct pci_driver edu_driver = {
	.name = "edu_dma",
	.id_table = edu_ids,
	.probe = edu_probe,
	.remove = edu_remove,
	.dev_groups = edu_groups,
};
module_pci_driver(edu_driver);

MODULE_LICENSE("Dual MIT/GPL");
MODULE_DESCRIPTION("QEMU edu DMA through the DMA API (a hypervisor stress test)");
