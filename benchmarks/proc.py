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


_PEAK_WRAPPER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.close(int(sys.argv[1]))
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
os.write(int(sys.argv[1]), b"%d %d" % (usage.ru_maxrss, os.waitstatus_to_exitcode(status)))
"""


def run_with_peak(command, cwd=None, env=None, stdout=None):
    """Run `command`; (wall seconds, its peak RSS in MB, exit code, stderr text).

    The child is started by a small interpreter of its own: the ru_maxrss of a child counts the RSS of
    the process it was forked from (Linux keeps the larger), so a large benchmark process would hide
    the child's own figure."""
    import subprocess
    import sys
    import time

    read_end, write_end = os.pipe()
    started = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-c", _PEAK_WRAPPER, str(write_end), *command], cwd=cwd, env=env,
                              stdout=subprocess.DEVNULL if stdout is None else stdout, stderr=subprocess.PIPE,
                              pass_fds=(write_end,))
        wall = time.perf_counter() - started
        os.close(write_end)
        write_end = None
        with os.fdopen(read_end, "rb") as f:
            read_end = None
            maxrss, code = map(int, f.read().split())
    finally:
        for fd in (read_end, write_end):
            if fd is not None:
                os.close(fd)
    return wall, maxrss / 1024, code if done.returncode == 0 else done.returncode, done.stderr.decode()
