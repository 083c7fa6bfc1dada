"""CaD-QA for lmms-eval: the task (utils.py, cadqa.yaml), the judge server as a backend, the judging pass."""
