"""Training the reference meta-token model: `metabench train` and `metabench extend`.

    presets.py  TrainConfig and the named presets (micro, tiny, small, paper)
    data.py     pre-training and fine-tuning rows, pure functions of (seed, step, row)
    loop.py     train(): AdamW, warmup + cosine, clipping, resume, DDP, JSONL log
    extend.py   YaRN extension of a checkpoint plus optional fine-tuning at the new window

Imports torch; `import metabench` does not import this package.
"""
