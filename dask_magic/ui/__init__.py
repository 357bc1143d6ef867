"""Views over `dask_magic.engine.results.RunSnapshot`: the widget panel and text fallbacks."""
