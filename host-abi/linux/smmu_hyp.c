// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * smmu_hyp: the host kernel's side of the SMMU-owning hypervisor's hypercall ABI.
 *
 * The ABI comes only from host-abi/include/smmu_hyp.h, which is generated from the Rust
 * definitions in host-abi/src. Calls are SMCCC 1.1 fast calls through HVC #0
 * (arm_smccc_1_1_hvc). Buffers handed to the hypervisor are one page from the page allocator:
 * physically contiguous, and the host's IPA of it is its physical address (the hypervisor maps
 * the host's RAM at IPA == PA).
 *
 * On load the module makes sure the hypervisor below is this one before calling anything else:
 * the kernel runs at EL1 and the CPU has an EL2 (otherwise HVC is UNDEFINED), CALL_UID is this
 * hypervisor's, REVISION and VERSION name ABI major SMMU_HYP_ABI_VERSION_MAJOR with at least
 * minor SMMU_HYP_ABI_VERSION_MINOR, and FEATURES says every function the module uses is
 * implemented. Anything else: it refuses to load (-ENODEV) and says why.
 *
 * sysfs, under /sys/hypervisor/smmu_hyp/ (one value per file unless said otherwise):
 *   abi_version            "MAJOR.MINOR" (REVISION)
 *   vm_id                  this VM's id (VM_INFO)
 *   events                 EVENT_READ: reading moves up to 16 of this VM's SMMU event records
 *                          out of the hypervisor (a destructive read). First line
 *                          "records N pending P lost_notices L dropped D", then one line per
 *                          record: "sid=0x.. type=0x.. W0 W1 W2 W3" (the raw 64-bit words)
 *   smmu/<counter>         SMMU_STATS, one file per counter of struct smmu_hyp_smmu_stats
 *   pm/power               "on" or "off"                                        (PM_STATUS)
 *   pm/refusal             "none", "waiting-for-votes", "bypass-reset-with-dma", "disabled",
 *                          "smmu-failed"
 *   pm/votes_allow_off     bit i set: VM i votes allow-off, as 0x...
 *   pm/gbpa_reset          "abort" or "bypass"
 *   pm/{vm_count,dma_streams,attached_streams,suspends,resumes,elided,wakeups,losses}
 *   pm/vote          (rw)  this VM's vote: "need-on" or "allow-off"; writing one of the two
 *                          words calls PM_VOTE, anything else is -EINVAL
 *   pm/last_vote           what the module's last PM_VOTE returned:
 *                          "power on|off refusal WORD dma_streams N", or "none"
 *   pm/inject_loss   (wo)  PM_INJECT_LOSS N; present only where FEATURES says the call is
 *                          available to this VM (test platforms); -EBUSY (REFUSED) where GBPA
 *                          resets to bypass while DMA-capable streams are assigned
 *   vms/count, vms/peak_running                                                 (VM_INFO)
 *   vms/<id>/state         "running", "stopped" or "not-started"
 *   vms/<id>/vote          "need-on" or "allow-off"                             (PM_STATUS)
 *   vms/<own id>/{name,cpu,mem_base,mem_size}  this VM only (VM_INFO describes the caller)
 *   devices/count, devices/<i>/{stream_id,vendor,device,pci_addr,bars}          (DEVICE_INFO)
 *                          bars: one line per implemented BAR, "INDEX IPA SIZE"
 *   selftest               with selftest=1 only: calls the hypervisor with arguments it must
 *                          refuse and checks each status and the errno it maps to
 *
 * Errors (smmu_hyp_errno() of smmu_hyp.h, the one mapping every C file uses, generated from
 * host-abi/src/header.rs):
 *   NOT_SUPPORTED      -> -EOPNOTSUPP    INVALID_PARAMETER -> -EINVAL
 *   INVALID_ADDRESS    -> -EFAULT        NOT_OWNED         -> -EPERM
 *   FORBIDDEN_FIELD    -> -EPERM         RESERVED_FIELD    -> -EINVAL
 *   BAD_CONFIG         -> -EINVAL        BAD_COMMAND       -> -EPERM
 *   DEVICE_ERROR       -> -EIO           REFUSED           -> -EBUSY
 *   any other negative status -> -EPROTO
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/arm-smccc.h>
#include <linux/gfp.h>
#include <linux/kobject.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/sysfs.h>
#include <asm/cpufeature.h>
#include <asm/sysreg.h>
#include <asm/virt.h>

#include "smmu_hyp.h"

static bool selftest;
module_param(selftest, bool, 0444);
MODULE_PARM_DESC(selftest, "add the selftest file (calls the hypervisor must refuse)");

static unsigned int require[8];
static int require_count;
module_param_array(require, uint, &require_count, 0444);
MODULE_PARM_DESC(require, "further function IDs FEATURES must report implemented (tests)");

/* The functions the module calls; FEATURES must report each implemented. */
static const struct {
	u32 id;
	const char *name;
} required_functions[] = {
	{ SMMU_HYP_FN_VERSION, "VERSION" },
	{ SMMU_HYP_FN_FEATURES, "FEATURES" },
	{ SMMU_HYP_FN_VM_INFO, "VM_INFO" },
	{ SMMU_HYP_FN_DEVICE_INFO, "DEVICE_INFO" },
	{ SMMU_HYP_FN_EVENT_READ, "EVENT_READ" },
	{ SMMU_HYP_FN_SMMU_STATS, "SMMU_STATS" },
	{ SMMU_HYP_FN_PM_VOTE, "PM_VOTE" },
	{ SMMU_HYP_FN_PM_STATUS, "PM_STATUS" },
};

/* What discovery found. */
static u32 abi_major, abi_minor;
static u32 self_id, vm_count, device_count;
static bool inject_available;

/*
 * The one buffer the hypervisor reads and writes: a page (physically contiguous, IPA == PA),
 * used under buf_lock by one call at a time.
 */
static void *buf;
static phys_addr_t buf_ipa;
static DEFINE_MUTEX(buf_lock);

/* The module's last vote and its result. */
static DEFINE_MUTEX(vote_lock);
static bool voted, voted_allow_off;
static struct arm_smccc_res last_vote;

/* One call: x0 = fn, x1..x3 = args; the status (x0) is returned, x0..x3 are in *res. */
static long hyp_call(u32 fn, u64 a1, u64 a2, u64 a3, struct arm_smccc_res *res)
{
	unsigned long f = fn, x1 = a1, x2 = a2, x3 = a3;

	arm_smccc_1_1_hvc(f, x1, x2, x3, res);
	return (long)res->a0;
}

/*
 * A call that writes a structure into the page: fn(x1 = IPA, x2 = len) (or, with `index`
 * >= 0, fn(x1 = index, x2 = IPA, x3 = len)); `len` bytes are copied to `out`.
 */
static int hyp_read(u32 fn, long index, void *out, size_t len, struct arm_smccc_res *res)
{
	struct arm_smccc_res r;
	long status;

	mutex_lock(&buf_lock);
	memset(buf, 0, len);
	if (index >= 0)
		status = hyp_call(fn, index, buf_ipa, len, &r);
	else
		status = hyp_call(fn, buf_ipa, len, 0, &r);
	if (status >= 0)
		memcpy(out, buf, len);
	mutex_unlock(&buf_lock);
	if (res)
		*res = r;
	return smmu_hyp_errno(status);
}

static int get_vm_info(struct smmu_hyp_vm_info *vi)
{
	return hyp_read(SMMU_HYP_FN_VM_INFO, -1, vi, sizeof(*vi), NULL);
}

static int get_pm_status(struct smmu_hyp_pm_status *ps)
{
	return hyp_read(SMMU_HYP_FN_PM_STATUS, -1, ps, sizeof(*ps), NULL);
}

static int get_stats(struct smmu_hyp_smmu_stats *st)
{
	return hyp_read(SMMU_HYP_FN_SMMU_STATS, -1, st, sizeof(*st), NULL);
}

static int get_device(u32 index, struct smmu_hyp_device_info *di)
{
	return hyp_read(SMMU_HYP_FN_DEVICE_INFO, index, di, sizeof(*di), NULL);
}

static const char *refusal_word(u64 code)
{
	switch (code) {
	case 0:
		return "none";
	case 1:
		return "waiting-for-votes";
	case 2:
		return "bypass-reset-with-dma";
	case 3:
		return "disabled";
	case 4:
		return "smmu-failed";
	default:
		return "unknown";
	}
}

static const char *vote_word(u64 votes_allow_off, u32 vm)
{
	return vm < 64 && (votes_allow_off >> vm) & 1 ? "allow-off" : "need-on";
}

/* ---- fields of a structure, one file each ---- */

struct field_attr {
	struct kobj_attribute attr;
	unsigned short offset;
	unsigned short size;
};

static u64 field_value(const void *s, const struct field_attr *fa)
{
	const u8 *p = (const u8 *)s + fa->offset;

	return fa->size == 8 ? *(const u64 *)p : *(const u32 *)p;
}

#define FIELD_ATTR(prefix, type, field)                                           \
	static struct field_attr prefix##_##field##_attr = {                      \
		.attr = __ATTR(field, 0444, prefix##_field_show, NULL),           \
		.offset = offsetof(struct type, field),                           \
		.size = sizeof_field(struct type, field),                         \
	}

static ssize_t smmu_field_show(struct kobject *kobj, struct kobj_attribute *attr, char *out)
{
	struct field_attr *fa = container_of(attr, struct field_attr, attr);
	struct smmu_hyp_smmu_stats st;
	int err = get_stats(&st);

	return err ? err : sysfs_emit(out, "%llu\n", field_value(&st, fa));
}

FIELD_ATTR(smmu, smmu_hyp_smmu_stats, commands);
FIELD_ATTR(smmu, smmu_hyp_smmu_stats, syncs);
FIELD_ATTR(smmu, smmu_hyp_smmu_stats, ste_writes);
FIELD_ATTR(smmu, smmu_hyp_smmu_stats, events);
FIELD_ATTR(smmu, smmu_hyp_smmu_stats, events_routed);
FIELD_ATTR(smmu, smmu_hyp_smmu_stats, events_dropped);
FIELD_ATTR(smmu, smmu_hyp_smmu_stats, command_errors);
FIELD_ATTR(smmu, smmu_hyp_smmu_stats, heap_in_use);
FIELD_ATTR(smmu, smmu_hyp_smmu_stats, events_lost_hw);
FIELD_ATTR(smmu, smmu_hyp_smmu_stats, global_errors);

static struct attribute *smmu_attrs[] = {
	&smmu_commands_attr.attr.attr,
	&smmu_syncs_attr.attr.attr,
	&smmu_ste_writes_attr.attr.attr,
	&smmu_events_attr.attr.attr,
	&smmu_events_routed_attr.attr.attr,
	&smmu_events_dropped_attr.attr.attr,
	&smmu_command_errors_attr.attr.attr,
	&smmu_heap_in_use_attr.attr.attr,
	&smmu_events_lost_hw_attr.attr.attr,
	&smmu_global_errors_attr.attr.attr,
	NULL,
};

static const struct attribute_group smmu_group = {
	.name = "smmu",
	.attrs = smmu_attrs,
};

/* ---- power management ---- */

static ssize_t pm_field_show(struct kobject *kobj, struct kobj_attribute *attr, char *out)
{
	struct field_attr *fa = container_of(attr, struct field_attr, attr);
	struct smmu_hyp_pm_status ps;
	int err = get_pm_status(&ps);

	return err ? err : sysfs_emit(out, "%llu\n", field_value(&ps, fa));
}

FIELD_ATTR(pm, smmu_hyp_pm_status, vm_count);
FIELD_ATTR(pm, smmu_hyp_pm_status, dma_streams);
FIELD_ATTR(pm, smmu_hyp_pm_status, attached_streams);
FIELD_ATTR(pm, smmu_hyp_pm_status, suspends);
FIELD_ATTR(pm, smmu_hyp_pm_status, resumes);
FIELD_ATTR(pm, smmu_hyp_pm_status, elided);
FIELD_ATTR(pm, smmu_hyp_pm_status, wakeups);
FIELD_ATTR(pm, smmu_hyp_pm_status, losses);

static ssize_t power_show(struct kobject *kobj, struct kobj_attribute *attr, char *out)
{
	struct smmu_hyp_pm_status ps;
	int err = get_pm_status(&ps);

	return err ? err : sysfs_emit(out, "%s\n", ps.power ? "off" : "on");
}

static ssize_t refusal_show(struct kobject *kobj, struct kobj_attribute *attr, char *out)
{
	struct smmu_hyp_pm_status ps;
	int err = get_pm_status(&ps);

	return err ? err : sysfs_emit(out, "%s\n", refusal_word(ps.refusal));
}

static ssize_t votes_allow_off_show(struct kobject *kobj, struct kobj_attribute *attr,
				    char *out)
{
	struct smmu_hyp_pm_status ps;
	int err = get_pm_status(&ps);

	return err ? err : sysfs_emit(out, "0x%llx\n", ps.votes_allow_off);
}

static ssize_t gbpa_reset_show(struct kobject *kobj, struct kobj_attribute *attr, char *out)
{
	struct smmu_hyp_pm_status ps;
	int err = get_pm_status(&ps);

	return err ? err : sysfs_emit(out, "%s\n", ps.gbpa_reset ? "bypass" : "abort");
}

static ssize_t vote_show(struct kobject *kobj, struct kobj_attribute *attr, char *out)
{
	struct smmu_hyp_pm_status ps;
	int err = get_pm_status(&ps);

	return err ? err : sysfs_emit(out, "%s\n", vote_word(ps.votes_allow_off, self_id));
}

static int vote(bool allow_off)
{
	struct arm_smccc_res r;
	long status;

	mutex_lock(&vote_lock);
	status = hyp_call(SMMU_HYP_FN_PM_VOTE, allow_off, 0, 0, &r);
	if (status >= 0) {
		voted = true;
		voted_allow_off = allow_off;
		last_vote = r;
	}
	mutex_unlock(&vote_lock);
	return smmu_hyp_errno(status);
}

static ssize_t vote_store(struct kobject *kobj, struct kobj_attribute *attr, const char *in,
			  size_t count)
{
	int err;

	if (sysfs_streq(in, "allow-off"))
		err = vote(true);
	else if (sysfs_streq(in, "need-on"))
		err = vote(false);
	else
		err = -EINVAL;
	return err ? err : count;
}

static ssize_t last_vote_show(struct kobject *kobj, struct kobj_attribute *attr, char *out)
{
	ssize_t n;

	mutex_lock(&vote_lock);
	if (!voted)
		n = sysfs_emit(out, "none\n");
	else
		n = sysfs_emit(out, "power %s refusal %s dma_streams %lu\n",
			       last_vote.a1 ? "off" : "on", refusal_word(last_vote.a2),
			       last_vote.a3);
	mutex_unlock(&vote_lock);
	return n;
}

static ssize_t inject_loss_store(struct kobject *kobj, struct kobj_attribute *attr,
				 const char *in, size_t count)
{
	struct arm_smccc_res r;
	u64 n;
	int err = kstrtou64(in, 0, &n);

	if (err)
		return err;
	err = smmu_hyp_errno(hyp_call(SMMU_HYP_FN_PM_INJECT_LOSS, n, 0, 0, &r));
	return err ? err : count;
}

static struct kobj_attribute power_attr = __ATTR_RO(power);
static struct kobj_attribute refusal_attr = __ATTR_RO(refusal);
static struct kobj_attribute votes_allow_off_attr = __ATTR_RO(votes_allow_off);
static struct kobj_attribute gbpa_reset_attr = __ATTR_RO(gbpa_reset);
static struct kobj_attribute vote_attr = __ATTR_RW(vote);
static struct kobj_attribute last_vote_attr = __ATTR_RO(last_vote);
static struct kobj_attribute inject_loss_attr = __ATTR_WO(inject_loss);

static struct attribute *pm_attrs[] = {
	&power_attr.attr,
	&refusal_attr.attr,
	&votes_allow_off_attr.attr,
	&gbpa_reset_attr.attr,
	&pm_vm_count_attr.attr.attr,
	&pm_dma_streams_attr.attr.attr,
	&pm_attached_streams_attr.attr.attr,
	&pm_suspends_attr.attr.attr,
	&pm_resumes_attr.attr.attr,
	&pm_elided_attr.attr.attr,
	&pm_wakeups_attr.attr.attr,
	&pm_losses_attr.attr.attr,
	&vote_attr.attr,
	&last_vote_attr.attr,
	&inject_loss_attr.attr,
	NULL,
};

static umode_t pm_visible(struct kobject *kobj, struct attribute *a, int n)
{
	if (a == &inject_loss_attr.attr && !inject_available)
		return 0;
	return a->mode;
}

static const struct attribute_group pm_group = {
	.name = "pm",
	.attrs = pm_attrs,
	.is_visible = pm_visible,
};

/* ---- events ---- */

static ssize_t events_show(struct kobject *kobj, struct kobj_attribute *attr, char *out)
{
	struct smmu_hyp_event ev[SMMU_HYP_EVENT_READ_MAX];
	struct arm_smccc_res r;
	ssize_t n;
	u64 i;
	int err;

	err = hyp_read(SMMU_HYP_FN_EVENT_READ, -1, ev, sizeof(ev), &r);
	if (err)
		return err;
	if (r.a1 > SMMU_HYP_EVENT_READ_MAX)
		return -EPROTO;
	n = sysfs_emit(out, "records %lu pending %lu lost_notices %lu dropped %lu\n", r.a1,
		       r.a2 & 0xffffffff, r.a2 >> 32, r.a3);
	for (i = 0; i < r.a1; i++) {
		const u64 *w = ev[i].word;

		n += sysfs_emit_at(out, n, "sid=0x%llx type=0x%02llx %016llx %016llx %016llx %016llx\n",
				   SMMU_HYP_FIELD_GET(SMMU_HYP_EVT_SID, w[SMMU_HYP_EVT_SID_WORD]),
				   SMMU_HYP_FIELD_GET(SMMU_HYP_EVT_TYPE, w[SMMU_HYP_EVT_TYPE_WORD]),
				   w[0], w[1], w[2], w[3]);
	}
	return n;
}

static ssize_t abi_version_show(struct kobject *kobj, struct kobj_attribute *attr, char *out)
{
	return sysfs_emit(out, "%u.%u\n", abi_major, abi_minor);
}

static ssize_t vm_id_show(struct kobject *kobj, struct kobj_attribute *attr, char *out)
{
	return sysfs_emit(out, "%u\n", self_id);
}

/* ---- selftest: calls the hypervisor must refuse, and the errno each maps to ---- */

static bool owns_stream(u32 sid)
{
	struct smmu_hyp_device_info di;
	u32 i;

	for (i = 0; i < device_count; i++)
		if (!get_device(i, &di) && di.stream_id == sid)
			return true;
	return false;
}

static ssize_t selftest_show(struct kobject *kobj, struct kobj_attribute *attr, char *out)
{
	struct smmu_hyp_cmd *cmd = buf;
	struct arm_smccc_res r;
	u32 foreign = 0xffff;
	ssize_t n = 0;
	unsigned int i;
	struct check {
		const char *what;
		long status;
		long want_status;
		int want_errno;
	} c[12];
	unsigned int nc = 0;

	while (owns_stream(foreign))
		foreign--;

#define CHECK(desc, call, want, errno_)                                                     \
	do {                                                                                \
		c[nc].what = desc;                                                          \
		c[nc].status = (call);                                                      \
		c[nc].want_status = want;                                                   \
		c[nc].want_errno = errno_;                                                  \
		nc++;                                                                       \
	} while (0)

	mutex_lock(&buf_lock);
	CHECK("VM_INFO into IPA 0 (not the host's RAM)",
	      hyp_call(SMMU_HYP_FN_VM_INFO, 0, sizeof(struct smmu_hyp_vm_info), 0, &r),
	      SMMU_HYP_ERR_INVALID_ADDRESS, -EFAULT);
	CHECK("SMMU_STATS into a buffer running past the end of the host's RAM",
	      hyp_call(SMMU_HYP_FN_SMMU_STATS, buf_ipa, ~0ull - buf_ipa, 0, &r),
	      SMMU_HYP_ERR_INVALID_ADDRESS, -EFAULT);
	CHECK("VM_INFO with a 63-byte buffer",
	      hyp_call(SMMU_HYP_FN_VM_INFO, buf_ipa, sizeof(struct smmu_hyp_vm_info) - 1, 0, &r),
	      SMMU_HYP_ERR_INVALID_PARAMETER, -EINVAL);
	CHECK("EVENT_READ of 33 bytes", hyp_call(SMMU_HYP_FN_EVENT_READ, buf_ipa, 33, 0, &r),
	      SMMU_HYP_ERR_INVALID_PARAMETER, -EINVAL);
	CHECK("PM_VOTE 2", hyp_call(SMMU_HYP_FN_PM_VOTE, 2, 0, 0, &r),
	      SMMU_HYP_ERR_INVALID_PARAMETER, -EINVAL);
	CHECK("CLEAR_STE of a stream not the host's",
	      hyp_call(SMMU_HYP_FN_CLEAR_STE, foreign, 0, 0, &r), SMMU_HYP_ERR_NOT_OWNED, -EPERM);
	memset(cmd, 0, 2 * sizeof(*cmd));
	cmd[0].word[0] = SMMU_HYP_OP_CFGI_STE | SMMU_HYP_FIELD_PREP(SMMU_HYP_CMD_SID, foreign);
	CHECK("INVALIDATE with CFGI_STE of a stream not the host's",
	      hyp_call(SMMU_HYP_FN_INVALIDATE, buf_ipa, 1, 0, &r), SMMU_HYP_ERR_NOT_OWNED, -EPERM);
	cmd[0].word[0] = SMMU_HYP_OP_TLBI_NH_VA | SMMU_HYP_FIELD_PREP(SMMU_HYP_CMD_VMID, 1);
	CHECK("INVALIDATE with TLBI_NH_VA naming VMID 1",
	      hyp_call(SMMU_HYP_FN_INVALIDATE, buf_ipa, 1, 0, &r), SMMU_HYP_ERR_FORBIDDEN_FIELD,
	      -EPERM);
	cmd[0].word[0] = SMMU_HYP_OP_TLBI_EL2_ALL;
	CHECK("INVALIDATE with TLBI_EL2_ALL", hyp_call(SMMU_HYP_FN_INVALIDATE, buf_ipa, 1, 0, &r),
	      SMMU_HYP_ERR_BAD_COMMAND, -EPERM);
	CHECK("INVALIDATE of 0 commands", hyp_call(SMMU_HYP_FN_INVALIDATE, buf_ipa, 0, 0, &r),
	      SMMU_HYP_ERR_INVALID_PARAMETER, -EINVAL);
	CHECK("function 0xc60000ff", hyp_call(0xc60000ffu, 0, 0, 0, &r),
	      SMMU_HYP_ERR_NOT_SUPPORTED, -EOPNOTSUPP);
	if (!inject_available)
		CHECK("PM_INJECT_LOSS where FEATURES said it is not available",
		      hyp_call(SMMU_HYP_FN_PM_INJECT_LOSS, 0, 0, 0, &r),
		      SMMU_HYP_ERR_NOT_SUPPORTED, -EOPNOTSUPP);
	mutex_unlock(&buf_lock);
#undef CHECK

	for (i = 0; i < nc; i++) {
		int e = smmu_hyp_errno(c[i].status);
		bool ok = c[i].status == c[i].want_status && e == c[i].want_errno;

		n += sysfs_emit_at(out, n, "%s: status %ld errno %d: %s\n", c[i].what,
				   c[i].status, e, ok ? "ok" : "FAILED");
	}
	return n;
}

static struct kobj_attribute abi_version_attr = __ATTR_RO(abi_version);
static struct kobj_attribute vm_id_attr = __ATTR_RO(vm_id);
static struct kobj_attribute events_attr = __ATTR_RO(events);
static struct kobj_attribute selftest_attr = __ATTR_RO(selftest);

static struct attribute *root_attrs[] = {
	&abi_version_attr.attr,
	&vm_id_attr.attr,
	&events_attr.attr,
	&selftest_attr.attr,
	NULL,
};

static umode_t root_visible(struct kobject *kobj, struct attribute *a, int n)
{
	if (a == &selftest_attr.attr && !selftest)
		return 0;
	return a->mode;
}

static const struct attribute_group root_group = {
	.attrs = root_attrs,
	.is_visible = root_visible,
};

/* ---- the VM table: vms/<id>/ ---- */

struct vm_kobj {
	struct kobject kobj;
	u32 id;
};

static u32 vm_of(struct kobject *kobj)
{
	return container_of(kobj, struct vm_kobj, kobj)->id;
}

static ssize_t state_show(struct kobject *kobj, struct kobj_attribute *attr, char *out)
{
	struct smmu_hyp_vm_info vi;
	u32 id = vm_of(kobj);
	int err = get_vm_info(&vi);

	if (err)
		return err;
	if (id < 64 && (vi.running_mask >> id) & 1)
		return sysfs_emit(out, "running\n");
	if (id < 64 && (vi.stopped_mask >> id) & 1)
		return sysfs_emit(out, "stopped\n");
	return sysfs_emit(out, "not-started\n");
}

static ssize_t vm_vote_show(struct kobject *kobj, struct kobj_attribute *attr, char *out)
{
	struct smmu_hyp_pm_status ps;
	int err = get_pm_status(&ps);

	return err ? err : sysfs_emit(out, "%s\n", vote_word(ps.votes_allow_off, vm_of(kobj)));
}

static ssize_t name_show(struct kobject *kobj, struct kobj_attribute *attr, char *out)
{
	struct smmu_hyp_vm_info vi;
	int err = get_vm_info(&vi);

	return err ? err : sysfs_emit(out, "%.*s\n", (int)strnlen(vi.name, sizeof(vi.name)),
				      vi.name);
}

static ssize_t cpu_show(struct kobject *kobj, struct kobj_attribute *attr, char *out)
{
	struct smmu_hyp_vm_info vi;
	int err = get_vm_info(&vi);

	return err ? err : sysfs_emit(out, "%u\n", vi.cpu);
}

static ssize_t mem_base_show(struct kobject *kobj, struct kobj_attribute *attr, char *out)
{
	struct smmu_hyp_vm_info vi;
	int err = get_vm_info(&vi);

	return err ? err : sysfs_emit(out, "0x%llx\n", vi.mem_base);
}

static ssize_t mem_size_show(struct kobject *kobj, struct kobj_attribute *attr, char *out)
{
	struct smmu_hyp_vm_info vi;
	int err = get_vm_info(&vi);

	return err ? err : sysfs_emit(out, "0x%llx\n", vi.mem_size);
}

static struct kobj_attribute state_attr = __ATTR_RO(state);
static struct kobj_attribute vm_vote_attr = __ATTR(vote, 0444, vm_vote_show, NULL);
static struct kobj_attribute name_attr = __ATTR_RO(name);
static struct kobj_attribute cpu_attr = __ATTR_RO(cpu);
static struct kobj_attribute mem_base_attr = __ATTR_RO(mem_base);
static struct kobj_attribute mem_size_attr = __ATTR_RO(mem_size);

static struct attribute *vm_attrs[] = {
	&state_attr.attr,
	&vm_vote_attr.attr,
	&name_attr.attr,
	&cpu_attr.attr,
	&mem_base_attr.attr,
	&mem_size_attr.attr,
	NULL,
};

static umode_t vm_visible(struct kobject *kobj, struct attribute *a, int n)
{
	bool own_only = a != &state_attr.attr && a != &vm_vote_attr.attr;

	return own_only && vm_of(kobj) != self_id ? 0 : a->mode;
}

static const struct attribute_group vm_group = {
	.attrs = vm_attrs,
	.is_visible = vm_visible,
};
__ATTRIBUTE_GROUPS(vm);

static void vm_release(struct kobject *kobj)
{
	kfree(container_of(kobj, struct vm_kobj, kobj));
}

static const struct kobj_type vm_ktype = {
	.release = vm_release,
	.sysfs_ops = &kobj_sysfs_ops,
	.default_groups = vm_groups,
};

static ssize_t count_show(struct kobject *kobj, struct kobj_attribute *attr, char *out);

static ssize_t peak_running_show(struct kobject *kobj, struct kobj_attribute *attr, char *out)
{
	struct smmu_hyp_vm_info vi;
	int err = get_vm_info(&vi);

	return err ? err : sysfs_emit(out, "%u\n", vi.peak_running);
}

static struct kobj_attribute vms_count_attr = __ATTR(count, 0444, count_show, NULL);
static struct kobj_attribute peak_running_attr = __ATTR_RO(peak_running);

static struct attribute *vms_attrs[] = {
	&vms_count_attr.attr,
	&peak_running_attr.attr,
	NULL,
};

static const struct attribute_group vms_group = {
	.attrs = vms_attrs,
};

/* ---- the host's PCI functions: devices/<index>/ ---- */

struct dev_kobj {
	struct kobject kobj;
	u32 index;
};

static int dev_info_of(struct kobject *kobj, struct smmu_hyp_device_info *di)
{
	return get_device(container_of(kobj, struct dev_kobj, kobj)->index, di);
}

static ssize_t stream_id_show(struct kobject *kobj, struct kobj_attribute *attr, char *out)
{
	struct smmu_hyp_device_info di;
	int err = dev_info_of(kobj, &di);

	return err ? err : sysfs_emit(out, "0x%x\n", di.stream_id);
}

static ssize_t vendor_show(struct kobject *kobj, struct kobj_attribute *attr, char *out)
{
	struct smmu_hyp_device_info di;
	int err = dev_info_of(kobj, &di);

	return err ? err : sysfs_emit(out, "0x%04x\n", di.vendor);
}

static ssize_t device_show(struct kobject *kobj, struct kobj_attribute *attr, char *out)
{
	struct smmu_hyp_device_info di;
	int err = dev_info_of(kobj, &di);

	return err ? err : sysfs_emit(out, "0x%04x\n", di.device);
}

static ssize_t pci_addr_show(struct kobject *kobj, struct kobj_attribute *attr, char *out)
{
	struct smmu_hyp_device_info di;
	int err = dev_info_of(kobj, &di);

	/* bus << 8 | device << 3 | function, printed as Linux names PCI functions. */
	return err ? err : sysfs_emit(out, "%02x:%02x.%x\n", di.pci_addr >> 8,
				      (di.pci_addr >> 3) & 0x1f, di.pci_addr & 7);
}

static ssize_t bars_show(struct kobject *kobj, struct kobj_attribute *attr, char *out)
{
	struct smmu_hyp_device_info di;
	ssize_t n = 0;
	int i, err = dev_info_of(kobj, &di);

	if (err)
		return err;
	for (i = 0; i < 6; i++)
		if (di.bars[i].size)
			n += sysfs_emit_at(out, n, "%d 0x%llx 0x%llx\n", i, di.bars[i].ipa,
					   di.bars[i].size);
	return n;
}

static struct kobj_attribute stream_id_attr = __ATTR_RO(stream_id);
static struct kobj_attribute vendor_attr = __ATTR_RO(vendor);
static struct kobj_attribute device_attr = __ATTR_RO(device);
static struct kobj_attribute pci_addr_attr = __ATTR_RO(pci_addr);
static struct kobj_attribute bars_attr = __ATTR_RO(bars);

static struct attribute *dev_attrs[] = {
	&stream_id_attr.attr, &vendor_attr.attr, &device_attr.attr,
	&pci_addr_attr.attr,  &bars_attr.attr,   NULL,
};
ATTRIBUTE_GROUPS(dev);

static void dev_release(struct kobject *kobj)
{
	kfree(container_of(kobj, struct dev_kobj, kobj));
}

static const struct kobj_type dev_ktype = {
	.release = dev_release,
	.sysfs_ops = &kobj_sysfs_ops,
	.default_groups = dev_groups,
};

static struct kobj_attribute devices_count_attr = __ATTR(count, 0444, count_show, NULL);

static struct attribute *devices_attrs[] = {
	&devices_count_attr.attr,
	NULL,
};

static const struct attribute_group devices_group = {
	.attrs = devices_attrs,
};

/* ---- the tree ---- */

static struct kobject *root_kobj, *vms_kobj, *devices_kobj;

static ssize_t count_show(struct kobject *kobj, struct kobj_attribute *attr, char *out)
{
	return sysfs_emit(out, "%u\n", kobj == vms_kobj ? vm_count : device_count);
}

static struct kobject **children;
static unsigned int child_count;

static int add_child(struct kobject *parent, const struct kobj_type *type, u32 index,
		     const char *fmt)
{
	struct kobject *k;
	int err;

	if (type == &vm_ktype) {
		struct vm_kobj *v = kzalloc(sizeof(*v), GFP_KERNEL);

		if (!v)
			return -ENOMEM;
		v->id = index;
		k = &v->kobj;
	} else {
		struct dev_kobj *d = kzalloc(sizeof(*d), GFP_KERNEL);

		if (!d)
			return -ENOMEM;
		d->index = index;
		k = &d->kobj;
	}
	err = kobject_init_and_add(k, type, parent, fmt, index);
	if (err) {
		kobject_put(k);
		return err;
	}
	children[child_count++] = k;
	return 0;
}

static void destroy_sysfs(void)
{
	while (child_count)
		kobject_put(children[--child_count]);
	kfree(children);
	children = NULL;
	if (vms_kobj)
		kobject_put(vms_kobj);
	if (devices_kobj)
		kobject_put(devices_kobj);
	if (root_kobj) {
		sysfs_remove_group(root_kobj, &pm_group);
		sysfs_remove_group(root_kobj, &smmu_group);
		sysfs_remove_group(root_kobj, &root_group);
		kobject_put(root_kobj);
	}
	vms_kobj = devices_kobj = root_kobj = NULL;
}

static int create_sysfs(void)
{
	u32 i;
	int err;

	children = kcalloc(vm_count + device_count, sizeof(*children), GFP_KERNEL);
	if (!children)
		return -ENOMEM;
	root_kobj = kobject_create_and_add("smmu_hyp", hypervisor_kobj);
	if (!root_kobj)
		return -ENOMEM;
	err = sysfs_create_group(root_kobj, &root_group);
	if (!err)
		err = sysfs_create_group(root_kobj, &smmu_group);
	if (!err)
		err = sysfs_create_group(root_kobj, &pm_group);
	if (err)
		return err;
	vms_kobj = kobject_create_and_add("vms", root_kobj);
	devices_kobj = kobject_create_and_add("devices", root_kobj);
	if (!vms_kobj || !devices_kobj)
		return -ENOMEM;
	err = sysfs_create_group(vms_kobj, &vms_group);
	if (!err)
		err = sysfs_create_group(devices_kobj, &devices_group);
	for (i = 0; !err && i < vm_count; i++)
		err = add_child(vms_kobj, &vm_ktype, i, "%u");
	for (i = 0; !err && i < device_count; i++)
		err = add_child(devices_kobj, &dev_ktype, i, "%u");
	return err;
}

/* ---- discovery ---- */

static int discover(void)
{
	struct smmu_hyp_vm_info vi;
	struct smmu_hyp_device_info di;
	struct arm_smccc_res r;
	u64 pfr0;
	long status;
	int i, err;

	if (is_kernel_in_hyp_mode()) {
		pr_err("this kernel runs at EL2: no hypervisor runs below it; not loading\n");
		return -ENODEV;
	}
	pfr0 = read_sanitised_ftr_reg(SYS_ID_AA64PFR0_EL1);
	if (!cpuid_feature_extract_unsigned_field(pfr0, ID_AA64PFR0_EL1_EL2_SHIFT)) {
		pr_err("the CPU implements no EL2 (ID_AA64PFR0_EL1.EL2 = 0): no hypervisor to call, HVC would be UNDEFINED; not loading\n");
		return -ENODEV;
	}
	hyp_call(SMMU_HYP_FN_CALL_UID, 0, 0, 0, &r);
	if ((u32)r.a0 != SMMU_HYP_CALL_UID_0 || (u32)r.a1 != SMMU_HYP_CALL_UID_1 ||
	    (u32)r.a2 != SMMU_HYP_CALL_UID_2 || (u32)r.a3 != SMMU_HYP_CALL_UID_3) {
		pr_err("the hypervisor is not the SMMU-owning hypervisor: CALL_UID %08x %08x %08x %08x, expected %08x %08x %08x %08x; not loading\n",
		       (u32)r.a0, (u32)r.a1, (u32)r.a2, (u32)r.a3, SMMU_HYP_CALL_UID_0,
		       SMMU_HYP_CALL_UID_1, SMMU_HYP_CALL_UID_2, SMMU_HYP_CALL_UID_3);
		return -ENODEV;
	}
	hyp_call(SMMU_HYP_FN_REVISION, 0, 0, 0, &r);
	abi_major = (u32)r.a0;
	abi_minor = (u32)r.a1;
	if (abi_major != SMMU_HYP_ABI_VERSION_MAJOR || abi_minor < SMMU_HYP_ABI_VERSION_MINOR) {
		pr_err("the hypervisor's ABI is %u.%u (REVISION); this module needs %u.%u or a later %u.x; not loading\n",
		       abi_major, abi_minor, SMMU_HYP_ABI_VERSION_MAJOR, SMMU_HYP_ABI_VERSION_MINOR,
		       SMMU_HYP_ABI_VERSION_MAJOR);
		return -ENODEV;
	}
	status = hyp_call(SMMU_HYP_FN_VERSION, 0, 0, 0, &r);
	if (status != (long)(abi_major << 16 | abi_minor)) {
		pr_err("VERSION returned 0x%lx, REVISION %u.%u: not loading\n", r.a0, abi_major,
		       abi_minor);
		return -ENODEV;
	}
	for (i = 0; i < ARRAY_SIZE(required_functions); i++) {
		status = hyp_call(SMMU_HYP_FN_FEATURES, required_functions[i].id, 0, 0, &r);
		if (status != 0) {
			pr_err("FEATURES: %s (0x%08x) is not implemented (status %ld); not loading\n",
			       required_functions[i].name, required_functions[i].id, status);
			return -ENODEV;
		}
	}
	for (i = 0; i < require_count; i++) {
		status = hyp_call(SMMU_HYP_FN_FEATURES, require[i], 0, 0, &r);
		if (status != 0) {
			pr_err("FEATURES: required function 0x%08x is not implemented (status %ld); not loading\n",
			       require[i], status);
			return -ENODEV;
		}
	}
	inject_available =
		hyp_call(SMMU_HYP_FN_FEATURES, SMMU_HYP_FN_PM_INJECT_LOSS, 0, 0, &r) == 0;

	err = get_vm_info(&vi);
	if (err) {
		pr_err("VM_INFO failed (%d); not loading\n", err);
		return err;
	}
	self_id = vi.vm_id;
	vm_count = vi.vm_count;
	if (vm_count > 64 || self_id >= vm_count) {
		pr_err("VM_INFO: VM %u of %u is out of range; not loading\n", self_id, vm_count);
		return -EPROTO;
	}
	err = hyp_read(SMMU_HYP_FN_DEVICE_INFO, 0, &di, sizeof(di), &r);
	if (err == -EINVAL) {
		device_count = 0; /* index 0 is out of range: no device */
	} else if (err) {
		pr_err("DEVICE_INFO failed (%d); not loading\n", err);
		return err;
	} else {
		device_count = min_t(unsigned long, r.a1, 256);
	}
	pr_info("SMMU-owning hypervisor, ABI %u.%u: this is VM %u (%.*s) of %u, %u PCI functions, PM_INJECT_LOSS %savailable\n",
		abi_major, abi_minor, self_id, (int)strnlen(vi.name, sizeof(vi.name)), vi.name,
		vm_count, device_count, inject_available ? "" : "not ");
	return 0;
}

static int __init smmu_hyp_init(void)
{
	int err;

	buf = (void *)__get_free_page(GFP_KERNEL | __GFP_ZERO);
	if (!buf)
		return -ENOMEM;
	buf_ipa = virt_to_phys(buf);
	err = discover();
	if (!err)
		err = create_sysfs();
	if (err) {
		destroy_sysfs();
		free_page((unsigned long)buf);
		return err;
	}
	return 0;
}

static void __exit smmu_hyp_exit(void)
{
	destroy_sysfs();
	/* Never leave an allow-off vote behind that nothing would withdraw. */
	if (voted && voted_allow_off && vote(false))
		pr_warn("could not withdraw this VM's allow-off vote\n");
	free_page((unsigned long)buf);
}

module_init(smmu_hyp_init);
module_exit(smmu_hyp_exit);

MODULE_DESCRIPTION("Host kernel side of the SMMU-owning hypervisor's hypercall ABI");
MODULE_LICENSE("Dual MIT/GPL");
