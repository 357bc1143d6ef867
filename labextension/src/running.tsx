/**
 * A live run's running items in the sidebar (the longest-running few, as the kernel sends
 * them), each with a Cancel item button when the kernel reads actions during the run.
 *
 * Loop values are rendered as React text, never as HTML.
 */
import * as React from 'react';

import { formatDuration } from './format';
import { IRun } from './protocol';

const CLS = 'jp-DaskMagic';

export function RunningItems(props: {
  run: IRun;
  /** Given only in live mode: the click acts while the cell runs. */
  onCancelItem?: (run: IRun, index: number) => void;
}): JSX.Element | null {
  const { run, onCancelItem } = props;
  if (run.running.length === 0) {
    return null;
  }
  return (
    <ul className={`${CLS}-runningItems`} aria-label="Running now, longest first">
      {run.running.map(item => (
        <li key={item.index} className={`${CLS}-runningItem`} data-index={item.index}>
          <code className={`${CLS}-value`}>{item.item}</code>{' '}
          <span className={`${CLS}-muted`}>
            item {item.index} · {formatDuration(item.elapsed)}
          </span>
          {onCancelItem !== undefined && (
            <button
              className={`${CLS}-button ${CLS}-cancelItem`}
              title="End this item now as cancelled; the rest of the run goes on"
              onClick={() => onCancelItem(run, item.index)}
            >
              Cancel item
            </button>
          )}
        </li>
      ))}
    </ul>
  );
}
