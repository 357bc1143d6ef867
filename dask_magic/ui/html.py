"""Escaped, static HTML for a run: the panel's pieces and the ``text/html`` fallback.

Every fragment the live panel shows is built here, and `summary_html` puts the same
fragments together as one static page for the ``text/html`` side of the display (what
nbconvert, GitHub, VS Code without widgets and papermill show). Expanding a failed item is a
browser-side ``<details>`` element, so it works while the kernel is busy and in exported
HTML, with no JavaScript at all.

Rules kept here: every piece of user text (loop values, exception messages, tracebacks,
captured output, run names, cluster addresses) goes through `esc`; links must be http(s) or
site-relative; colours are JupyterLab CSS variables with fallbacks for pages without them.
This module reads `RunSnapshot` data only; it never talks to Dask.
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from dask_magic.engine.results import (
    ClusterInfo,
    Counts,
    Failure,
    RunSnapshot,
    RunStatus,
    group_failures,
)
from dask_magic.ui.text import format_bytes, format_duration, status_word

__all__ = [
    "CSS",
    "cluster_html",
    "dashboard_url",
    "esc",
    "failure_html",
    "group_html",
    "head_html",
    "status_html",
    "summary_html",
]

#: Captured output and tracebacks are cut to this many characters in one item's details, so
#: one chatty item cannot make every panel update (and the saved notebook) megabytes long.
TEXT_LIMIT = 8_000
#: The static fallback lists this many groups, and items per group; the rest are counted.
STATIC_GROUPS = 10
STATIC_ROWS = 5
#: ... with each text cut shorter than in the live panel: the fallback is saved in the notebook.
STATIC_TEXT_LIMIT = 2_000

_DOT = " \u00b7 "
_LOOPBACK = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}  # compared with, never bound


def _rule(selector: str, *declarations: str) -> str:
    return f"{selector}{{{';'.join(declarations)}}}"


_CODE_FONT = (
    "font-family:var(--jp-code-font-family,monospace)",
    "font-size:var(--jp-code-font-size,12px)",
)
_ERROR = "var(--jp-error-color1,#c62828)"
_MUTED = "color:var(--jp-ui-font-color2,#757575)"

#: One style sheet for the panel (sent once, in a widget that never changes) and the fallback.
CSS = (
    "<style>\n"
    + "\n".join(
        [
            _rule(
                ".dm-panel",
                "font-family:var(--jp-ui-font-family,system-ui,sans-serif)",
                "font-size:var(--jp-ui-font-size1,13px)",
                "color:var(--jp-ui-font-color1,#212121)",
                "line-height:1.45",
            ),
            _rule(
                ".dm-panel pre",
                *_CODE_FONT,
                "background:var(--jp-layout-color2,#f5f5f5)",
                "color:var(--jp-content-font-color1,#212121)",
                "padding:4px 6px",
                "margin:2px 0",
                "white-space:pre-wrap",
                "overflow:auto",
                "max-height:24em",
            ),
            _rule(".dm-panel mark", "background:var(--jp-warn-color3,#ffe0b2)", "color:inherit"),
            _rule(
                ".dm-bar",
                "display:flex",
                "height:12px",
                "max-width:640px",
                "margin:3px 0",
                "background:var(--jp-layout-color3,#e0e0e0)",
                "border-radius:3px",
                "overflow:hidden",
            ),
            _rule(".dm-bar-done", "background:var(--jp-success-color1,#388e3c)"),
            _rule(
                ".dm-bar-failed,.dm-bar-timeout", f"background:{_ERROR}", "min-width:3px"
            ),  # 1 in 10,000 still shows
            _rule(".dm-bar-running", "background:var(--jp-brand-color3,#90caf9)"),
            _rule(".dm-bar-cancelled", "background:var(--jp-warn-color1,#f57c00)"),
            _rule(".dm-muted", _MUTED),
            _rule(".dm-title", "font-weight:600"),
            _rule(
                ".dm-badge",
                "padding:0 6px",
                "border-radius:8px",
                "font-size:90%",
                "border:1px solid var(--jp-border-color1,#bdbdbd)",
            ),
            _rule(
                ".dm-badge-finished",
                "color:var(--jp-success-color1,#2e7d32)",
                "border-color:var(--jp-success-color1,#2e7d32)",
            ),
            _rule(".dm-badge-failed,.dm-badge-error", f"color:{_ERROR}", f"border-color:{_ERROR}"),
            _rule(
                ".dm-badge-interrupted",
                "color:var(--jp-warn-color1,#ef6c00)",
                "border-color:var(--jp-warn-color1,#ef6c00)",
            ),
            _rule(".dm-n-failed,.dm-err", f"color:{_ERROR}"),
            _rule(".dm-group", "font-weight:600", "margin-top:6px"),
            _rule(".dm-item>summary", "cursor:pointer", *_CODE_FONT),
            _rule(".dm-item-body", "margin-left:14px"),
            _rule(".dm-label", "font-size:90%", _MUTED, "margin-top:4px"),
            _rule(".dm-hint", _MUTED, "font-style:italic"),
            _rule(".dm-panel a", "color:var(--jp-content-link-color,#1976d2)"),
        ]
    )
    + "\n</style>"
)


def esc(text: object) -> str:
    """``html.escape`` with quotes, for text and attribute values alike."""
    return html.escape(str(text), quote=True)


def _cut(text: str, limit: int = TEXT_LIMIT) -> str:
    if len(text) <= limit:
        return text
    # Keep the end: the last lines of output and the exception line are what explain a failure.
    return f"[{len(text) - limit:,} characters cut]\n" + text[-limit:]


def dashboard_url(link: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The dashboard link a browser can open, or None when there is none or it is unsafe.

    ``link`` is what the cluster reports (dask's ``distributed.dashboard.link`` template
    already applied, so a configured link is honoured as is). When the kernel runs behind a
    JupyterHub or Binder (``JUPYTERHUB_SERVICE_PREFIX`` set), a loopback link is unreachable
    from the user's browser; it becomes the jupyter-server-proxy path
    ``{prefix}proxy/{port}/status`` instead.
    """
    if not link:
        return None
    environ = os.environ if environ is None else environ
    parts = urlsplit(link)
    if parts.scheme not in ("http", "https", ""):
        return None  # never put a javascript: or data: URL into an href
    if parts.scheme == "" and not link.startswith("/"):
        return None
    prefix = environ.get("JUPYTERHUB_SERVICE_PREFIX")
    if prefix and parts.hostname in _LOOPBACK and parts.port:
        path = parts.path or "/status"
        query = f"?{parts.query}" if parts.query else ""
        return f"{prefix.rstrip('/')}/proxy/{parts.port}{path}{query}"
    return link


# -- header, bar and counts ----------------------------------------------------------------------
_STATUS_WORDS = {
    RunStatus.PENDING: "starting",
    RunStatus.RUNNING: "running",
    RunStatus.FINISHED: "finished",
    RunStatus.FAILED: "finished with failures",
    RunStatus.INTERRUPTED: "interrupted",
    RunStatus.ERROR: "stopped by an error",
}


def cluster_html(info: ClusterInfo | None, environ: Mapping[str, str] | None = None) -> str:
    """Where the run runs: scheduler, size and a dashboard link (or "in this kernel")."""
    if info is None:
        return '<span class="dm-muted">in this kernel (no cluster)</span>'
    whose = "local cluster" if info.local else "cluster"
    workers = "worker" if info.workers == 1 else "workers"
    threads = "thread" if info.threads == 1 else "threads"
    parts = [
        f"{whose} <code>{esc(info.scheduler)}</code>",
        f"{info.workers} {workers}, {info.threads} {threads}, {esc(format_bytes(info.memory))}",
    ]
    url = dashboard_url(info.dashboard, environ)
    if url:
        parts.append(
            f'<a class="dm-dashboard" href="{esc(url)}" target="_blank" rel="noopener noreferrer">'
            "Dask dashboard \u2197</a>"
        )
    return '<span class="dm-muted">' + _DOT.join(parts) + "</span>"


def head_html(snapshot: RunSnapshot, environ: Mapping[str, str] | None = None) -> str:
    """Title line: ``parallel_for 'name'``, a status badge and the cluster."""
    name = f" <code>{esc(snapshot.name)}</code>" if snapshot.name else ""
    status = snapshot.status
    word = esc(status_word(snapshot, _STATUS_WORDS))
    # only items cancelled one by one kept the run from finishing: no failure, an interruption
    c = snapshot.counts
    cancelled_only = status is RunStatus.FAILED and c.cancelled and not (c.failed or c.timeout)
    style = RunStatus.INTERRUPTED.value if cancelled_only else status.value
    badge = f'<span class="dm-badge dm-badge-{esc(style)}">{word}</span>'
    return (
        f'<div class="dm-head"><span class="dm-title">parallel_for</span>{name} {badge} '
        f"{cluster_html(snapshot.cluster, environ)}</div>"
    )


def _share(part: int, total: int) -> str:
    return f"{100.0 * part / total:.2f}%" if total else "0%"


def bar_html(counts: Counts) -> str:
    """A stacked bar: done, failed, timed-out, running and cancelled shares of all items."""
    segments = []
    for name in ("done", "failed", "timeout", "running", "cancelled"):
        value = getattr(counts, name)
        if value:
            segments.append(
                f'<div class="dm-bar-{name}" style="width:{_share(value, counts.total)}"></div>'
            )
    title = f"{counts.done} done, {counts.failed} failed of {counts.total}"
    label = esc(title)
    inner = "".join(segments)
    return f'<div class="dm-bar" role="img" aria-label="{label}" title="{label}">{inner}</div>'


def _rate(rate: float) -> str:
    return f"{rate:.1f} items/s" if rate >= 1 else f"{rate * 60:.1f} items/min"


def status_html(snapshot: RunSnapshot) -> str:
    """Bar, counts (``data-*`` attributes too, for tests and tools) and timing."""
    c = snapshot.counts
    data = " ".join(
        f'data-{k}="{getattr(c, k)}"'
        for k in ("total", "done", "failed", "timeout", "running", "queued", "cancelled")
    )
    counts = [
        f'<b class="dm-n-done">{c.done:,}</b> done',
        f'<b class="dm-n-failed">{c.failed:,}</b> failed' if c.failed else "<b>0</b> failed",
        f"<b>{c.running:,}</b> running",
        f"<b>{c.queued:,}</b> queued",
    ]
    if c.timeout:
        counts.insert(2, f'<b class="dm-n-failed">{c.timeout:,}</b> timed out')
    if c.cancelled:
        counts.append(f"<b>{c.cancelled:,}</b> cancelled")
    if c.restored:
        counts.append(f'<b class="dm-n-restored">{c.restored:,}</b> restored from the journal')
    timing = [f"{esc(format_duration(snapshot.elapsed))} elapsed"]
    if snapshot.rate:
        timing.append(_rate(snapshot.rate))
    if snapshot.eta is not None and snapshot.status is RunStatus.RUNNING:
        timing.append(f"ETA {esc(format_duration(snapshot.eta))}")
    return (
        f'<div class="dm-status" {data}>{bar_html(c)}'
        f'<div class="dm-counts">{_DOT.join(counts)} '
        f'<span class="dm-muted">of {c.total:,}</span></div>'
        f'<div class="dm-timing dm-muted">{_DOT.join(timing)}</div></div>'
    )


# -- failures ---------------------------------------------------------------------------------
def _marked_traceback(text: str, limit: int) -> str:
    """Escaped traceback with the failing source line (the one above the ``^^^`` carets) marked."""
    lines = _cut(text, limit).split("\n")
    out: list[str] = []
    for i, line in enumerate(lines):
        below = lines[i + 1] if i + 1 < len(lines) else ""
        if below.strip() and set(below.strip()) <= {"^", "~"}:
            out.append(f'<mark class="dm-mark">{esc(line)}</mark>')
        else:
            out.append(esc(line))
    return "\n".join(out)


def _captured(label: str, text: str, limit: int) -> str:
    if not text:
        return ""
    name = esc(label)
    return (
        f'<div class="dm-label">{name}</div><pre class="dm-{name}">{esc(_cut(text, limit))}</pre>'
    )


def failure_html(failure: Failure, limit: int = TEXT_LIMIT) -> str:
    """One failed item: a ``<details>`` whose summary is the loop value and the error.

    Opened, it shows the traceback (user frames, cell lines, the failing line marked), a
    nested "show all frames" with every frame, and the item's captured output; each text is
    cut to its last ``limit`` characters.
    """
    summary = esc(failure.error.summary[:300])  # cut before escaping: never half an entity
    body = [f'<pre class="dm-tb">{_marked_traceback(failure.traceback, limit)}</pre>']
    if failure.full_traceback and failure.full_traceback != failure.traceback:
        body.append(
            f'<details class="dm-frames"><summary class="dm-muted">show all frames</summary>'
            f'<pre class="dm-tb-full">{_marked_traceback(failure.full_traceback, limit)}</pre>'
            "</details>"
        )
    body.append(_captured("stdout", failure.stdout, limit))
    body.append(_captured("stderr", failure.stderr, limit))
    body.append(_captured("warnings", "\n".join(failure.warnings), limit))
    where = [f"item {failure.index}"]
    if failure.worker:
        where.append(f"worker {esc(failure.worker)}")
    if failure.duration:
        where.append(esc(format_duration(failure.duration)))
    body.append(f'<div class="dm-muted">{_DOT.join(where)}</div>')
    return (
        f'<details class="dm-item" data-index="{failure.index}"><summary>'
        f'<span class="dm-value">{esc(failure.item_repr)}</span> '
        f'<span class="dm-err">{summary}</span></summary>'
        f'<div class="dm-item-body">{"".join(body)}</div></details>'
    )


def group_html(label: str, group: list[Failure]) -> str:
    """``37 \u00d7 FileNotFoundError at line 3`` and the first message of the group."""
    first = group[0].error.message.splitlines()[0] if group[0].error.message else ""
    message = f' <span class="dm-muted">{esc(first[:200])}</span>' if first else ""
    return f'<div class="dm-group">{len(group):,} \u00d7 {esc(label)}{message}</div>'


def _static_failures(failures: tuple[Failure, ...]) -> str:
    groups = group_failures(failures)
    parts = []
    for label, group in groups[:STATIC_GROUPS]:
        parts.append(group_html(label, group))
        parts.extend(failure_html(f, STATIC_TEXT_LIMIT) for f in group[:STATIC_ROWS])
        if len(group) > STATIC_ROWS:
            parts.append(
                f'<div class="dm-muted">\u2026 and {len(group) - STATIC_ROWS:,} more</div>'
            )
    if len(groups) > STATIC_GROUPS:
        rest = sum(len(g) for _, g in groups[STATIC_GROUPS:])
        parts.append(
            f'<div class="dm-muted">\u2026 and {rest:,} more failures in '
            f"{len(groups) - STATIC_GROUPS} other groups</div>"
        )
    return "".join(parts)


def summary_html(snapshot: RunSnapshot, environ: Mapping[str, str] | None = None) -> str:
    """The whole run as static HTML: header, bar, counts, timing and grouped failures."""
    parts = [
        CSS,
        '<div class="dm-panel dm-static">',
        head_html(snapshot, environ),
        status_html(snapshot),
    ]
    if snapshot.message:
        parts.append(f'<div class="dm-message">{esc(snapshot.message)}</div>')
    if snapshot.failures:
        parts.append(_static_failures(snapshot.failures))
        parts.append(
            '<div class="dm-hint">Fix the cause, then run <code>%parallel_retry</code> '
            "to re-run only the failed items.</div>"
        )
    parts.append("</div>")
    return "".join(parts)
