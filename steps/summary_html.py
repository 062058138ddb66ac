"""summary.html: the run's report as one self-contained page (inline CSS, JS, SVG and images).

It opens from the output volume, a mail attachment or an Argo artifact without any network:
totals, what needs a human look (failures, audit findings), two throughput charts, and a table
of every video (sortable: click a column) with a strip of a few anonymized frames with faces.
The strips are read from the files the anonymize step wrote beside each output (never an
original frame); at most ``max_strips`` are embedded so the page stays small for 10,000 videos.
"""

from __future__ import annotations

import base64
import html
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from steps.thumbnails import THUMBS_SUFFIX

if TYPE_CHECKING:  # steps.summarize imports this module
    from steps.summarize import Row, Summary

#: About 15 kB each: 300 strips keep the page under 6 MB.
MAX_STRIPS = 300
_CHART_BARS = 60

_CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1d232a;background:#f6f7f9}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.meta{color:#5b6570;font-size:12px}.meta code{background:#eceff3;padding:1px 4px;border-radius:3px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin-top:16px}
.card{background:#fff;border:1px solid #dde1e6;border-radius:8px;padding:10px 14px;min-width:120px}
.card .v{font-size:22px;font-weight:600}.card .k{color:#5b6570;font-size:12px}
.card.bad{border-color:#d33;background:#fff4f4}.card.bad .v{color:#b00}
.charts{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
.chart{background:#fff;border:1px solid #dde1e6;border-radius:8px;padding:8px}
svg text{font-size:11px;fill:#5b6570}
table{border-collapse:collapse;background:#fff;width:100%;font-size:13px}
th,td{border-bottom:1px solid #e6e9ed;padding:5px 8px;text-align:left;vertical-align:middle}
th{background:#eef1f4;cursor:pointer;user-select:none;white-space:nowrap;position:sticky;top:0}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.s{display:inline-block;padding:1px 7px;border-radius:9px;font-size:12px;font-weight:600}
.s-done{background:#e3f6e8;color:#17692d}.s-skipped{background:#eceff3;color:#4a545e}.s-failed{background:#fde2e2;color:#a40000}
tr.failed td{background:#fff8f8}.err{color:#a40000;min-width:240px;max-width:420px}
img.strip{height:64px;border-radius:4px;display:block}.none{color:#8a939c;font-size:12px}
.filters button{margin-right:6px;border:1px solid #c8ced6;background:#fff;border-radius:14px;
padding:3px 12px;cursor:pointer}
.filters button.on{background:#1d232a;color:#fff}
ul.look li{margin:2px 0}
.wide{overflow-x:auto}
"""

_JS = """
(function(){
  var table=document.getElementById('videos'), body=table.tBodies[0];
  var heads=table.tHead.rows[0].cells;
  function key(row,col,numeric){var v=row.cells[col].getAttribute('data-v');
    if(numeric){var f=parseFloat(v);return isNaN(f)?-Infinity:f}return (v||'').toLowerCase()}
  function sortBy(col,dir){
    var numeric=heads[col].getAttribute('data-type')==='n';
    var rows=Array.prototype.slice.call(body.rows);
    rows.sort(function(a,b){var x=key(a,col,numeric),y=key(b,col,numeric);
      return (x<y?-1:x>y?1:0)*dir||(a.getAttribute('data-i')-b.getAttribute('data-i'))});
    rows.forEach(function(r){body.appendChild(r)});
    for(var i=0;i<heads.length;i++)heads[i].removeAttribute('aria-sort');
    heads[col].setAttribute('aria-sort',dir>0?'ascending':'descending');
    table.setAttribute('data-sorted-by',heads[col].getAttribute('data-key')+(dir>0?' ascending':' descending'));
  }
  for(var i=0;i<heads.length;i++)(function(c){heads[c].addEventListener('click',function(){
    sortBy(c,heads[c].getAttribute('aria-sort')==='ascending'?-1:1)})})(i);
  var buttons=document.querySelectorAll('.filters button');
  Array.prototype.forEach.call(buttons,function(b){b.addEventListener('click',function(){
    Array.prototype.forEach.call(buttons,function(o){o.classList.remove('on')});b.classList.add('on');
    var f=b.getAttribute('data-f');
    Array.prototype.forEach.call(body.rows,function(r){
      r.style.display=(f==='all'||r.getAttribute('data-look').indexOf(f)>=0)?'':'none'})})});
  /* Where a human should look first: failures, then audit findings, then the rest by name. */
  var look=0;for(var j=0;j<heads.length;j++)if(heads[j].getAttribute('data-key')==='attention')look=j;
  sortBy(look,-1);
})();
"""


def audit_text(findings: Optional[int]) -> str:
    """An audit count, or "not run" when the report has none (the audit pass is optional)."""
    return "not run" if findings is None else str(findings)


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _num(value: Optional[float], digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def duration_text(seconds: Optional[float]) -> str:
    if seconds is None:
        return "–"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _card(label: str, value: str, bad: bool = False, key: str = "") -> str:
    return (f'<div class="card{" bad" if bad else ""}" data-total="{_e(key)}"><div class="v">{_e(value)}</div>'
            f'<div class="k">{_e(label)}</div></div>')


def _time(text: Optional[str]) -> Optional[datetime]:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def frames_over_time(rows: list[Row]) -> list[tuple[float, int]]:
    """(seconds since the first start, frames done so far) at each finished video of this run."""
    done = [(r, _time(r.started_at), _time(r.finished_at)) for r in rows if r.status == "done" and r.frames]
    done = [(r, s, f) for r, s, f in done if s and f]
    if not done:
        return []
    start = min(s for _, s, _ in done)
    points, total = [(0.0, 0)], 0
    for row, _, finished in sorted(done, key=lambda item: item[2]):
        total += row.frames
        points.append(((finished - start).total_seconds(), total))
    return points


def _frames_chart(rows: list[Row]) -> str:
    points = frames_over_time(rows)
    width, height, left, bottom = 460, 220, 62, 30
    title = '<text x="8" y="14" style="font-weight:600;fill:#1d232a">Frames anonymized over time</text>'
    if len(points) < 2:
        return (f'<svg id="chart-frames" width="{width}" height="{height}" role="img">{title}'
                f'<text x="{left}" y="{height / 2}">no video finished in this run</text></svg>')
    max_t, max_f = max(p[0] for p in points) or 1.0, max(p[1] for p in points) or 1
    plot_w, plot_h = width - left - 14, height - bottom - 28

    def xy(t: float, f: int) -> str:
        return f"{left + t / max_t * plot_w:.1f},{height - bottom - f / max_f * plot_h:.1f}"

    line = " ".join(xy(t, f) for t, f in points)
    rate = max_f / max_t
    axes = (f'<line x1="{left}" y1="{height - bottom}" x2="{width - 14}" y2="{height - bottom}" stroke="#9aa3ad"/>'
            f'<line x1="{left}" y1="{height - bottom}" x2="{left}" y2="28" stroke="#9aa3ad"/>'
            f'<text x="{left - 6}" y="32" text-anchor="end">{max_f:,}</text>'
            f'<text x="{left - 6}" y="{height - bottom}" text-anchor="end">0</text>'
            f'<text x="{width - 14}" y="{height - 10}" text-anchor="end">{duration_text(max_t)}</text>'
            f'<text x="{left}" y="{height - 10}">0:00</text>'
            f'<text x="{left + plot_w / 2}" y="{height - 10}" text-anchor="middle">elapsed (h:mm:ss)</text>')
    return (f'<svg id="chart-frames" width="{width}" height="{height}" role="img" '
            f'aria-label="frames anonymized over time">{title}'
            f'<text x="{width - 14}" y="14" text-anchor="end">{rate:,.1f} frames/s on average</text>{axes}'
            f'<polyline fill="none" stroke="#2f6fdf" stroke-width="2" points="{line}"/></svg>')


def _fps_chart(rows: list[Row]) -> str:
    timed = sorted((r for r in rows if r.status == "done" and r.fps), key=lambda r: r.fps or 0)
    title = '<text x="8" y="14" style="font-weight:600;fill:#1d232a">Speed per video (frames/s)</text>'
    if not timed:
        return f'<svg id="chart-fps" width="460" height="80" role="img">{title}<text x="8" y="50">none</text></svg>'
    if len(timed) > _CHART_BARS:  # a histogram: a bar per speed range
        top = max(r.fps for r in timed)
        step = max(top / 12, 1e-9)
        counts = [0] * 12
        for r in timed:
            counts[min(11, int(r.fps / step))] += 1
        bars = [(f"{i * step:.0f}–{(i + 1) * step:.0f} fps", c, float(c)) for i, c in enumerate(counts)]
        scale_max, unit = max(counts), "videos"
    else:
        bars = [(r.path, r.fps, r.fps) for r in timed]
        scale_max, unit = max(r.fps for r in timed), "fps"
    bar_h, label_w, width = 16, 190, 460
    height = 24 + len(bars) * (bar_h + 3)
    parts = [f'<svg id="chart-fps" width="{width}" height="{height}" role="img" aria-label="speed per video">',
             title]
    for i, (label, value, length) in enumerate(bars):
        y = 22 + i * (bar_h + 3)
        w = (width - label_w - 60) * (length / scale_max if scale_max else 0)
        short = label if len(label) <= 30 else "…" + label[-29:]
        parts.append(f'<text x="{label_w - 6}" y="{y + 12}" text-anchor="end"><title>{_e(label)}</title>'
                     f'{_e(short)}</text><rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" '
                     f'fill="#7aa5f0"/><text x="{label_w + w + 4:.1f}" y="{y + 12}">{value:g} {unit}</text>')
    parts.append("</svg>")
    return "".join(parts)


def strip_file(output_root: str, row: Row) -> Optional[Path]:
    """The row's strip, found beside its report under *output_root* (so a moved output folder still works).

    Only a ``*.thumbs.jpg`` name is taken from the report: the page never embeds another file.
    """
    if not row.thumbnails or not row.thumbnails.endswith(THUMBS_SUFFIX):
        return None
    return Path(output_root) / Path(row.path).parent / Path(row.thumbnails).name


def _strip(row: Row, output_root: str, budget: list[int]) -> str:
    if row.status == "failed":
        return '<span class="none">–</span>'
    path = strip_file(output_root, row)
    if path is None:
        return '<span class="none">no face found</span>' if row.faces == 0 else '<span class="none">–</span>'
    if budget[0] <= 0:
        return f'<span class="none">not embedded (page size limit): {_e(path.name)}</span>'
    try:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
    except OSError:
        return '<span class="none">strip missing</span>'
    budget[0] -= 1
    return (f'<img class="strip" alt="anonymized frames of {_e(row.path)}" title="anonymized frames with faces" '
            f'src="data:image/jpeg;base64,{data}">')


def _attention(row: Row) -> float:
    """Sort key of the default order: failed first, then most audit findings, then retried."""
    return (1000000.0 if row.status == "failed" else 0.0) + (row.audit_findings or 0) * 10 + (row.retries or 0)


def _table(summary: Summary, max_strips: int) -> str:
    columns = [("attention", "n", "!"), ("path", "s", "video"), ("status", "s", "status"),
               ("duration", "n", "duration"), ("frames", "n", "frames"), ("faces", "n", "faces"),
               ("fps", "n", "fps"), ("retries", "n", "retries"), ("audit", "n", "audit findings"),
               ("error", "s", "error"), ("strip", "s", "anonymized frames with faces")]
    head = "".join(f'<th data-key="{k}" data-type="{t}">{_e(label)}</th>' for k, t, label in columns)
    budget = [max_strips]
    body = []
    for i, r in enumerate(summary.rows):
        look = ["failed"] if r.status == "failed" else []
        if r.audit_findings:
            look.append("audit")
        if r.retries:
            look.append("retried")
        attention = _attention(r)
        cells = [
            (attention, "!" if attention >= 1000000 else "?" if attention else "", "n"),
            (r.path, r.path, ""),
            ({"failed": 0, "done": 1, "skipped": 2}.get(r.status, 3), f'<span class="s s-{_e(r.status)}">'
             f'{_e(r.status)}</span>', "raw"),
            (r.duration, duration_text(r.duration), "n"),
            (r.frames, _num(r.frames), "n"),
            (r.faces, _num(r.faces), "n"),
            (r.fps, _num(r.fps, 1), "n"),
            (r.retries, _num(r.retries), "n"),
            (-1 if r.audit_findings is None else r.audit_findings, audit_text(r.audit_findings), "n"),
            (r.error, r.error, "err"),
            (1 if r.thumbnails else 0, _strip(r, summary.output_root, budget), "raw"),
        ]
        tds = []
        for value, shown, kind in cells:
            klass = ' class="n"' if kind == "n" else ' class="err"' if kind == "err" else ""
            content = shown if kind == "raw" else _e(shown)
            tds.append(f'<td{klass} data-v="{_e(value)}">{content}</td>')
        body.append(f'<tr data-i="{i}" data-look="{" ".join(look)}"{" class=failed" if r.status == "failed" else ""}>'
                    + "".join(tds) + "</tr>")
    return (f'<div class="wide"><table id="videos"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody>'
            '</table></div>')


#: What each kind of failure means for the person reading the page (steps.errors, summarize's "missing").
FAILURE_KINDS = {"permanent": "the input cannot be anonymized: look at the file",
                 "transient": "worth another try (argo retry, or run again)",
                 "internal": "a bug: report it with the video's log",
                 "missing": "its worker never reported: look at the pod or worker"}
_LOOK_ITEMS = 20


def _look_list(summary: Summary) -> str:
    failed = [r for r in summary.rows if r.status == "failed"]
    audited = sorted((r for r in summary.rows if r.audit_findings), key=lambda r: -(r.audit_findings or 0))
    if not failed and not audited:
        return '<p id="look">Nothing: every video is done and no audit finding was reported.</p>'
    kinds: dict[str, int] = {}
    for r in failed:
        kinds[r.error_kind or "internal"] = kinds.get(r.error_kind or "internal", 0) + 1
    summary_line = "".join(f"<li><b>{count} failed, {_e(kind)}</b>: {_e(FAILURE_KINDS.get(kind, ''))}</li>"
                           for kind, count in sorted(kinds.items(), key=lambda item: -item[1]))
    items = [f"<li><b>failed</b> {_e(r.path)}: {_e(r.error)}</li>" for r in failed[:_LOOK_ITEMS]]
    items += [f"<li><b>{r.audit_findings} audit findings</b> {_e(r.path)}</li>" for r in audited[:_LOOK_ITEMS]]
    more = len(failed) + len(audited) - len(items)
    tail = f"<li>… and {more} more: use the table's buttons</li>" if more > 0 else ""
    return f'<ul class="look" id="look">{summary_line}{"".join(items)}{tail}</ul>'


def to_html(summary: Summary, max_strips: int = MAX_STRIPS) -> str:
    t = summary.totals
    per_hour = t.get("gpu_seconds_per_video_hour") or t.get("worker_seconds_per_video_hour")
    per_hour_label = ("GPU-seconds per hour of video" if t.get("gpu_seconds_per_video_hour")
                      else "worker-seconds per hour of video")
    cards = [
        _card("videos", f"{t['discovered']:,}", key="discovered"),
        _card("done", f"{t['done']:,}", key="done"),
        _card("skipped (done before)", f"{t['skipped']:,}", key="skipped"),
        _card("failed", f"{t['failed']:,}", bad=t["failed"] > 0, key="failed"),
        _card("retried", f"{t['retried']:,}", key="retried"),
        _card("of video (h:mm:ss)", duration_text(t["video_hours"] * 3600), key="video_hours"),
        _card("frames anonymized", _num(t["frames"]), key="frames"),
        _card("faces hidden", _num(t["faces"]), key="faces"),
        _card("audit findings", audit_text(t.get("audit_findings")), bad=bool(t.get("audit_findings")),
              key="audit_findings"),
        _card("elapsed (h:mm:ss)", duration_text(t.get("elapsed_seconds")), key="elapsed_seconds"),
        _card("frames/s in all", _num(t.get("fps_overall"), 1), key="fps_overall"),
        _card("frames/s per worker", _num(t.get("fps_per_worker"), 1), key="fps_per_worker"),
        _card(per_hour_label, _num(per_hour, 0), key="per_video_hour"),
    ]
    cost = ""
    if per_hour:
        cost = (f"<p id=\"cost\">Cost estimate: one worker needs {per_hour / 3600:.2f} hours per hour of video; "
                f"300 hours of video would take {300 * per_hour / 3600:,.0f} worker-hours "
                f"({'GPU' if t.get('gpu_seconds_per_video_hour') else 'worker'}-seconds per hour of video: "
                f"{per_hour:,.0f}, measured on the {t['done']} videos done in this run).</p>")
    ignored = ""
    if summary.ignored:
        items = "".join(f"<li>{_e(i['path'])}: {_e(i['reason'])}</li>" for i in summary.ignored[:200])
        ignored = f"<h2>Files passed over ({len(summary.ignored)})</h2><ul>{items}</ul>"
    filters = ('<p class="filters"><button class="on" data-f="all">all</button>'
               '<button data-f="failed">failed</button><button data-f="audit">audit findings</button>'
               '<button data-f="retried">retried</button></p>')
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<title>Anonymization report</title>"
        f"<style>{_CSS}</style></head><body>"
        f"<h1>Anonymization report</h1><div class=\"meta\">Input <code>{_e(summary.input_root)}</code> · "
        f"output <code>{_e(summary.output_root)}</code> · written {_e(summary.created_at)}</div>"
        f"<div class=\"cards\">{''.join(cards)}</div>{cost}"
        f"<h2>Where to look</h2>{_look_list(summary)}"
        f"<h2>Throughput</h2><div class=\"charts\"><div class=\"chart\">{_frames_chart(summary.rows)}</div>"
        f"<div class=\"chart\">{_fps_chart(summary.rows)}</div></div>"
        f"<h2>Videos ({len(summary.rows):,})</h2>{filters}{_table(summary, max_strips)}{ignored}"
        "<p class=\"meta\">This page needs no network: styles, script, charts and pictures are inside it. "
        "The pictures are frames of the anonymized outputs.</p>"
        f"<script>{_JS}</script></body></html>\n"
    )
