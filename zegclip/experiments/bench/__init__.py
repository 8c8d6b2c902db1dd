"""``python -m zegclip bench``: the efficiency benchmark behind Table 3 (and ``notebooks/bench.ipynb``).

For each method - ZegCLIP with the VOC preset (T = 10 prompts, 20 classes at test), the COCO preset (T = 100,
171 classes) and the two-stage comparator of :mod:`zegclip.experiments.bench.twostage` - it measures, with random weights (cost
does not depend on weights):

* parameters: trainable and total (the CLIP text tower is left out: its embeddings are precomputed);
* MACs of one crop (``size`` x ``size``, batch 1) with the one counter of :mod:`zegclip.experiments.bench.efficiency`;
* phases (``phases``; default all four on a GPU, ``forward,train`` on a CPU, where one two-stage image takes
  minutes): ``forward`` - latency of one crop at batch 1 (ms/image, FPS); ``throughput`` - crops at
  batch ``batch`` (images/s); ``image`` - one VOC-sized image (``size`` x ``4/3 size``, 512 x 683 at the
  default): slide-window inference for ZegCLIP (2 windows, as evaluation), one whole-image pass for the
  two-stage comparator; ``train`` - one optimiser step (forward, official focal + dice loss, backward, AdamW)
  at batch ``train_batch`` (ZegCLIP only: a two-stage method trains its stages separately);
* peak memory of every phase (:class:`zegclip.experiments.bench.efficiency.PeakMemory`).

Timing protocol: ``warmup`` untimed calls, then the median of ``repeats`` timed calls, the device synchronised
around each. ``dtype`` ``"bf16"`` runs under ``torch.autocast`` (weights stay float32), ``"fp32"`` without;
``"auto"`` is bf16 on a GPU that supports it and fp32 elsewhere. ``compile`` wraps the model in ``torch.compile``
(forward, throughput and train phases), ``channels_last`` converts the model and inputs to channels-last.

The result is one JSON file, ``<results_dir>/<profile>/bench/<run_id>.json`` (written atomically), holding
``params`` (the notebook/CLI parameters, defaults filled in), ``config`` (the resolved settings), ``device``, ``dtype``,
``torch_threads``, ``environment`` (library versions) and ``methods`` (one record per method).

    config.py      parameters, defaults, resolution (BenchConfig)
    measure.py     subjects, timed phases, run_bench (writes the JSON)
    tables.py      summary, Table 3 and ratio frames; reading results
    gpucheck.py    ``--gpu-report`` / ``make gpu-check``: the GPU path end to end
    vsofficial.py  ``--vs-official``: our forward timed against the official one on identical weights
    reference.py   the independent transcription of the official forward (also pinned by a test)
    efficiency.py  the one MAC counter, timing and peak-memory helpers
    twostage.py    the two-stage comparator built from this package's parts
"""
import importlib

# Imported on first use (PEP 562): the CLI builds its parser from config.py's defaults without importing torch.
_WHERE = {
    **{name: ".config" for name in ("ALIASES", "DEFAULT_PARAMS", "FORMAT", "METHODS", "PHASES", "BenchConfig",
                                     "quick_overrides", "resolve", "result_path")},
    **{name: ".measure" for name in ("bench_method", "build_subject", "device_name", "make_train_step", "run_bench")},
    **{name: ".tables" for name in ("describe_run", "format_table", "load_bench_results", "ratios_frame",
                                     "summary_frame", "table3_frame", "valid_bench", "vs_official_frame")},
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
