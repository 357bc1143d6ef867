/**
 * The left-sidebar widget: renders `SidebarView` from the `RunsModel` on every change.
 */
import { LabIcon, ReactWidget, UseSignal } from '@jupyterlab/ui-components';
import * as React from 'react';

import type { RunsModel } from './model';
import type { IRun } from './protocol';
import { ISidebarViewProps, SidebarView } from './views';

/** The sidebar's icon: three bars of different length, the middle one red (a failure). */
export const runsIcon = new LabIcon({
  name: 'dask-magic:runs',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">' +
    '<g class="jp-icon3" fill="#616161">' +
    '<rect x="3" y="4" width="18" height="4" rx="1"/>' +
    '<rect x="3" y="16" width="11" height="4" rx="1"/></g>' +
    '<rect class="jp-icon-warn0" fill="#d84315" x="3" y="10" width="15" height="4" rx="1"/>' +
    '</svg>'
});

/** The DOM id of the sidebar (and the `data-id` of its tab). */
export const SIDEBAR_ID = 'dask-magic-sidebar';

/** The runs of the notebook in focus, as a left-sidebar panel. */
export class RunsSidebar extends ReactWidget {
  constructor(options: RunsSidebar.IOptions) {
    super();
    this._model = options.model;
    this._baseUrl = options.baseUrl;
    this.id = SIDEBAR_ID;
    this.addClass('jp-DaskMagic');
    this.title.icon = runsIcon;
    this.title.caption = 'Dask parallel runs';
  }

  protected render(): JSX.Element {
    return (
      <UseSignal signal={this._model.changed}>{() => <SidebarView {...this._props()} />}</UseSignal>
    );
  }

  private _props(): ISidebarViewProps {
    const model = this._model;
    const notebook = model.notebook;
    const runs = model.kernelRuns;
    return {
      notebook: notebook === null ? null : notebook.title,
      connection: runs === null ? 'none' : runs.state,
      runs: runs?.runs ?? [],
      cluster: runs?.cluster ?? null,
      selectedRunId: model.selectedRunId,
      notice: runs?.error ?? model.notice,
      baseUrl: this._baseUrl,
      onSelectRun: (run: IRun) => model.selectRun(run),
      onRetry: (run: IRun) => runs?.retry(run.run_id),
      onCancel: (run: IRun) => void runs?.cancel(run.run_id),
      onCancelItem: (run: IRun, index: number) =>
        runs?.send({ action: 'cancel_item', run_id: run.run_id, index }),
      liveControls: runs?.live ?? false,
      onCloseCluster: () => runs?.closeCluster(),
      onDismissNotice: () => model.dismissNotice()
    };
  }

  private _model: RunsModel;
  private _baseUrl: string | undefined;
}

export namespace RunsSidebar {
  export interface IOptions {
    model: RunsModel;
    /** Resolves relative dashboard links (the page's URL). */
    baseUrl?: string;
  }
}
