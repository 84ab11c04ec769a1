#!/usr/bin/env python3
"""Pictures of p2p-sim runs (issue 26): per-host completion time CDF and upload used over time.

    scripts/sim_plot.py OUT.png TRACE.json [TRACE.json ...]

Each TRACE.json is what `p2p-sim ... --trace TRACE.json` wrote. Times are drawn in bounds
(seconds / bound_s) so runs of different sizes share the axes. Needs matplotlib.
"""
import json
import os
import sys


def main():
    if len(sys.argv) < 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("sim_plot.py: needs matplotlib (python3 -m pip install matplotlib)", file=sys.stderr)
        return 1
    out, paths = sys.argv[1], sys.argv[2:]
    fig, (cdf, used) = plt.subplots(1, 2, figsize=(12, 4.5))
    for path in paths:
        with open(path) as f:
            t = json.load(f)
        s = t["summary"]
        bound = s["bound_s"]
        name = os.path.basename(path).removesuffix(".json").removesuffix(".trace")
        label = f'{name}: {s["scenario"]} N={s["hosts"]} ({s["ratio"]:.2f}x)'
        times = sorted(x / bound for x in t["completion_s"])
        n = len(times)
        cdf.step(times, [(i + 1) / n for i in range(n)], where="post", label=label)
        xs = [i * t["bucket_s"] / bound for i in range(len(t["upload_used"]))]
        used.plot(xs, t["upload_used"], label=label)
    cdf.set_xlabel("time from the host's start / bound")
    cdf.set_ylabel("hosts finished (fraction)")
    cdf.axvline(1.0, color="grey", linestyle=":")
    cdf.set_title("completion time CDF")
    cdf.legend(fontsize=8)
    used.set_xlabel("time / bound")
    used.set_ylabel("upload in use / live hosts' upload")
    used.set_ylim(0, 1.05)
    used.set_title("upload used over time")
    used.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())
