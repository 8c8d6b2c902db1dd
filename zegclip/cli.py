"""Command line: ``python -m zegclip <command>``. Each command's work lives with its concept; this only parses."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .typed import at_least


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="voc", help="model preset (voc, coco, context, ...)")
    p.add_argument("--variant", default=None, help="Table 5 variant, e.g. 'FT+NEL' or 'DPT+NEL+RD'")
    p.add_argument("--query-format", default=None, help="one of the 12 query formats of Table 4, e.g. '[t*g,t]'")
    p.add_argument("--setting", default=None, choices=["inductive", "transductive", "fully"])


def _overrides(args: argparse.Namespace) -> dict:
    from .model.presets import variant_overrides

    out: dict = variant_overrides(args.variant) if args.variant else {}
    if args.query_format:
        out["query_format"] = args.query_format
    if args.setting:
        out["setting"] = args.setting
    return out


def cmd_info(args: argparse.Namespace) -> int:
    """Print the resolved config and parameter counts of a preset as JSON (random weights; nothing loaded)."""
    import torch

    from .model.presets import get_config
    from .model.factory import build_model, resolve_split

    cfg = get_config(args.preset, **_overrides(args))
    split = resolve_split(cfg)
    placeholder = torch.zeros(split.num_classes, cfg.clip.model_config()["embed_dim"])
    model = build_model(cfg, random_init=True, text_embeddings=placeholder)
    info = {"preset": cfg.name, **model.parameter_counts(), "num_classes": split.num_classes,
            "seen": list(split.seen), "unseen": list(split.unseen), "config": cfg.to_dict()}
    print(json.dumps(info, indent=2, default=str))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """A small end-to-end run of the full-size model with random CLIP weights: train steps, then inference."""
    import torch

    from .model.factory import build_model
    from .model.losses import build_loss

    torch.manual_seed(0)
    print("zegclip demo: ViT-B/16 ZegCLIP ('voc' preset) with RANDOM CLIP weights.")
    print("The pipeline and shapes are real; the numbers mean nothing until real or mini-world weights are used.\n")
    t0 = time.perf_counter()
    model = build_model("voc", random_init=True)
    counts = model.parameter_counts()
    print(f"built in {time.perf_counter() - t0:.1f}s: trainable {counts['trainable_params']:,} "
          f"(official 13,821,184), total {counts['total_params']:,}")
    size = args.size
    images = torch.randn(args.batch, 3, size, size)
    labels = torch.randint(0, 20, (args.batch, size, size))
    labels[labels >= 15] = 255  # inductive: unseen pixels are ignored
    criterion = build_loss(model.cfg.loss)
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=2e-4, weight_decay=0.01)
    model.train()
    from tqdm import tqdm

    for step in tqdm(range(args.steps), desc="train steps", unit="step"):
        t = time.perf_counter()
        losses = criterion(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        optimizer.step()
        tqdm.write(f"  step {step}: loss {losses['loss'].item():.4f} (focal {losses['loss_focal'].item():.4f}, "
                   f"dice {losses['loss_dice'].item():.4f}) {time.perf_counter() - t:.1f}s")
    model.eval()
    test = torch.randn(1, 3, size, int(size * 4 / 3))
    t = time.perf_counter()
    scores = model.scores(test)
    labels_out = scores.argmax(1)
    print(f"slide-window inference on {tuple(test.shape[-2:])}: scores {tuple(scores.shape)}, "
          f"{time.perf_counter() - t:.1f}s; predicted classes {sorted(set(labels_out.unique().tolist()))}")
    print(f"demo finished in {time.perf_counter() - t0:.1f}s")
    return 0


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None, help="run file (YAML/JSON); a run's saved config.json reproduces it")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a run field, e.g. train.iters=1000 or model.preset=coco (repeatable)")
    _weights_args(p)


def _weights_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", default=None, metavar="FILE_OR_TAG",
                   help="CLIP weights: a file (OpenAI ViT-B-16.pt, open_clip checkpoint) or an open_clip tag such as "
                        "'openai' or 'laion2b_s34b_b88k' (downloaded through open_clip, only when named); default "
                        "$ZEGCLIP_CLIP_WEIGHTS")
    p.add_argument("--random-init", action="store_true", help="random CLIP weights (tests, timing)")


def _weight_overrides(args: argparse.Namespace) -> list[str]:
    """``--weights`` / ``--random-init`` as run-file overrides (they win over the run file)."""
    import json as _json

    if args.weights is not None and args.random_init:
        raise ValueError("give either --weights or --random-init, not both")
    if args.weights is not None:
        return [f"weights={_json.dumps(str(args.weights))}", "random_init=false"]
    return ["random_init=true", "weights=null"] if args.random_init else []


def cmd_train(args: argparse.Namespace) -> int:
    """Train a run (and evaluate it with --eval); --resume continues from the run's latest checkpoint."""
    from .engine.run import load_run, train_run

    run = load_run(args.config, args.set + _weight_overrides(args))
    result = train_run(run, resume=args.resume, evaluate_after=args.eval)
    print(json.dumps(result.get("evaluation", {}).get("metrics", result["train"]), indent=2, default=str))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate a run's checkpoint (default: the latest) or an official checkpoint; writes a result JSON."""
    from .engine.run import evaluate_run, load_run

    run = load_run(args.config, args.set + _weight_overrides(args))
    result = evaluate_run(run, checkpoint=args.checkpoint, official=args.official, result_path=args.output)
    print(json.dumps(result["metrics"], indent=2, default=str))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """Segment image files with free-text class names: colour mask PNGs, label PNGs and a legend."""
    from .engine.predict import predict_files

    if bool(args.run) == bool(args.official):
        raise ValueError("give exactly one of --run RUN_DIR (a trained run) or --official CHECKPOINT")
    if args.official:
        from .model.official import load_official_checkpoint

        model = load_official_checkpoint(args.official, dataset=args.dataset)
        short_side = args.short_side or 512
    else:
        from pathlib import Path

        from .engine.checkpoint import latest_checkpoint, load_weights
        from .engine.run import build_run_model, load_run

        run_dir = Path(args.run)
        run = load_run(run_dir / "config.json", _weight_overrides(args))
        model = build_run_model(run)
        ckpt = latest_checkpoint(run_dir)
        if ckpt is None:
            raise FileNotFoundError(f"no checkpoint in {run_dir / 'checkpoints'}")
        load_weights(model, ckpt)
        short_side = args.short_side or run.data.test_short_side  # the run's own test pipeline
    if args.classes:
        names = [c.strip() for c in args.classes.split(",")]
        model.set_classes(names)
    records, failed = predict_files(model, args.input, args.out, short_side=short_side)
    for r in records:
        print(f"{r['image']} -> {r['mask']}: {', '.join(r['classes'])}")
    print(f"legend: {args.out}/legend.png")
    for why in failed.values():
        print(f"zegclip predict: skipped: {why}", file=sys.stderr)
    if failed:
        print(f"zegclip predict: {len(failed)} of {len(failed) + len(records)} image(s) failed", file=sys.stderr)
    return 1 if failed else 0


def cmd_prepare(args: argparse.Namespace) -> int:
    """Convert official downloads into the standard layouts, or check a prepared dataset (--check)."""
    from .data import checks, datasets, prepare

    if args.check:
        problems = []
        for split in args.splits.split(","):
            ds = datasets.build_dataset(args.dataset, args.root, split, strict=False)
            print(f"{args.dataset}/{split}: {len(ds)} items")
            problems += checks.check_dataset(ds)
        for p in problems:
            print(f"  problem: {p}")
        print(f"{len(problems)} problem(s)")
        return 1 if problems else 0
    if args.dataset == "voc":
        if not args.sbd:
            raise ValueError("prepare voc needs --sbd (the extracted SBD benchmark_RELEASE folder)")
        summary = prepare.prepare_voc(args.root, args.sbd, args.out, num_workers=args.workers)
    elif args.dataset == "coco":
        summary = prepare.prepare_coco_stuff(args.root, args.out, num_workers=args.workers)
    elif args.dataset in ("context59", "context60", "context"):
        if not args.voc2010:
            raise ValueError("prepare context needs --voc2010 (the VOCdevkit/VOC2010 folder)")
        summary = prepare.prepare_context(args.root, args.voc2010, json_path=args.json, num_workers=args.workers)
    else:
        raise ValueError(f"prepare knows voc, coco and context, not {args.dataset!r}")
    print(json.dumps(summary, indent=2, default=str))
    return 0 if summary.get("ok", True) else 1


def controls_table(record: dict) -> str:
    """The control table of a ``run_controls`` record as text, one line per control, then the verdict."""
    lines = [f"controls of {record['preset']} ({record['seeds']} seed(s); "
             f"{record['passed']} of {record['total']} pass)"]
    for c in record["controls"]:
        v = c["measured"]
        shown = "-" if v is None else f"{v:.2f}" if abs(v) < 2 else f"{v:.1f}"
        lines.append(f"  {c['control']:<44} {shown:>7}  {c['threshold']:<8} {c['result']:<7} {c['detail']}")
    lines += [f"  FAILED run {k}: {v}" for k, v in record["failed"].items()]
    return "\n".join(lines)


def _results(given: str | None) -> Path:
    """A command's results folder: the one given, else ``results/`` of the project (never the working directory)."""
    from .experiments.project import results_dir

    return results_dir(given)


def _pretrain_config(args: argparse.Namespace):
    """The mini-CLIP pretraining config of the command line: the packaged one with --steps, --locality and
    --alignment where given."""
    from .mini.miniclip import PretrainConfig

    given = {k: getattr(args, k) for k in ("steps", "locality", "alignment") if getattr(args, k) is not None}
    return PretrainConfig(**given)


def cmd_mini(args: argparse.Namespace) -> int:
    """The mini world: pretrain (or show) the mini-CLIP, or run the Table 5 ablation on the CPU."""
    if args.action == "pretrain":
        from .mini.miniclip import PretrainConfig, ensure_mini_clip

        path, record = ensure_mini_clip(_pretrain_config(args))
        print(json.dumps({"weights": str(path), **{k: v for k, v in record.items() if k != "config"}}, indent=2))
        return 0
    if args.action == "dials":
        from .mini.calibrate import log_dials
        from .mini.diagnose import diagnose_mini_clip

        entry = diagnose_mini_clip(_pretrain_config(args), progress=True)
        path = log_dials(entry, _results(args.results))
        print(f"mini-CLIP {entry['weights']} (locality {entry['dials']['locality']:g}, alignment "
              f"{entry['dials']['alignment']:g}):")
        for preset, p in entry["presets"].items():
            print(f"  {preset}: training-free mIoU {p['training_free']['mIoU']:.1f}, linear probe "
                  f"{p['probe']['acc']:.1f}%, zero-shot top-1 seen/unseen "
                  f"{entry['zero_shot'][preset]['seen']:.1f}/{entry['zero_shot'][preset]['unseen']:.1f}")
        print(f"logged in {path}")
        return 0
    if args.action == "calibrate":
        from .mini.calibrate import run_calibration

        if not args.name:
            raise ValueError("mini calibrate needs --name (the calibration log entry)")
        entry = run_calibration(args.name, args.note or "", _results(args.results), overrides=args.set, force=args.force,
                                preset=args.preset, variant=args.variant, setting=args.setting, seed=args.seed)
        m = entry["metrics"]
        print(f"{args.name}: mIoU {m['mIoU']:.1f}  mIoU(S) {m['mIoU(S)']:.1f}  pAcc {m['pAcc']:.1f}  "
              f"({entry['seconds']['train']:.0f}s training; mask logit std {entry['mask_logits']['std']:.2f})")
        return 0
    if args.action == "controls":
        from .experiments.controls import run_controls

        record = run_controls(args.preset, seeds=args.seeds, results_dir=_results(args.results), jobs=args.jobs,
                              force=args.force, quick=args.quick)
        print(controls_table(record))
        return 1 if record["failed"] else 0
    if args.action == "fake-datasets":
        from .mini.layouts import write_fake_datasets

        if not args.out:
            raise ValueError("mini fake-datasets needs an output folder: python -m zegclip mini fake-datasets OUT")
        summary = write_fake_datasets(args.out, n=args.images)
        print(f"tiny VOC + SBD, COCO-Stuff and PASCAL Context downloads (mini-world scenes) written to {args.out}; "
              "prepare them with:")
        for argv in summary["prepare"]:
            print("  python -m zegclip " + " ".join(argv))
        print(f"then: python -m zegclip reproduce --profile paper --quick --data-root {args.out}")
        return 0
    if args.action == "speed":
        import torch

        from .mini.dataset import render_speed

        record = render_speed(scenes=args.scenes, repeats=args.repeats)
        for world, r in record.items():
            print(f"{world}: {r['scenes_per_second']:,.0f} scenes/s (median of {r['repeats']} x {r['scenes']} scenes, "
                  f"{torch.get_num_threads()} torch thread(s), one process)")
        return 0
    if args.action == "diagnose":
        from .engine.checkpoint import write_json_atomic
        from .mini.diagnose import diagnose

        out = _results(args.results) / "mini" / "diagnosis" / f"{args.preset}.json"
        record = diagnose(args.preset, progress=True)
        write_json_atomic(out, record)
        print(json.dumps({k: record[k] for k in ("preset", "mini_clip")}, indent=2))
        for where, probe in record["probes"].items():
            print(f"probe {where:>9}: class {probe['acc']:5.1f}%  colour {probe['colour_acc']:5.1f}%  "
                  f"shape {probe['shape_acc']:5.1f}%")
        for where, probe in record["floor"].items():
            print(f"floor {where:>9}: class {probe['acc']:5.1f}%  colour {probe['colour_acc']:5.1f}%  "
                  f"shape {probe['shape_acc']:5.1f}%  (random-init mini-CLIP)")
        print(f"patch oracle: mIoU {record['oracle']['mIoU']:.1f}; written to {out}")
        return 0
    from .mini.miniclip import ensure_mini_clip
    from .experiments.batch import reproduce

    path, record = ensure_mini_clip()  # cached after the first run (about 12 minutes on 2 cores)
    z = record["zero_shot"]["mini-voc"]
    print(f"mini-CLIP {path.name}: pretrained in {record['seconds_total']:.0f}s; zero-shot top-1 on mini-voc "
          f"{z['all']:.1f}% (seen {z['seen']:.1f}%, unseen {z['unseen']:.1f}%)")
    summary = reproduce("mini", only=["table5"], results_dir=_results(args.results), runs_only=True)
    print(f"Table 5 runs: {len(summary['ran'])} executed, {len(summary['skipped'])} already done, "
          f"{len(summary['failed'])} failed; results in {_results(args.results)}/mini/runs/ "
          "(rendered by notebooks/table5.ipynb)")
    return 1 if summary["failed"] else 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    """Execute the experiment registry for a profile (papermill), then the table/figure notebooks."""
    from .experiments.batch import reproduce, status
    from .experiments.registry import PROFILES

    if args.profile not in PROFILES:
        raise ValueError(f"unknown profile {args.profile!r}; choose one of {list(PROFILES)}")
    only = None
    if args.only is not None:
        from .experiments.registry import REPORTS

        only = [t.strip() for t in args.only.split(",") if t.strip()]
        if not only:
            raise ValueError(f"--only {args.only!r} selects nothing; name tables/figures ({', '.join(REPORTS)}) or "
                             "run ids (`reproduce --list` shows them)")
    if args.profile != "paper" and (args.data_root is not None or args.weights is not None):
        raise ValueError("--data-root and --weights are for --profile paper (the mini world needs neither)")
    if args.data_root is not None and not Path(args.data_root).is_dir():
        raise FileNotFoundError(f"--data-root: folder not found: {args.data_root}")
    where = {"quick": args.quick, "data_root": args.data_root, "weights": args.weights}
    if args.list:
        for ident, why in status(args.profile, _results(args.results_dir), only, **where):
            print(f"done  {ident}" if why is None else f"todo  {ident}  ({why})")
        return 0
    t0 = time.perf_counter()
    summary = reproduce(args.profile, only=only, jobs=args.jobs, results_dir=_results(args.results_dir),
                        runs_only=args.runs_only, reports_only=args.reports_only, force=args.force,
                        generated=args.book_dir, **where)
    print(f"reproduce {args.profile}: {len(summary['ran'])} run(s) executed, {len(summary['skipped'])} already done, "
          f"{len(summary['failed'])} failed, in {time.perf_counter() - t0:.0f}s")
    for name, err in summary["failed"].items():
        print(f"  FAILED {name}: {err}")
    return 1 if summary["failed"] else 0


def _bench_arguments(p: argparse.ArgumentParser) -> None:
    """The ``bench`` flags: one per parameter of :data:`zegclip.experiments.bench.DEFAULT_PARAMS`."""
    from .experiments.bench.config import DEFAULT_PARAMS, METHODS, PHASES

    p.add_argument("--profile", default="mini", help="results/<profile>/bench/ (default mini)")
    p.add_argument("--results-dir", default=None, help="results root (default: results/ of the project)")
    p.add_argument("--run-id", default=None, help="result file name (default bench-<cpu|cuda>[-quick])")
    p.add_argument("--quick", action="store_true", help="a tiny model at 64 px (tests; seconds on a CPU)")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1")
    p.add_argument("--methods", default=DEFAULT_PARAMS["methods"], help=f"comma-separated, from {list(METHODS)}")
    p.add_argument("--phases", default=None, help=f"comma-separated, from {list(PHASES)} "
                   "(default: all on a GPU, forward,train on a CPU)")
    p.add_argument("--size", type=at_least(16), default=None, help="square crop size (default 512; 64 with --quick)")
    p.add_argument("--batch", type=at_least(1), default=None, help="throughput batch (default 16 on a GPU, 2 on a CPU)")
    p.add_argument("--train-batch", type=at_least(1), default=None, help="training-step batch (default 16 GPU, 2 CPU)")
    p.add_argument("--repeats", type=at_least(1), default=None, help="timed calls, median reported (default 20 GPU, 3 CPU)")
    p.add_argument("--warmup", type=at_least(0), default=None, help="untimed calls first (default 5 GPU, 1 CPU)")
    p.add_argument("--dtype", default="auto", help="auto (bf16 autocast on a GPU that supports it), fp32, bf16")
    p.add_argument("--proposals", type=at_least(1), default=None, help="two-stage proposals N (default 100)")
    p.add_argument("--crop", type=at_least(16), default=None, help="two-stage proposal crop size (default 224)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--channels-last", action="store_true", help="channels-last model and inputs")
    p.add_argument("--threads", type=at_least(1), default=None, help="torch threads (default: PyTorch's)")
    p.add_argument("--gpu-report", action="store_true",
                   help="the GPU check (make gpu-check): ViT-B/16 at 512², batch 16, eager and torch.compile, plus "
                        "one mini-world run on the device -> results/<profile>/bench/gpu-check*.json (other flags "
                        "but --profile, --results-dir, --device and --quick are ignored)")
    p.add_argument("--vs-official", action="store_true",
                   help="our forward vs an independent transcription of the official forward, same weights and crop: "
                        "max relative output difference, then both timed alternately (median of --repeats, default 5, "
                        "after --warmup, default 1) at --threads (default 2) -> results/<profile>/bench/"
                        "vs-official-<device>[-quick].json (--methods: voc,coco by default; --device: cpu unless given; "
                        "--phases forward,train adds a training step, fused blocks vs open_clip's block calls, at "
                        "--train-batch, default 2; --size, --quick, --run-id apply)")


def cmd_bench(args: argparse.Namespace) -> int:
    """Efficiency benchmark (Table 3): parameters, MACs, latency, throughput, training speed, peak memory."""
    import torch

    from .experiments.bench import DEFAULT_PARAMS, format_table, run_bench

    if args.gpu_report:
        from .experiments.bench.gpucheck import gpu_check

        gpu_check(profile=args.profile, results_dir=_results(args.results_dir), device=args.device, quick=args.quick)
        return 0
    if args.vs_official:
        from .experiments.bench.vsofficial import PRESETS, vs_official

        methods = ",".join(PRESETS) if args.methods == DEFAULT_PARAMS["methods"] else args.methods
        phases = [x.strip() for x in (args.phases or "forward").split(",") if x.strip()]
        if not set(phases) <= {"forward", "train"} or "forward" not in phases:
            raise ValueError(f"--vs-official runs the phases forward[,train]; got --phases {args.phases}")
        vs_official(methods, size=args.size, threads=args.threads or 2, quick=args.quick, train="train" in phases,
                    train_batch=args.train_batch,
                    repeats=5 if args.repeats is None else args.repeats, warmup=1 if args.warmup is None else args.warmup,
                    device="cpu" if args.device == "auto" else args.device, results_dir=_results(args.results_dir),
                    profile=args.profile, run_id=args.run_id)
        return 0
    params = {k: getattr(args, k) for k in DEFAULT_PARAMS}
    params["results_dir"] = str(_results(args.results_dir))
    if params["run_id"] is None:  # bench-<device type>[-quick]
        device = params["device"]
        kind = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else str(device).split(":")[0]
        params["run_id"] = f"bench-{kind}{'-quick' if params['quick'] else ''}"
    print(format_table(run_bench(params)))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zegclip", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="resolved config and parameter counts of a preset (JSON)")
    _model_args(p)
    p.set_defaults(func=cmd_info)
    p = sub.add_parser("demo", help="small end-to-end run with random weights")
    p.add_argument("--size", type=at_least(16), default=512, help="square crop size (multiple of 16)")
    p.add_argument("--batch", type=at_least(1), default=2)
    p.add_argument("--steps", type=at_least(0), default=2)
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("train", help="train a run (YAML/JSON run file and --set overrides)")
    _run_args(p)
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint of the run")
    p.add_argument("--eval", action="store_true", help="evaluate the final model and write result.json")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("evaluate", help="evaluate a run's checkpoint or an official checkpoint")
    _run_args(p)
    p.add_argument("--checkpoint", default=None, help="checkpoint directory or model.safetensors (default: latest)")
    p.add_argument("--official", default=None, help="an official ZegCLIP .pth checkpoint (mmseg format)")
    p.add_argument("--output", default=None, help="result JSON path (default: <output_dir>/result.json)")
    p.set_defaults(func=cmd_evaluate)
    p = sub.add_parser("predict", help="segment images with free-text class names")
    p.add_argument("input", help="an image file or a folder of images")
    p.add_argument("--classes", default=None, help="comma-separated class names (default: the model's classes)")
    p.add_argument("--run", default=None, help="a trained run directory (config.json + checkpoints/)")
    p.add_argument("--official", default=None, help="an official ZegCLIP .pth checkpoint")
    p.add_argument("--dataset", default="voc", help="preset of the official checkpoint (voc, coco)")
    p.add_argument("--out", default="predictions", help="output folder")
    _weights_args(p)
    p.add_argument("--short-side", type=at_least(1), default=None,
                   help="resize images to this short side (default: the run's data.test_short_side; 512 official)")
    p.set_defaults(func=cmd_predict)
    p = sub.add_parser("prepare", help="convert official dataset downloads, or --check a prepared dataset")
    p.add_argument("dataset", help="voc | coco | context (prepare); voc | coco | context59 | context60 | folder (--check)")
    p.add_argument("root", help="VOC: VOCdevkit/VOC2012; COCO: the COCO-Stuff root; Context: the trainval/ .mat folder")
    p.add_argument("--sbd", default=None, help="VOC: the extracted SBD benchmark_RELEASE folder")
    p.add_argument("--voc2010", default=None, help="Context: the VOCdevkit/VOC2010 folder")
    p.add_argument("--json", default=None, help="Context: trainval_merged.json (defines the train/val split)")
    p.add_argument("--out", default=None, help="output root (default: in place)")
    p.add_argument("--workers", type=at_least(0), default=4)
    p.add_argument("--check", action="store_true", help="report every problem of a prepared dataset and exit")
    p.add_argument("--splits", default="train,val", help="splits to check")
    p.set_defaults(func=cmd_prepare)
    p = sub.add_parser("mini", help="the mini world: pretrain the mini-CLIP, or run the Table 5 ablation's 36 runs (CPU)")
    p.add_argument("action", choices=["pretrain", "table5", "controls", "calibrate", "diagnose", "dials", "speed",
                                       "fake-datasets"],
                   help="pretrain the mini-CLIP; run Table 5; measure the world's five controls (written to "
                        "<results>/mini/calibration/controls-<preset>.json); one calibration run (logged in "
                        "<results>/mini/calibration/); the diagnosis instruments (patch oracle, probes, zero-shot); "
                        "one mini-CLIP's dial instruments (training-free mIoU, probe, zero-shot; logged in "
                        "<results>/mini/calibration/pretrain/dials.json); "
                        "the scene-rendering benchmark; tiny stand-ins of the real downloads, drawn from mini scenes "
                        "(fake-datasets OUT: what `prepare` and `reproduce --profile paper --quick` read)")
    p.add_argument("out", nargs="?", default=None, help="fake-datasets: the output folder")
    p.add_argument("--images", type=at_least(1), default=4, help="fake-datasets: images per split")
    p.add_argument("--steps", type=at_least(1), default=None, help="pretraining steps (default: the packaged config)")
    p.add_argument("--locality", type=float, default=None, help="pretrain/dials: weight of the head term (default: packaged)")
    p.add_argument("--alignment", type=float, default=None,
                   help="pretrain/dials: weight of the caption term (default: packaged)")
    p.add_argument("--name", default=None, help="calibrate: the log entry's name")
    p.add_argument("--note", default=None, help="calibrate: what this run changes, in words")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="calibrate: run-file override")
    p.add_argument("--preset", default="mini-voc", help="calibrate/diagnose: mini-voc or mini-coco")
    p.add_argument("--variant", default="DPT+NEL+RD", help="calibrate: Table 5 variant")
    p.add_argument("--setting", default="fully", help="calibrate: fully (the positive control) or inductive")
    p.add_argument("--seed", type=at_least(0), default=0, help="calibrate: seed")
    p.add_argument("--force", action="store_true", help="calibrate/controls: redo what exists")
    p.add_argument("--seeds", type=at_least(1), default=3, help="controls: seeds 0..N-1 of every control run")
    p.add_argument("--jobs", type=at_least(1), default=1, help="controls: runs at a time (one per core)")
    p.add_argument("--quick", action="store_true", help="controls: tiny runs with a random mini-CLIP (tests)")
    p.add_argument("--scenes", type=at_least(1), default=200, help="speed: scenes per timing")
    p.add_argument("--repeats", type=at_least(1), default=5, help="speed: timings per world (the median is shown)")
    p.add_argument("--results", default=None,
                   help="results root (default: results/ of the project, whatever the working directory)")
    p.set_defaults(func=cmd_mini)
    p = sub.add_parser("reproduce", help="run the experiment registry (papermill) and the table/figure notebooks")
    p.add_argument("--profile", default="mini", help="mini (CPU, the mini world) or paper (GPU, real data)")
    p.add_argument("--only", default=None, help="comma-separated tables/figures or run ids, e.g. table5,figure1 or mini-voc-fix-inductive-s0")
    p.add_argument("--jobs", type=at_least(1), default=1, help="runs executed at the same time")
    p.add_argument("--results-dir", default=None,
                   help="results root (results/<profile>/...; default: results/ of the project, from any subfolder)")
    p.add_argument("--book-dir", default=None,
                   help="where the executed report notebooks go (default: book/generated of the project, the checkout "
                        "found from the working directory or $ZEGCLIP_PROJECT)")
    p.add_argument("--runs-only", action="store_true", help="execute the runs, not the report notebooks")
    p.add_argument("--reports-only", action="store_true", help="only execute the report notebooks (into book/generated)")
    p.add_argument("--force", action="store_true", help="redo runs whose results exist")
    p.add_argument("--quick", action="store_true",
                   help="tiny runs under <id>-quick ids, never mixed with real results (tests): a random mini-CLIP "
                        "(mini), a random ViT-B/16 on 64-px crops for 2 iterations (paper); the reports read them "
                        "(with --reports-only: the real results) and the walkthrough goes tiny")
    p.add_argument("--data-root", default=None,
                   help="paper: the folder holding the prepared VOCdevkit/, coco_stuff164k/ (default: the registry's "
                        "data_root, 'data')")
    p.add_argument("--weights", default=None, metavar="FILE_OR_TAG",
                   help="paper: CLIP ViT-B/16 weights of every run (default $ZEGCLIP_CLIP_WEIGHTS; --quick: random)")
    p.add_argument("--list", action="store_true", help="list the runs and whether each is done")
    p.set_defaults(func=cmd_reproduce)
    p = sub.add_parser("bench", help="efficiency benchmark (Table 3): params, MACs, speed, memory -> results JSON")
    _bench_arguments(p)
    p.set_defaults(func=cmd_bench)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError, KeyError) as exc:  # bad input; unreadable, unwritable or busy paths
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"zegclip {args.command}: error: {message}", file=sys.stderr)
        return 2
