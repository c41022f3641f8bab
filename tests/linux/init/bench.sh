#!/bin/sh
# /init of `cargo xtask bench`'s Linux runs (put in the initramfs by xtask/src/initscript.rs,
# with its values in /etc/hyp-test.env). Prints `linuxbench ...` lines, which
# xtask/src/bench.rs reads.
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
for m in $MODULES; do insmod /lib/modules/$m.ko || echo "linuxbench note: insmod $m failed"; done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
if [ ! -b /dev/vda ]; then
    echo "linuxbench unavailable the disk did not appear (no /dev/vda; $(dmesg | grep -i -e virtio -e smmu | tail -2 | tr '\n' ' '))"
    done_
fi
g=$DISK_DEV/iommu_group/type
echo "linuxbench iommu $(cat $g 2>/dev/null || echo none) $(cat /proc/cmdline)"
if insmod /lib/modules/smmu_hyp.ko 2>/dev/null; then
    H=/sys/hypervisor/smmu_hyp/smmu
else
    H=
    echo "linuxbench module $(dmesg | grep smmu_hyp: | tail -1 | sed 's/^\[[ 0-9.]*\] //')"
fi
smmu() { [ -n "$H" ] && echo "$(cat $H/commands) $(cat $H/syncs)" || echo "- -"; }
# Let what the kernel defers after boot finish, then warm up (the first runs after boot pay for
# it: hundreds of millions of instructions once).
sleep 2
dd if=/dev/vda of=/dev/null bs=4096 count=$N2 iflag=direct status=none
dd if=/dev/zero of=/dev/vda bs=4096 count=$N2 oflag=direct status=none
# Nothing is printed while measuring (console output would add its interrupts): the lines are
# kept and printed at the end.
out=""
# Every 4 KiB I/O this /init makes on the disk (the warm-up's included): the hypervisor's
# counts of trapped SMMU accesses over the whole run are divided by it.
ios_total=$((2 * N2))
# One dd (`read`, `write`), then two at once on different blocks (`read2`, `write2`: the
# count printed is what both moved together).
for op in read write read2 write2; do
    before=$(smmu)
    for _ in $(seq $REPS); do
        for n in $N $N2; do
            case $op in
            read)
                c=$(icount run dd if=/dev/vda of=/dev/null bs=4096 count=$n iflag=direct status=none 2>&1) ;;
            write)
                c=$(icount run dd if=/dev/zero of=/dev/vda bs=4096 count=$n oflag=direct status=none 2>&1) ;;
            read2)
                c=$(icount run sh -c "dd if=/dev/vda of=/dev/null bs=4096 count=$n iflag=direct status=none & dd if=/dev/vda of=/dev/null bs=4096 count=$n skip=$n iflag=direct status=none & wait" 2>&1) ;;
            write2)
                c=$(icount run sh -c "dd if=/dev/zero of=/dev/vda bs=4096 count=$n oflag=direct status=none & dd if=/dev/zero of=/dev/vda bs=4096 count=$n seek=$n oflag=direct status=none & wait" 2>&1) ;;
            esac
            case $op in
            *2) blocks=$((2 * n)) ;;
            *) blocks=$n ;;
            esac
            out="$out
linuxbench $op $blocks $c"
        done
    done
    case $op in
    *2) ios=$((2 * IOS)) ;;
    *) ios=$IOS ;;
    esac
    ios_total=$((ios_total + ios))
    out="$out
linuxbench smmu $op $before $(smmu) $ios"
done
out="$out
linuxbench ios $ios_total"
# One line at a time, each sent before the next (a long burst came out cut or doubled).
echo "$out" | while read -r line; do
    [ -n "$line" ] && echo "$line" && icount drain
done
done_
