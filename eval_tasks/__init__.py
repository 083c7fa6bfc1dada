"""The CaD-VI benchmarks as lmms-eval tasks.

One folder per task (a YAML + a ``utils.py`` that maps the benchmark's fields onto the shared modules):

* :mod:`eval_tasks.scoring` - answer parsing, (group) accuracy, bootstrap confidence intervals;
* :mod:`eval_tasks.data` - the official question files (pinned download or a local folder), image
  roots, and the ``process_docs`` / ``doc_to_*`` functions the task YAMLs name;
* :mod:`eval_tasks.registration` - the ``lmms_eval.models`` entry point that makes ``lmms-eval --tasks
  bison`` find these tasks without ``--include_path``.

Importing this package imports nothing heavy (the entry point runs in every lmms-eval start).
"""
