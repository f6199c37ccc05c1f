#!/usr/bin/env bash
# A one-node Slurm cluster on this Debian/Ubuntu host, for running `srun` against Tandem's MPI backend
# (Tests/TandemMPITests/SlurmTests.swift runs when `sinfo` finds an idle node). As root:
#   bash scripts/slurm_local.sh          # install slurm-wlm and munge if missing, write /etc/slurm/slurm.conf, start the daemons
#   srun -n 2 --mpi=pmix .build/release/tandem train --backend mpi ...                       # Open MPI (PMIx)
#   TANDEM_MPI=libmpich.so.12 srun -n 2 --mpi=pmi2 .build/release/tandem train --backend mpi ...   # MPICH (PMI-2)
# Refuses to overwrite an existing slurm.conf that it did not write.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "slurm_local.sh: run as root (it installs packages and starts daemons)" >&2; exit 1; }
command -v slurmctld >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm; }
conf=/etc/slurm/slurm.conf
marker="# written by tandem scripts/slurm_local.sh"
if [ -f "$conf" ] && ! grep -q "$marker" "$conf"; then
    echo "slurm_local.sh: $conf exists and was not written by this script; leaving it alone" >&2; exit 1
fi
host=$(hostname)
cpus=$(nproc)
mkdir -p /etc/slurm /var/spool/slurmd /var/spool/slurmctld /var/log/slurm /run/munge
cat > "$conf" <<CONF
$marker
ClusterName=tandemtest
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmdSpoolDir=/var/spool/slurmd
StateSaveLocation=/var/spool/slurmctld
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=$host CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
fi
chown -R munge:munge /etc/munge /run/munge 2>/dev/null || true
chmod 400 /etc/munge/munge.key
pgrep -x munged >/dev/null || su -s /bin/sh munge -c /usr/sbin/munged || /usr/sbin/munged --force
pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld
pgrep -x slurmd >/dev/null || /usr/sbin/slurmd
for _ in $(seq 1 60); do
    if sinfo -h -o %t 2>/dev/null | grep -q idle; then sinfo; exit 0; fi
    sleep 0.5
done
echo "slurm_local.sh: the node did not come up; see /var/log/slurm/slurmctld.log and slurmd.log" >&2
exit 1
