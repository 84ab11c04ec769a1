#!/usr/bin/env python3
"""Where each testbed host's upload goes, over time (issue 25).

  sample  runs on one host (inside its network namespace, `ip netns exec NS ...`) and polls the
          peer's own counters on 127.0.0.1 every INTERVAL seconds: p2p_peer_served_bytes_total,
          p2p_peer_downloaded_bytes_total from /metrics, and the pieces it holds of one file
          (its /blobs/{sha256}/bitfield), and the host's own link counters (bytes its eth0
          sent and received, from /sys: what the shaped link really carried). One CSV line per
          sample: t (unix s), served, downloaded, pieces, pieces_total, tx, rx. Loopback only:
          the samples never cross the shaped link. Ends on SIGTERM or after --max-s.
  draw    reads the CSVs of one run (HOST.csv in a directory, and hosts.txt: "HOST KIB" per
          line, the host's upload in KiB/s) and draws one PNG: upload used (bytes its link sent
          as a fraction of the host's upload, one row per host, time across), download rate,
          and pieces held.
"""

import argparse
import csv
import http.client
import os
import signal
import sys
import time


def counter(text, name):
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            try:
                return float(line.rsplit(" ", 1)[1])
            except ValueError:
                return 0.0
    return 0.0


def link_bytes(dev):
    """Bytes the host's link sent and received (-1 when there is no such link here)."""
    out = []
    for what in ("tx_bytes", "rx_bytes"):
        try:
            with open("/sys/class/net/%s/statistics/%s" % (dev, what)) as f:
                out.append(int(f.read().strip()))
        except (OSError, ValueError):
            out.append(-1)
    return out


def sample(args):
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    conn = None
    end = time.time() + args.max_s
    with open(args.out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t", "served", "downloaded", "pieces", "pieces_total", "tx", "rx"])
        next_at = time.time()
        while not stop and time.time() < end:
            t = time.time()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=2)
                conn.request("GET", "/metrics")
                r = conn.getresponse()
                text = r.read().decode("utf-8", "replace")
                served = counter(text, "p2p_peer_served_bytes_total")
                downloaded = counter(text, "p2p_peer_downloaded_bytes_total")
                pieces, total = -1, -1
                if args.sha:
                    conn.request("GET", "/blobs/%s/bitfield" % args.sha)
                    r = conn.getresponse()
                    body = r.read()
                    if r.status == 200:
                        total = int(r.getheader("x-p2p-pieces", "0") or 0)
                        pieces = sum(bin(b).count("1") for b in body)
                    else:
                        pieces = 0
                tx, rx = link_bytes(args.dev)
                w.writerow(["%.3f" % t, int(served), int(downloaded), pieces, total, tx, rx])
                f.flush()
            except (OSError, http.client.HTTPException, ValueError):
                conn = None  # the peer is starting or gone: try again next time
            next_at += args.interval
            time.sleep(max(0.0, next_at - time.time()))


def load(dirname):
    hosts = []
    with open(os.path.join(dirname, "hosts.txt")) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2:
                hosts.append((parts[0], int(parts[1])))
    series = {}
    for name, _ in hosts:
        rows = []
        path = os.path.join(dirname, name + ".csv")
        if os.path.exists(path):
            with open(path) as f:
                for r in csv.DictReader(f):
                    rows.append({k: float(v) for k, v in r.items()})
        series[name] = rows
    return hosts, series


def rates(rows, key, t0, step):
    """(times, rate) per step from a cumulative counter, on a common time grid."""
    out_t, out_r = [], []
    for a, b in zip(rows, rows[1:]):
        dt = b["t"] - a["t"]
        if dt <= 0:
            continue
        out_t.append((a["t"] + b["t"]) / 2 - t0)
        out_r.append(max(0.0, b[key] - a[key]) / dt)
    return out_t, out_r


def draw(args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    hosts, series = load(args.dir)
    starts = [r[0]["t"] for r in series.values() if r]
    if not starts:
        sys.exit("draw: no samples in %s" % args.dir)
    t0 = args.t0 if args.t0 else min(starts)
    t_end = max(r[-1]["t"] for r in series.values() if r) - t0
    step = args.step
    cols = max(1, int(np.ceil(t_end / step)))
    up = np.full((len(hosts), cols), np.nan)
    down = np.full((len(hosts), cols), np.nan)
    held = np.full((len(hosts), cols), np.nan)
    mean_use = []
    for i, (name, kib) in enumerate(hosts):
        rows = series[name]
        # What the link carried, where it was sampled; else what the peer says it served.
        sent = "tx" if rows and all(r.get("tx", -1) >= 0 for r in rows) else "served"
        ts, rs = rates(rows, sent, t0, step)
        for t, r in zip(ts, rs):
            c = int(t // step)
            if 0 <= c < cols:
                up[i, c] = r / (kib * 1024.0)
        ts, rs = rates(rows, "downloaded", t0, step)
        for t, r in zip(ts, rs):
            c = int(t // step)
            if 0 <= c < cols:
                down[i, c] = r / 1048576.0
        for r in rows:
            c = int((r["t"] - t0) // step)
            if 0 <= c < cols and r["pieces_total"] > 0:
                held[i, c] = r["pieces"] / r["pieces_total"]
        if len(rows) >= 2:
            mean_use.append((rows[-1][sent] - rows[0][sent], kib * 1024.0 * t_end))

    labels = ["%s (%s KiB/s)" % (n, k) for n, k in hosts]
    height = max(4.0, 0.22 * len(hosts) * 3 + 2)
    fig, axes = plt.subplots(3, 1, figsize=(12, height), sharex=True,
                             gridspec_kw={"height_ratios": [1, 1, 1]})
    extent = (0, cols * step, len(hosts) - 0.5, -0.5)
    im = axes[0].imshow(np.clip(up, 0, 1.2), aspect="auto", interpolation="nearest",
                        cmap="viridis", vmin=0, vmax=1.0, extent=extent)
    use = sum(b for b, _ in mean_use) / max(1.0, sum(c for _, c in mean_use))
    axes[0].set_title("%s: upload used (fraction of each host's upload); all hosts over the run %.0f%%"
                      % (args.title, 100 * use))
    fig.colorbar(im, ax=axes[0], pad=0.01)
    im = axes[1].imshow(down, aspect="auto", interpolation="nearest", cmap="magma",
                        extent=extent)
    axes[1].set_title("download rate (MiB/s)")
    fig.colorbar(im, ax=axes[1], pad=0.01)
    im = axes[2].imshow(held, aspect="auto", interpolation="nearest", cmap="Greens",
                        vmin=0, vmax=1, extent=extent)
    axes[2].set_title("pieces held (fraction of the file)")
    fig.colorbar(im, ax=axes[2], pad=0.01)
    for ax in axes:
        ax.set_yticks(range(len(hosts)))
        ax.set_yticklabels(labels, fontsize=6)
    if args.bound:
        for ax in axes:
            ax.axvline(args.bound, color="red", linewidth=1, linestyle="--")
    axes[2].set_xlabel("seconds since the gets started (red: the bound)")
    fig.tight_layout()
    fig.savefig(args.out, dpi=90)
    print("draw: %s (upload used over the run: %.0f%%)" % (args.out, 100 * use))


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sample")
    s.add_argument("--port", type=int, default=5000)
    s.add_argument("--sha", default="")
    s.add_argument("--interval", type=float, default=0.5)
    s.add_argument("--max-s", type=float, default=3600)
    s.add_argument("--out", required=True)
    s.add_argument("--dev", default="eth0")
    d = sub.add_parser("draw")
    d.add_argument("--dir", required=True)
    d.add_argument("--out", required=True)
    d.add_argument("--title", default="testbed")
    d.add_argument("--t0", type=float, default=0.0)
    d.add_argument("--bound", type=float, default=0.0)
    d.add_argument("--step", type=float, default=0.5)
    args = p.parse_args()
    if args.cmd == "sample":
        sample(args)
    else:
        draw(args)


if __name__ == "__main__":
    main()
