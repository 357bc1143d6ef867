/**
 * Pure formatting helpers for the sidebar (no DOM, no JupyterLab).
 */
import type { ICounts, RunStatus } from './protocol';

/** `0.4 s`, `12.3 s`, `2 min 05 s`, `1 h 02 min`; `–` when unknown. */
export function formatDuration(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds) || seconds < 0) {
    return '–';
  }
  if (seconds < 60) {
    return `${seconds < 10 ? seconds.toFixed(1) : Math.round(seconds)} s`;
  }
  const total = Math.round(seconds);
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  if (hours > 0) {
    return `${hours} h ${String(minutes).padStart(2, '0')} min`;
  }
  return `${minutes} min ${String(total % 60).padStart(2, '0')} s`;
}

/** `512 B`, `1.5 KiB`, `4.0 GiB`. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** `2.5 items/s`, `120 items/s`; `''` when unknown. */
export function formatRate(rate: number | null): string {
  if (rate === null || !Number.isFinite(rate) || rate <= 0) {
    return '';
  }
  return `${rate < 10 ? rate.toFixed(1) : Math.round(rate)} items/s`;
}

/** The bar's segments as percentages of the total (they add up to at most 100). */
export function barSegments(counts: ICounts): {
  done: number;
  failed: number;
  running: number;
  cancelled: number;
} {
  if (counts.total <= 0) {
    return { done: 0, failed: 0, running: 0, cancelled: 0 };
  }
  const pct = (n: number) => Math.min(100, (100 * n) / counts.total);
  return {
    done: pct(counts.done),
    failed: pct(counts.failed + (counts.timeout ?? 0)),
    running: pct(counts.running),
    cancelled: pct(counts.cancelled)
  };
}

/** Human words for a status. */
export function statusLabel(status: RunStatus): string {
  return status === 'error' ? 'broken' : status;
}

/**
 * A run's badge: its status, except that a run whose only unfinished items were cancelled
 * one by one (Cancel item) did not fail: it reads `N cancelled`, styled as an interruption.
 */
export function runBadge(run: {
  status: RunStatus;
  counts: { failed: number; timeout?: number; cancelled: number };
}): { label: string; style: string } {
  const { failed, cancelled } = run.counts;
  if (run.status === 'failed' && failed + (run.counts.timeout ?? 0) === 0 && cancelled > 0) {
    return { label: `${cancelled} cancelled`, style: 'interrupted' };
  }
  return { label: statusLabel(run.status), style: run.status };
}

/**
 * The URL if it is an http(s) URL, else `null`: a link from the kernel never gets a
 * `javascript:` or other scheme. A relative URL (a dashboard behind jupyter-server-proxy,
 * `/user/me/proxy/8787/status`) is resolved against `base`.
 */
export function safeHttpUrl(url: string | null, base?: string): string | null {
  if (url === null || url === '') {
    return null;
  }
  try {
    const parsed = new URL(url, base);
    return parsed.protocol === 'http:' || parsed.protocol === 'https:' ? parsed.href : null;
  } catch {
    return null;
  }
}

/** `run 3f2a9c` from a run id, when the run has no name. */
export function runTitle(name: string | null, runId: string): string {
  return name || `run ${runId.slice(0, 8)}`;
}
