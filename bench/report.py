#!/usr/bin/env python3
"""Turns scripts/bench.sh's raw results into the report.

  report.py OUT_DIR

Reads OUT_DIR/raw/*.json and OUT_DIR/samples.jsonl; writes OUT_DIR/report.json,
OUT_DIR/table.md (the table for the README) and OUT_DIR/chart.png, and prints
the table. Every bigpipe figure is shown with its same-run baseline and the
ratio bigpipe / baseline (for throughput higher is better, for latency, CPU
and memory lower is better).
"""

import glob
import json
import os
import sys

MIB = 1024.0


def load(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        if default is not None:
            return default
        raise


def ms(us):
    return None if us is None else us / 1000.0


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt(v, unit=""):
    if v is None:
        return "n/a"
    if isinstance(v, str):
        return v
    if unit == "ms" or unit == "%" or unit == "s":
        text = f"{v:.3g}" if v < 10 else f"{v:,.1f}" if v < 100 else f"{v:,.0f}"
    elif unit == "MiB":
        text = f"{v:,.1f}"
    elif abs(v) >= 100:
        text = f"{v:,.0f}"
    else:
        text = f"{v:.3g}"
    return f"{text} {unit}".strip()


def fmt_ratio(r):
    return "n/a" if r is None else f"{r:.2f}x"


class Rows:
    def __init__(self):
        self.rows = []

    def add(self, section, metric, value, unit, base_name, base_value, note=""):
        self.rows.append({
            "section": section, "metric": metric, "bigpipe": value, "unit": unit,
            "baseline": base_name, "baseline_value": base_value, "ratio": ratio(value, base_value),
            "note": note,
        })


def cpu(before, after):
    return after["cpu_s"] - before["cpu_s"]


def main():
    out = sys.argv[1]
    raw = os.path.join(out, "raw")
    env = load(os.path.join(raw, "env.json"))
    env.update(load(os.path.join(raw, "env-end.json"), {}))
    sizes = sorted({int(os.path.basename(p)[3:-5]) for p in glob.glob(os.path.join(raw, "pp-*.json"))
                    if os.path.basename(p)[3:-5].isdigit()})
    rows = Rows()

    pp = {s: load(os.path.join(raw, f"pp-{s}.json")) for s in sizes}
    cp = {s: load(os.path.join(raw, f"cp-{s}.json")) for s in sizes}
    e2e = load(os.path.join(raw, "e2e.json"))

    def tool_cpu_per_10k(t, records):
        return t["proc"]["cpu_s"] / records * 1e4 if records else None

    def build_cases(braw, rows):
        """The cases of one build (raw/BUILD); rows are added to `rows` (a Rows or a throwaway)."""
        cases = {}
        # ---------------------------------------------------------------- ingest
        for s in sizes:
            mock = None
            for mode in ("mock", "queue", "kafka", "bpmock", "batch", "keyed", "replay"):
                path = os.path.join(braw, f"ingest-{s}-{mode}.json")
                if mode != "queue" and not os.path.exists(path):
                    if mode == "mock":
                        mock = first_mock.get(s)
                    continue
                c = load(path)
                w = c["wrk"]
                secs = w["duration_us"] / 1e6
                ok = w["requests"] - w["errors"]["status"]
                stats0, stats1, stats2 = (c[k]["data"] for k in ("stats_before", "stats_after", "stats_drained"))
                produced = (sum(p["deliverySuccess"] for p in stats2["producerStats"].values())
                            - sum(p["deliverySuccess"] for p in stats0["producerStats"].values()))
                d = {
                    "data_bytes": s, "mode": mode, "connections": c["connections"], "wrk_threads": c["wrk_threads"],
                    "seconds": secs, "requests": w["requests"], "ok": ok, "errors": w["errors"],
                    "rate": ok / secs if secs else None,
                    "p50_ms": ms(w["latency_us"]["p50"]), "p99_ms": ms(w["latency_us"]["p99"]),
                    "p999_ms": ms(w["latency_us"]["p999"]), "max_ms": ms(w["latency_us"]["max"]),
                    "overload": stats1["serverStats"]["overloadCall"] - stats0["serverStats"]["overloadCall"],
                    "produced": produced,
                    "into_kafka_rate": produced / (c["t2"] - c["t0"]) if mode in ("queue", "kafka") else None,
                    "drain_after_s": c["t2"] - c["t1"],
                    "cpu_s": cpu(c["proc_before"], c["proc_drained"]),
                    "cpu_pct_under_load": 100 * cpu(c["proc_before"], c["proc_after"]) / (c["t1"] - c["t0"]),
                    "hwm_mib": c["proc_drained"]["hwm_kb"] / MIB,
                    "rss_mib": c["proc_after"]["rss_kb"] / MIB,
                    "wrk_cpu_pct": 100 * c["wrkproc"]["cpu_s"] / c["wrkproc"]["wall_s"],
                }
                d["cpu_per_10k"] = d["cpu_s"] / ok * 1e4 if ok else None
                cases[f"ingest-{s}-{mode}"] = d
                d["allocs"] = alloc_delta(stats0, stats2)
                if mode == "mock":
                    mock = d
                    first_mock[s] = d
                    continue
                if mode == "batch":
                    # A 200 answers the batch; its items were accepted or refused one by one, so
                    # calls are counted by bigpipe's own acceptedCall.
                    accepted = stats1["serverStats"]["acceptedCall"] - stats0["serverStats"]["acceptedCall"]
                    d["batch"] = c.get("batch")
                    d["rate"] = accepted / secs if secs else None
                    d["cpu_per_10k"] = d["cpu_s"] / accepted * 1e4 if accepted else None
                    single = cases.get(f"ingest-{s}-queue")
                    rows.add("ingest", f"ingest {s} B, /rpc/calls batches of {d['batch']}: accepted calls/s",
                             d["rate"], "/s", "single /rpc/call calls/s (same build, same run)",
                             single["rate"] if single else None)
                    rows.add("cost", f"ingest {s} B, /rpc/calls batches of {d['batch']}: CPU s per 10k calls",
                             d["cpu_per_10k"], "s", "single /rpc/call CPU s per 10k calls",
                             single["cpu_per_10k"] if single else None)
                    continue
                if mode in ("keyed", "replay"):
                    # Every 200 is an answered call: a fresh key's call was written, a repeat's
                    # answered with its first id (nothing written).
                    what = ("a fresh idempotency key per call" if mode == "keyed"
                            else "repeated idempotency keys (answered, nothing written)")
                    single = cases.get(f"ingest-{s}-queue")
                    rows.add("ingest", f"ingest {s} B, {what}: answered calls/s", d["rate"], "/s",
                             "single /rpc/call calls/s without a key (same build, same run)",
                             single["rate"] if single else None)
                    for q, key in (("p50", "p50_ms"), ("p99", "p99_ms")):
                        rows.add("ingest", f"ingest {s} B, {what}: latency {q}", d[key], "ms",
                                 f"single /rpc/call {q} without a key", single[key] if single else None)
                    rows.add("cost", f"ingest {s} B, {what}: CPU s per 10k calls", d["cpu_per_10k"], "s",
                             "single /rpc/call CPU s per 10k calls", single["cpu_per_10k"] if single else None)
                    continue
                if mode == "bpmock":
                    rows.add("ingest", f"bigpipe's own /rpc/server/mock, {s} B POST: req/s", d["rate"], "/s",
                             "bench_target /mock req/s", mock["rate"],
                             "the mock does not read the body, so actix answers 'connection: close'")
                    continue
                name = f"ingest {s} B, ack={mode}"
                sec = "ingest"
                ppr = pp[s]["run"]
                rows.add(sec, f"{name}: accepted calls/s", d["rate"], "/s",
                         f"ProducerPerformance rec/s ({pp[s]['record_bytes']} B records)", ppr["rate"])
                rows.add(sec, f"{name}: accepted calls/s", d["rate"], "/s", "bench_target /mock req/s (actix-web, same wrk)", mock["rate"])
                if d["into_kafka_rate"] is not None:
                    rows.add(sec, f"{name}: into Kafka calls/s (load + queue drain)", d["into_kafka_rate"], "/s",
                             "ProducerPerformance rec/s", ppr["rate"])
                for q, key in (("p50", "p50_ms"), ("p99", "p99_ms"), ("p99.9", "p999_ms")):
                    rows.add(sec, f"{name}: latency {q}", d[key], "ms", f"bench_target /mock {q}", mock[key])
                if mode == "kafka":
                    rows.add(sec, f"{name}: latency p99", d["p99_ms"], "ms",
                             "ProducerPerformance p99 (acks=all, unthrottled)", ppr["p99_ms"])
                rows.add("cost", f"{name}: CPU s per 10k calls", d["cpu_per_10k"], "s",
                         "bench_target /mock CPU s per 10k req", mock["cpu_per_10k"])
                rows.add("cost", f"{name}: CPU s per 10k calls", d["cpu_per_10k"], "s",
                         "ProducerPerformance CPU s per 10k rec (JVM, incl. start-up)",
                         tool_cpu_per_10k(pp[s], ppr["records"]))

        # -------------------------------------------------------------- delivery
        if not os.path.exists(os.path.join(braw, "drain.json")):
            return cases
        drain = load(os.path.join(braw, "drain.json"))
        t = drain["target"]
        span = (t["last_us"] - t["first_us"]) / 1e6 if t.get("first_us") else 0
        drain_rate = (t["count"] - 1) / span if span > 0 else None
        drain_cpu = cpu(drain["proc_before"], drain["proc_after"])
        d = {
            "records": drain["records"], "delivered": t["count"], "drained": bool(drain["drained"]),
            "rate": drain_rate, "first_arrival_after_start_s": (t["first_us"] / 1e6 - drain["t_start"])
            if t.get("first_us") else None,
            "cpu_s": drain_cpu, "cpu_per_10k": drain_cpu / t["count"] * 1e4 if t["count"] else None,
            "hwm_mib": drain["proc_after"]["hwm_kb"] / MIB, "concurrency": drain["concurrency"],
            "record_bytes": drain["record_bytes"],
        }
        d["allocs"] = alloc_delta(None, drain["stats"]["data"])
        cases["drain"] = d
        s100 = sizes[0]
        rows.add("delivery", f"drain of {d['records']:,} calls: delivered calls/s (concurrency {d['concurrency']})",
                 d["rate"], "/s", f"ConsumerPerformance rec/s, fetch only ({cp[s100]['record_bytes']} B records)",
                 cp[s100]["run"]["fetch_rate"])
        rows.add("cost", "delivery (drain): CPU s per 10k calls", d["cpu_per_10k"], "s",
                 "ConsumerPerformance CPU s per 10k rec (JVM, incl. start-up)",
                 tool_cpu_per_10k(cp[s100], cp[s100]["run"]["records"]))

        if not os.path.exists(os.path.join(braw, "latency.json")):
            return cases
        lat = load(os.path.join(braw, "latency.json"))
        lt = lat["target"]["latency"]
        snd = lat["sender"]
        lat_cpu = cpu(lat["proc_before"], lat["proc_after"])
        d = {
            "rate": lat["rate"], "drain_rate": lat["drain_rate"], "sent": snd["sent"], "ok": snd["ok"],
            "non2xx": snd["non2xx"], "errors": snd["errors"], "arrived": lat["target"]["count"],
            "achieved_rate": snd["ok_rate"], "p50_ms": ms(lt["p50_us"]), "p99_ms": ms(lt["p99_us"]),
            "p999_ms": ms(lt["p999_us"]), "max_ms": ms(lt["max_us"]),
            "response_p50_ms": ms(snd["response_latency"]["p50_us"]),
            "response_p99_ms": ms(snd["response_latency"]["p99_us"]),
            "cpu_s": lat_cpu, "cpu_per_10k": lat_cpu / snd["ok"] * 1e4 if snd["ok"] else None,
            "hwm_mib": lat["proc_after"]["hwm_kb"] / MIB, "rss_mib": lat["proc_after"]["rss_kb"] / MIB,
            "cpu_pct": 100 * lat_cpu / (lat["t1"] - lat["t0"]),
        }
        cases["latency"] = d
        e = e2e["run"]
        rows.add("delivery", f"acceptance->arrival p50 at {d['rate']:,} calls/s", d["p50_ms"], "ms",
                 "Kafka EndToEndLatency p50 (produce->consume, one at a time; whole ms)", e["p50_ms"])
        rows.add("delivery", f"acceptance->arrival p99 at {d['rate']:,} calls/s", d["p99_ms"], "ms",
                 "Kafka EndToEndLatency p99 (whole ms)", e["p99_ms"])
        both = None
        if pp[s100]["run"]["records"] and cp[s100]["run"]["records"]:
            both = tool_cpu_per_10k(pp[s100], pp[s100]["run"]["records"]) + \
                tool_cpu_per_10k(cp[s100], cp[s100]["run"]["records"])
        rows.add("cost", f"accept + deliver at {d['rate']:,} calls/s: CPU s per 10k calls", d["cpu_per_10k"], "s",
                 "ProducerPerformance + ConsumerPerformance CPU s per 10k", both)

        # ------------------------------------------------------------ memory, idle
        idle = load(os.path.join(braw, "idle.json"))
        tstart = load(os.path.join(raw, "target-start.json"))
        tidle = load(os.path.join(braw, "target-idle.json"))
        tend = load(os.path.join(raw, "target-end.json"))
        idle_pct = 100 * cpu(idle["before"], idle["after"]) / idle["seconds"]
        target_idle_pct = 100 * cpu(tstart["proc"], tidle["proc"]) / max(1e-9, tidle["t"] - tstart["t"])
        idle_rss = idle["after"]["rss_kb"] / MIB
        target_rss = tidle["proc"]["rss_kb"] / MIB
        cases["idle"] = {"cpu_pct": idle_pct, "rss_mib": idle_rss, "hwm_mib": idle["after"]["hwm_kb"] / MIB,
                         "target_cpu_pct": target_idle_pct, "target_rss_mib": target_rss}
        rows.add("cost", "idle: CPU % of one core (polled once a second)", idle_pct, "%",
                 "bench_target (trivial actix-web) idle CPU %", target_idle_pct)
        rows.add("cost", "idle: RSS", idle_rss, "MiB", "bench_target RSS", target_rss)
        ingest_final = load(os.path.join(braw, "ingest-final.json"))
        target_hwm = tend["proc"]["hwm_kb"] / MIB
        rows.add("cost", "peak RSS after all ingest cases (VmHWM)", ingest_final["proc"]["hwm_kb"] / MIB, "MiB",
                 "bench_target VmHWM after all its load", target_hwm)
        rows.add("cost", f"peak RSS, drain + {cases['latency']['rate']:,} calls/s accept+deliver (VmHWM)",
                 cases["latency"]["hwm_mib"], "MiB", "bench_target VmHWM", target_hwm)

        cases["hwm_after_ingest_mib"] = ingest_final["proc"]["hwm_kb"] / MIB
        if not os.path.exists(os.path.join(braw, "backlog.json")):
            return cases
        bl = load(os.path.join(braw, "backlog.json"))
        cons = bl["stats"]["data"]["consumerStats"]
        lag = sum((p.get("lag") or 0) for c in cons for p in c.get("partitions", {}).values())
        hw = sum(p.get("highWatermark", 0) for c in cons for p in c.get("partitions", {}).values())
        handled = sum(c.get("handleMessage", 0) for c in cons)
        delivered = sum(c.get("rpcSuccess", 0) for c in cons)
        bl_cpu = cpu(bl["proc_before"], bl["proc_after"])
        d = {
            "records": bl["records"], "rate_limit": bl["rate_limit"], "rss_mib": bl["proc_after"]["rss_kb"] / MIB,
            "hwm_mib": bl["proc_after"]["hwm_kb"] / MIB, "lag": lag, "high_watermark_sum": hw,
            "handled": handled, "delivered": delivered,
            "cpu_pct": 100 * bl_cpu / (bl["t1"] - bl["t0"]),
        }
        cases["backlog"] = d
        rows.add("cost", f"{d['records']:,} undelivered calls (rateLimit {d['rate_limit']}/s): peak RSS",
                 d["hwm_mib"], "MiB", "bigpipe idle RSS (no backlog)", idle_rss)
        rows.add("cost", f"{d['records']:,} undelivered calls: CPU % of one core", d["cpu_pct"], "%",
                 "bigpipe idle CPU %", idle_pct)
        return cases

    builds = env.get("builds", "glibc").split()
    run_builds = env.get("run_builds", " ".join(builds)).split()
    first_mock = {}
    per_build = {}
    for b in run_builds:
        braw = os.path.join(raw, b)
        if os.path.isdir(braw):
            per_build[b] = build_cases(braw, rows if b == builds[0] else Rows())
    cases = per_build.get(builds[0], {})
    side = side_by_side(per_build, builds, raw, env)
    allocs = alloc_table(per_build.get("allocs", {}))

    anomalies = []
    try:
        with open(os.path.join(raw, "anomalies.jsonl")) as f:
            anomalies = [json.loads(line) for line in f if line.strip()]
    except OSError:
        pass
    for name, c in cases.items():
        if name.startswith("ingest") and isinstance(c, dict) and (c["errors"]["connect"] or c["errors"]["read"] or c["errors"]["write"]
                                          or c["errors"]["timeout"]):
            anomalies.append(f"{name}: wrk socket errors {c['errors']}")
        if name.startswith("ingest") and c["errors"]["status"]:
            anomalies.append(f"{name}: {c['errors']['status']} non-2xx answers ({c['overload']} overload)")
    if cases["latency"]["non2xx"] or cases["latency"]["errors"]:
        anomalies.append(f"latency run: {cases['latency']['non2xx']} non-2xx, {cases['latency']['errors']} errors")

    report = {"env": env, "rows": rows.rows, "cases": cases, "builds": per_build, "side_by_side": side,
              "alloc_counts": allocs,
              "baselines": {"producer_perf": pp, "consumer_perf": cp, "end_to_end": e2e},
              "anomalies": anomalies}
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump(report, f, indent=1)

    table = markdown(report)
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(table)
    print(table)
    try:
        chart(out, report)
    except ImportError as e:
        print(f"report.py: no chart ({e})", file=sys.stderr)
        return 1
    return 0


def alloc_delta(before, after):
    """allocStats difference (the counting build only), or None."""
    a = (after or {}).get("allocStats")
    if not a:
        return None
    b = (before or {}).get("allocStats") or {"allocations": 0, "reallocations": 0, "bytes": 0}
    return {k: a[k] - b[k] for k in ("allocations", "reallocations", "bytes")}


def side_by_side(per_build, builds, raw, env):
    """Key figures of every build in one table; ratio = build / first build."""
    target = load(os.path.join(raw, "target-wrk.json"), {})
    target_rate = None
    if target.get("wrk"):
        w = target["wrk"]
        secs = w["duration_us"] / 1e6
        target_rate = (w["requests"] - w["errors"]["status"]) / secs if secs else None
    mib = 1024 * 1024
    queue_mib = env.get("queue_bytes", 268435456) / mib
    window_mib = env.get("prefetch_bytes", 4194304) / mib * env.get("partitions", 3)
    metrics = []

    def add(name, unit, get, bound=None):
        vals = {}
        for b in builds:
            try:
                vals[b] = get(per_build[b])
            except (KeyError, TypeError, ZeroDivisionError):
                vals[b] = None
        metrics.append({"metric": name, "unit": unit, "values": vals, "bound": bound})

    sizes = sorted({c["data_bytes"] for b in builds for k, c in per_build.get(b, {}).items()
                    if k.startswith("ingest-") and isinstance(c, dict)})
    for s in sizes:
        for mode in ("queue", "kafka"):
            k = f"ingest-{s}-{mode}"
            add(f"ingest {s} B, ack={mode}: accepted calls/s", "/s", lambda c, k=k: c[k]["rate"])
            add(f"ingest {s} B, ack={mode}: CPU s per 10k calls", "s", lambda c, k=k: c[k]["cpu_per_10k"])
            add(f"ingest {s} B, ack={mode}: VmHWM after the case", "MiB", lambda c, k=k: c[k]["hwm_mib"],
                queue_mib + 64)
        add(f"ingest {s} B, ack=queue: accepted calls/s / trivial actix route", "x",
            lambda c, s=s: c[f"ingest-{s}-queue"]["rate"] / per_build[builds[0]][f"ingest-{s}-mock"]["rate"])
    add("drain: delivered calls/s", "/s", lambda c: c["drain"]["rate"])
    if target_rate:
        add("drain: delivered calls/s / wrk at the same target", "x", lambda c: c["drain"]["rate"] / target_rate)
    add("drain: CPU s per 10k calls", "s", lambda c: c["drain"]["cpu_per_10k"])
    add("drain: VmHWM", "MiB", lambda c: c["drain"]["hwm_mib"], queue_mib + 2 * window_mib + 64)
    add("accept+deliver (latency run): acceptance->arrival p99", "ms", lambda c: c["latency"]["p99_ms"])
    add("accept+deliver (latency run): CPU s per 10k calls", "s", lambda c: c["latency"]["cpu_per_10k"])
    add("drain + latency run: VmHWM", "MiB", lambda c: c["latency"]["hwm_mib"], queue_mib + 2 * window_mib + 64)
    add("idle: RSS", "MiB", lambda c: c["idle"]["rss_mib"])
    add("backlog (slow consumer): VmHWM", "MiB", lambda c: c["backlog"]["hwm_mib"], queue_mib + window_mib + 64)
    return {"builds": builds, "metrics": metrics, "target_wrk_rate": target_rate,
            "bounds": {"queue_mib": queue_mib, "window_mib_per_entry": window_mib, "constant_mib": 64}}


def side_markdown(side):
    builds = side["builds"]
    head = "| metric | " + " | ".join(builds) + " | " + " | ".join(f"{b} / {builds[0]}" for b in builds[1:]) \
        + " | bound (config + 64 MiB) |"
    lines = [f"Builds side by side (same run; wrk straight at the target: "
             f"{fmt(side['target_wrk_rate'], '/s')}):", "", head,
             "|---|" + "---:|" * (2 * len(builds) - 1) + "---:|"]
    for m in side["metrics"]:
        v = m["values"]
        cells = [fmt(v.get(b), "" if m["unit"] == "x" else m["unit"]) for b in builds]
        rats = [fmt_ratio(ratio(v.get(b), v.get(builds[0]))) for b in builds[1:]]
        bound = fmt(m["bound"], "MiB") if m["bound"] else ""
        lines.append(f"| {m['metric']} | " + " | ".join(cells + rats) + f" | {bound} |")
    return lines


def alloc_table(cases):
    """Allocations per call from the counting build."""
    out = []
    for k, c in sorted(cases.items()):
        if not isinstance(c, dict) or not c.get("allocs"):
            continue
        calls = c.get("ok") if k.startswith("ingest") else c.get("delivered")
        if not calls:
            continue
        a = c["allocs"]
        out.append({"case": k, "calls": calls, "allocations_per_call": a["allocations"] / calls,
                    "reallocations_per_call": a["reallocations"] / calls, "bytes_per_call": a["bytes"] / calls})
    return out


def alloc_markdown(rows):
    lines = ["Allocations per call (the counting build, `--features alloc-stats`: glibc malloc wrapped with "
             "counters; ingest counts from the first request until the queue is empty in Kafka, the drain "
             "from process start):", "",
             "| case | calls | allocations / call | reallocations / call | bytes allocated / call |",
             "|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['calls']:,} | {r['allocations_per_call']:.1f} | "
                     f"{r['reallocations_per_call']:.1f} | {r['bytes_per_call']:,.0f} |")
    return lines


def markdown(report):
    env = report["env"]
    c = report["cases"]
    lines = [
        f"Measured {env.get('date', '?')} on {env.get('cores')} cores ({env.get('cpu')}), "
        f"{env.get('mem_gib')} GiB, load average at start {env.get('loadavg_start')}, at end "
        f"{env.get('loadavg_end', '?')}; commit {env.get('git')}{' (SMOKE sizes)' if env.get('smoke') else ''}. "
        f"Load generator: wrk, {env.get('wrk_threads')} thread, {env.get('connections')} connections, "
        f"{env.get('seconds')} s per case; Kafka single broker on loopback, {env.get('partitions')} partitions.",
        "",
        "| metric | bigpipe | baseline (same run) | baseline value | ratio |",
        "|---|---:|---|---:|---:|",
    ]
    for r in report["rows"]:
        lines.append(f"| {r['metric']} | {fmt(r['bigpipe'], r['unit'])} | {r['baseline']} | "
                     f"{fmt(r['baseline_value'], r['unit'])} | {fmt_ratio(r['ratio'])} |")
    lines.append("")
    ing = [f"{k}: wrk {v['wrk_cpu_pct']:.0f} %, server {v['cpu_pct_under_load']:.0f} %"
           for k, v in c.items() if k.startswith("ingest") and isinstance(v, dict)]
    lines.append("CPU of the load generator (wrk) and of the server under test (bench_target for mock, bigpipe otherwise), % of one core: " + "; ".join(ing) + ".")
    lat = c["latency"]
    lines.append(f"Latency run: {lat['ok']:,} of {lat['sent']:,} calls accepted at {lat['achieved_rate']:,.0f}/s "
                 f"(half the drain rate {lat['drain_rate']:,}/s), {lat['arrived']:,} arrived; "
                 f"/rpc/call response p50 {fmt(lat['response_p50_ms'], 'ms')}, p99 {fmt(lat['response_p99_ms'], 'ms')}; "
                 f"arrival p99.9 {fmt(lat['p999_ms'], 'ms')}, max {fmt(lat['max_ms'], 'ms')}.")
    bl = c["backlog"]
    lines.append(f"Backlog run: consumer lag {bl['lag']:,} of {bl['high_watermark_sum']:,} records, "
                 f"{bl['handled']:,} taken from Kafka, {bl['delivered']:,} delivered.")
    if report.get("side_by_side"):
        lines.append("")
        lines += side_markdown(report["side_by_side"])
    if report.get("alloc_counts"):
        lines.append("")
        lines += alloc_markdown(report["alloc_counts"])
    if report["anomalies"]:
        lines.append("")
        lines.append("Anomalies: " + "; ".join(str(a) for a in report["anomalies"]))
    return "\n".join(lines) + "\n"


def chart(out, report):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = []
    try:
        with open(os.path.join(out, "samples.jsonl")) as f:
            samples = [json.loads(line) for line in f if line.strip()]
    except OSError:
        pass
    if len(samples) < 2:
        samples = samples * 2 or [{"t": 0, "phase": "none"}, {"t": 1, "phase": "none"}]
    t0 = samples[0]["t"]
    xs, acc, prod, arr, p50, p99, cpu_pct, rss, kcpu = [], [], [], [], [], [], [], [], []
    for a, b in zip(samples, samples[1:]):
        dt = b["t"] - a["t"]
        if dt <= 0:
            continue
        same = a.get("bp_pid") is not None and a.get("bp_pid") == b.get("bp_pid")

        def rate(key):
            if same and key in a and key in b:
                return max(0.0, (b[key] - a[key]) / dt)
            return None

        xs.append(b["t"] - t0)
        acc.append(rate("accepted"))
        prod.append(rate("produced"))
        arr.append(b.get("arrived", 0) / dt if "arrived" in b else None)
        p50.append(ms(b.get("lat_p50_us")))
        p99.append(ms(b.get("lat_p99_us")))
        c = rate("bp_cpu_s")
        cpu_pct.append(None if c is None else 100 * c)
        rss.append(b["bp_rss_kb"] / MIB if "bp_rss_kb" in b else None)
        k = (b["kafka_cpu_s"] - a["kafka_cpu_s"]) / dt * 100 if "kafka_cpu_s" in a and "kafka_cpu_s" in b else None
        kcpu.append(k)

    def clean(ys):
        return [float("nan") if y is None else y for y in ys]

    fig, axes = plt.subplots(3, 1, figsize=(14, 10), sharex=True)
    ax = axes[0]
    ax.plot(xs, clean(acc), label="accepted by /rpc/call (calls/s)", lw=1.2)
    ax.plot(xs, clean(prod), label="written to Kafka by bigpipe (calls/s)", lw=1.2)
    ax.plot(xs, clean(arr), label="arrived at bench_target (calls/s)", lw=1.2)
    ax.set_ylabel("calls / s")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("bigpipe benchmark: per-second samples (wrk per-second figures are not available)")
    ax = axes[1]
    ax.plot(xs, clean(p50), label="acceptance->arrival p50 (ms)", lw=1.2)
    ax.plot(xs, clean(p99), label="acceptance->arrival p99 (ms)", lw=1.2)
    ax.set_ylabel("ms (log)")
    if any(v for v in p99 if v):
        ax.set_yscale("log")
    ax.legend(loc="upper left", fontsize=8)
    ax = axes[2]
    ax.plot(xs, clean(cpu_pct), label="bigpipe CPU % (one core = 100)", lw=1.2, color="tab:red")
    ax.plot(xs, clean(kcpu), label="Kafka broker CPU %", lw=1.0, color="tab:gray", alpha=0.7)
    ax.set_ylabel("CPU %")
    ax.set_xlabel("seconds since the target started")
    ax2 = ax.twinx()
    ax2.plot(xs, clean(rss), label="bigpipe RSS (MiB)", lw=1.2, color="tab:purple")
    ax2.set_ylabel("RSS MiB")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="upper left", fontsize=8)

    # shade the phases
    spans = []
    for s in samples:
        ph = s.get("phase", "")
        x = s["t"] - t0
        if spans and spans[-1][0] == ph:
            spans[-1][2] = x
        else:
            spans.append([ph, x, x])
    colors = ["#f2f2f2", "#e0ecf8"]
    for i, (ph, a, b) in enumerate(spans):
        for axx in axes:
            axx.axvspan(a, max(b, a + 1), color=colors[i % 2], zorder=0)
        if ph:
            axes[0].text((a + b) / 2, 1.0, ph, transform=axes[0].get_xaxis_transform(), rotation=90,
                         fontsize=6, ha="center", va="top", color="#555555")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "chart.png"), dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
