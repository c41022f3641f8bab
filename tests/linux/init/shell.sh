#!/bin/sh
# /init of `cargo xtask run --host linux --shell` (xtask/src/linux/init.rs puts it in the
# initramfs, with its values in /etc/hyp-test.env): loads the kernel's modules, edu_dma (the edu
# doing DMA through the DMA API) and smmu_hyp, then hands the console to busybox init, which runs
# a login shell on ttyS0 (respawned if it exits). `poweroff` ends the run: init stops everything
# and powers off (PSCI SYSTEM_OFF, which the hypervisor sees).
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
# shellcheck source=lib/hyp-test/common.sh
. /lib/hyp-test/common.sh
# shellcheck source=etc/hyp-test.env
. /etc/hyp-test.env
echo "host: Linux $(uname -r) reached userspace after $(cut -d' ' -f1 /proc/uptime) s"
for m in $MODULES $EDU_MODULE $KMOD; do
    insmod /lib/modules/$m.ko || echo "host: shell: insmod $m failed"
done
for _ in 1 2 3 4 5 6 7 8 9 10; do [ -b /dev/vda ] && break; sleep 1; done
[ -b /dev/vda ] || echo "host: shell: no /dev/vda"
printf '%s\n' "ttyS0::respawn:-/bin/sh" "::shutdown:/bin/sync" > /etc/inittab
printf '%s\n' ". /lib/hyp-test/profile.sh" > /etc/profile
echo "host: shell: $(ls /sys/hypervisor/$KMOD >/dev/null 2>&1 && echo "$KMOD loaded" || echo "$KMOD NOT loaded"); the disk is $DISK_DEV (/dev/vda); \`poweroff\` ends the run"
exec /bin/busybox init
