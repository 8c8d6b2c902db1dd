"""A two-stage comparator for Table 3, built from this package's parts (ZegFormer / zsseg style).

ZegCLIP is *one-stage*: one CLIP ViT pass per crop, then a light decoder. The methods it is compared with in the
paper's Table 3 (ZegFormer; zsseg works the same way) are *two-stage*:

1. **class-agnostic mask proposals** (MaskFormer-like): a ViT-B/16 encodes the whole crop and a mask decoder
   turns ``N`` learned proposal queries into ``N`` mask logits. Here: :class:`~zegclip.model.backbone.PromptedVisionEncoder`
   (mode ``"ft"`` by default: the whole ViT is trained, as MaskFormer and ZegFormer train their backbone) and the
   ZegCLIP :class:`~zegclip.model.decoder.MaskDecoder` fed with ``N`` learned queries instead of class queries;
2. **proposal classification by CLIP**: every proposal is cut out of the image (its mask's bounding box,
   background pixels set to 0, i.e. the mean after normalisation), resized to ``crop_size`` (224, CLIP's
   pre-training resolution), encoded by the frozen CLIP image encoder and classified against the class text
   embeddings (cosine similarity x ``logit_scale``, softmax);
3. semantic inference as MaskFormer: ``scores[c] = sum_n p(c | n) * sigmoid(mask_n)``.

Defaults: ``N = 100`` proposals (MaskFormer's and ZegFormer's query count), 224x224 crops. The weights are random
(the comparator measures cost, and cost does not depend on weights): it is not a trained ZegFormer and its
masks mean nothing. Shapes, for B images (B, 3, H, W), N proposals, C classes, crop size s:

    proposal logits (B, N, H, W) -> boxes (B*N, 5) -> crops (B*N, 3, s, s) -> CLIP embeddings (B, N, d)
    -> class probabilities (B, N, C) -> semantic scores (B, C, H, W)

MACs of the comparator are the proposal stage's plus ``B*N`` times one crop's CLIP pass plus the final
combination (:meth:`TwoStageSegmentor.mac_breakdown`; the batch dimension is linear, a test checks the sum
against counting the whole forward at once).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...model.backbone import ENCODER_MODES, PromptedVisionEncoder
from ...model.clip import build_towers
from ...model.config import ZegCLIPConfig
from ...model.presets import get_config
from ...model.decoder import DecoderConfig, MaskDecoder
from .efficiency import count_macs
from ...model.segmentor import check_images


@dataclass(frozen=True)
class TwoStageConfig:
    proposals: int = 100  # N learned proposal queries (ZegFormer / MaskFormer: 100)
    crop_size: int = 224  # proposal crops are resized to CLIP's pre-training resolution
    proposal_encoder: str = "ft"  # stage-1 ViT: "ft" (trained, as MaskFormer/ZegFormer), "dpt" or "fix"
    mask_threshold: float = 0.5  # sigmoid threshold of the proposal masks (boxes and background removal)
    mask_background: bool = True  # pixels outside the proposal mask are zeroed in its crop (ZegFormer's masked crop)
    logit_scale: float = 100.0  # CLIP's temperature for the crop-vs-text cosine similarities

    def __post_init__(self):
        if self.proposals < 1:
            raise ValueError(f"proposals must be >= 1, got {self.proposals}")
        if self.crop_size < 1:
            raise ValueError(f"crop_size must be >= 1, got {self.crop_size}")
        if self.proposal_encoder not in ENCODER_MODES:
            raise ValueError(f"proposal_encoder must be one of {ENCODER_MODES}, got {self.proposal_encoder!r}")
        if not 0.0 < self.mask_threshold < 1.0:
            raise ValueError(f"mask_threshold must be in (0, 1), got {self.mask_threshold}")


class TwoStageSegmentor(nn.Module):
    """Mask proposals (ViT + mask decoder, N learned queries) + CLIP classification of N proposal crops."""

    def __init__(self, cfg: TwoStageConfig, model_cfg: ZegCLIPConfig, proposal_vit: nn.Module, crop_vit: nn.Module,
                 class_embeddings: torch.Tensor):
        super().__init__()
        self.cfg = cfg
        self.model_cfg = model_cfg
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(model_cfg.seed)
            self.proposer = PromptedVisionEncoder(proposal_vit, replace(model_cfg.encoder, mode=cfg.proposal_encoder))
            dec: DecoderConfig = model_cfg.decoder
            self.query_embed = nn.Parameter(torch.randn(cfg.proposals, dec.dim) * 0.02)
            self.decoder = MaskDecoder(dec, in_dim=proposal_vit.output_dim)
        self.clip_visual = crop_vit.requires_grad_(False)
        if class_embeddings.ndim != 2 or class_embeddings.shape[1] != crop_vit.output_dim:
            raise ValueError(f"class embeddings must have shape (C, {crop_vit.output_dim}), "
                             f"got {tuple(class_embeddings.shape)}")
        self.register_buffer("class_embeddings", F.normalize(class_embeddings.float(), dim=-1))

    @property
    def num_classes(self) -> int:
        return self.class_embeddings.shape[0]

    # ------------------------------------------------------------------------------------------------ stages
    def propose(self, images: torch.Tensor) -> torch.Tensor:
        """Stage 1: images (B, 3, H, W) -> proposal mask logits (B, N, H, W)."""
        features, _ = self.proposer(images)  # (B, d, h, w)
        b, _, h, w = features.shape
        # repeat, not expand: a no-grad view of a parameter passed into a module trips FlopCounterMode's tracker
        queries = self.query_embed.to(features.dtype).unsqueeze(0).repeat(b, 1, 1)
        masks = self.decoder(queries, features.flatten(2).transpose(1, 2)).reshape(b, -1, h, w)
        return F.interpolate(masks, size=tuple(images.shape[-2:]), mode="bilinear", align_corners=False)

    def boxes(self, probs: torch.Tensor) -> torch.Tensor:
        """Bounding boxes of the thresholded masks: probs (B, N, H, W) -> (B*N, 5) rows (batch index, x0, y0, x1, y1).

        Coordinates are pixel edges (x1, y1 exclusive); an empty mask gets the whole image.
        """
        b, n, height, width = probs.shape
        fg = probs > self.cfg.mask_threshold
        rows, cols = fg.any(dim=3), fg.any(dim=2)  # (B, N, H), (B, N, W)
        empty = ~rows.any(dim=2)

        def first_last(hit: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
            hit = hit.to(torch.uint8)
            first = hit.argmax(dim=-1)
            last = size - hit.flip(-1).argmax(dim=-1)
            return torch.where(empty, 0, first), torch.where(empty, size, last)

        y0, y1 = first_last(rows, height)
        x0, x1 = first_last(cols, width)
        index = torch.arange(b, device=probs.device).repeat_interleave(n)
        return torch.stack([index, x0.flatten(), y0.flatten(), x1.flatten(), y1.flatten()], dim=1).to(probs.dtype)

    def crop_proposals(self, images: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        """Proposal crops (B*N, 3, s, s): each mask's box resized to s x s (RoIAlign), background zeroed."""
        from torchvision.ops import roi_align

        size = self.cfg.crop_size
        boxes = self.boxes(probs)
        crops = roi_align(images, boxes.to(images.dtype), output_size=size, aligned=True)
        if self.cfg.mask_background:
            b, n = probs.shape[:2]
            own = boxes.clone()
            own[:, 0] = torch.arange(b * n, device=boxes.device, dtype=boxes.dtype)  # box k crops mask k
            mask = roi_align(probs.to(images.dtype).reshape(b * n, 1, *probs.shape[-2:]), own.to(images.dtype),
                             output_size=size, aligned=True)
            crops = crops * (mask > self.cfg.mask_threshold).to(crops.dtype)
        return crops

    def encode_crops(self, crops: torch.Tensor) -> torch.Tensor:
        """Stage 2: CLIP image embeddings of the crops, (K, 3, s, s) -> (K, d), L2-normalised."""
        return F.normalize(self.clip_visual(crops), dim=-1)

    def combine(self, embeddings: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        """embeddings (B, N, d), mask probabilities (B, N, H, W) -> semantic scores (B, C, H, W)."""
        text = self.class_embeddings.to(embeddings.dtype)
        cls = (self.cfg.logit_scale * embeddings @ text.t()).softmax(dim=-1)  # (B, N, C)
        b, n, height, width = probs.shape
        scores = torch.bmm(cls.transpose(1, 2), probs.flatten(2).to(cls.dtype))  # (B, C, H*W)
        return scores.reshape(b, -1, height, width)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised images (B, 3, H, W) -> per-class scores (B, C, H, W)."""
        check_images(images)
        probs = self.propose(images).sigmoid()
        crops = self.crop_proposals(images, probs)
        embeddings = self.encode_crops(crops).reshape(probs.shape[0], probs.shape[1], -1)
        return self.combine(embeddings, probs)

    @torch.no_grad()
    def segment(self, images: torch.Tensor) -> torch.Tensor:
        """Label maps (B, H, W)."""
        return self(images).argmax(dim=1)

    # ------------------------------------------------------------------------------------------------ costs
    def mac_breakdown(self, images: torch.Tensor) -> dict[str, Any]:
        """MACs of one forward on ``images`` (B, 3, H, W) by part (see :mod:`zegclip.experiments.bench.efficiency`).

        ``proposals``: stage 1; ``crops``: B*N times one crop's CLIP pass; ``combine``: classification and mask
        combination; ``macs``: their sum.
        """
        with torch.no_grad():
            probs = self.propose(images).sigmoid()
        b, n = probs.shape[:2]
        stage1 = count_macs(self.propose, images)
        crop = torch.zeros(1, 3, self.cfg.crop_size, self.cfg.crop_size, device=images.device, dtype=images.dtype)
        per_crop = count_macs(self.encode_crops, crop)
        embeddings = torch.zeros(b, n, self.clip_visual.output_dim, device=images.device, dtype=images.dtype)
        head = count_macs(self.combine, embeddings, probs)
        total = stage1["macs"] + b * n * per_crop["macs"] + head["macs"]
        return {"macs": total, "proposals": stage1["macs"], "per_crop": per_crop["macs"], "crops": b * n,
                "crops_total": b * n * per_crop["macs"], "combine": head["macs"]}

    def parameter_counts(self) -> dict[str, int]:
        def count(module: nn.Module | nn.Parameter, trainable: bool) -> int:
            params = [module] if isinstance(module, nn.Parameter) else list(module.parameters())
            return sum(p.numel() for p in params if p.requires_grad or not trainable)

        return {
            "trainable_params": count(self, True),
            "total_params": count(self, False),
            "trainable_proposal_encoder": count(self.proposer, True),
            "trainable_decoder": count(self.decoder, True) + count(self.query_embed, True),
            "frozen_clip_crop_encoder": count(self.clip_visual, False),
        }


def build_two_stage(
    preset: str | ZegCLIPConfig = "voc",
    *,
    proposals: int = 100,
    crop_size: int = 224,
    proposal_encoder: str = "ft",
    text_embeddings: torch.Tensor | None = None,
    device: str | torch.device | None = None,
    **overrides: Any,
) -> TwoStageSegmentor:
    """The two-stage comparator with random weights, for a ZegCLIP preset's CLIP, decoder and class count.

    ``overrides`` are ZegCLIP config fields (e.g. a tiny ``clip`` for tests). Without ``text_embeddings`` the
    class embeddings are random unit vectors (seeded): the comparator measures cost, not accuracy.
    Returns the model in eval mode.
    """
    from ...model.factory import resolve_split

    model_cfg = get_config(preset, **overrides)
    cfg = TwoStageConfig(proposals=proposals, crop_size=crop_size, proposal_encoder=proposal_encoder)
    num_classes = resolve_split(model_cfg).num_classes
    proposal_vit, _ = build_towers(model_cfg.clip, seed=model_cfg.seed)
    crop_vit, _ = build_towers(replace(model_cfg.clip, image_size=crop_size), seed=model_cfg.seed + 1)
    if text_embeddings is None:
        generator = torch.Generator().manual_seed(model_cfg.seed)
        text_embeddings = torch.randn(num_classes, crop_vit.output_dim, generator=generator)
    model = TwoStageSegmentor(cfg, model_cfg, proposal_vit, crop_vit, torch.as_tensor(text_embeddings))
    if device is not None:
        model = model.to(device)
    return model.eval()
