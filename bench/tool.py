#!/usr/bin/env python3
"""Small helpers for scripts/bench.sh (standard library only).

  tool.py payload FILE --lines N --data-bytes B --url U --topic T
        N distinct bigpipe record values (the Go JSON), one a line, for
        ProducerPerformance --payload-file.
  tool.py get URL [DOTTED.PATH]            GET a JSON answer and print it (or one value of it)
  tool.py stats-sum URL WHAT               sum over /stats: accepted|queued|delivered|overload|handled
  tool.py wait URL WHAT OP VALUE TIMEOUT   poll stats-sum (or a GET's DOTTED.PATH) every 0.2 s
                                           until `value OP VALUE` (OP: ge, le, eq); exit 1 at TIMEOUT s
  tool.py wait-http URL STATUS TIMEOUT     poll until GET URL answers STATUS
  tool.py proc PID                         {"cpu_s","rss_kb","hwm_kb"} of a live process
  tool.py measure OUT.json -- CMD...       run CMD, write its exit code, wall, CPU and max RSS
                                           (children's rusage) to OUT.json; exit with CMD's code
  tool.py wrkjson FILE                     the BENCHJSON line of a wrk output, as JSON
  tool.py pp FILE                          parse ProducerPerformance output
  tool.py cp FILE                          parse ConsumerPerformance output
  tool.py e2e FILE                         parse EndToEndLatency output
  tool.py merge OUT.json KEY=JSONFILE|KEY:=JSONVALUE|KEY=STRING ...
                                           write one JSON object built from the arguments
"""

import json
import os
import random
import re
import resource
import string
import subprocess
import sys
import time
import urllib.error
import urllib.request

LOOPBACK = ("http://127.", "http://localhost", "http://[::1]")


def fail(msg):
    print(f"tool.py: {msg}", file=sys.stderr)
    sys.exit(2)


def http_get(url, timeout=2.0):
    if not url.startswith(LOOPBACK):
        fail(f"loopback only: {url}")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def get_json(url):
    status, body = http_get(url)
    if status != 200:
        raise RuntimeError(f"GET {url}: HTTP {status}")
    return json.loads(body)


def dig(value, path):
    for part in path.split(".") if path else []:
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


def stats_sum(stats, what):
    """Totals over bigpipe's /stats `data`."""
    data = stats.get("data", stats)
    server = data["serverStats"]
    consumers = data.get("consumerStats", [])
    if what == "accepted":
        return server["acceptedCall"]
    if what == "queued":
        return server["queuedCalls"]
    if what == "overload":
        return server["overloadCall"]
    if what == "delivered":
        return sum(c.get("rpcSuccess", 0) for c in consumers)
    if what == "handled":
        return sum(c.get("handleMessage", 0) for c in consumers)
    if what == "produced":
        return sum(p.get("deliverySuccess", 0) for p in data["producerStats"].values())
    fail(f"unknown stats sum {what}")


def cmd_payload(args):
    opts = dict(zip(args[1::2], args[2::2]))
    path, lines = args[0], int(opts["--lines"])
    size, url, topic = int(opts["--data-bytes"]), opts["--url"], opts["--topic"]
    rng = random.Random(size)
    alphabet = string.ascii_letters + string.digits
    with open(path, "w") as f:
        for _ in range(lines):
            data = "".join(rng.choice(alphabet) for _ in range(size))
            # Go's field order and compact form, as bigpipe writes it; the headers
            # are what an /rpc/call from wrk carries (Host is dropped by bigpipe).
            record = {
                "Headers": {"Content-Length": [str(size + 120)], "Content-Type": ["application/json"]},
                "Url": url,
                "Data": data,
                "Topic": topic,
                "Partition": 0,
                "CreateTime": 1700000000000,
            }
            f.write(json.dumps(record, separators=(",", ":")) + "\n")
    with open(path) as f:
        first = f.readline()
    print(len(first.encode()) - 1)


def value_of(url, what):
    if what.startswith("path:"):
        return dig(get_json(url), what[5:])
    return stats_sum(get_json(url), what)


def cmd_wait(args):
    url, what, op, want, timeout = args[0], args[1], args[2], float(args[3]), float(args[4])
    deadline = time.monotonic() + timeout
    value = None
    while True:
        try:
            value = value_of(url, what)
            ok = {"ge": value >= want, "le": value <= want, "eq": value == want}[op]
            if ok:
                print(value)
                return 0
        except (OSError, ValueError, KeyError, RuntimeError):
            pass
        if time.monotonic() >= deadline:
            print(f"tool.py: timed out after {timeout:.0f} s waiting for {what} {op} {want:g} (last {value})",
                  file=sys.stderr)
            print(value if value is not None else -1)
            return 1
        time.sleep(0.2)


def cmd_wait_http(args):
    url, status, timeout = args[0], int(args[1]), float(args[2])
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last, _ = http_get(url, timeout=1.0)
            if last == status:
                return 0
        except OSError as e:
            last = str(e)
        time.sleep(0.2)
    print(f"tool.py: {url} did not answer {status} within {timeout:.0f} s (last: {last})", file=sys.stderr)
    return 1


def proc(pid):
    tick = os.sysconf("SC_CLK_TCK")
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / tick  # utime, stime (fields 14, 15)
    rss = hwm = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return {"cpu_s": cpu, "rss_kb": rss, "hwm_kb": hwm}


def cmd_measure(args):
    out, cmd = args[0], args[2:] if args[1] == "--" else fail("measure OUT -- CMD")
    t0 = time.monotonic()
    code = subprocess.call(cmd)
    wall = time.monotonic() - t0
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(out, "w") as f:
        json.dump({"exit": code, "wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "maxrss_kb": ru.ru_maxrss}, f)
    return code


def cmd_wrkjson(args):
    with open(args[0]) as f:
        for line in f:
            if line.startswith("BENCHJSON "):
                print(line[len("BENCHJSON "):].strip())
                return 0
    fail(f"no BENCHJSON line in {args[0]}")


PP_FINAL = re.compile(
    r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, "
    r"([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th, (\d+) ms 99.9th")


def cmd_pp(args):
    text = open(args[0]).read()
    found = PP_FINAL.findall(text)
    if not found:
        fail(f"no ProducerPerformance summary in {args[0]}")
    n, rate, mbs, avg, mx, p50, p95, p99, p999 = found[-1]
    print(json.dumps({"records": int(n), "rate": float(rate), "mb_s": float(mbs), "avg_ms": float(avg),
                      "max_ms": float(mx), "p50_ms": int(p50), "p95_ms": int(p95), "p99_ms": int(p99),
                      "p999_ms": int(p999)}))


def cmd_cp(args):
    lines = [l for l in open(args[0]).read().splitlines() if l.strip()]
    for i, line in enumerate(lines):
        if line.startswith("start.time"):
            keys = [k.strip() for k in line.split(",")]
            vals = [v.strip() for v in lines[i + 1].split(",")]
            row = dict(zip(keys, vals))
            print(json.dumps({
                "mb": float(row["data.consumed.in.MB"]), "records": int(row["data.consumed.in.nMsg"]),
                "rate": float(row["nMsg.sec"]), "fetch_rate": float(row["fetch.nMsg.sec"]),
                "rebalance_ms": int(row["rebalance.time.ms"]), "fetch_ms": int(row["fetch.time.ms"]),
            }))
            return 0
    fail(f"no ConsumerPerformance summary in {args[0]}")


def cmd_e2e(args):
    text = open(args[0]).read()
    avg = re.search(r"Avg latency: ([\d.]+) ms", text)
    pct = re.search(r"50th = (\d+), 99th = (\d+), 99.9th = (\d+)", text)
    if not (avg and pct):
        fail(f"no EndToEndLatency summary in {args[0]}")
    print(json.dumps({"avg_ms": float(avg.group(1)), "p50_ms": int(pct.group(1)), "p99_ms": int(pct.group(2)),
                      "p999_ms": int(pct.group(3))}))


def cmd_merge(args):
    out, obj = args[0], {}
    for arg in args[1:]:
        if ":=" in arg:
            k, v = arg.split(":=", 1)
            obj[k] = json.loads(v)
        else:
            k, v = arg.split("=", 1)
            if os.path.isfile(v) and v.endswith(".json"):
                with open(v) as f:
                    obj[k] = json.load(f)
            else:
                obj[k] = v
    with open(out, "w") as f:
        json.dump(obj, f, indent=1)


def main():
    if len(sys.argv) < 2:
        fail(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "payload":
        return cmd_payload(args)
    if cmd == "get":
        v = get_json(args[0])
        v = dig(v, args[1]) if len(args) > 1 else v
        print(json.dumps(v) if isinstance(v, (dict, list)) else v)
        return 0
    if cmd == "stats-sum":
        print(stats_sum(get_json(args[0]), args[1]))
        return 0
    if cmd == "wait":
        return cmd_wait(args)
    if cmd == "wait-http":
        return cmd_wait_http(args)
    if cmd == "proc":
        print(json.dumps(proc(int(args[0]))))
        return 0
    if cmd == "measure":
        return cmd_measure(args)
    handlers = {"wrkjson": cmd_wrkjson, "pp": cmd_pp, "cp": cmd_cp, "e2e": cmd_e2e, "merge": cmd_merge}
    if cmd in handlers:
        return handlers[cmd](args)
    fail(f"unknown command {cmd}")


if __name__ == "__main__":
    sys.exit(main() or 0)
