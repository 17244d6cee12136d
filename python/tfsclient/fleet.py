"""--fleet: one operation on every replica behind a target, each with its own channel, and one report.

A Kubernetes Service (or any load balancer) puts several TF Serving replicas behind one name, and a gRPC
channel stays on one of them; --fleet resolves the name to every address (as a headless Service returns
them: all A and AAAA records) and asks each replica itself, concurrently (at most --fleet-parallel at once).

The report has one line (or block) per replica, then a summary line; the exit status is 0 only when every
replica answered and they agree. A script says what its operation is with a View: how to ask one replica,
how to show its answer, and how two answers differ.
"""

import dataclasses
import ipaddress
import queue
import socket
import sys
import threading
import time

import grpc

from . import argtypes, output, transport
from .errors import InputError, OutputError, ServerError
from .text import one_line

DEFAULT_PARALLEL = 16
DEFAULT_PORT = 443  # gRPC's, for a target without a port (gRPC's naming doc)
_SINGLE = ("unix:", "unix-abstract:", "vsock:")  # one server each: a fleet of one


def add_arguments(p):
    g = p.add_argument_group("fleet (every replica behind the server address)")
    g.add_argument("--fleet", action=argtypes.Switch, default=argtypes.env("TFS_FLEET", False),
                   help="resolve -s to every address (dns:///NAME:PORT or NAME:PORT: all A/AAAA records; "
                        "ipv4:A:P,B:P; ipv6:[A]:P,...; HOST:PORT,HOST:PORT) and run on each replica, one line "
                        "each and a summary; exit 1 unless all answer and agree [$TFS_FLEET=1]")
    g.add_argument("--fleet-parallel", type=argtypes.count(1), default=argtypes.env("TFS_FLEET_PARALLEL",
                                                                                   str(DEFAULT_PARALLEL)),
                   metavar="N", help="ask at most N replicas at once (default: %(default)s) [$TFS_FLEET_PARALLEL]")
    g.add_argument("--fleet-min", type=argtypes.count(1), default=argtypes.env("TFS_FLEET_MIN"), metavar="N",
                   help="exit 1 before asking any replica if -s resolves to fewer than N (a headless Service "
                        "lists only the pods that are ready) [$TFS_FLEET_MIN]")


@dataclasses.dataclass(frozen=True)
class Replica:
    """One address of the fleet: `address` is a gRPC target; `host` the name it was resolved from (or None)."""
    address: str
    host: str = None


def resolve(target, getaddrinfo=socket.getaddrinfo):
    """The replicas behind a target, in a stable order (a DNS answer's order changes from call to call).

    InputError for a target that cannot name a fleet; ServerError for a name that does not resolve.
    """
    target = target.strip()
    if not target:
        raise InputError("--fleet: the server address is empty")
    low = target.lower()
    if low.startswith(_SINGLE):
        return [Replica(target)]
    if low.startswith("dns:"):
        rest = target[4:]
        if rest.startswith("//"):
            authority, _, rest = rest[2:].partition("/")
            if authority:
                raise InputError(f"--fleet resolves names with the system resolver, so a DNS server in the target "
                                 f"(dns://{authority}/) cannot be used: write dns:///{rest}")
        return _unique(_resolve_name(*_host_port(rest, target), getaddrinfo))
    if low.startswith(("ipv4:", "ipv6:")):
        family = 4 if low.startswith("ipv4:") else 6
        replicas = []
        for item in _items(target[5:], target):
            host, port = _host_port(item, target)
            ip = _literal(host)
            if ip is None or ip.version != family:
                raise InputError(f"--fleet: {item!r} in {target!r} is not an IPv{family} address")
            replicas.append(Replica(_address(str(ip), port)))
        return _unique(replicas)
    if "://" in target:  # xds:///, google-c2p:///...: gRPC resolves those itself
        scheme = target.split(":", 1)[0]
        raise InputError(f"--fleet cannot list the servers behind a {scheme}: target; give dns:///NAME:PORT, "
                         "NAME:PORT, ipv4:/ipv6: lists or HOST:PORT,HOST:PORT")
    replicas = []
    for item in _items(target, target):
        scheme = item.split(":", 1)[0].lower()
        if scheme in ("ipv4", "ipv6", "dns", "unix"):  # gRPC reads a scheme once, before the whole list
            raise InputError(f"--fleet: {item!r} in {target!r} has a scheme of its own: write {scheme}: once, "
                             f"before the whole list (e.g. ipv6:[::1]:8500,[::1]:8501), or list HOST:PORT items")
        host, port = _host_port(item, target)
        ip = _literal(host)
        replicas += [Replica(_address(str(ip), port))] if ip is not None else _resolve_name(host, port, getaddrinfo)
    return _unique(replicas)


def _items(text, target):
    items = [item.strip() for item in text.split(",")]
    if not all(items):
        raise InputError(f"--fleet: an empty address in {target!r}")
    return items


def _host_port(item, target):
    """HOST:PORT, [V6]:PORT, HOST or a bare IPv6 address; the port is gRPC's default when missing."""
    if item.startswith("["):
        host, sep, rest = item[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
        if not sep or (rest and port is None):
            raise InputError(f"--fleet: {item!r} in {target!r} is not [IPV6]:PORT")
    elif item.count(":") > 1:  # a bare IPv6 address
        host, port = item, None
    else:
        host, _, port = item.partition(":")
        port = port or None
    if not host:
        raise InputError(f"--fleet: {item!r} in {target!r} has no host")
    if port is None:
        return host, DEFAULT_PORT
    if not argtypes.is_port(port):
        raise InputError(f"--fleet: {item!r} in {target!r} has no valid port")
    return host, int(port)


def _literal(host):
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _address(ip, port):
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _resolve_name(host, port, getaddrinfo):
    try:
        answers = getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise ServerError(f"cannot resolve {one_line(host, 100)} ({reason}): check the name, or list the "
                          "addresses (HOST:PORT,HOST:PORT)") from None
    ips = []
    for family, _, _, _, sockaddr in answers:
        if family in (socket.AF_INET, socket.AF_INET6):
            ips.append(ipaddress.ip_address(sockaddr[0].split("%")[0]))
    if not ips:
        raise ServerError(f"{one_line(host, 100)} resolves to no IPv4 or IPv6 address")
    ips = sorted(set(ips), key=lambda ip: (ip.version, ip))
    return [Replica(_address(str(ip), port), host) for ip in ips]


def _unique(replicas):
    seen, result = set(), []
    for replica in replicas:
        if replica.address not in seen:
            seen.add(replica.address)
            result.append(replica)
    return result


def replica_args(args, replica):
    """A copy of args that points at one replica: its own address, and over TLS the name it was resolved from
    (the certificate is for the name, not for the pod's IP) unless --server-name says another."""
    copy = type(args)(**vars(args))
    copy.server = replica.address
    copy.attempts = 1
    if replica.host and transport.wants_tls(args) and not getattr(args, "server_name", None):
        copy.server_name = replica.host
    return copy


@dataclasses.dataclass
class Outcome:
    """What one replica did: value when it answered, else error (one line) and whether it was bad input."""
    replica: Replica
    args: object
    value: object = None
    error: str = None
    bad_input: bool = False
    exception: BaseException = None
    differences: str = None  # set by the report: how the answer differs from the reference's

    @property
    def address(self):
        return self.replica.address

    @property
    def ok(self):
        return self.error is None


def each(replicas, call, args):
    """call(replica_args) on every replica, at most args.fleet_parallel at once: the Outcomes, in order.

    Each call runs in its own daemon thread (a replica that hangs cannot keep the command from exiting at its
    deadline); call's own deadline is what is left of -t.
    """
    parallel = max(1, getattr(args, "fleet_parallel", DEFAULT_PARALLEL))
    outcomes = [Outcome(replica, replica_args(args, replica)) for replica in replicas]
    slots = threading.Semaphore(parallel)
    done = queue.Queue()

    def work(outcome):
        try:
            deadline = getattr(outcome.args, "deadline", None)
            if deadline is not None and time.monotonic() >= deadline:  # its turn came after -t: it was never asked
                outcome.error = (f"not asked: -t {args.timeout:g}s ran out before its turn (at most --fleet-parallel "
                                 f"{parallel} at once: raise it, or -t)")
                return
            outcome.value = call(outcome.args)
        except grpc.RpcError as e:
            outcome.error, outcome.exception = transport.rpc_error_message(e, outcome.args), e
        except InputError as e:
            outcome.error, outcome.bad_input, outcome.exception = one_line(e), True, e
        except (ServerError, OutputError) as e:
            outcome.error, outcome.exception = one_line(e), e
        except Exception as e:  # a bug of ours: this replica's failure; --debug raises it
            outcome.error, outcome.exception = f"unexpected {type(e).__name__}: {one_line(e, 300)}", e
        finally:
            slots.release()
            done.put(outcome)

    for outcome in outcomes:
        slots.acquire()
        threading.Thread(target=work, args=(outcome,), daemon=True, name=f"fleet {outcome.address}").start()
    for _ in outcomes:
        done.get()
    if getattr(args, "debug", False):
        for outcome in outcomes:
            if outcome.exception is not None and not isinstance(outcome.exception, (grpc.RpcError, InputError,
                                                                                    ServerError, OutputError)):
                raise outcome.exception
    return outcomes


class View:
    """One operation across a fleet: what to ask a replica, how to show and compare the answers.

    call(args) asks one replica (args.server is its address) and returns its answer, raising as the single-
    server command would; text(value) is one line (or a block of lines) for the report; data(value) is the
    answer in the JSON document; differences(reference, value) is None when two answers agree, else what
    differs (a line, or lines).
    """

    def call(self, args):
        raise NotImplementedError

    def text(self, value):
        return str(value)

    def data(self, value):
        return value

    def differences(self, reference, value):
        return None if reference == value else f"{self.text(value)} (reference: {self.text(reference)})"


def run(args, view, target=None):
    """Resolve, ask every replica, print the report: what a script's action returns for --fleet."""
    target = target or args.server
    outcomes = each(resolve_within(target, args), view.call, args)
    return report(args, outcomes, view, target)


def resolve_within(target, args, getaddrinfo=None):
    """resolve(target) within what is left of -t: the system resolver has no deadline of its own (its retries
    can take tens of seconds), so it runs in a daemon thread that is left behind at the deadline."""
    deadline = getattr(args, "deadline", None)
    resolver = getaddrinfo or socket.getaddrinfo  # looked up now: a test's fake resolver replaces it at start-up
    result = {}

    def work():
        try:
            result["replicas"] = resolve(target, resolver)
        except BaseException as e:  # handed to the caller's thread
            result["error"] = e

    thread = threading.Thread(target=work, daemon=True, name="fleet resolve")
    thread.start()
    thread.join(None if deadline is None else max(deadline - time.monotonic(), 0))
    if thread.is_alive():
        raise ServerError(f"resolving {one_line(target, 100)} took longer than {args.timeout:g}s (raise it with "
                          "--timeout, or list the addresses)")
    if "error" in result:
        raise result["error"]
    replicas, wanted = result["replicas"], getattr(args, "fleet_min", None)
    if wanted is not None and len(replicas) < wanted:
        found = ", ".join(r.address for r in replicas[:5]) + (" ..." if len(replicas) > 5 else "")
        raise ServerError(f"{one_line(target, 100)} resolves to {len(replicas)} replica"
                          f"{'s' if len(replicas) != 1 else ''} ({found}), fewer than --fleet-min {wanted} "
                          "(a headless Service lists only the pods that are ready)")
    return replicas


def compare(outcomes, view):
    """Pick the reference (the answer most others agree with; the first on a tie) and mark those that differ."""
    answered = [o for o in outcomes if o.ok]
    if not answered:
        return None
    agreeing = {id(a): sum(view.differences(a.value, b.value) is None for b in answered if b is not a)
                for a in answered}
    reference = max(answered, key=lambda o: agreeing[id(o)])  # max keeps the first of equals
    for outcome in answered:
        outcome.differences = None if outcome is reference else view.differences(reference.value, outcome.value)
    return reference


def report(args, outcomes, view, target):
    """The per-replica lines (or one JSON document) and the summary; ServerError (exit 1) unless all agree."""
    reference = compare(outcomes, view)
    failed = [o for o in outcomes if not o.ok]
    differ = [o for o in outcomes if o.ok and o.differences is not None]
    if failed and all(o.bad_input for o in failed) and len(failed) == len(outcomes):
        raise InputError(failed[0].error)  # the same bad input for every replica: nothing was served
    summary = _summary(outcomes, failed, differ)
    if args.format == "json":
        replicas = {}
        for o in outcomes:
            entry = {"ok": o.ok}
            if o.ok:
                entry["agrees"] = o.differences is None
                entry["result"] = view.data(o.value)
                if o.differences is not None:
                    entry["differences"] = o.differences
            else:
                entry["error"] = o.error
            replicas[o.address] = entry
        output.dump_json({"target": target, "replicas": replicas, "summary": {
            "replicas": len(outcomes), "reference": reference.address if reference else None,
            "agree": [o.address for o in outcomes if o.ok and o.differences is None],
            "differ": [o.address for o in differ], "failed": [o.address for o in failed]}})
    else:
        sys.stdout.write(_text(outcomes, view, reference))
        sys.stdout.write(f"fleet {target}: {summary}\n")
    if failed or differ:
        raise ServerError(_failure(outcomes, failed, differ, reference))


def _text(outcomes, view, reference):
    width = max(len(o.address) for o in outcomes)
    lines = []
    for o in outcomes:
        if not o.ok:
            lines.append(f"{o.address:<{width}}  FAILED: {o.error}")
            continue
        shown = view.text(o.value).rstrip("\n")
        if "\n" in shown:
            lines.append(f"== {o.address} ==")
            lines.append(shown)
        else:
            lines.append(f"{o.address:<{width}}  {shown}")
        if o.differences is not None:
            first, *rest = str(o.differences).rstrip("\n").split("\n")
            lines.append(f"{'':<{width}}  DIFFERS from {reference.address}: {first}")
            lines += [f"{'':<{width}}    {line}" for line in rest]
    return "\n".join(lines) + "\n"


def _summary(outcomes, failed, differ):
    n = len(outcomes)
    return summary(n, "all answered" + (" and agree" if n > 1 else ""), f"{n - len(failed) - len(differ)} agree",
                   [("differ", [o.address for o in differ]), ("failed", [o.address for o in failed])])


def summary(count, everyone, good, groups):
    """A report's summary: "N replicas, <everyone>" when every group is empty, else "N replicas: <good>,
    K <label> (addresses), ..." for each (label, addresses) group that has some."""
    replicas = f"{count} replica{'s' if count != 1 else ''}"
    groups = [(label, members) for label, members in groups if members]
    if not groups:
        return f"{replicas}, {everyone}"
    return f"{replicas}: " + ", ".join([good] + [f"{len(m)} {label} ({', '.join(m)})" for label, m in groups])


def addresses(outcomes, limit=5):
    """The outcomes' addresses for a one-line message: the first `limit`, then how many more."""
    shown = ", ".join(o.address for o in outcomes[:limit])
    return shown + (f" and {len(outcomes) - limit} more" if len(outcomes) > limit else "")


def _failure(outcomes, failed, differ, reference):
    """The exit-1 line: which replicas failed (the first one's reason) and which differ."""
    parts = []
    if failed:
        parts.append(f"{len(failed)} of {len(outcomes)} replicas failed ({addresses(failed)}), the first with: "
                     f"{one_line(failed[0].error, 200)}")
    if differ:
        verb = "differs" if len(differ) == 1 else "differ"
        parts.append(f"{len(differ)} of {len(outcomes)} {verb} from {reference.address} ({addresses(differ)})")
    return "; ".join(parts)
