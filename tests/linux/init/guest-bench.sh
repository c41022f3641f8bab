#!/bin/sh
# /init of guest1 (a Linux guest) in `cargo xtask bench`'s guest run (put in its initramfs by
# xtask/src/linux/guest.rs, with its values in /etc/hyp-test.env): the host's 4 KiB direct-I/O
# measurement (tests/linux/init/bench.sh) on guest1's own disk, whose DMA goes through the
# paravirtual IOMMU driver (strict DMA domain: one INVALIDATE hypercall per iotlb_sync). Prints
# `linuxbench ...` lines (as `[guest1] ...` in the hypervisor's log), which xtask/src/bench.rs
# reads, then powers off (PSCI SYSTEM_OFF: this VM alone).
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin /proc /sys /dev /tmp
/bin/busybox --install -s
boot=$(icount now)
# shellcheck source=etc/hyp-test.env
. /etc/hyp-test.env
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo 1 > /proc/sys/kernel/printk
echo "linuxbench boot ${boot#cntvct } idle $(cut -d' ' -f2 /proc/uptime)"
done_() {
    echo "linuxbench done"
    icount drain
    poweroff -f
}
insmod "/lib/modules/$PVIOMMU.ko" || echo "linuxbench note: insmod $PVIOMMU failed"
for m in $MODULES; do insmod /lib/modules/$m.ko || echo "linuxbench note: insmod $m failed"; done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
if [ ! -b /dev/vda ]; then
    echo "linuxbench unavailable the disk did not appear (no /dev/vda; $(dmesg | grep -i -e virtio -e pviommu -e stream | tail -2 | tr '\n' ' '))"
    done_
fi
echo "linuxbench iommu $(cat "/sys/bus/pci/devices/$DISK_FN/iommu_group/type" 2>/dev/null || echo none) $(cat /proc/cmdline)"
# The driver's counts of its hypercalls: all of them, and the INVALIDATEs among them.
P=/sys/module/$PVIOMMU/parameters
calls() { echo "$(cat $P/hypercalls 2>/dev/null || echo -) $(cat $P/invalidates 2>/dev/null || echo -)"; }
# Let what the kernel defers after boot finish, then warm up.
sleep 2
dd if=/dev/vda of=/dev/null bs=4096 count=$N2 iflag=direct status=none
dd if=/dev/zero of=/dev/vda bs=4096 count=$N2 oflag=direct status=none
# Nothing is printed while measuring (each byte to the emulated PL011 traps): the lines are
# kept and printed at the end.
out=""
for op in read write; do
    before=$(calls)
    for _ in $(seq $REPS); do
        for n in $N $N2; do
            case $op in
            read)
                c=$(icount run dd if=/dev/vda of=/dev/null bs=4096 count=$n iflag=direct status=none 2>&1) ;;
            write)
                c=$(icount run dd if=/dev/zero of=/dev/vda bs=4096 count=$n oflag=direct status=none 2>&1) ;;
            esac
            out="$out
linuxbench $op $n $c"
        done
    done
    out="$out
linuxbench hypercalls $op $before $(calls) $IOS"
done
# One line at a time, each sent before the next.
echo "$out" | while read -r line; do
    [ -n "$line" ] && echo "$line" && icount drain
done
done_
