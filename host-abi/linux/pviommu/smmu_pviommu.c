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
 *                      go (unbind, module unload) goes back to abort
 * (DMA domains on Linux's io-pgtable, attached with a stage-1 STE, are the next step.)
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
#include <linux/iommu.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/of.h>
#include <linux/pci.h>
#include <linux/platform_device.h>
#include <linux/slab.h>

#include "smmu_hyp.h"

/* The one page the hypervisor reads a virtual STE from, under ste_lock. */
static struct smmu_hyp_ste *ste_buf;
static DEFINE_MUTEX(ste_lock);

static struct iommu_device pv_iommu;
static bool pv_registered;

/* Calls made and refused, for the log when the module goes. */
static atomic_t calls, refused;

static long hyp_call(u32 fn, u64 a1, u64 a2, u64 a3, struct arm_smccc_res *res)
{
	unsigned long f = fn, x1 = a1, x2 = a2, x3 = a3;

	arm_smccc_1_1_hvc(f, x1, x2, x3, res);
	atomic_inc(&calls);
	return (long)res->a0;
}

static int pv_errno(long status)
{
	if (status >= 0)
		return 0;
	atomic_inc(&refused);
	switch (status) {
	case SMMU_HYP_ERR_NOT_SUPPORTED:
		return -EOPNOTSUPP;
	case SMMU_HYP_ERR_INVALID_PARAMETER:
	case SMMU_HYP_ERR_RESERVED_FIELD:
	case SMMU_HYP_ERR_BAD_CONFIG:
		return -EINVAL;
	case SMMU_HYP_ERR_INVALID_ADDRESS:
		return -EFAULT;
	case SMMU_HYP_ERR_NOT_OWNED:
	case SMMU_HYP_ERR_FORBIDDEN_FIELD:
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

/* A device's one stream (its requester ID through the bridge's iommu-map). */
static int pv_sid(struct device *dev, u32 *sid)
{
	struct iommu_fwspec *fw = dev_iommu_fwspec_get(dev);

	if (!fw || fw->num_ids != 1)
		return -ENODEV;
	*sid = fw->ids[0];
	return 0;
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

static int pv_attach_identity(struct iommu_domain *domain, struct device *dev)
{
	struct smmu_hyp_ste ste = {};
	long kind = -1;
	u32 sid;
	int err;

	err = pv_sid(dev, &sid);
	if (err)
		return err;
	ste.word[SMMU_HYP_STE_V_WORD] |= SMMU_HYP_FIELD_PREP(SMMU_HYP_STE_V, 1);
	ste.word[SMMU_HYP_STE_CONFIG_WORD] |=
		SMMU_HYP_FIELD_PREP(SMMU_HYP_STE_CONFIG, SMMU_HYP_STE_CONFIG_BYPASS);
	err = pv_set_ste(sid, &ste, &kind);
	if (err)
		dev_err(dev, "stream %#x: SET_STE (bypass) refused: %d\n", sid, err);
	else
		dev_info(dev, "stream %#x: identity domain (SET_STE bypass: domain %ld)\n", sid,
			 kind);
	return err;
}

static int pv_attach_blocked(struct iommu_domain *domain, struct device *dev)
{
	u32 sid;
	int err;

	err = pv_sid(dev, &sid);
	if (err)
		return err;
	err = pv_clear_ste(sid);
	if (err)
		dev_err(dev, "stream %#x: CLEAR_STE refused: %d\n", sid, err);
	else
		dev_info(dev, "stream %#x: blocked (CLEAR_STE)\n", sid);
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

static int pv_of_xlate(struct device *dev, const struct of_phandle_args *args)
{
	if (args->args_count != 1)
		return -EINVAL;
	return iommu_fwspec_add_ids(dev, args->args, 1);
}

static struct iommu_device *pv_probe_device(struct device *dev)
{
	struct iommu_fwspec *fw = dev_iommu_fwspec_get(dev);

	if (!fw || fw->iommu_fwnode != pv_iommu.fwnode || fw->num_ids != 1)
		return ERR_PTR(-ENODEV);
	return &pv_iommu;
}

static struct iommu_group *pv_device_group(struct device *dev)
{
	if (dev_is_pci(dev))
		return pci_device_group(dev);
	return generic_device_group(dev);
}

static int pv_def_domain_type(struct device *dev)
{
	return IOMMU_DOMAIN_IDENTITY;
}

static const struct iommu_ops pv_ops = {
	.identity_domain = &pv_identity_domain,
	.blocked_domain = &pv_blocked_domain,
	.release_domain = &pv_blocked_domain,
	.probe_device = pv_probe_device,
	.device_group = pv_device_group,
	.of_xlate = pv_of_xlate,
	.def_domain_type = pv_def_domain_type,
	.pgsize_bitmap = SZ_4K,
	.owner = THIS_MODULE,
};

static int pv_probe(struct platform_device *pdev)
{
	int err;

	err = iommu_device_sysfs_add(&pv_iommu, &pdev->dev, NULL, "pviommu");
	if (err)
		return err;
	err = iommu_device_register(&pv_iommu, &pv_ops, &pdev->dev);
	if (err) {
		iommu_device_sysfs_remove(&pv_iommu);
		return err;
	}
	pv_registered = true;
	dev_info(&pdev->dev, "paravirtual IOMMU registered: identity (SET_STE bypass) and blocked (CLEAR_STE) domains\n");
	return 0;
}

static void pv_remove(struct platform_device *pdev)
{
	if (!pv_registered)
		return;
	iommu_device_unregister(&pv_iommu);
	iommu_device_sysfs_remove(&pv_iommu);
	pv_registered = false;
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
		.suppress_bind_attrs = true,
	},
	.probe = pv_probe,
	.remove_new = pv_remove,
};

static int __init pv_init(void)
{
	struct arm_smccc_res r;
	int err;

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
	if (!ste_buf)
		return -ENOMEM;
	err = platform_driver_register(&pv_driver);
	if (err)
		free_page((unsigned long)ste_buf);
	return err;
}

static void __exit pv_exit(void)
{
	platform_driver_unregister(&pv_driver);
	pr_info("unloaded after %d hypercalls (%d refused)\n", atomic_read(&calls),
		atomic_read(&refused));
	free_page((unsigned long)ste_buf);
}

module_init(pv_init);
module_exit(pv_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Paravirtual IOMMU of the SMMU-owning hypervisor (a guest's streams through its hypercalls)");
