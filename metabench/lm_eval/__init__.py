"""metabench as lm-evaluation-harness tasks.

- tasks/        the task YAMLs (metabench_recall, _copy, _needle, _count,
                _parity and the group `metabench`), shipped as package data;
                the repository's top-level `tasks` is a symlink to this folder
- settings.py   --metadata and --model_args -> Settings; the truncation check
- dataset.py    custom_dataset (metabench's generators), docs, per-length scores
- task.py       MetabenchTask: per-sample answer budgets, prompt guard, metrics
- wrapper.py    `metabench lm-eval`: lm-eval's CLI with this task folder added
- convert.py    `metabench import-lm-eval`: --log_samples output -> a results folder

Nothing here imports lm-eval at package import; task.py (loaded by lm-eval
itself) and wrapper.py do.
"""

from pathlib import Path

TASKS_DIR = Path(__file__).parent / "tasks"
