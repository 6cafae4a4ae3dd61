#!/usr/bin/env python3
"""Turns run-all.sh's JSON lines into the tables of docs/benchmarks.md (median and min-max over
repetitions, per case and contender) and a PNG of deliveries/s against p99 latency.

usage: python3 loadtest/bench/report.py RESULTS.jsonl [--png docs/benchmarks-deliveries-p99.png]
Needs matplotlib for the PNG (pinned in loadtest/bench/requirements.txt).
"""
import argparse
import json
import statistics
import sys
from collections import defaultdict

CONTENDERS = ["switchboard", "node", "socketioxide"]


def load(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                sys.exit(f"{path}:{n}: not JSON ({e}); remove the line or re-run the case")
    return rows


def spread(values, fmt="{:,.0f}"):
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    if any(isinstance(v, str) for v in values):
        return "; ".join(str(v) for v in values)
    med = statistics.median(values)
    if len(values) == 1:
        return fmt.format(med)
    return f"{fmt.format(med)} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def metric(case, r):
    """The figures of one run, by column name."""
    s = r.get("server") or {}
    lat = r.get("latency_us") or {}
    if case.startswith("idle"):
        b = s.get("rss_bytes_per_connection")
        return {
            "connected": r.get("connected"),
            "RSS/conn KiB": b / 1024 if b is not None else None,
            "RSS total MiB": s.get("rss_end_bytes", 0) / 1048576,
            "connects/s": r.get("connects_per_s"),
        }
    if case.startswith("shards") and not case.endswith("sweep"):
        shards = (r.get("redis") or {}).get("shards") or []
        return {
            "deliveries/s": r.get("deliveries_per_s"),
            "lost": r.get("lost"),
            "p50 ms": lat.get("p50", 0) / 1000,
            "p99 ms": lat.get("p99", 0) / 1000,
            "CPU-µs/delivery": s.get("cpu_us_per_delivery"),
            "SPUBLISH per shard": "/".join(str(x.get("spublish", 0)) for x in shards),
            "busiest shard's share": max((x.get("spublish", 0) for x in shards), default=0)
            / max(sum(x.get("spublish", 0) for x in shards), 1),
            "Redis CPU s": sum(x.get("cpu_s", 0) for x in shards),
        }
    if case.startswith(("fanout", "crossnode")):
        return {
            "deliveries/s": r.get("deliveries_per_s"),
            "lost": r.get("lost"),
            "reordered": r.get("reordered"),
            "p50 ms": lat.get("p50", 0) / 1000,
            "p99 ms": lat.get("p99", 0) / 1000,
            "p99.9 ms": lat.get("p999", 0) / 1000,
            "CPU-µs/delivery": s.get("cpu_us_per_delivery"),
        }
    if case == "storm":
        return {
            "handshakes/s": r.get("handshakes_per_s"),
            "failed": r.get("handshake_failed"),
            "p99 ms": lat.get("p99", 0) / 1000,
            "CPU-µs/handshake": s.get("cpu_us_per_handshake"),
        }
    if case.endswith("sweep"):
        sat = r.get("saturation") or {}
        return {
            "saturation msg/s": sat.get("rate"),
            "deliveries/s": sat.get("deliveries_per_s"),
            "p99 ms at saturation": (sat.get("p99_us") or 0) / 1000 if sat else None,
            "crossed at msg/s": r.get("crossed_at_rate"),
        }
    return {}


FORMATS = {"p50 ms": "{:.1f}", "p99 ms": "{:.1f}", "p99.9 ms": "{:.1f}", "RSS/conn KiB": "{:.1f}",
           "RSS total MiB": "{:.0f}", "CPU-µs/delivery": "{:.1f}", "CPU-µs/handshake": "{:.0f}",
           "p99 ms at saturation": "{:.1f}", "busiest shard's share": "{:.2f}",
           "Redis CPU s": "{:.2f}"}


def tables(rows):
    by_case = defaultdict(lambda: defaultdict(list))
    order = []
    for row in rows:
        if row["case"] not in order:
            order.append(row["case"])
        by_case[row["case"]][row["contender"]].append(row.get("result"))
    out = []
    for case in order:
        runs = by_case[case]
        cols = None
        lines = []
        for who in [c for c in CONTENDERS if c in runs] + [c for c in runs if c not in CONTENDERS]:
            ok = [r for r in runs[who] if r]
            failed = len(runs[who]) - len(ok)
            ms = [metric(case, r) for r in ok]
            if cols is None and ms:
                cols = list(ms[0].keys())
            if not ms:
                lines.append((who, len(runs[who]), failed, {}))
                continue
            cells = {c: spread([m.get(c) for m in ms], FORMATS.get(c, "{:,.0f}")) for c in cols}
            lines.append((who, len(runs[who]), failed, cells))
        cols = cols or []
        out.append(f"#### {case}\n")
        out.append("| contender | runs | " + " | ".join(cols) + " |")
        out.append("|---|---:|" + "---:|" * len(cols))
        for who, n, failed, cells in lines:
            runs_cell = f"{n}" + (f" ({failed} failed)" if failed else "")
            out.append(f"| {who} | {runs_cell} | " + " | ".join(cells.get(c, "–") for c in cols) + " |")
        out.append("")
    return "\n".join(out)


def plot(rows, path):
    try:
        import matplotlib
    except ImportError:
        sys.exit(
            "matplotlib is not installed, so no PNG was drawn (the tables above are complete): "
            "pip install -r loadtest/bench/requirements.txt, or pass --no-png"
        )
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    markers = {"switchboard": "o", "node": "s", "socketioxide": "^"}
    for who in CONTENDERS:
        xs, ys = [], []
        for row in rows:
            r = row.get("result")
            if row["contender"] != who or not r or row["case"].startswith("shards"):
                continue
            if row["case"].startswith("sweep"):
                for s in r.get("steps", []):
                    xs.append(s["deliveries_per_s"])
                    ys.append(s["p99_us"] / 1000)
            elif row["case"].startswith(("fanout", "crossnode")) and r.get("latency_us"):
                xs.append(r["deliveries_per_s"])
                ys.append(r["latency_us"]["p99"] / 1000)
        if xs:
            ax.scatter(xs, ys, label=who, marker=markers.get(who, "x"), alpha=0.7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("deliveries/s (1000 connections, 10 rooms)")
    ax.set_ylabel("p99 end-to-end latency, ms")
    ax.set_title("switchboard-load: fanout, crossnode and sweep steps")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    print(f"wrote {path}", file=sys.stderr)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="+", help="JSON-lines files from run-all.sh")
    p.add_argument("--png", default="docs/benchmarks-deliveries-p99.png")
    p.add_argument("--no-png", action="store_true")
    a = p.parse_args()
    rows = [row for path in a.results for row in load(path)]
    print(tables(rows))
    if not a.no_png:
        plot(rows, a.png)


if __name__ == "__main__":
    main()
