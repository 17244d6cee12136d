"""grpcBench's reports: one run or a sweep of concurrencies, as text or one JSON document, and their plots."""

import io
import os

from . import fleet
from .loadgen import PERCENTILES


def _target(r):
    version = (f"version {r['version']}" if r["version"] is not None
               else f"label {r['version_label']}" if r["version_label"] else "latest version")
    signature = "" if r["signature"] == "serving_default" else f", signature {r['signature']}"
    return f"Predict {r['model']} ({version}{signature}) at {r['server']}"


def text_report(r):
    if r["loop"] == "closed":
        load = f"closed loop, concurrency {r['concurrency']}"
    else:
        load = f"open loop, {r['rate']:g} req/s scheduled"
    amount = f"for {r['duration']:g} s" if r["duration"] is not None else ""
    lines = [
        f"target       {_target(r)}",
        f"load         {load}{', ' + amount if amount else ''}, after {r['warmup']} warmup requests"
        + (" (interrupted)" if r["interrupted"] else ""),
        f"requests     {r['requests']}: ok {r['ok']}, errors {r['requests'] - r['ok']}",
        f"elapsed      {r['elapsed_s']:.3f} s",
        f"throughput   {r['throughput_rps']:.1f} req/s (ok {r['ok_rps']:.1f} req/s)",
    ]
    if r["loop"] == "open":
        lag = r["schedule_lag_ms"]
        offered = r["offered_rps"]
        behind = offered is not None and offered < 0.95 * r["rate"]
        behind = " (the generator fell behind: below --rate)" if behind else ""
        offered = f"{offered:.1f} req/s" if offered is not None else "-"
        lines.append(f"offered      {offered}, sends late by {lag:.3f} ms at worst{behind}")
    if r["latency_ms"]:
        lines.append("latency ms   " + "  ".join(f"{name:>8}" for name, _ in PERCENTILES))
        lines.append("   ok        " + "  ".join(f"{r['latency_ms'][name]:8.3f}" for name, _ in PERCENTILES))
    else:
        lines.append("latency ms   (no ok request)")
    if "server_metrics" in r:
        lines.append(_server_line(r["server_metrics"]))
    if r["errors"]:
        lines.append("errors by code")
        lines.extend(f"  {code:<22}{count}" for code, count in r["errors"].items())
    return "\n".join(lines) + "\n"


def draw_histogram(pyplot, path, r, latencies):
    figure, axes = pyplot.subplots(figsize=(8, 4.5))
    if latencies:
        values = [1000.0 * v for v in latencies]
        axes.hist(values, bins=min(100, max(10, len(values) // 20)), color="#4878a8")
        axes.set_yscale("log")
        for (name, value), style in zip(((n, r["latency_ms"][n]) for n in ("p50", "p90", "p99", "p99.9")),
                                        ("-", "--", "-.", ":")):
            axes.axvline(value, color="#c03030", linestyle=style, label=f"{name} {value:.3f} ms")
        axes.legend()
    else:
        axes.text(0.5, 0.5, "no ok request", ha="center", va="center", transform=axes.transAxes)
    axes.set_xlabel("latency (ms)")
    axes.set_ylabel("requests")
    axes.set_title(f"{_target(r)}\n{r['ok']} ok, {r['throughput_rps']:.1f} req/s", fontsize=9)
    figure.tight_layout()
    save(pyplot, figure, path)


def image_format(path):
    """The format an image at path is drawn in: its extension's when matplotlib writes it (png, svg, pdf, ...), PNG
    without one; None for an extension matplotlib does not write. After matplotlib is imported."""
    from matplotlib.backend_bases import FigureCanvasBase

    extension = os.path.splitext(path)[1][1:].lower()
    if not extension:
        return "png"
    return extension if extension in FigureCanvasBase.get_supported_filetypes() else None


def save(pyplot, figure, path):
    """The figure into path, whole or not at all: drawn in memory, then written beside path and renamed over it
    (tfrecord.replace; OSError if that fails, path as it was). The path is written as given: a name without an
    extension is not given .png, as matplotlib's savefig(path) would."""
    from . import tfrecord  # (its CRC table is not needed to start a bench)

    image = io.BytesIO()
    try:
        figure.savefig(image, format=image_format(path) or "png")
    finally:
        pyplot.close(figure)
    tfrecord.replace(path, image.getvalue())


def _server_line(m):
    """--metrics for a single run: the server's numbers in one line of the text report."""
    if m is None:
        return "server       - (the metrics page could not be read)"
    statuses = ", ".join(f"{s} {n}" for s, n in (m["requests_by_status"] or {}).items())
    requests = "-" if m["requests"] is None else f"{m['requests']}" + (f" ({statuses})" if statuses else "")
    return (f"server       requests {requests}, mean latency {_cell(m['latency_mean_ms'], '.3f')} ms, "
            f"mean batch size {_cell(m['batch_size_mean'], '.2f')}")


def _cell(value, spec):
    return "-" if value is None else format(value, spec)


def sweep_report(args, levels, rounds):
    """The sweep as one JSON document: what was asked, then one report per round, in order."""
    first = rounds[0]
    return {
        **{k: first[k] for k in ("server", "model", "version", "version_label", "signature", "loop")},
        "concurrency": levels,
        "requests_per_round": args.requests,
        "duration": args.duration,
        "warmup": args.warmup,
        "metrics": args.metrics,
        "rounds": rounds,
        "interrupted": any(r["interrupted"] for r in rounds),
    }


SWEEP_COLUMNS = (("concurrency", 11), ("requests", 9), ("errors", 7), ("ok req/s", 10),
                 ("p50 ms", 9), ("p90 ms", 9), ("p99 ms", 9))
SERVER_COLUMNS = (("server ms", 10), ("server req", 11), ("batch", 7))


def sweep_text(s):
    amount = f"for {s['duration']:g} s" if s["duration"] is not None else f"{s['requests_per_round']} requests"
    lines = [
        f"target       {_target(s)}",
        f"load         closed loop, {amount} per concurrency, after {s['warmup']} warmup requests before the first"
        + (" (interrupted)" if s["interrupted"] else ""),
    ]
    if s["metrics"]:
        lines.append(f"server       {s['metrics']} in each round: mean Predict latency, requests, "
                     "mean batch size (rows)")
    columns = SWEEP_COLUMNS + (SERVER_COLUMNS if s["metrics"] else ())
    lines.append("  ".join(f"{name:>{width}}" for name, width in columns))
    for r in s["rounds"]:
        latency = r["latency_ms"] or {}
        cells = [r["concurrency"], r["requests"], r["requests"] - r["ok"], f"{r['ok_rps']:.1f}",
                 *(_cell(latency.get(k), ".3f") for k in ("p50", "p90", "p99"))]
        if s["metrics"]:
            m = r.get("server_metrics") or {}
            cells += [_cell(m.get("latency_mean_ms"), ".3f"), _cell(m.get("requests"), "d"),
                      _cell(m.get("batch_size_mean"), ".2f")]
        lines.append("  ".join(f"{cell:>{width}}" for cell, (_, width) in zip(cells, columns))
                     + ("  (interrupted)" if r["interrupted"] else ""))
    if any(r["errors"] for r in s["rounds"]):
        lines.append("errors by code")
        lines.extend(f"  concurrency {r['concurrency']}: {code} {count}"
                     for r in s["rounds"] for code, count in r["errors"].items())
    return "\n".join(lines) + "\n"


def draw_sweep(pyplot, path, rounds):
    """Throughput against p99 latency, one labelled point per concurrency, joined in the order run."""
    figure, axes = pyplot.subplots(figsize=(8, 5))
    points = [(r["latency_ms"]["p99"], r["ok_rps"], r["concurrency"]) for r in rounds if r["latency_ms"]]
    if points:
        axes.plot([p[0] for p in points], [p[1] for p in points], marker="o", color="#4878a8")
        for latency, throughput, level in points:
            axes.annotate(f"c={level}", (latency, throughput), textcoords="offset points", xytext=(6, -12),
                          fontsize=8)
        axes.set_xlim(0, 1.15 * max(p[0] for p in points))  # room for the last label
        axes.set_ylim(0, 1.1 * max(p[1] for p in points) or 1)
    else:
        axes.text(0.5, 0.5, "no ok request", ha="center", va="center", transform=axes.transAxes)
    axes.set_xlabel("p99 latency (ms)")
    axes.set_ylabel("throughput (ok req/s)")
    axes.grid(True, alpha=0.3)
    axes.set_title(f"{_target(rounds[0])}\nclosed loop, one point per concurrency", fontsize=9)
    figure.tight_layout()
    save(pyplot, figure, path)


def fleet_report(args, outcomes, reports, total, concurrency):
    """--fleet as one JSON document: what was asked, each replica keyed by address (its report, or the error
    that kept it from being measured), the total over those measured, and which replicas failed."""
    replicas = {}
    for o in outcomes:
        r = reports[o.address]
        replicas[o.address] = {"error": None, **r} if r is not None else {"server": o.address, "error": o.error}
    return {
        "target": args.server,
        **{k: getattr(args, k) for k in ("model", "version", "version_label", "signature")},
        "signature": args.signature or "serving_default",
        "loop": "open" if args.rate is not None else "closed",
        "concurrency": concurrency,
        "rate": args.rate,
        "requests": args.requests,
        "duration": args.duration,
        "warmup": args.warmup,
        "replicas": replicas,
        "total": total,
        "failed": [o.address for o in outcomes if not o.ok],
        "with_errors": [a for a, r in reports.items() if r is not None and r["errors"]],
        "interrupted": bool(total and total["interrupted"]),
    }


FLEET_COLUMNS = (("load", 8), ("requests", 9), ("errors", 7), ("elapsed s", 9), ("ok req/s", 10),
                 ("p50 ms", 9), ("p90 ms", 9), ("p99 ms", 9), ("max ms", 9))


def fleet_text(d):
    """--fleet as a table: one row per replica (its share of the load, counts, throughput, latency), a total
    row over the replicas measured, the errors by replica and code, and a summary line."""
    n = len(d["replicas"])
    measured = [r for r in d["replicas"].values() if r["error"] is None]
    if d["loop"] == "closed":
        load = f"closed loop, concurrency {d['concurrency']} in total"
    else:
        load = f"open loop, {d['rate']:g} req/s in total scheduled"
    amount = f"for {d['duration']:g} s" if d["duration"] is not None else f"{d['requests']} requests in total"
    width = max(len("replica"), len("total"), *(len(a) for a in d["replicas"]))
    lines = [
        f"target       {_target({**d, 'server': d['target']})}: {n} replica{'s' if n != 1 else ''}",
        f"load         {load}, {amount}, spread over {len(measured)} replica{'s' if len(measured) != 1 else ''}, "
        f"after {d['warmup']} warmup requests each" + (" (interrupted)" if d["interrupted"] else ""),
        f"{'replica':<{width}}  " + "  ".join(f"{name:>{w}}" for name, w in FLEET_COLUMNS),
    ]
    for address, r in d["replicas"].items():
        if r["error"] is not None:
            lines.append(f"{address:<{width}}  FAILED: {r['error']}")
        else:
            lines.append(f"{address:<{width}}  {_fleet_cells(r)}")
    if d["total"] is not None:
        lines.append(f"{'total':<{width}}  {_fleet_cells(d['total'])}")
    if any(r.get("errors") for r in measured):
        lines.append("errors by replica and code")
        lines.extend(f"  {address}: {code} {count}" for address, r in d["replicas"].items()
                     if r["error"] is None for code, count in r["errors"].items())
    bad = len(d["failed"]) + len(d["with_errors"])
    summary = fleet.summary(n, "all measured without error", f"{n - bad} without error",
                            [("with errors", d["with_errors"]), ("failed", d["failed"])])
    lines.append(f"fleet {d['target']}: {summary}")
    return "\n".join(lines) + "\n"


def _fleet_cells(r):
    latency = r["latency_ms"] or {}
    load = f"c {r['concurrency']}" if r["loop"] == "closed" else f"{r['rate']:.4g}/s"
    cells = [load, r["requests"], r["requests"] - r["ok"], f"{r['elapsed_s']:.3f}", f"{r['ok_rps']:.1f}",
             *(_cell(latency.get(k), ".3f") for k in ("p50", "p90", "p99", "max"))]
    return "  ".join(f"{cell:>{w}}" for cell, (_, w) in zip(cells, FLEET_COLUMNS))
