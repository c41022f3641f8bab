#!/bin/sh
# The stress run's /init (xtask/src/linux/init.rs puts it in the initramfs, with its values in
# /etc/hyp-test.env): the host's two CPUs do strict-mode direct I/O on the virtio disk at once,
# each in its own region, every block checksummed; a third process makes its edu DMA through the
# kernel's DMA API (edu_dma.ko); smmu_hyp's vote cycle runs (allow-off, which really powers the
# SMMU off once the guests allow too, then need-on); CPU 1 goes offline and online again and
# again. All at once, for STRESS_SECONDS, while the guests run their tests. Each workload is one
# `test NAME ... ok` line, after a `host: stress: NAME: ...` line saying what it verified.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
# shellcheck source=lib/hyp-test/common.sh
. /lib/hyp-test/common.sh
# shellcheck source=etc/hyp-test.env
. /etc/hyp-test.env
echo "host: Linux $(uname -r) reached userspace after $(cut -d' ' -f1 /proc/uptime) s"
H=/sys/hypervisor/$KMOD
P=$H/pm
S=/tmp/stress
mkdir -p $S

now() {
    cut -d. -f1 /proc/uptime
}

# The workloads' DMA and the vote cycle's power-off exclude each other, as the vote is a promise:
# a VM that allows power-off has nothing in flight (DMA to a powered-off SMMU aborts, and an
# aborted virtio request leaves the disk broken). Each DMA step marks itself busy and then looks
# for a pause; the vote cycle sets the pause and then waits for no busy step: one of the two
# always sees the other.
# (The shell's variables are global: these helpers' own are prefixed with `_`.)
dma_step() {
    _busy=$S/busy.$1
    shift
    while :; do
        while [ -e $S/pause ]; do sleep 0.05; done
        : > "$_busy"
        [ -e $S/pause ] || break
        rm -f "$_busy"
    done
    "$@"
    _rc=$?
    rm -f "$_busy"
    return $_rc
}

# Whether a DMA step is under way.
busy() {
    for _f in $S/busy.*; do
        [ -e "$_f" ] && return 0
    done
    return 1
}

# Runs COMMAND pinned to the CPUs of MASK; while a CPU of MASK is offline, taskset cannot pin
# and the command waits for it (counted in $deferred).
pinned() {
    _mask=$1
    shift
    while :; do
        taskset "$_mask" "$@" 2> $S/err.$name && return 0
        grep -q "affinity" $S/err.$name || { cat $S/err.$name; return 1; }
        deferred=$((deferred + 1))
        sleep 0.1
    done
}

# What a workload leaves for its test: `ok DETAILS` or `FAILED: why`.
result() {
    r=$(cat $S/result.$1 2>/dev/null) || { echo "the workload left no result"; return 1; }
    case "$r" in
    "ok "*) echo "host: stress: $1: ${r#ok }" > /dev/console ;;
    *) echo "${r#FAILED: }"; return 1 ;;
    esac
}

# disk NAME CPU FIRST: direct writes and reads of 64 KiB blocks (each 16 direct requests of 4 KiB:
# in strict mode each is mapped, then unmapped and invalidated), pinned to CPU, over
# STRESS_BLOCKS blocks from block FIRST (the other CPU's region is elsewhere), each block read
# back and compared with what was written just before; at the end every block is read again and compared with what was
# written to it last (nothing the other CPU did, nor a power cycle, changed it).
disk() {
    name=$1
    mask=$((1 << $2))
    first=$3
    ios=0
    sums=0
    deferred=0
    i=0
    while [ "$(now)" -lt "$END" ]; do
        k=$((i % STRESS_BLOCKS))
        b=$((first + k))
        dd if=/dev/urandom of=$S/w.$name bs=65536 count=1 2>/dev/null
        w=$(md5sum < $S/w.$name)
        dma_step "$name" pinned $mask dd if=$S/w.$name of=/dev/vda bs=4096 seek=$((b * 16)) count=16 oflag=direct 2>/dev/null || { echo "FAILED: write $i (block $b) failed" > $S/result.$name; return; }
        dma_step "$name" pinned $mask dd if=/dev/vda of=$S/r.$name bs=4096 skip=$((b * 16)) count=16 iflag=direct 2>/dev/null || { echo "FAILED: read $i (block $b) failed" > $S/result.$name; return; }
        ios=$((ios + 32))
        [ "$(md5sum < $S/r.$name)" = "$w" ] || { echo "FAILED: block $b read back differently at I/O $ios" > $S/result.$name; return; }
        sums=$((sums + 1))
        eval "sum_$k=\$w"
        i=$((i + 1))
    done
    # How fast it goes depends on the machine's load (four vCPUs share its cores): at least one
    # block, and every block written is read again.
    [ $i -gt 0 ] || { echo "FAILED: no block written in $STRESS_SECONDS s" > $S/result.$name; return; }
    n=$((i < $STRESS_BLOCKS ? i : $STRESS_BLOCKS))
    k=0
    while [ $k -lt $n ]; do
        dma_step "$name" dd if=/dev/vda of=$S/r.$name bs=4096 skip=$(((first + k) * 16)) count=16 iflag=direct 2>/dev/null || { echo "FAILED: reading block $((first + k)) again failed" > $S/result.$name; return; }
        got=$(md5sum < $S/r.$name)
        eval "want=\$sum_$k"
        # shellcheck disable=SC2154
        [ "$got" = "$want" ] || { echo "FAILED: block $((first + k)) no longer holds what was last written to it" > $S/result.$name; return; }
        ios=$((ios + 16))
        sums=$((sums + 1))
        k=$((k + 1))
    done
    echo "ok $ios direct I/Os of 4 KiB pinned to CPU $2 (64 KiB blocks $first..$((first + STRESS_BLOCKS - 1))), $sums block checksums matched ($i blocks written and read back, $n read again at the end); $deferred waits for an offline CPU" > $S/result.$name
}

# The edu's DMA through the DMA API: 4 round trips (each buffer mapped and unmapped for its
# round) per write to the driver's file.
edu() {
    name=edu
    calls=0
    while [ "$(now)" -lt "$END" ]; do
        dma_step edu sh -c "echo 4 > $EDU_DEV/edu_dma_rounds" 2>/dev/null || { echo "FAILED: a DMA round failed: $(cat $EDU_DEV/edu_dma_stats); $(dmesg | grep edu_dma: | tail -1)" > $S/result.$name; return; }
        calls=$((calls + 1))
    done
    # shellcheck disable=SC2046
    set -- $(cat $EDU_DEV/edu_dma_stats)
    [ "$1 $3 $5 $7" = "rounds bytes mismatches timeouts" ] || { echo "FAILED: edu_dma_stats: $*" > $S/result.$name; return; }
    [ $2 = $((4 * calls)) ] && [ $6 = 0 ] && [ $8 = 0 ] && [ $2 -gt 0 ] || { echo "FAILED: $calls writes of 4 rounds, stats $*" > $S/result.$name; return; }
    echo "ok $2 DMA round trips of 4 KiB (RAM -> edu -> RAM, $4 bytes moved, each buffer mapped for its round and unmapped after), every copy equal to its source" > $S/result.$name
}

# smmu_hyp's vote cycle: pause the DMA, allow-off (power off once every VM allows), check,
# need-on (power on), resume the DMA; until the deadline and at least one real power cycle
# (bounded: the guests leave their allow-off votes once their own power test is done).
votes() {
    name=votes
    cycles=0
    offs=0
    s0=$(cat $P/suspends)
    r0=$(cat $P/resumes)
    while [ "$(now)" -lt "$END" ] || { [ $offs = 0 ] && [ "$(now)" -lt $((END + 60)) ]; }; do
        sleep 2
        : > $S/pause
        while busy; do sleep 0.05; done
        echo allow-off > $P/vote || { echo "FAILED: allow-off refused" > $S/result.$name; rm -f $S/pause; return; }
        lv=$(cat $P/last_vote)
        case "$lv" in
        "power off refusal none dma_streams "*)
            [ "$(cat $P/power)" = off ] || { echo "FAILED: last_vote '$lv' but power $(cat $P/power)" > $S/result.$name; rm -f $S/pause; return; }
            offs=$((offs + 1)) ;;
        "power on refusal waiting-for-votes dma_streams "*) ;;
        *) echo "FAILED: allow-off $cycles: $lv" > $S/result.$name; rm -f $S/pause; return ;;
        esac
        echo need-on > $P/vote || { echo "FAILED: need-on refused" > $S/result.$name; rm -f $S/pause; return; }
        # On, with no refusal once it powered on again; still waiting for another VM's vote if
        # it never went off (a Linux guest1 votes need-on while its streams are attached).
        case "$(cat $P/last_vote)" in
        "power on refusal none dma_streams "* | "power on refusal waiting-for-votes dma_streams "*) ;;
        *) echo "FAILED: need-on $cycles: $(cat $P/last_vote)" > $S/result.$name; rm -f $S/pause; return ;;
        esac
        [ "$(cat $P/power)" = on ] || { echo "FAILED: power $(cat $P/power) after need-on" > $S/result.$name; rm -f $S/pause; return; }
        rm -f $S/pause
        cycles=$((cycles + 1))
    done
    s=$(($(cat $P/suspends) - s0))
    r=$(($(cat $P/resumes) - r0))
    [ $offs -gt 0 ] || { echo "FAILED: $cycles vote cycles, the SMMU never powered off (votes_allow_off $(cat $P/votes_allow_off))" > $S/result.$name; return; }
    # Every power-off the host's vote saw is a suspend; a cycle whose allow-off waited for the
    # guests' votes may still power off when they come before the host's need-on (unseen
    # here). Never more than one per cycle (the host allowed off once each), each resumed.
    [ $s = $r ] && [ $s -ge $offs ] && [ $s -le $cycles ] || { echo "FAILED: $offs power-offs seen in $cycles cycles, but suspends +$s, resumes +$r" > $S/result.$name; return; }
    echo "ok $cycles allow-off/need-on cycles, $offs of them powered the SMMU off and on (suspends +$s, resumes +$r), $((cycles - offs)) waited for the guests' votes" > $S/result.$name
}

# CPU 1 offline and online again, until the deadline; it boots again every time.
hotplug() {
    name=hotplug
    online=/sys/devices/system/cpu/cpu$SECOND_CPU/online
    b0=$(dmesg | grep -c "CPU$SECOND_CPU: Booted secondary processor")
    n=0
    while [ "$(now)" -lt "$END" ]; do
        echo 0 > $online || { echo "FAILED: offlining CPU $SECOND_CPU failed (cycle $n)" > $S/result.$name; return; }
        [ "$(cat /sys/devices/system/cpu/online)" = "$FIRST_CPU" ] || { echo "FAILED: online CPUs $(cat /sys/devices/system/cpu/online) after offlining" > $S/result.$name; return; }
        sleep 0.5
        echo 1 > $online || { echo "FAILED: onlining CPU $SECOND_CPU failed (cycle $n)" > $S/result.$name; return; }
        [ "$(cat /sys/devices/system/cpu/online)" = "$HOST_CPU_LIST" ] || { echo "FAILED: online CPUs $(cat /sys/devices/system/cpu/online) after onlining" > $S/result.$name; return; }
        n=$((n + 1))
        sleep 1
    done
    b=$(($(dmesg | grep -c "CPU$SECOND_CPU: Booted secondary processor") - b0))
    [ $n -gt 0 ] && [ $b = $n ] || { echo "FAILED: $n off/on cycles, CPU $SECOND_CPU booted $b times" > $S/result.$name; return; }
    echo "ok $n off/on cycles of CPU $SECOND_CPU (PSCI CPU_OFF, CPU_ON), it booted again each time" > $S/result.$name
}

# Before: the disk and the edu bound, both in strict DMA domains (iommu.strict=1: an unmap is
# invalidated before it returns), the module loaded.
stress_set_up() {
    for m in $MODULES; do
        insmod /lib/modules/$m.ko || { echo "insmod $m failed"; return 1; }
    done
    insmod /lib/modules/$EDU_MODULE.ko || { echo "insmod $EDU_MODULE failed"; return 1; }
    insmod /lib/modules/$KMOD.ko || { echo "insmod $KMOD failed"; return 1; }
    for i in 1 2 3 4 5 6 7 8 9 10; do [ -b /dev/vda ] && break; sleep 1; done
    [ -b /dev/vda ] || { echo "no /dev/vda"; return 1; }
    [ -e $EDU_DEV/edu_dma_rounds ] || { echo "edu_dma did not bind the edu"; return 1; }
    for d in $DISK_DEV $EDU_DEV; do
        t=$(cat $d/iommu_group/type)
        [ "$t" = DMA ] || { echo "$d: IOMMU group type $t, not DMA (strict)"; return 1; }
    done
    [ "$(cat $P/gbpa_reset)" = abort ] || { echo "gbpa_reset $(cat $P/gbpa_reset)"; return 1; }
}

no_smmu_events_during_the_stress() {
    if dmesg | grep -q "arm-smmu-v3.*event"; then
        echo "SMMU events: $(dmesg | grep arm-smmu-v3 | grep event | head -2)"
        return 1
    fi
}

run stress_set_up stress_set_up
END=$(($(now) + STRESS_SECONDS))
echo "host: stress: $STRESS_SECONDS s from $(now) s: disk I/O on CPUs $FIRST_CPU and $SECOND_CPU, edu DMA, votes, CPU $SECOND_CPU hotplug" > /dev/console
disk disk0 $FIRST_CPU $STRESS_FIRST_BLOCK0 &
p0=$!
disk disk1 $SECOND_CPU $STRESS_FIRST_BLOCK1 &
p1=$!
edu &
p2=$!
votes &
p3=$!
hotplug &
p4=$!
wait $p0 $p1 $p2 $p3 $p4
echo "host: stress: done at $(now) s" > /dev/console
run stress_direct_io_on_cpu0_checksums_match result disk0
run stress_direct_io_on_cpu1_checksums_match result disk1
run stress_edu_dma_through_the_dma_api result edu
run stress_smmu_hyp_vote_cycle result votes
run stress_cpu1_offline_and_online result hotplug
run no_smmu_events_during_the_stress no_smmu_events_during_the_stress
echo "$passed passed, $failed failed"
icount drain
poweroff -f
