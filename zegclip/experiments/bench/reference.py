"""An independent, functional transcription of the official ZegCLIP forward pass (one crop, eval mode).

Written from the fact sheet (§2-§6) with plain tensor operations on a model's own weights (``F.linear`` where the official code has an
``nn.Linear``, a matmul where it has one); it shares no code
with the package's model path (:mod:`zegclip.model`): it only reads parameters. Two uses:

* correctness - ``tests/test_reference_forward.py`` pins the whole pipeline to it (QuickGELU blocks, the [CLS]
  quirk, prompt replacement, prompt_norm, ln_post/proj on every token, RD, decoder, calibration);
* speed - ``python -m zegclip bench --vs-official`` (:mod:`zegclip.experiments.bench.vsofficial`) times it
  against the package's forward on identical weights.

For the timing to stand for the official code, ``attention="official"`` (the default) runs the operations the
official code runs, in its layout:

* the ViT works sequence-first (L, B, D) and each block calls ``nn.MultiheadAttention(768, 12)`` (batch_first
  False), which never takes the native fast path and reaches ``F.multi_head_attention_forward`` - fused SDPA
  attention when ``need_weights=False``, as in CLIP's ``ResidualAttentionBlock``;
  the positional table is re-interpolated to the patch grid on every call (an identity at 512²);
* the decoder's custom ``Attention`` computes ``softmax(QK^T * scale) V`` explicitly, all three layers in full
  (the official code also evaluates the last layer's value/FFN path, whose result it never reads), and the
  head-averaged scores of every layer;
* the mask is resized to ``mask_size`` (512) and then to the crop.

``attention="module"`` runs the ViT's blocks as the official code runs them: module calls of its own
``ResidualAttentionBlock`` layout (:class:`OfficialBlock`: fp32 ``LayerNorm``, ``nn.MultiheadAttention(768, 12)``
with ``batch_first=False`` called as ``attn(x, x, x, need_weights=False)``, QuickGELU MLP), built once per model by
:func:`official_blocks` from copies of its weights; ``bench --vs-official`` times it in eval mode under
``torch.inference_mode()``, as the official test loop runs. Whether ``nn.MultiheadAttention`` takes PyTorch's native
fast path (``torch._native_multi_head_attention``) is checked, not assumed: :func:`mha_fast_path`. With
``batch_first=False`` (the official layout) PyTorch 2.x declines it ("batch_first was not True") and the module
reaches ``F.multi_head_attention_forward``, the call ``"official"`` makes directly.

``attention="math"`` writes the backbone attention as the definition, ``softmax(QK^T / sqrt(d)) V``, for the
correctness test (independent even of PyTorch's attention kernels). Not reproduced: the official code reads the
class-embedding ``.npy`` from disk on every forward call (file I/O, not model compute).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["reference_logits", "reference_scores", "official_blocks", "OfficialBlock", "mha_fast_path"]

ATTENTION = ("module", "official", "math")


class OfficialBlock(nn.Module):
    """The official ``ResidualAttentionBlock`` layout (sequence-first x (L, B, D), eval: drop path is identity)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads)  # batch_first=False, as the official code builds it
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(width, 4 * width))
        self.mlp.add_module("c_proj", nn.Linear(4 * width, width))

    def _norm(self, ln: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:  # the official fp16-safe LayerNorm
        return ln(x.type(torch.float32)).type(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(*(self._norm(self.ln_1, x),) * 3, need_weights=False, attn_mask=None)[0]
        h = self.mlp.c_fc(self._norm(self.ln_2, x))
        return x + self.mlp.c_proj(h * torch.sigmoid(1.702 * h))


def official_blocks(model) -> nn.ModuleList:
    """The ViT blocks of ``model`` rebuilt as :class:`OfficialBlock` modules (copies of its weights, eval mode)."""
    vit = model.backbone.vit
    src = list(vit.transformer.resblocks)
    width, heads = vit.conv1.weight.shape[0], src[0].attn.num_heads
    blocks = nn.ModuleList(OfficialBlock(width, heads) for _ in src)
    for new, old in zip(blocks, src):
        state = {k: v for k, v in old.state_dict().items() if not k.startswith("ls_")}  # open_clip's LayerScale: off
        new.load_state_dict(state, strict=True)
    return blocks.to(vit.conv1.weight.device).eval()


def mha_fast_path(block: OfficialBlock, x: torch.Tensor) -> dict:
    """Whether ``block.attn`` takes PyTorch's native MHA fast path for a sequence-first ``x`` (L, B, D) in the
    current grad mode: the call is traced by counting ``torch._native_multi_head_attention``."""
    calls = []
    native = torch._native_multi_head_attention

    def counting(*args, **kwargs):
        calls.append(1)
        return native(*args, **kwargs)

    torch._native_multi_head_attention = counting
    try:
        h = block._norm(block.ln_1, x)
        block.attn(h, h, h, need_weights=False)
    finally:
        torch._native_multi_head_attention = native
    mha = block.attn
    reason = ("" if calls else "batch_first was not True" if not mha.batch_first else
              "training is enabled" if mha.training else "autograd is recording" if torch.is_grad_enabled() else
              "another condition of nn.MultiheadAttention.forward")
    return {"taken": bool(calls), "batch_first": mha.batch_first, "training": mha.training,
            "grad_enabled": torch.is_grad_enabled(), "inference_mode": torch.is_inference_mode_enabled(),
            "why_not": reason}


def _ln(x: torch.Tensor, mod, eps: float | None = None) -> torch.Tensor:
    return F.layer_norm(x.float(), (x.shape[-1],), mod.weight, mod.bias, mod.eps if eps is None else eps)


def _lin(x: torch.Tensor, linear) -> torch.Tensor:
    """An ``nn.Linear`` of the official code, run as it runs (``F.linear``: one fused matmul + bias)."""
    return F.linear(x, linear.weight, linear.bias)


def _quick_gelu(h: torch.Tensor) -> torch.Tensor:
    return h * torch.sigmoid(1.702 * h)


def _block_official(x: torch.Tensor, blk, heads: int) -> torch.Tensor:
    """One CLIP block on a sequence-first x (L, B, D), attention as nn.MultiheadAttention(batch_first=False) runs it."""
    mha = blk.attn
    h = _ln(x, blk.ln_1)
    a, _ = F.multi_head_attention_forward(
        h, h, h, x.shape[-1], heads, mha.in_proj_weight, mha.in_proj_bias, None, None, False, 0.0,
        mha.out_proj.weight, mha.out_proj.bias, training=False, need_weights=False)
    x = x + a
    return x + _lin(_quick_gelu(_lin(_ln(x, blk.ln_2), blk.mlp.c_fc)), blk.mlp.c_proj)


def _block_math(x: torch.Tensor, blk, heads: int) -> torch.Tensor:
    """One CLIP block on a sequence-first x (L, B, D), attention written out as its definition."""
    n, b, d = x.shape
    h = _ln(x, blk.ln_1).transpose(0, 1)  # (B, L, D)
    qkv = h @ blk.attn.in_proj_weight.T + blk.attn.in_proj_bias
    q, k, v = (t.reshape(b, n, heads, d // heads).transpose(1, 2) for t in qkv.chunk(3, dim=-1))
    att = torch.softmax(q @ k.transpose(-1, -2) / (d // heads) ** 0.5, dim=-1)
    a = (att @ v).transpose(1, 2).reshape(b, n, d)
    x = x + (a @ blk.attn.out_proj.weight.T + blk.attn.out_proj.bias).transpose(0, 1)
    h = _quick_gelu(_ln(x, blk.ln_2) @ blk.mlp.c_fc.weight.T + blk.mlp.c_fc.bias)
    return x + h @ blk.mlp.c_proj.weight.T + blk.mlp.c_proj.bias


def _backbone(model, img: torch.Tensor, attention: str,
              blocks: nn.ModuleList | None = None) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """Official VPTCLIPVisionTransformer: (H (B, N, d) unit rows, g (B, d) unit, grid)."""
    vit, bb = model.backbone.vit, model.backbone
    heads = vit.transformer.resblocks[0].attn.num_heads
    if attention == "module":
        modules = official_blocks(model) if blocks is None else blocks
        block = lambda x, blk, heads: modules[blk](x)  # noqa: E731  (blk: the block's index)
    else:
        block = {"official": _block_official, "math": _block_math}[attention]
    b = img.shape[0]
    patch = vit.conv1.weight.shape[-1]
    x = F.conv2d(img, vit.conv1.weight, stride=patch)
    gh, gw = x.shape[-2:]
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([vit.class_embedding.expand(b, 1, -1), x], 1)
    pos = vit.positional_embedding
    side = round((pos.shape[0] - 1) ** 0.5)
    spatial = pos[1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
    spatial = F.interpolate(spatial, size=(gh, gw), mode="bilinear", align_corners=False)  # every call, as official
    cls = pos[:1] + vit.class_embedding  # [CLS] gets the class embedding twice (DenseCLIP quirk)
    pos = torch.cat([cls, spatial.reshape(1, -1, gh * gw).permute(0, 2, 1)[0]], 0)
    x = _ln(x + pos, vit.ln_pre)
    proj = lambda p: _lin(p, bb.prompt_proj)  # noqa: E731  (dropout: eval, identity)
    T = bb.prompt_embeddings.shape[1]
    x = x.permute(1, 0, 2)  # (L, B, D): the official ViT is sequence-first
    x = torch.cat([x[:1], proj(bb.prompt_embeddings).expand(b, -1, -1).transpose(0, 1), x[1:]], 0)
    for i, blk in enumerate(vit.transformer.resblocks):
        if i > 0:  # deep prompts: block i-1's prompt outputs are replaced
            deep = proj(bb.deep_prompt_embeddings[i - 1 : i]).expand(b, -1, -1).transpose(0, 1)
            x = torch.cat([x[:1], deep, x[1 + T:]], 0)
        x = block(x, i if attention == "module" else blk, heads)
    x = x.permute(1, 0, 2)
    x = _ln(x, bb.prompt_norm)
    x = _ln(x, vit.ln_post) @ vit.proj  # every token, prompts included
    g = x[:, 0] / x[:, 0].norm(dim=-1, keepdim=True)
    H = x[:, -gh * gw:]
    return H / H.norm(dim=-1, keepdim=True), g, (gh, gw)


def reference_logits(model, img: torch.Tensor, attention: str = "module",
                     blocks: nn.ModuleList | None = None) -> torch.Tensor:
    """Mask logits (B, C_all, H, W) of one crop batch ``img`` (B, 3, H, W), all classes queried, eval mode.

    ``model`` supplies the weights only (a :class:`zegclip.model.segmentor.ZegCLIP` with deep prompts and the RD
    query [t*g, t]). ``blocks``: :func:`official_blocks` of ``model``, built once (``attention="module"``; built
    on every call when omitted). Call under ``torch.inference_mode()`` (or ``no_grad``) for timing.
    """
    if attention not in ATTENTION:
        raise ValueError(f"attention must be one of {ATTENTION}, got {attention!r}")
    H, g, (gh, gw) = _backbone(model, img, attention, blocks)
    b = img.shape[0]
    t = model.class_embeddings
    qin = torch.cat([t[None] * g[:, None], t[None].expand(b, -1, -1)], -1)
    q = _lin(qin, model.queries.proj)
    heads = model.cfg.decoder.heads
    maps = []
    for layer in model.decoder.layers:  # TPN_DecoderLayer: every layer in full, as the official loop runs them
        at = layer.multihead_attn
        Q, K, V = (_lin(z, lin).unflatten(-1, (heads, -1)).transpose(1, 2) for z, lin in ((q, at.q), (H, at.k), (H, at.v)))
        S = Q @ K.transpose(-1, -2) * Q.shape[-1] ** -0.5
        maps.append(S.mean(1))  # head-averaged, pre-softmax: the mask map of this layer
        a = _lin((S.softmax(-1) @ V).transpose(1, 2).flatten(2), at.proj)
        q = _ln(q + a, layer.norm2)
        q = _ln(q + _lin(F.relu(_lin(q, layer.linear1)), layer.linear2), layer.norm3)
    masks = maps[-1].reshape(b, -1, gh, gw)  # only the last layer's map is used
    size = tuple(img.shape[-2:])
    mask_size = model.cfg.mask_size
    if mask_size:
        masks = F.interpolate(masks, size=(mask_size, mask_size), mode="bilinear", align_corners=False)
    if masks.shape[-2:] != size:
        masks = F.interpolate(masks, size=size, mode="bilinear", align_corners=False)
    return masks


def reference_scores(model, img: torch.Tensor, attention: str = "module", shift: float = 0.1) -> torch.Tensor:
    """Calibrated scores of one crop: sigmoid of :func:`reference_logits`, minus ``shift`` on the seen classes."""
    p = reference_logits(model, img, attention).sigmoid()
    p[:, model.seen_idx] -= shift
    return p
