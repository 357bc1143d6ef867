"""Runs loop plans on Dask: cluster, batching, scatter, per-item capture, replay, retry.

Nothing here imports IPython or ipywidgets; scripts use it through `dask_magic.parallel_for`.
"""
