#!/usr/bin/env python3
"""Once-a-second sampler for scripts/bench.sh.

  sampler.py OUT_DIR BIGPIPE_URL TARGET_URL PARENT_PID MAX_SECONDS

Appends one JSON line per second to OUT_DIR/samples.jsonl with the current
phase (OUT_DIR/phase), bigpipe's CPU seconds and RSS (pid in OUT_DIR/bigpipe.pid),
its /stats totals, the broker's CPU seconds (pid in OUT_DIR/kafka.pid), and the target's /metrics/window (calls that arrived in the
last second and their acceptance->arrival latency). Stops when OUT_DIR/sampler.stop
exists, PARENT_PID is gone, or after MAX_SECONDS.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tool  # noqa: E402


def read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def main():
    out, bigpipe, target, parent, max_s = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
    start = time.monotonic()
    k = 0
    with open(os.path.join(out, "samples.jsonl"), "a") as f:
        while time.monotonic() - start < max_s:
            if os.path.exists(os.path.join(out, "sampler.stop")):
                break
            try:
                os.kill(parent, 0)
            except OSError:
                break
            sample = {"t": time.time(), "phase": read(os.path.join(out, "phase"))}
            pid = read(os.path.join(out, "bigpipe.pid"))
            if pid:
                try:
                    sample.update({"bp_" + k2: v for k2, v in tool.proc(int(pid)).items()})
                    sample["bp_pid"] = int(pid)
                except (OSError, ValueError, IndexError):
                    pass
                try:
                    stats = tool.get_json(bigpipe + "/stats")
                    for what in ("accepted", "queued", "delivered", "overload", "produced", "handled"):
                        sample[what] = tool.stats_sum(stats, what)
                except (OSError, ValueError, KeyError, RuntimeError):
                    pass
            kpid = read(os.path.join(out, "kafka.pid"))
            if kpid:
                try:
                    sample["kafka_cpu_s"] = tool.proc(int(kpid))["cpu_s"]
                except (OSError, ValueError, IndexError):
                    pass
            try:
                m = tool.get_json(target + "/metrics/window")
                sample["arrived"] = m["count"]
                sample["lat_p50_us"] = m["latency"]["p50_us"]
                sample["lat_p99_us"] = m["latency"]["p99_us"]
            except (OSError, ValueError, KeyError, RuntimeError):
                pass
            f.write(json.dumps(sample) + "\n")
            f.flush()
            k += 1
            time.sleep(max(0.0, start + k - time.monotonic()))


if __name__ == "__main__":
    main()
