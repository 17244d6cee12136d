"""What /proc says of a running process, for the benchmarks that charge CPU to a server or a client."""

import os


def cpu_seconds(pid):
    """User + system CPU the process has used so far (/proc/PID/stat, fields 14 and 15, in clock ticks)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def context_switches(pid):
    """Voluntary + involuntary context switches of the process's live threads so far (/proc/PID/task/*/status)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/status") as f:
                total += sum(int(line.split()[1]) for line in f if "ctxt_switches" in line)
        except OSError:  # the thread ended
            pass
    return total
