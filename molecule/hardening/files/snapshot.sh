#!/usr/bin/env bash
# Host-state snapshot (hardening scenario): one `name=value` line per item, sorted, for everything
# medai.llmhost can touch on a lab VM. Read-only. Compared by filter_plugins/hardening.py.
#   knob:<path>        /proc/sys/vm/*, kernel sched_*/numa_*, THP, zswap parameters, sched debugfs tunables
#   queue:<dev>:<attr> block queue attributes of the whole disks (scheduler, nr_requests, read_ahead_kb, iosched/*)
#   cgroup:<dir>:<f>   top-level slices (and their children): cpuset files, partition, subtree_control
#   thread:<unit>:<comm> / kthread:<name>   "policy rt_priority cpus" of unit threads and per-node kernel threads
#   file:<path>        sha256 (or "-> target", "dir MODE") of persistence files and installed programs
#   fstab:<mountpoint>, swap:<file>, mount:<target>, user:<name>, state:<path>
# Values are one line; a file that exists but cannot be read is "<unreadable>", a missing one "<absent>".
set -u
shopt -s nullglob
export LC_ALL=C

one() {  # print name=<content of file $2 on one line>
  local v
  if [ ! -e "$2" ]; then v='<absent>'
  elif ! { v=$(tr '\n' ' ' < "$2"); } 2>/dev/null; then v='<unreadable>'
  fi
  printf '%s=%s\n' "$1" "${v%"${v##*[! ]}"}"
}

{
# ---- kernel knobs
for f in /proc/sys/vm/* /proc/sys/kernel/sched_* /proc/sys/kernel/numa_balancing*; do
  [ -f "$f" ] && one "knob:$f" "$f"
done
# khugepaged's scan counters are counters, not settings
find /sys/kernel/mm/transparent_hugepage -type f ! -name full_scans ! -name pages_collapsed 2>/dev/null |
  while read -r f; do one "knob:$f" "$f"; done
for f in /sys/module/zswap/parameters/*; do one "knob:$f" "$f"; done
# scheduler tunables in debugfs (not `debug`: a dump of the run queues)
if [ -d /sys/kernel/debug/sched ]; then
  find /sys/kernel/debug/sched -maxdepth 2 -type f ! -name debug ! -path '*/domains/*' | while read -r f; do one "knob:$f" "$f"; done
else
  echo "knob:/sys/kernel/debug/sched=<absent>"
fi

# ---- block queues of the whole disks (virtual devices such as loop* are left out: tests attach some)
for d in /sys/block/*; do
  n=${d##*/}
  case $n in loop*|ram*|zram*|sr*|dm-*|nbd*|md*|fd*) continue ;; esac
  for a in scheduler nr_requests read_ahead_kb max_sectors_kb rotational wbt_lat_usec nomerges rq_affinity; do
    one "queue:$n:$a" "$d/queue/$a"
  done
  for f in "$d"/queue/iosched/*; do [ -f "$f" ] && one "queue:$n:iosched/${f##*/}" "$f"; done
done

# ---- cgroups: the root, every top-level slice and what llminference-like slices hold
slices=(/sys/fs/cgroup/*.slice)
echo "cgroup:slices=${slices[*]##*/}"
for c in /sys/fs/cgroup /sys/fs/cgroup/*.slice; do
  n=${c#/sys/fs/cgroup}; n=${n#/}; n=${n:-root}
  for f in cgroup.subtree_control cpuset.cpus cpuset.mems cpuset.cpus.partition cpuset.cpus.effective cpuset.mems.effective; do
    one "cgroup:$n:$f" "$c/$f"
  done
  case $n in root|system.slice|user.slice) ;;
    *) kids=("$c"/*/); kids=("${kids[@]%/}"); echo "cgroup:$n:children=${kids[*]##*/}" ;;
  esac
done
# pid 1 stays where it is; no cgroup appears inside a service's cgroup (systemd's subtree)
one "cgroup:pid1" /proc/1/cgroup
echo "cgroup:inside-services=$(find /sys/fs/cgroup -mindepth 3 -type d ! -path '/sys/fs/cgroup/user.slice/*' 2>/dev/null |
  sort | tr '\n' ' ')"

# ---- thread policies and affinity: units (threads grouped by name) and per-node kernel threads
polname() { case $1 in 0) echo other ;; 1) echo fifo ;; 2) echo rr ;; 3) echo batch ;; 5) echo idle ;; 6) echo deadline ;; *) echo "policy$1" ;; esac; }
thread_line() {  # $1 = /proc/<pid>/task/<tid>: "policy prio cpus" (nothing if the thread is gone)
  local st pol prio cpus
  st=$(sed 's/^.*) //' "$1/stat" 2>/dev/null) || return 0
  # shellcheck disable=SC2086  # the stat fields, split on purpose
  set -- "$1" $st
  pol=${40:-}; prio=${39:-}
  cpus=$(awk '/^Cpus_allowed_list/ {print $2}' "$1/status" 2>/dev/null)
  [ -n "$pol" ] && [ -n "$cpus" ] && echo "$(polname "$pol") $prio $cpus"
}
unit_pids() {  # the whole cgroup of the fixture/inference units; only the main process of ssh and journald
  # (the ssh sessions of Ansible itself run in ssh.service's cgroup on the lab image)
  case $1 in
    ssh.service|systemd-journald.service) systemctl show -p MainPID --value "$1" | grep -v '^0$' ;;
    *) cat "/sys/fs/cgroup$2/cgroup.procs" ;;
  esac
}
for u in vllm.service backup.service ssh.service systemd-journald.service; do
  cg=$(systemctl show -p ControlGroup --value "$u" 2>/dev/null)
  if [ -z "$cg" ] || [ ! -r "/sys/fs/cgroup$cg/cgroup.procs" ]; then echo "thread:$u=<not running>"; continue; fi
  echo "cgroup:unit:$u=$cg"
  for p in $(unit_pids "$u" "$cg"); do
    for t in /proc/"$p"/task/*; do
      c=$(cat "$t/comm" 2>/dev/null) || continue
      # the backup loop forks short-lived sleep/dd children: one group for all of them
      [ "$u" = backup.service ] && c=any
      l=$(thread_line "$t") && [ -n "$l" ] && echo "$u:${c// /_} $l"
    done
  done
done | sort -u | awk '
  /^cgroup:|=/ {print; next}
  { key = $1; sub(/^[^ ]+ /, ""); if (key in v) v[key] = v[key] ", " $0; else v[key] = $0 }
  END { for (k in v) print "thread:" k "=" v[k] }'
for p in $(pgrep '^(kswapd|kcompactd)[0-9]+$'); do
  echo "kthread:$(cat /proc/"$p"/comm)=$(thread_line /proc/"$p"/task/"$p")"
done

# ---- persistence files and installed programs
find /etc/sysctl.d /etc/tmpfiles.d /etc/udev/rules.d /etc/systemd/system /etc/default/grub.d /etc/medai-llmhost \
     /etc/vllm /etc/modules-load.d /etc/modprobe.d /usr/local/bin /usr/local/sbin /usr/local/lib -mindepth 1 2>/dev/null |
  sort | while read -r f; do
    if [ -L "$f" ]; then echo "file:$f=-> $(readlink "$f")"
    elif [ -d "$f" ]; then echo "file:$f=dir $(stat -c '%a %U:%G' "$f")"
    else echo "file:$f=$(sha256sum < "$f" | cut -c1-16) $(stat -c '%a %U:%G' "$f")"
    fi
  done
for f in /etc/default/grub /etc/default/irqbalance /etc/sysctl.conf; do
  if [ -e "$f" ]; then echo "file:$f=$(sha256sum < "$f" | cut -c1-16)"; else echo "file:$f=<absent>"; fi
done
awk '$1 !~ /^#/ && NF >= 2 {print "fstab:" $2 "=" $0}' /etc/fstab
awk 'NR > 1 {print "swap:" $1 "=" $2}' /proc/swaps
findmnt -rn -o TARGET,SOURCE,FSTYPE -t xfs,ext4,ext3,btrfs | awk '{print "mount:" $1 "=" $2 " " $3}'
echo "user:vllm=$(getent passwd vllm || echo '<absent>')"

# ---- the collection's state directory
if [ -d /var/lib/medai-llmhost ]; then
  find /var/lib/medai-llmhost -type f | sort | while read -r f; do echo "state:$f=$(sha256sum < "$f" | cut -c1-16)"; done
  # what is still recorded (rollback should leave nothing recorded)
  python3 -c 'import json,sys; print("state:originals-records=" + " ".join(sorted(json.load(open(sys.argv[1])).get("settings", {}))))' \
    /var/lib/medai-llmhost/originals.json 2>/dev/null || echo "state:originals-records="
else
  echo "state:/var/lib/medai-llmhost=<absent>"
  echo "state:originals-records="
fi
} | sort
