/**
 * dask-magic's JupyterLab plugin: wiring only.
 */
import {
  ILabShell,
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { INotebookTracker } from '@jupyterlab/notebook';

import { RunsModel } from './model';
import { installPanelClicks } from './panelclicks';
import { RunsSidebar, SIDEBAR_ID } from './sidebar';
import { NotebookFocus } from './tracker';

/** The plugin id. */
export const PLUGIN_ID = 'dask-magic:sidebar';

/**
 * The left-sidebar panel of `%%parallel_for` runs for the notebook in focus.
 *
 * Every service is optional: without a notebook tracker (an app that has no notebooks) the
 * plugin adds nothing, and in Jupyter Notebook 7 it adds its panel to the notebook page's
 * left area.
 */
const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'A sidebar for dask-magic runs: live counts, failures, cluster, jump to cell.',
  autoStart: true,
  optional: [INotebookTracker, ILabShell, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    notebooks: INotebookTracker | null,
    labShell: ILabShell | null,
    restorer: ILayoutRestorer | null
  ): void => {
    if (notebooks === null) {
      return;
    }
    const focus = new NotebookFocus({ shell: app.shell, tracker: notebooks });
    const model = new RunsModel({ notebooks: focus });
    const sidebar = new RunsSidebar({ model, baseUrl: document.baseURI });
    app.shell.add(sidebar, 'left', { rank: labShell ? 800 : 200 });
    installPanelClicks(document, model);
    restorer?.add(sidebar, SIDEBAR_ID);
  }
};

export default plugin;
