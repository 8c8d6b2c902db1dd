"""Command line: ``python -m zegclip <command>``. Each command's work lives with its concept; this only parses."""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="voc", help="model preset (voc, coco, context, ...)")
    p.add_argument("--variant", default=None, help="Table 5 variant, e.g. 'FT+NEL' or 'DPT+NEL+RD'")
    p.add_argument("--query-format", default=None, help="one of the 12 query formats of Table 4, e.g. '[t*g,t]'")
    p.add_argument("--setting", default=None, choices=["inductive", "transductive", "fully"])


def _overrides(args: argparse.Namespace) -> dict:
    from .config import variant_overrides

    out: dict = variant_overrides(args.variant) if args.variant else {}
    if args.query_format:
        out["query_format"] = args.query_format
    if args.setting:
        out["setting"] = args.setting
    return out


def cmd_info(args: argparse.Namespace) -> int:
    """Print the resolved config and parameter counts of a preset as JSON (random weights; nothing loaded)."""
    from .config import get_config
    from .factory import build_model, resolve_split

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
    from .factory import build_model
    from .losses import build_loss

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zegclip", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="resolved config and parameter counts of a preset (JSON)")
    _model_args(p)
    p.set_defaults(func=cmd_info)
    p = sub.add_parser("demo", help="small end-to-end run with random weights")
    p.add_argument("--size", type=int, default=512, help="square crop size (multiple of 16)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--steps", type=int, default=2)
    p.set_defaults(func=cmd_demo)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        print(f"zegclip {args.command}: error: {exc}", file=sys.stderr)
        return 2
