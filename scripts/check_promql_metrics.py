#!/usr/bin/env python3
"""Checks that every metric named in the Grafana dashboard and the Prometheus rules is one the
services really export, given /metrics dumps scraped from live processes.

usage: check_promql_metrics.py --dashboard D.json --rules R.yaml DUMP.prom...
       check_promql_metrics.py --dashboard D.json --prometheus http://HOST:PORT
       check_promql_metrics.py --self-test

With --prometheus, every dashboard query is run against a live Prometheus that scrapes the
services, and each must answer with at least one sample: a healthy system reads 0, never
"No data".
"""
import argparse
import json
import re
import sys
import urllib.parse
import urllib.request

import yaml

KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
    "and", "or", "unless", "atan2", "inf", "nan", "start", "end",
}
# Series Prometheus makes itself, not the services.
GENERATED = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}


def metric_names(expr: str) -> set[str]:
    """Metric names referenced by one PromQL expression (or a Grafana label_values query)."""
    e = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', expr)
    e = re.sub(r"\{[^{}]*\}", " ", e)  # label matchers
    e = re.sub(r"\[[^\[\]]*\]", " ", e)  # ranges, subqueries
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", e)
    e = re.sub(r"\$\{?\w+\}?", " ", e)  # Grafana variables
    e = re.sub(r"\boffset\s+-?[\dsmhdwy]+", " ", e)  # offset 5m
    e = re.sub(r"\b\d+(\.\d+)?([eE][+-]?\d+)?\b", " ", e)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        name = m.group(0)
        rest = e[m.end():].lstrip()
        if rest.startswith("(") or name.lower() in KEYWORDS:
            continue  # a function or an aggregation
        if re.match(r"(by|without)\b", rest):
            continue  # `sum by (...)`
        names.add(name)
    # label_values(metric, label): the label is not a metric.
    for m in re.finditer(r"label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*,\s*(\w+)\s*\)", expr):
        names.discard(m.group(2))
        names.add(m.group(1))
    return names


def dashboard_exprs(path):
    d = json.load(open(path))
    out = []

    def panels(ps):
        for p in ps:
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append((f"panel {p.get('title')!r}", t["expr"]))
            panels(p.get("panels", []))

    panels(d.get("panels", []))
    for v in d.get("templating", {}).get("list", []):
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        if v.get("type") == "query" and q:
            out.append((f"variable {v.get('name')!r}", q))
    return out


def rule_exprs(path):
    out = []
    for g in yaml.safe_load(open(path)).get("groups", []):
        for r in g.get("rules", []):
            out.append((f"rule {r.get('alert') or r.get('record')!r}", r["expr"]))
    return out


def exported(dumps):
    names = set()
    for path in dumps:
        for line in open(path):
            line = line.strip()
            if line and not line.startswith("#"):
                names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def self_test():
    cases = {
        'histogram_quantile(0.99, sum by (le, method) (rate(p2p_tracker_rpc_duration_seconds_bucket{instance=~"$instance"}[$__rate_interval])))':
            {"p2p_tracker_rpc_duration_seconds_bucket"},
        "label_values(p2p_build_info, instance)": {"p2p_build_info"},
        'absent(p2p_build_info{service="tracker"} == 1)': {"p2p_build_info"},
        "sum(rate(a_total[5m])) / sum(rate(b_total[5m])) > bool 0.05": {"a_total", "b_total"},
        "x or y unless z and w offset 5m": {"x", "y", "z", "w"},
        'sum without (instance) (foo{code!~"OK|NotFound"}) * on (job) group_left(version) bar': {"foo", "bar"},
        "max(p2p_tracker_peers) == 0": {"p2p_tracker_peers"},
        "rate(process_cpu_seconds_total[1m:30s])": {"process_cpu_seconds_total"},
    }
    bad = 0
    for expr, want in cases.items():
        got = metric_names(expr)
        if got != want:
            bad += 1
            print(f"self-test: {expr!r}: got {sorted(got)}, want {sorted(want)}")
    print("self-test", "failed" if bad else "passed")
    return 1 if bad else 0


def grafana_to_promql(expr: str, rate_interval: str) -> str:
    """A dashboard query as Grafana would send it, with every instance selected."""
    return expr.replace("$__rate_interval", rate_interval).replace("$instance", ".*")


def empty_queries(prometheus: str, dashboards, rate_interval: str):
    """Dashboard queries whose answer has no sample at all (Grafana: "No data")."""
    empty = []
    for path in dashboards:
        for where, expr in dashboard_exprs(path):
            if where.startswith("variable"):
                continue
            q = grafana_to_promql(expr, rate_interval)
            url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": q})
            with urllib.request.urlopen(url, timeout=30) as r:
                body = json.load(r)
            if body.get("status") != "success":
                empty.append(f"{where}: {body.get('error')}")
            elif not body["data"]["result"]:
                empty.append(f"{where}: no data for {q}")
    return empty


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dashboard", action="append", default=[])
    ap.add_argument("--rules", action="append", default=[])
    ap.add_argument("--self-test", action="store_true")
    ap.add_argument("--prometheus", help="run the dashboard queries against this Prometheus")
    ap.add_argument("--rate-interval", default="15s", help="what $__rate_interval stands for")
    ap.add_argument("dumps", nargs="*")
    a = ap.parse_args()
    if a.self_test:
        return self_test()
    if a.prometheus:
        empty = empty_queries(a.prometheus, a.dashboard, a.rate_interval)
        if empty:
            print("dashboard queries without data on a live system:")
            print("\n".join(f"  {e}" for e in empty))
            return 1
        print("every dashboard query has data on the live system")
        return 0
    if not a.dumps:
        ap.error("give at least one /metrics dump")
    have = exported(a.dumps)
    exprs = [e for p in a.dashboard for e in dashboard_exprs(p)] + [e for p in a.rules for e in rule_exprs(p)]
    unknown = []
    for where, expr in exprs:
        for name in sorted(metric_names(expr) - GENERATED):
            if name not in have:
                unknown.append(f"{where}: {name}")
    if unknown:
        print("metrics not exported by the services:")
        print("\n".join(f"  {u}" for u in unknown))
        return 1
    print(f"{len(exprs)} expressions checked: every metric they use is exported")
    return 0


if __name__ == "__main__":
    sys.exit(main())
