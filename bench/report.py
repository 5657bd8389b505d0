"""The benchmark's table and the issue's targets (informative: nothing here fails a build)."""

from __future__ import annotations

import json
from pathlib import Path

GIB_MIB = 1024.0
TEN_M = 10_000_000
ONE_M = 1_000_000
STAGES = ("extract", "transform", "load", "validate")


def find_rss_reference(results_dir: Path, explicit: str | None, size: int) -> dict | None:
    """The latest earlier result at 1 M readings whose pipeline ran (for the RSS-growth target)."""
    if explicit:
        return json.loads(Path(explicit).read_text())
    if size <= ONE_M:
        return None
    candidates = []
    for base in (results_dir, Path(__file__).resolve().parent / "reference"):
        candidates += sorted(base.glob("*.json")) if base.exists() else []
    best = None
    for f in candidates:
        try:
            r = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        pipeline = r.get("contenders", {}).get("pipeline", {})
        if (r.get("size") == ONE_M and not r.get("profiled") and pipeline.get("status") == "ok"
                and set(pipeline.get("stages", {})) == set(STAGES)):
            if best is None or r["timestamp"] > best["timestamp"]:
                best = r
    return best


def _t(target: str, value, ok, note: str = "") -> dict:
    return {"target": target, "value": value, "pass": ok, "note": note.strip().rstrip(";").strip()}


def targets(result: dict, rss_ref: dict | None) -> dict:
    c = result["contenders"]
    ok = lambda name: c.get(name, {}).get("status") == "ok"  # noqa: E731
    if ok("pipeline") and set(c["pipeline"].get("stages", {})) != set(STAGES):
        return {"partial": _t("targets need all four stages", sorted(c["pipeline"]["stages"]), None,
                              "this run ran a subset of the pipeline's stages (--stages)")}
    at_10m = result["size"] == TEN_M
    note_size = "" if at_10m else f"the target is set at 10 M readings; this run has {result['size']:,}"
    t = {}
    if ok("pipeline") and ok("ceiling"):
        r = c["pipeline"]["wall_s"] / c["ceiling"]["wall_s"]
        t["vs_ceiling"] = _t("whole daily job <= 1.5 x ceiling (stretch: 1.0 x)", round(r, 2), r <= 1.5,
                             ("stretch met; " if r <= 1.0 else "") + note_size)
    if ok("pipeline") and ok("seed-style"):
        r = c["seed-style"]["wall_s"] / c["pipeline"]["wall_s"]
        t["vs_seed_style"] = _t(">= 15 x faster than the seed-style baseline", round(r, 1), r >= 15,
                                "; ".join(x for x in ("baseline capped and scaled" if c["seed-style"].get("capped")
                                                      else "", note_size) if x))
    dlts = {k: v for k, v in c.items() if k.startswith("dlt-") and v.get("status") == "ok"}
    default_fmt = {k: v for k, v in dlts.items() if v.get("dlt", {}).get("loader_file_format") == "default"}
    if ok("pipeline") and default_fmt:
        fastest = min(default_fmt, key=lambda k: default_fmt[k]["wall_s"])
        r = default_fmt[fastest]["wall_s"] / c["pipeline"]["wall_s"]
        t["vs_dlt"] = _t(">= 4 x faster than dlt's fastest backend", round(r, 1), r >= 4,
                         f"fastest backend: {fastest}, dlt's default loader file format"
                         + (" (capped and scaled)" if default_fmt[fastest].get("capped") else "")
                         + (f"; {note_size}" if note_size else ""))
    adbc = {k: v for k, v in dlts.items() if k not in default_fmt}
    if ok("pipeline") and adbc:
        fastest = min(adbc, key=lambda k: adbc[k]["wall_s"])
        r = adbc[fastest]["wall_s"] / c["pipeline"]["wall_s"]
        floor = (adbc[fastest]["wall_s"] / c["ceiling"]["wall_s"]) if ok("ceiling") else None
        t["vs_dlt_adbc"] = _t(">= 4 x faster than dlt with its opt-in ADBC parquet loading", round(r, 1), r >= 4,
                              f"{fastest}" + (f"; it takes {floor:.2f} x the ceiling, so 4 x faster would mean "
                                              f"{floor / 4:.2f} x the ceiling" if floor else ""))
    if ok("pipeline"):
        stages = c["pipeline"]["stages"]
        worst = max(stages, key=lambda s: stages[s]["max_rss_mib"])
        v = stages[worst]["max_rss_mib"]
        t["rss_under_1gib"] = _t("peak RSS of every stage < 1 GiB", {s: stages[s]["max_rss_mib"] for s in stages},
                                 v < GIB_MIB, f"largest: {worst} {v} MiB; " + note_size)
        ref = (rss_ref or {}).get("contenders", {}).get("pipeline", {}).get("stages")
        if ref:
            growth = {s: round(stages[s]["max_rss_mib"] / ref[s]["max_rss_mib"], 2) for s in stages if s in ref}
            t["rss_growth"] = _t("peak RSS of every stage <= 3 x its value at 1 M", growth,
                                 all(g <= 3 for g in growth.values()),
                                 f"reference: run {rss_ref['timestamp']} at 1 M; " + note_size)
        else:
            t["rss_growth"] = _t("peak RSS of every stage <= 3 x its value at 1 M", None, None,
                                 "compared only for runs above 1 M readings" if result["size"] <= ONE_M
                                 else "no 1 M reference run found (run `make bench SIZE=1000000` first)")
    if ok("pipeline") and ok("pipeline-docker"):
        d = c["pipeline-docker"]["wall_s"] - c["pipeline"]["wall_s"]
        t["container_overhead"] = _t("docker run of the images <= local + 5 s", round(d, 2), d <= 5,
                                     "seconds more" + (f"; {note_size}" if note_size else ""))
    elif "pipeline-docker" in c:
        t["container_overhead"] = _t("docker run of the images <= local + 5 s", None, None,
                                     c["pipeline-docker"].get("note") or c["pipeline-docker"].get("error", ""))
    return t


def cpu_summary(result: dict) -> dict | None:
    """The machine's CPU time each contender used (its own processes, PostgreSQL's and anything
    else running meanwhile) and, for the pipeline, the least wall time its work can take on this
    machine's cores: a ratio to the ceiling below which no scheduling of the same work can go."""
    c, cores = result["contenders"], result["machine"].get("cores") or 1
    used = {name: {"machine_cpu_s": r["machine_cpu_s"], "cores_busy": round(r["machine_cpu_s"] / r["wall_s"], 2)}
            for name, r in c.items()
            if r.get("status") == "ok" and r.get("machine_cpu_s") is not None and r.get("wall_s")}
    if not used:
        return None
    out = {"cores": cores, "by_contender": used}
    if "pipeline" in used and "ceiling" in used:
        floor = used["pipeline"]["machine_cpu_s"] / cores
        out["pipeline_floor_s"] = round(floor, 2)
        out["pipeline_floor_x_ceiling"] = round(floor / c["ceiling"]["wall_s"], 2)
        out["pipeline_cpu_x_ceiling_cpu"] = round(used["pipeline"]["machine_cpu_s"]
                                                  / max(used["ceiling"]["machine_cpu_s"], 0.01), 2)
    return out


def _cpu_lines(cpu: dict | None) -> list[str]:
    if not cpu:
        return []
    listed = ", ".join(f"{name} {v['machine_cpu_s']:.1f} ({v['cores_busy']:.2f} cores busy)"
                       for name, v in cpu["by_contender"].items())
    lines = ["", "CPU seconds of the whole machine while each ran (its processes, PostgreSQL's and anything else):",
             f"  {listed}"]
    if "pipeline_floor_s" in cpu:
        lines.append(f"  the pipeline's work is {cpu['pipeline_cpu_x_ceiling_cpu']} x the ceiling's: on "
                     f"{cpu['cores']} cores it cannot take less than {cpu['pipeline_floor_s']:.2f} s, "
                     f"{cpu['pipeline_floor_x_ceiling']} x the ceiling's time, however its stages were scheduled")
    return lines


def _last_line(text: str | None) -> str:
    lines = [ln for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1].strip()[:140] if lines else ""


def _fmt_rate(v) -> str:
    return f"{v:,.0f}" if isinstance(v, (int, float)) else "-"


def _fmt(v, spec=".2f") -> str:
    return format(v, spec) if isinstance(v, (int, float)) else "-"


def table(result: dict) -> str:
    m = result["machine"]
    lines = [
        f"BIOMETRICS bench  N={result['size']:,} readings of {result['date']}  "
        f"cores={m.get('cores')}  cpu={m.get('cpu', '?')}  mem={m.get('mem_gib', '?')} GiB  "
        f"PostgreSQL {result.get('postgres', {}).get('version', '?')}",
        f"load average at start {m.get('loadavg_at_start')}, at end {m.get('loadavg_at_end')}"
        + ("  (busy machine: times are inflated)" if max((m.get('loadavg_at_start') or [0])[0],
                                                          (m.get('loadavg_at_end') or [0])[0]) > (m.get('cores') or 1) else ""),
        *([f"each contender: its median of {result['rounds']} interleaved rounds (all rounds' totals in the note)"]
          if result.get("rounds", 1) > 1 else []),
        "",
        f"{'contender':<16} {'stage':<10} {'wall s':>9} {'rows/s':>12} {'peak RSS MiB':>13} {'CPU s':>8}  note",
        "-" * 109,
    ]
    for name, r in result["contenders"].items():
        if r.get("status") != "ok":
            lines.append(f"{name:<16} {'':<10} {'-':>9} {'-':>12} {'-':>13} {'-':>8}  {r.get('status')}: "
                         f"{_last_line(r.get('error') or r.get('note'))}")
            continue
        for s, v in (r.get("stages") or {}).items():
            lines.append(f"{name:<16} {s:<10} {_fmt(v['wall_s']):>9} {_fmt_rate(v.get('rows_per_s')):>12} "
                         f"{_fmt(v.get('max_rss_mib'), '.1f'):>13} {_fmt(v.get('machine_cpu_s'), '.1f'):>8}")
        note = r.get("note", "")
        if r.get("capped"):
            note = r["capped"]["note"] + (f" (measured {r['measured_wall_s']:.2f}s)")
        elif r.get("check"):
            ck = r["check"]
            note = ("daily_metrics matches the SQL reference" if ck.get("ok")
                    else f"daily_metrics differs from the SQL reference: {ck}")[:160]
        if r.get("rounds_wall_s"):
            note = f"rounds {' / '.join(_fmt(w) for w in r['rounds_wall_s'])}; {note}"
        lines.append(f"{name:<16} {'total' if r.get('stages') else '':<10} {_fmt(r['wall_s']):>9} "
                     f"{_fmt_rate(r.get('rows_per_s')):>12} {_fmt(r.get('max_rss_mib'), '.1f'):>13} "
                     f"{_fmt(r.get('machine_cpu_s'), '.1f'):>8}  {note}")
    lines += _cpu_lines(result.get("cpu"))
    lines += ["", "targets (informative, never asserted):"]
    for k, t in result.get("targets", {}).items():
        verdict = {True: "PASS", False: "FAIL", None: "n/a "}[t["pass"]]
        lines.append(f"  [{verdict}] {t['target']}: {t['value']}" + (f"  ({t['note']})" if t.get("note") else ""))
    return "\n".join(lines)
