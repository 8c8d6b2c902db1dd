"""ZegCLIP = prompted CLIP image encoder + relationship-descriptor queries + mask decoder.

Data flow for a batch of normalised images (B, 3, H, W) and C queried classes::

    features H (B, d, h, w), global g (B, d)      <- PromptedVisionEncoder
    queries  (B, C, D)                            <- RelationshipDescriptor(text[classes], g)
    masks    (B, C, h*w)                          <- MaskDecoder(queries, H)
    logits   (B, C, H, W)                         <- bilinear resize (via mask_size, official)

At test time :meth:`ZegCLIP.scores` turns logits into scores (sigmoid, or softmax for a model trained with the
exclusive loss: :mod:`.scores`), lowers seen-class scores by the calibration shift (0.1, official, inductive only)
and averages over sliding windows (crop 512, stride 426);
:meth:`ZegCLIP.segment` takes the argmax over all classes (generalised zero-shot protocol).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import PromptedVisionEncoder, global_hooks
from .config import NORMALIZATIONS, ZegCLIPConfig
from .decoder import MaskDecoder
from .queries import RelationshipDescriptor
from .scores import calibrated_scores
from .text import class_embeddings, check_class_names


def check_images(images: torch.Tensor, values: bool = False, patch: int | None = None) -> None:
    """Images must be a floating-point (B, 3, H, W) tensor, with ``patch``: at least one patch high and wide; with
    ``values``, also finite (a host sync: done at the inference entry :meth:`ZegCLIP.scores`, not in ``forward``,
    which ``torch.compile`` must trace without breaks)."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor of shape (B, 3, H, W), got {type(images).__name__}")
    if images.ndim != 4:
        raise ValueError(f"images must have shape (B, 3, H, W); got a tensor of rank {images.ndim} {tuple(images.shape)}")
    if images.shape[1] != 3:
        raise ValueError(f"images must have 3 channels (B, 3, H, W); got {images.shape[1]} in {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"images must be normalised floating-point tensors, got dtype {images.dtype}")
    if patch is not None and (images.shape[-2] < patch or images.shape[-1] < patch):
        raise ValueError(f"images must be at least one patch ({patch} x {patch} pixels) high and wide; got "
                         f"{images.shape[-2]} x {images.shape[-1]} in {tuple(images.shape)}")
    if values and not images.is_meta and not torch.isfinite(images).all():  # meta tensors hold no values
        bad = sorted(set(torch.nonzero(~torch.isfinite(images))[:, 0].tolist()))
        raise ValueError(f"images {bad[:5]} of the batch have NaN or infinite values")


def bilinear_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) float64 matrix of a 1-D bilinear resize, PyTorch's ``align_corners=False`` rule (source
    ``(o + 0.5) * n_in / n_out - 0.5`` clamped at 0, neighbours ``i`` and ``min(i + 1, n_in - 1)``)."""
    out = torch.arange(n_out, dtype=torch.float64)
    src = ((out + 0.5) * (n_in / n_out) - 0.5).clamp(min=0)
    i0 = src.floor().long().clamp(max=n_in - 1)
    i1 = (i0 + 1).clamp(max=n_in - 1)
    lam = src - i0
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    rows = torch.arange(n_out)
    m.index_put_((rows, i0), 1 - lam, accumulate=True)
    m.index_put_((rows, i1), lam, accumulate=True)
    return m


def resize_logits(logits: torch.Tensor, size: tuple[int, int], mask_size: int | None) -> torch.Tensor:
    """Mask logits (B, C, h, w) -> ``(B, C, *size)``: bilinear to (mask_size, mask_size) first when that differs from
    ``size`` (official), then to ``size``.

    In float32 inference (autograd off, no autocast) bilinear resizing is a linear map along each axis, and two
    stages compose into one, so the whole resize is one (size, h) matrix per axis applied as two matmuls (issue 15):
    the full-size intermediate of two stages is never made, and even one stage runs as GEMMs - PyTorch's CPU
    ``upsample_bilinear2d`` took 307 ms of a 3.3 s COCO crop (171 maps of 32² to 512², one thread), the matmuls
    about a tenth of that. Equal within float rounding (~4e-7 relative; ``tests/test_efficiency.py``). Otherwise
    (training, autocast, other dtypes, or a hook-based tracer such as the MAC counter watching, see
    :func:`.backbone.global_hooks`) ``F.interpolate`` as the official code.
    """
    stages = [] if not mask_size or tuple(size) == (mask_size, mask_size) else [(mask_size, mask_size)]
    stages.append(tuple(size))
    if (logits.dtype != torch.float32 or torch.is_grad_enabled()
            or torch.is_autocast_enabled(logits.device.type) or global_hooks()):
        for stage in stages:
            logits = F.interpolate(logits, size=stage, mode="bilinear", align_corners=False)
        return logits
    rows, cols = torch.eye(logits.shape[-2], dtype=torch.float64), torch.eye(logits.shape[-1], dtype=torch.float64)
    for out_h, out_w in stages:
        rows = bilinear_matrix(rows.shape[0], out_h) @ rows
        cols = bilinear_matrix(cols.shape[0], out_w) @ cols
    rows, cols = rows.to(logits), cols.to(logits)
    # rows first: the large second product (B*C*H, h') @ (w', W) is then one GEMM, not B*C small batched ones
    return torch.matmul(torch.matmul(rows, logits), cols.T)


def window_starts(length: int, crop: int, stride: int) -> list[int]:
    """Start offsets of the sliding windows along one side (official mmseg rule, last window border-aligned)."""
    count = max(length - crop + stride - 1, 0) // stride + 1
    starts = []
    for i in range(count):
        end = min(i * stride + crop, length)
        starts.append(max(end - crop, 0))
    return starts


class ZegCLIP(nn.Module):
    """The ZegCLIP segmentor. Build it with :func:`zegclip.build_model`.

    Buffers: ``class_embeddings`` (C_all, d) text embeddings of all classes, ``seen_idx`` (seen classes, which
    get the calibration shift), ``train_idx`` (classes queried in training: seen ones for inductive training,
    all for transductive/fully supervised).
    """

    def __init__(
        self,
        cfg: ZegCLIPConfig,
        visual: nn.Module,
        text_encoder: nn.Module,
        class_names: Sequence[str],
        text_embeddings: torch.Tensor,
        seen: Sequence[int],
        train_classes: Sequence[int],
    ):
        super().__init__()
        self.cfg = cfg
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.backbone = PromptedVisionEncoder(visual, cfg.encoder)
            embed_dim = visual.output_dim
            self.queries = RelationshipDescriptor(embed_dim, cfg.decoder.dim, cfg.query_format)
            self.decoder = MaskDecoder(cfg.decoder, in_dim=embed_dim)
        self.text_encoder = text_encoder.requires_grad_(False)
        self.embed_dim = embed_dim
        self.register_buffer("class_embeddings", torch.empty(0, embed_dim))
        self.register_buffer("seen_idx", torch.empty(0, dtype=torch.long))
        self.register_buffer("train_idx", torch.empty(0, dtype=torch.long))
        self.set_classes(class_names, seen=seen, embeddings=text_embeddings, train_classes=train_classes)

    # ---------------------------------------------------------------------------------------------- classes
    def set_classes(
        self,
        names: Sequence[str],
        seen: Sequence[int] | None = None,
        embeddings: torch.Tensor | None = None,
        train_classes: Sequence[int] | None = None,
    ) -> None:
        """Set the class vocabulary: free-text names, optional precomputed (C, d) embeddings.

        Without ``embeddings`` the names are encoded by the CLIP text tower with the config's templates. Without
        ``seen``, names that were seen classes before keep the calibration shift; new names get none.
        """
        names = check_class_names(names)
        if embeddings is None:
            embeddings = class_embeddings(
                self.text_encoder, names, self.cfg.templates, model_id=f"{self.cfg.clip.model}"
            )
        embeddings = torch.as_tensor(embeddings)
        if embeddings.ndim != 2 or embeddings.shape[0] != len(names):
            raise ValueError(
                f"text embeddings have shape {tuple(embeddings.shape)} but there are {len(names)} class names"
            )
        if embeddings.shape[1] != self.embed_dim:
            raise ValueError(f"text embeddings have dimension {embeddings.shape[1]}, the model needs {self.embed_dim}")
        if not embeddings.is_meta and not torch.isfinite(embeddings).all():
            rows = sorted(set(torch.nonzero(~torch.isfinite(embeddings))[:, 0].tolist()))
            raise ValueError(f"text embeddings of class(es) {[names[i] for i in rows][:5]} have NaN or infinite values")
        if seen is None:
            old_seen = {self.class_names[i] for i in self.seen_idx.tolist()} if hasattr(self, "class_names") else set()
            seen = [i for i, n in enumerate(names) if n in old_seen]
        seen = sorted(set(int(i) for i in seen))
        if any(not 0 <= i < len(names) for i in seen):
            raise ValueError(f"seen class ids {seen} out of range for {len(names)} classes")
        train_classes = list(range(len(names))) if train_classes is None else [int(i) for i in train_classes]
        device = self.seen_idx.device
        self.class_names = names
        self.class_embeddings = embeddings.float().to(device)
        self.seen_idx = torch.tensor(seen, dtype=torch.long, device=device)
        self.train_idx = torch.tensor(train_classes, dtype=torch.long, device=device)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    # ---------------------------------------------------------------------------------------------- forward
    def forward(self, images: torch.Tensor, class_idx: torch.Tensor | Sequence[int] | None = None) -> torch.Tensor:
        """Per-class mask logits (B, C, H, W) for normalised images (B, 3, H, W).

        ``class_idx`` selects the queried classes; by default the training classes in training mode and all
        classes in eval mode (as the official code does).
        """
        return self._run(images, class_idx)["logits"]

    def intermediates(
        self, images: torch.Tensor, class_idx: torch.Tensor | Sequence[int] | None = None
    ) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """One forward pass that also returns its intermediate tensors, for inspection (the walkthrough notebook).

        ``out["logits"]`` equals ``self(images, class_idx)`` in eval mode (in training mode dropout draws differ) up
        to float rounding (~1e-7 relative): the untraced pass skips the discarded prompt outputs' work and resizes
        by matmuls under ``no_grad`` (:mod:`zegclip.model.backbone`, :func:`resize_logits`); call it under
        ``torch.no_grad()`` unless you want gradients.

        Keys, for B images of size (H, W), patch grid (h, w), N = h*w, T prompts, C queried classes::

            tokens         (B, 1 + N, width)      [CLS] + patch tokens with positions, after ln_pre (no prompts)
            block_inputs   L x (B, 1 + T + N, width)  each ViT block's input (slots 1..T: that block's prompts)
            block_outputs  L x (B, 1 + T + N, width)  each block's output (its prompt slots are discarded)
            features       (B, d, h, w)           patch embeddings H, L2-normalised at every position
            global         (B, d)                 [CLS] embedding g, L2-normalised
            text           (C, d)                 class text embeddings t of the queried classes
            class_idx      (C,)                   their ids in the vocabulary
            descriptor     (B, C, k*d)            the un-projected query, e.g. [t*g, t] (k = 2)
            queries        (B, C, D)              projected class queries
            layer_masks    n_layers x (B, C, N)   each decoder layer's head-averaged attention logits
            masks          (B, C, h, w)           the last layer's map (the prediction, as logits)
            logits         (B, C, H, W)           ``masks`` resized to the input size
        """
        return self._run(images, class_idx, trace=True)

    def _run(self, images: torch.Tensor, class_idx, trace: bool = False) -> dict:
        """The forward pass: {"logits": (B, C, H, W)}, plus the intermediates when ``trace``."""
        check_images(images, patch=max(self.backbone.patch_size))
        if class_idx is None:
            class_idx = self.train_idx if self.training else None
        if class_idx is None:
            class_idx = torch.arange(self.num_classes, device=self.class_embeddings.device)
        class_idx = torch.as_tensor(class_idx, device=self.class_embeddings.device)
        text = self.class_embeddings[class_idx]
        out: dict = {}
        features, global_embedding = self.backbone(images, trace=out if trace else None)
        b, d, h, w = features.shape
        patches = features.flatten(2).transpose(1, 2)  # (B, h*w, d)
        if trace:
            descriptor = self.queries.describe(text, global_embedding)
            queries = self.queries.proj(descriptor)
            layer_masks = self.decoder(queries, patches, all_layers=True)
            masks = layer_masks[-1]
            out.update({"features": features, "global": global_embedding, "text": text, "class_idx": class_idx,
                        "descriptor": descriptor, "queries": queries, "layer_masks": layer_masks})
        else:
            masks = self.decoder(self.queries(text, global_embedding), patches)  # (B, C, h*w)
        logits = masks.reshape(b, -1, h, w)
        if trace:
            out["masks"] = logits
        out["logits"] = resize_logits(logits, tuple(images.shape[-2:]), self.cfg.mask_size)
        return out

    def calibrate(self, logits: torch.Tensor) -> torch.Tensor:
        """Scores with the seen-class shift: (B, C_all, H, W) logits -> scores. Sigmoid for a model trained with a
        non-exclusive loss (official), softmax over the classes for one trained with the exclusive loss (EL), see
        :mod:`zegclip.model.scores`."""
        return calibrated_scores(logits, self.cfg.loss.kind, self.seen_idx, self.cfg.calibration)

    @torch.no_grad()
    def scores(self, images: torch.Tensor) -> torch.Tensor:
        """Calibrated per-class scores (B, C_all, H, W) with slide-window inference over all classes.

        Runs in eval mode (no dropout) and restores the previous mode afterwards.
        """
        check_images(images, values=True, patch=max(self.backbone.patch_size))
        was_training = self.training
        self.eval()
        crop, stride = self.cfg.slide_crop, self.cfg.slide_stride
        b, _, height, width = images.shape
        out = images.new_zeros((b, self.num_classes, height, width), dtype=torch.float32)
        count = images.new_zeros((1, 1, height, width), dtype=torch.float32)
        all_classes = torch.arange(self.num_classes, device=self.class_embeddings.device)
        for y in window_starts(height, crop, stride):
            for x in window_starts(width, crop, stride):
                window = images[:, :, y : y + crop, x : x + crop]
                out[:, :, y : y + crop, x : x + crop] += self.calibrate(self(window, all_classes).float())
                count[:, :, y : y + crop, x : x + crop] += 1
        self.train(was_training)
        return out / count

    @torch.no_grad()
    def segment(self, images: torch.Tensor) -> torch.Tensor:
        """Label maps (B, H, W), argmax over all classes of :meth:`scores`."""
        return self.scores(images).argmax(dim=1)

    # ---------------------------------------------------------------------------------------------- helpers
    def normalize(self, images_uint8: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in 0..255 -> normalised float images, with the config's statistics."""
        mean, std = (torch.tensor(v, device=images_uint8.device).view(1, 3, 1, 1) for v in NORMALIZATIONS[self.cfg.normalization])
        return (images_uint8.float() - mean) / std

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def parameter_counts(self) -> dict[str, int]:
        """Trainable / total parameters, and the trainable split by component."""
        def count(module: nn.Module, trainable: bool) -> int:
            return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable)

        return {
            "trainable_params": count(self, True),
            "total_params": count(self, False),
            "trainable_backbone": count(self.backbone, True),
            "trainable_decoder": count(self.decoder, True) + count(self.queries, True),
            "frozen_clip_visual": count(self.backbone.vit, False) - count(self.backbone.vit, True),
            "frozen_clip_text": count(self.text_encoder, False),
        }

    def extra_repr(self) -> str:
        return f"preset={self.cfg.name!r}, classes={self.num_classes}, seen={self.seen_idx.numel()}, setting={self.cfg.setting!r}"


def num_windows(length: int, crop: int = 512, stride: int = 426) -> int:
    """How many windows slide inference uses along a side of ``length`` pixels."""
    return len(window_starts(length, crop, stride))

