"""The CaD-VI benchmarks as lmms-eval tasks.

One folder per task (a YAML that includes the shared ``_cadvi_defaults.yaml`` + a ``utils.py`` that maps
the benchmark's fields onto the shared modules):

* :mod:`eval_tasks.scoring` - answer parsing, (group) accuracy, bootstrap confidence intervals;
* :mod:`eval_tasks.metrics` - those summaries as lmms-eval metrics, one plain number per figure;
* :mod:`eval_tasks.data` - the public face of the question files (:mod:`eval_tasks.pinned`, the one
  resolver of every downloaded file; :mod:`eval_tasks.benchmarks`; :mod:`eval_tasks.question_files`),
  the image roots (:mod:`eval_tasks.images`) and the ``process_docs`` / ``doc_to_*`` functions the task
  YAMLs name (:mod:`eval_tasks.docs`);
* :mod:`eval_tasks.registration` - the ``lmms_eval.models`` entry point that makes ``lmms-eval --tasks
  bison`` find these tasks without ``--include_path``.

Importing this package imports nothing heavy (the entry point runs in every lmms-eval start).
"""
