"""The training engine: it trains, evaluates and predicts with a model of :mod:`zegclip.model` on data of
:mod:`zegclip.data`, and knows nothing of the mini world or of the experiments.

    run.py        run files (model + data + train sections), recipes, train_run / evaluate_run
    train.py      the training loop: AdamW, poly schedule, checkpoints, resume, divergence checks
    schedule.py   learning-rate schedule
    selftrain.py  transductive self-training labels (pseudo labels) and inductive label masking
    checkpoint.py safetensors checkpoints with their optimizer state
    evaluate.py   evaluation loop, negative-control helpers
    metrics.py    confusion-matrix metrics (mIoU, seen/unseen, hIoU) on torchmetrics
    predict.py    label maps and overlays for image files
    results.py    the result JSON: environment, required metrics, validity
    recipes/      the paper's training settings as YAML run files
"""
