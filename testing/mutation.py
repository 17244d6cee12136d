"""Mutation testing of the modules where a silent wrong value does the most harm (./run.sh mutation).

    ./run.sh mutation                 the client and server groups below, then benchmarks/results/mutation.md
    ./run.sh mutation scheduling      one group (client, server or scheduling: the last is slow, see README "Tests")

mutmut (pinned in requirements-dev.txt) changes one thing at a time in a module (a `<` for a `<=`, a
constant, a dropped argument) and runs the tests that call the changed function; a change no test notices
"survived". Chosen over cosmic-ray, measured on tfrecord.py with the same tests: 259 mutants in 19 s
(12.4 a second) against cosmic-ray's 414 at about 0.4 a second, fewer equivalent ones (cosmic-ray swaps
each operator for every other), and it never edits the work tree (cosmic-ray mutates files in place:
a run stopped by a signal left a mutant behind).

What that costs, and how this runner deals with it:
- mutmut picks the tests of a mutant by the functions they call in the pytest process; a function reached
  only through a subprocess (a script, the server) is "no tests", reported as such, never as killed.
- It names a module by its path, so the client's `python/tfsclient/` is laid at the top of the copy.
- It works in a copy: each group runs in `.mutation/GROUP/` (git-ignored), made anew from the tracked
  files, with links to .venv and ../shared; the work tree is never touched.
"""

import argparse
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

from .paths import MODELS, REPO, SHARED

SCRATCH = os.path.join(REPO, ".mutation")
RESULTS = os.path.join(REPO, "benchmarks", "results", "mutation.md")

# group -> where its package lies in the copy, the modules mutated, the tests that may kill them.
GROUPS = {
    "client": {
        "package": "tfsclient",  # copied from python/tfsclient to the top of the copy
        "modules": ["tfsclient/codec.py", "tfsclient/predict_inputs.py", "tfsclient/tfrecord.py"],
        "tests": ["python/tests/test_codec.py", "python/tests/test_tfrecord.py", "python/tests/test_predict_inputs.py"],
    },
    "server": {
        "package": "server",
        "modules": ["server/servables/tensors.py", "server/core/source.py", "server/model_servers/request_log.py",
                    "server/model_servers/rest/json_writer.py"],
        "tests": ["server/tests/servables/test_tensors.py", "server/tests/core/test_manager.py",
                  "server/tests/model_servers/rest/test_rest_json.py",
                  "server/tests/model_servers/test_request_logger.py", "server/tests/model_servers/test_log_faults.py"],
    },
    # The version manager and the batch scheduler: their tests wait on threads, so a mutant that stalls one
    # costs its timeout (manager.py took about 14 min on 2 CPUs; batching.py, about 30 more by the rate seen): a group
    # of its own.
    "scheduling": {
        "package": "server",
        "modules": ["server/core/manager.py", "server/servables/batching.py"],
        "tests": ["server/tests/core/test_manager.py", "server/tests/servables/test_batch_scheduler.py"],
    },
}
DEFAULT_GROUPS = ["client", "server"]
STATUSES = ["killed", "survived", "no tests", "timeout", "suspicious", "skipped", "segfault", "not checked"]


def tracked_files():
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True)
    if listed.returncode != 0:
        raise Failure(f"{REPO} is not a git checkout: the copy to mutate is made of the files git tracks")
    return [name for name in listed.stdout.decode().split("\0") if name]


MUTMUT = os.path.join(REPO, ".venv", "bin", "mutmut")


class Failure(Exception):
    """What stops a run, said in one line (exit 1)."""


def run_to_the_end(command, cwd):
    """Run `command` in a process group of its own; a signal to this runner (Ctrl-C, SIGTERM) ends the whole
    group, so no mutmut worker outlives the run. (exit code, stderr)."""
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        _, stderr = process.communicate()
        return process.returncode, stderr
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def make_copy(group):
    """A fresh copy of the tracked tree in .mutation/GROUP, with [tool.mutmut] for the group."""
    spec = GROUPS[group]
    root = os.path.join(SCRATCH, group)
    if os.path.lexists(root) and not os.path.isdir(root) or os.path.islink(root):
        os.unlink(root)
    shutil.rmtree(root, ignore_errors=True)
    for name in tracked_files():
        os.makedirs(os.path.join(root, os.path.dirname(name)), exist_ok=True)
        shutil.copy2(os.path.join(REPO, name), os.path.join(root, name))
    if os.path.isdir(MODELS):  # the built toy models (not tracked)
        shutil.copytree(MODELS, os.path.join(root, "models", "save"))
    if spec["package"] == "tfsclient":
        shutil.copytree(os.path.join(root, "python", "tfsclient"), os.path.join(root, "tfsclient"))
    # The tests run in mutants/, as a checkout of their own: the server runs with its .venv, and testing.paths
    # looks for ../shared beside it.
    os.makedirs(os.path.join(root, "mutants"))
    os.symlink(os.path.join(REPO, ".venv"), os.path.join(root, "mutants", ".venv"))
    os.symlink(SHARED, os.path.join(root, "shared"))
    config = {
        "source_paths": [spec["package"]],
        "only_mutate": spec["modules"],
        "also_copy": ["testing", "conftest.py", "python", "server", "models"],
        "pytest_add_cli_args_test_selection": spec["tests"],
        "pytest_add_cli_args": ["-p", "no:cacheprovider", "-p", "no:randomly"],
        # A mutant whose tests take 4 times their usual time (plus 2 s) counts as caught ("timeout"); mutmut's
        # default, 15 times, spent most of a run waiting out mutants that stall the batch scheduler's tests.
        "timeout_multiplier": 4.0,
        "timeout_constant": 2.0,
    }
    with open(os.path.join(root, "pyproject.toml"), "a") as f:
        f.write("\n[tool.mutmut]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in config.items()))
    return root


def run_group(group):
    """Run mutmut over the group; {module: {status: count}} and the survivors' diffs."""
    root = make_copy(group)
    started = time.monotonic()
    returncode, stderr = run_to_the_end([MUTMUT, "run"], root)
    seconds = time.monotonic() - started
    if returncode != 0:
        raise Failure(f"mutmut run failed in {root} (exit {returncode}); its last lines:\n"
                      + "\n".join(stderr.splitlines()[-5:]))
    return collect(root) + (seconds,)


def module_of(mutant):
    """The module a mutmut mutant name belongs to: server.tensors for server.tensors.x_to_ndarray__mutmut_3."""
    return mutant.split(".x_")[0].split(".xǁ")[0]


def collect(root):
    """({module: {status: count}}, [(name, diff lines)] of every survivor) of the mutmut run in `root`."""
    listed = subprocess.run([MUTMUT, "results", "--all", "true"], cwd=root, capture_output=True, text=True,
                            check=True).stdout
    counts, survivors = {}, []
    for line in listed.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if not name:
            continue
        counts.setdefault(module_of(name), dict.fromkeys(STATUSES, 0))
        counts[module_of(name)][status] = counts[module_of(name)].get(status, 0) + 1
        if status == "survived":
            shown = subprocess.run([MUTMUT, "show", name], cwd=root, capture_output=True, text=True).stdout
            survivors.append((name, [row for row in shown.splitlines()
                                     if row[:1] in "+-" and not row.startswith(("+++", "---"))]))
    return counts, survivors


_STRING = re.compile(r"""[rbfu]*("([^"\\]|\\.)*"|'([^'\\]|\\.)*')""", re.IGNORECASE)
_LOG_CALL = re.compile(r"(log|logging|logger)\.(debug|info|warning|error|exception|critical)\(")
_STRING_FIRST = re.compile(r"[rbfu]*[\"']", re.IGNORECASE)
_MESSAGE_CONTEXT = re.compile(r"raise |Error\(|log\.\w+\(|warn|message|^[rbfu]*[\"']", re.IGNORECASE)


def is_text(diff):
    """Whether a mutant only changes the text of a message (an error's or a log line's): its lines are the
    same once string literals (and None put in their place) are blanked, and they build a message.
    A heuristic: docs/mutation.md says how these were checked."""
    removed = [row[1:].strip() for row in diff if row.startswith("-")]
    added = [row[1:].strip() for row in diff if row.startswith("+")]
    if not removed or len(removed) != len(added):
        return False
    for old, new in zip(removed, added):
        if _LOG_CALL.match(old) or _STRING_FIRST.match(old) and _LOG_CALL.match(new) is None and \
                _STRING_FIRST.match(new):
            continue  # a log call's arguments, or the continuation line of a message: only the words change
        blank = lambda line: _STRING.sub("S", line).replace("None", "S")  # noqa: E731
        if blank(old) != blank(new) or not _MESSAGE_CONTEXT.search(old):
            return False
    return True


def save_group(group, counts, survivors, seconds):
    with open(os.path.join(SCRATCH, f"{group}.json"), "w") as f:
        json.dump({"counts": counts, "survivors": survivors, "seconds": seconds}, f)


def saved_groups():
    """{group: (counts, survivors, seconds)} of the latest run of each group (a run of one group keeps the
    other's figures in the report)."""
    results = {}
    for group in GROUPS:
        try:
            with open(os.path.join(SCRATCH, f"{group}.json")) as f:
                saved = json.load(f)
        except (OSError, ValueError):
            continue
        results[group] = (saved["counts"], saved["survivors"], saved["seconds"])
    return results


def write_report(results):
    lines = ["# Mutation testing", "",
             f"`./run.sh mutation` on {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, mutmut {_version()}. "
             "Killed: a test failed (or took 4 times its usual time: timeout). Survived: every test that calls "
             "the function in the pytest process passed; *text*: the mutant only changes the words of an error or "
             "log message, which the tests assert through the scripts and the server as subprocesses, out of "
             "mutmut's sight; *logic*: anything else, listed below. No tests: no test calls the function in the "
             "pytest process (it is reached only through a script or the server). docs/mutation.md reads the "
             "logic survivors.", "",
             "| module | mutants | killed | timeout | survived: logic | survived: text | no tests | not run |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for group, (counts, survivors, seconds) in results.items():
        survivors[:] = [(name, diff) for name, diff in survivors if not is_text(diff)]  # the logic ones
        for module, c in sorted(counts.items()):
            total = sum(c.get(s, 0) for s in STATUSES)
            logic = sum(module_of(name) == module for name, _ in survivors)
            lines.append(f"| `{module}` | {total} | {c['killed']} | {c['timeout']} | {logic} "
                         f"| {c['survived'] - logic} | {c['no tests']} | {c.get('not checked', 0)} |")
        stopped = " (stopped before the end)" if any(c.get("not checked") for c in counts.values()) else ""
        lines.append(f"| *{group}: {int(seconds) // 60} min {int(seconds) % 60} s{stopped}* | | | | | | | |")
    lines += ["", "## Logic survivors", ""]
    for group, (_, survivors, _) in results.items():
        for name, diff in survivors:
            lines.append(f"- `{name}`")
            lines += [f"  - `{row.strip()}`" for row in diff]
    with open(RESULTS, "w") as f:
        f.write("\n".join(lines) + "\n")


def _version():
    from importlib.metadata import version
    return version("mutmut")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="./run.sh mutation", description=__doc__.splitlines()[0])
    parser.add_argument("groups", nargs="*", metavar="GROUP",
                        help=f"{', '.join(GROUPS)} (default: {' and '.join(DEFAULT_GROUPS)})")
    parser.add_argument("--report", action="store_true",
                        help="write benchmarks/results/mutation.md again from the groups' last runs, running nothing")
    args = parser.parse_args(argv)
    unknown = [g for g in args.groups if g not in GROUPS]
    if unknown:
        parser.error(f"no group {unknown[0]!r}: use {', '.join(GROUPS)}")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM as Ctrl-C: the finally blocks run
    try:
        if not os.access(MUTMUT, os.X_OK):
            raise Failure(f"no mutmut at {MUTMUT}: run ./run.sh mutation, which installs requirements-dev.txt")
        if os.path.lexists(SCRATCH) and not os.path.isdir(SCRATCH):
            raise Failure(f"{SCRATCH} is in the way: it must be a folder (the runs' copies); remove it")
        os.makedirs(SCRATCH, exist_ok=True)
        with open(os.path.join(SCRATCH, ".lock"), "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise Failure("another ./run.sh mutation is running in this checkout: wait for it") from None
            for group in [] if args.report else args.groups or DEFAULT_GROUPS:
                print(f"== mutmut over {group}: {', '.join(GROUPS[group]['modules'])}", file=sys.stderr, flush=True)
                counts, survivors, seconds = run_group(group)
                save_group(group, counts, survivors, seconds)
                print(f"   {sum(c['survived'] for c in counts.values())} survived of "
                      f"{sum(sum(c.get(s, 0) for s in STATUSES) for c in counts.values())} in {seconds:.0f} s",
                      file=sys.stderr)
            write_report(saved_groups())
    except Failure as e:
        print(f"./run.sh mutation: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("./run.sh mutation: stopped; the work tree is as it was (the copy in .mutation/ is left)",
              file=sys.stderr)
        return 130
    print(f"== written {os.path.relpath(RESULTS, REPO)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
