# shellcheck shell=sh
# The smmu_hyp module's tests (the host kernel's side of the hypercall ABI: the module and its
# sysfs files), sourced by host.sh from /lib/hyp-test/kmod.sh; host.sh runs them after its own.
# What they expect (the ABI version, this VM, its functions, the header's structure fields, the
# errno table, the run's PM options) is in /etc/hyp-test.env, from xtask/src/kmod.rs.
# sysfs numbers and `wc -l` counts are compared as words: their command substitutions split.
# shellcheck disable=SC2046
H=/sys/hypervisor/$KMOD
KO=/lib/modules/$KMOD.ko

kmod_loads_and_finds_the_hypervisor() {
    insmod $KO selftest=1 || { echo "insmod $KO failed"; return 1; }
    avail=available
    [ "$PM_INJECT" = 1 ] || avail="not available"
    want="$KMOD: SMMU-owning hypervisor, ABI $KMOD_ABI: this is VM $VM_ID ($VM_NAME) of $VM_COUNT, $KMOD_DEVICE_COUNT PCI functions, PM_INJECT_LOSS $avail"
    dmesg | grep -qF "$want" || { echo "no '$want' in dmesg: $(dmesg | grep $KMOD)"; return 1; }
    [ "$(cat $H/abi_version)" = $KMOD_ABI ] || { echo "abi_version $(cat $H/abi_version)"; return 1; }
    [ "$(cat $H/vm_id)" = $VM_ID ] || { echo "vm_id $(cat $H/vm_id)"; return 1; }
}

kmod_vm_table() {
    [ "$(cat $H/vms/count)" = $VM_COUNT ] || { echo "vms/count $(cat $H/vms/count)"; return 1; }
    got=$(ls $H/vms | tr '\n' ' ')
    [ "$got" = "$VM_IDS count peak_running " ] || { echo "vms/: $got"; return 1; }
    own=$H/vms/$VM_ID
    for kv in state=running name=$VM_NAME cpu=$VM_CPU mem_base=$VM_MEM_BASE mem_size=$VM_MEM_SIZE; do
        k=${kv%%=*}
        [ "$(cat $own/$k)" = "${kv#*=}" ] || { echo "vms/$VM_ID/$k is '$(cat $own/$k)', not '${kv#*=}'"; return 1; }
    done
    for v in $VM_IDS; do
        case "$(cat $H/vms/$v/state)" in running|stopped|not-started) ;; *) echo "vms/$v/state: $(cat $H/vms/$v/state)"; return 1;; esac
        case "$(cat $H/vms/$v/vote)" in need-on|allow-off) ;; *) echo "vms/$v/vote: $(cat $H/vms/$v/vote)"; return 1;; esac
        if [ $v != $VM_ID ] && [ -e $H/vms/$v/name ]; then echo "vms/$v/name exists: VM_INFO only describes the caller"; return 1; fi
    done
    p=$(cat $H/vms/peak_running)
    [ "$p" -ge 1 ] && [ "$p" -le $VM_COUNT ] || { echo "peak_running $p"; return 1; }
}

kmod_devices() {
    [ "$(cat $H/devices/count)" = $KMOD_DEVICE_COUNT ] || { echo "devices/count $(cat $H/devices/count)"; return 1; }
    got=""
    matched=0
    linux_mem=0
    for d in $H/devices/[0-9]*; do
        a=$(cat $d/pci_addr)
        got="$got$a $(cat $d/vendor) $(cat $d/device) $(cat $d/stream_id);"
        r=/sys/bus/pci/devices/0000:$a/resource
        # Linux's memory BARs (IORESOURCE_MEM, 0x200) among lines 1..6 of its resource file.
        linux_mem=$((linux_mem + $(head -6 $r | while read s e fl; do [ $((fl & 0x200)) != 0 ] && echo; done | wc -l)))
        while read i ipa size; do
            set -- $(sed -n "$((i + 1))p" $r)
            [ $(($3 & 0x200)) != 0 ] || continue
            [ $(($1)) = $((ipa)) ] && [ $(($2 - $1 + 1)) = $((size)) ] || { echo "$a BAR$i: hypervisor $ipa+$size, Linux $1-$2"; return 1; }
            matched=$((matched + 1))
        done < $d/bars
    done
    got=$(echo "$got" | tr ';' '\n' | grep . | sort | tr '\n' ';')
    [ "$got" = "$KMOD_DEVICES;" ] || { echo "devices: $got"; return 1; }
    [ $matched = $linux_mem ] && [ $matched -gt 0 ] || { echo "$matched memory BARs match Linux's, which has $linux_mem"; return 1; }
}

kmod_smmu_counters() {
    got=$(ls $H/smmu | tr '\n' ' ')
    [ "$got" = "$SMMU_FILES " ] || { echo "smmu/: $got"; return 1; }
    for f in $SMMU_FIELDS; do
        v=$(cat $H/smmu/$f) || return 1
        case "$v" in ''|*[!0-9]*) echo "smmu/$f: '$v'"; return 1;; esac
        eval "s_$f=$v"
    done
    [ $s_commands -ge $s_syncs ] || { echo "commands $s_commands < syncs $s_syncs"; return 1; }
    [ $s_events_routed -le $s_events ] || { echo "events routed $s_events_routed > taken $s_events"; return 1; }
    [ $s_ste_writes -gt 0 ] && [ $s_heap_in_use -gt 0 ] || { echo "ste_writes $s_ste_writes heap_in_use $s_heap_in_use"; return 1; }
    [ $(cat $H/smmu/commands) -ge $s_commands ] || { echo "commands went down"; return 1; }
}

kmod_events() {
    i=0
    while :; do
        out=$(cat $H/events) || { echo "reading events failed"; return 1; }
        set -- $(echo "$out" | head -1)
        [ "$1 $3 $5 $7" = "records pending lost_notices dropped" ] || { echo "events header: $(echo "$out" | head -1)"; return 1; }
        n=$2
        pending=$4
        [ $n -le $EVENT_READ_MAX ] && [ $(echo "$out" | wc -l) = $((n + 1)) ] || { echo "$n records, $(echo "$out" | wc -l) lines"; return 1; }
        bad=$(echo "$out" | tail -n +2 | grep -cvE '^sid=0x[0-9a-f]+ type=0x[0-9a-f]{2}( [0-9a-f]{16}){4}$')
        [ $bad = 0 ] || { echo "malformed records: $out"; return 1; }
        [ $pending = 0 ] && break
        i=$((i + 1))
        [ $i -lt 64 ] || { echo "events never drained ($pending pending)"; return 1; }
    done
}

kmod_errors_map_to_errno() {
    out=$(cat $H/selftest) || { echo "reading selftest failed"; return 1; }
    [ $(echo "$out" | wc -l) = $SELFTEST_CHECKS ] || { echo "$(echo "$out" | wc -l) checks: $out"; return 1; }
    failed=$(echo "$out" | grep -v ': ok$')
    [ -z "$failed" ] || { echo "$failed"; return 1; }
    # Every (status, errno) pair is the documented one.
    echo "$out" | sed -n 's/.*: status \(-[0-9]*\) errno \(-[0-9]*\): ok$/\1:\2/p' | while read pair; do
        case " $ERRNO_PAIRS " in *" $pair "*) ;; *) echo "status:errno $pair is not in the table"; exit 1;; esac
    done || return 1
    for s in -4 -5 -6 -9 -3 -1; do
        echo "$out" | grep -q ": status $s errno" || { echo "no check returned status $s"; return 1; }
    done
}

kmod_pm_status_and_vote() {
    P=$H/pm
    got=$(ls $P | tr '\n' ' ')
    [ "$got" = "$PM_FILES " ] || { echo "pm/: $got"; return 1; }
    for f in $PM_NUMBERS; do
        case "$(cat $P/$f)" in ''|*[!0-9]*) echo "pm/$f: '$(cat $P/$f)'"; return 1;; esac
    done
    [ "$(cat $P/vm_count)" = $VM_COUNT ] && [ "$(cat $P/gbpa_reset)" = $GBPA_RESET ] && [ "$(cat $P/power)" = on ] || { echo "vm_count $(cat $P/vm_count) gbpa_reset $(cat $P/gbpa_reset) power $(cat $P/power)"; return 1; }
    case "$(cat $P/refusal)" in none|waiting-for-votes|bypass-reset-with-dma|disabled|smmu-failed) ;; *) echo "refusal $(cat $P/refusal)"; return 1;; esac
    [ "$(cat $P/vote)" = need-on ] && [ "$(cat $P/last_vote)" = none ] || { echo "vote $(cat $P/vote), last $(cat $P/last_vote)"; return 1; }
    # A word that is not a vote is refused before any call: -EINVAL.
    err=$( (echo maybe > $P/vote) 2>&1 ) && { echo "the vote 'maybe' was accepted"; return 1; }
    case "$err" in *"Invalid argument"*) ;; *) echo "vote 'maybe': $err"; return 1;; esac
    [ "$(cat $P/last_vote)" = none ] || { echo "a refused vote reached the hypervisor"; return 1; }
    # The guests leave allow-off votes once their own PM test is done: wait (bounded) for them, so
    # that this VM's vote neither races their test nor is the last one by chance.
    i=0
    while [ $(($(cat $P/votes_allow_off) & $OTHERS_MASK)) != $OTHERS_MASK ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
    s0=$(cat $P/suspends)
    r0=$(cat $P/resumes)
    echo allow-off > $P/vote || { echo "allow-off refused"; return 1; }
    [ "$(cat $P/vote)" = allow-off ] && [ "$(cat $H/vms/$VM_ID/vote)" = allow-off ] || { echo "vote reads $(cat $P/vote) after allow-off"; return 1; }
    [ $(($(cat $P/votes_allow_off) & $SELF_BIT)) != 0 ] || { echo "votes_allow_off $(cat $P/votes_allow_off)"; return 1; }
    dma=$(cat $P/dma_streams)
    lv=$(cat $P/last_vote)
    case "$lv" in
    "power off refusal none dma_streams $dma")
        [ "$(cat $P/power)" = off ] && [ $(cat $P/suspends) = $((s0 + 1)) ] || { echo "after a power-off vote: power $(cat $P/power), suspends $s0 -> $(cat $P/suspends)"; return 1; }
        [ $(($(cat $P/votes_allow_off) & $ALL_MASK)) = $ALL_MASK ] || { echo "powered off without every vote"; return 1; }
        off=1 ;;
    "power on refusal waiting-for-votes dma_streams $dma"|"power on refusal bypass-reset-with-dma dma_streams $dma")
        off=0 ;;
    *) echo "last_vote after allow-off: $lv (dma_streams $dma)"; return 1;;
    esac
    echo need-on > $P/vote || { echo "need-on refused"; return 1; }
    [ "$(cat $P/vote)" = need-on ] && [ "$(cat $P/power)" = on ] || { echo "after need-on: vote $(cat $P/vote), power $(cat $P/power)"; return 1; }
    [ "$(cat $P/last_vote)" = "power on refusal none dma_streams $dma" ] || { echo "last_vote after need-on: $(cat $P/last_vote)"; return 1; }
    [ $(cat $P/resumes) = $((r0 + off)) ] || { echo "resumes $r0 -> $(cat $P/resumes) (power-off: $off)"; return 1; }
    [ -e $P/inject_loss ] && [ "$PM_INJECT" = 0 ] && { echo "inject_loss exists although FEATURES refuses PM_INJECT_LOSS"; return 1; }
    echo "host: smmu_hyp: the host's allow-off vote $( [ $off = 1 ] && echo 'powered the SMMU off (every VM allowed)' || echo 'was not the last one')" > /dev/console
}

# The SMMU powers off only when every VM allows it: the guests allow, the host keeps doing disk
# I/O (its vote need-on) and power stays on; it stops using its devices and allows too: off;
# it needs the SMMU again: on, and what it wrote reads back through the SMMU.
kmod_vote_cycle_with_disk_io() {
    P=$H/pm
    [ $(($(cat $P/votes_allow_off) & $OTHERS_MASK)) = $OTHERS_MASK ] || { echo "the guests' allow-off votes are not there ($(cat $P/votes_allow_off))"; return 1; }
    [ "$(cat $P/vote)" = need-on ] && [ "$(cat $P/power)" = on ] || { echo "vote $(cat $P/vote), power $(cat $P/power) at the start"; return 1; }
    s0=$(cat $P/suspends)
    r0=$(cat $P/resumes)
    # 4 x 64 KiB from 2.5 MiB on (no other test writes there).
    dd if=/dev/urandom of=/tmp/cycle bs=65536 count=1 2>/dev/null
    for i in 0 1 2 3; do
        dd if=/tmp/cycle of=/dev/vda bs=65536 seek=$((40 + i)) count=1 oflag=direct conv=fsync 2>/dev/null || { echo "write $i failed"; return 1; }
        [ "$(cat $P/power)" = on ] || { echo "power went off during the host's I/O"; return 1; }
    done
    [ "$(cat $P/suspends)" = $s0 ] || { echo "suspends $s0 -> $(cat $P/suspends) while the host needed the SMMU"; return 1; }
    # It stops using its devices: nothing in flight, nothing cached; then it allows power-off.
    sync
    echo 3 > /proc/sys/vm/drop_caches
    echo allow-off > $P/vote || { echo "allow-off refused"; return 1; }
    if [ $GBPA_RESET = abort ]; then
        [ "$(cat $P/power)" = off ] && [ "$(cat $P/suspends)" = $((s0 + 1)) ] || { echo "every VM allows, yet power $(cat $P/power), suspends $s0 -> $(cat $P/suspends)"; return 1; }
    else
        [ "$(cat $P/power)" = on ] && [ "$(cat $P/refusal)" = bypass-reset-with-dma ] || { echo "a bypass-reset platform powered off: $(cat $P/power) $(cat $P/refusal)"; return 1; }
    fi
    echo need-on > $P/vote || { echo "need-on refused"; return 1; }
    [ "$(cat $P/power)" = on ] || { echo "power $(cat $P/power) after need-on"; return 1; }
    [ $GBPA_RESET != abort ] || [ "$(cat $P/resumes)" = $((r0 + 1)) ] || { echo "resumes $r0 -> $(cat $P/resumes)"; return 1; }
    want=$(md5sum < /tmp/cycle)
    for i in 0 1 2 3; do
        got=$(dd if=/dev/vda bs=65536 skip=$((40 + i)) count=1 iflag=direct 2>/dev/null | md5sum)
        [ "$got" = "$want" ] || { echo "block $i reads differently after the power cycle"; return 1; }
    done
    echo "host: smmu_hyp: disk I/O kept the SMMU on; every VM allowing powered it off ($(cat $P/suspends) suspends); the host's need-on brought it back and its data read back" > /dev/console
}

kmod_power_loss_injection() {
    P=$H/pm
    if [ "$PM_INJECT" = 0 ]; then
        [ ! -e $P/inject_loss ] || { echo "inject_loss exists although FEATURES refuses PM_INJECT_LOSS"; return 1; }
        return 0
    fi
    [ -e $P/inject_loss ] || { echo "no inject_loss although FEATURES offers PM_INJECT_LOSS"; return 1; }
    err=$( (echo soon > $P/inject_loss) 2>&1 ) && { echo "inject_loss 'soon' was accepted"; return 1; }
    case "$err" in *"Invalid argument"*) ;; *) echo "inject_loss 'soon': $err"; return 1;; esac
    # Nothing may DMA between the loss and the hypervisor noticing it (at its next SMMU register
    # access): the SMMU is back at its reset state, abort, and a virtio request whose DMA aborts
    # leaves QEMU's disk broken and Linux waiting. So the hypervisor must touch the SMMU first:
    # this VM's allow-off vote, the last one once the guests have left theirs, runs the suspend.
    [ $(($(cat $P/votes_allow_off) & $OTHERS_MASK)) = $OTHERS_MASK ] || { echo "the guests' allow-off votes are not there ($(cat $P/votes_allow_off)): no way to make the hypervisor notice a loss before the disk's next DMA"; return 1; }
    # 64 KiB at 3 MiB (sector 6144 on), which no other test writes: read before the loss.
    before=$(dd if=/dev/vda bs=65536 skip=48 count=1 iflag=direct 2>/dev/null | md5sum)
    label=$(dd if=/dev/vda bs=512 skip=6144 count=1 iflag=direct 2>/dev/null | head -n 1)
    [ "$label" = "smmu-hyp test disk sector 6144" ] || { echo "before the loss, sector 6144 reads '$label'"; return 1; }
    l0=$(cat $P/losses)
    echo 0 > $P/inject_loss || { echo "injecting a loss failed"; return 1; }
    echo allow-off > $P/vote || { echo "allow-off after the loss refused"; return 1; }
    echo need-on > $P/vote || { echo "need-on after the loss refused"; return 1; }
    [ "$(cat $P/losses)" = $((l0 + 1)) ] || { echo "losses $l0 -> $(cat $P/losses) after the loss and a power cycle"; return 1; }
    [ "$(cat $P/power)" = on ] || { echo "power $(cat $P/power) after need-on"; return 1; }
    # The disk's DMA translates again, to the right place.
    after=$(dd if=/dev/vda bs=65536 skip=48 count=1 iflag=direct 2>/dev/null | md5sum)
    [ "$after" = "$before" ] || { echo "after the loss, the same 64 KiB read differently"; return 1; }
}

kmod_unload_and_refusal() {
    # Unloading withdraws an allow-off vote the module left.
    echo allow-off > $H/pm/vote || return 1
    rmmod $KMOD || { echo "rmmod failed"; return 1; }
    [ ! -e $H ] || { echo "$H still exists after rmmod"; return 1; }
    # A function FEATURES does not report implemented: the module refuses to load, and says why.
    if insmod $KO require=0xc60000ff 2>/dev/null; then rmmod $KMOD; echo "loaded although FEATURES refuses 0xc60000ff"; return 1; fi
    want="$KMOD: FEATURES: required function 0xc60000ff is not implemented (status -1); not loading"
    dmesg | grep -qF "$want" || { echo "no '$want' in dmesg"; return 1; }
    [ ! -e $H ] || { echo "$H exists after a refused load"; return 1; }
    insmod $KO || { echo "reloading failed"; return 1; }
    [ "$(cat $H/pm/vote)" = need-on ] || { echo "vote after unload and reload: $(cat $H/pm/vote)"; return 1; }
}
