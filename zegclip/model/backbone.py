"""The CLIP image encoder of ZegCLIP: open_clip's VisionTransformer run with (optional) deep visual prompts.

Three modes (paper Table 5):

* ``"fix"`` - Baseline-Fix: CLIP frozen, no prompts.
* ``"ft"``  - Baseline-FT: every CLIP vision weight is trained, no prompts.
* ``"dpt"`` - deep prompt tuning (ZegCLIP): CLIP frozen; T learnable tokens enter every block (paper Eq. 3).

The module wraps open_clip's own ``VisionTransformer`` (attribute ``vit``) and runs its submodules
(``conv1``, ``ln_pre``, ``transformer.resblocks``, ``ln_post``, ``proj``) itself, so that prompts can be
swapped between blocks. Output, for an input of shape (B, 3, H, W) and patch size p:

* ``features``: (B, D, H/p, W/p), the projected patch tokens, L2-normalised along D at every position;
* ``global_embedding``: (B, D), the projected, L2-normalised [CLS] token ("g" in the paper).

Official-code details kept as defaults (each a switch, see :class:`EncoderConfig`): [CLS] receives the class
embedding twice, prompts pass through one shared Linear + Dropout(0.1), an extra learnable LayerNorm
(``prompt_norm``, eps 1e-6) follows the last block, and ``ln_post``/``proj`` apply to every token.

Speed (issue 15): each standard open_clip block is run by :func:`fused_block_forward`, which computes the same
function from the block's own weights with ``F.scaled_dot_product_attention`` (the fused flash kernel) instead of
calling the block. Reason: in eval mode under ``no_grad`` ``nn.MultiheadAttention`` takes its native fast path
(``_native_multi_head_attention``), which on a CPU does attention as explicit ``bmm`` + softmax + ``bmm`` - about
23 GMAC/s on a 2-core EPYC against about 80 GMAC/s for the linear layers, 0.87 s of a 2.75 s VOC crop. The
official code (sequence-first blocks) never takes that path: it reaches SDPA through
``F.multi_head_attention_forward``. Blocks of another type, or with hooks, are called as before; set
``PromptedVisionEncoder.fused_attention = False`` to call every block.

Also (issue 15), with deep prompts every block's prompt outputs are discarded (replaced by the next block's
prompts, or never read after the last block), so :meth:`PromptedVisionEncoder.forward` (without a trace) runs the
blocks on [CLS, patches, prompts] and computes outputs for [CLS, patches] only: the prompts are keys and values,
their queries, projections and MLP rows are skipped (T/(1+T+N) of a block's work: 1 % for VOC, 9 % for COCO).
Attention has no positional term inside a block, so moving the prompts to the end changes nothing but the
summation order. In training too: the skipped rows' outputs are never read, so they carry no gradient, and CLIP's
blocks have no dropout (the prompts' own dropout is drawn as before, one draw per block in block order). The traced
pass (:meth:`forward_tokens`) keeps the official layout and every token. ``PromptedVisionEncoder.skip_prompt_rows
= False`` turns it off.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from open_clip.transformer import LayerScale, QuickGELU, ResidualAttentionBlock
from torch import nn

ENCODER_MODES = ("fix", "ft", "dpt")


def global_hooks() -> bool:
    """Whether global module hooks are registered: a tracer such as ``FlopCounterMode`` (the MAC counter) watches
    every module call, and the speed paths then give way to the official operations so that it counts those."""
    from torch.nn.modules import module as m

    return bool(m._global_forward_hooks or m._global_forward_pre_hooks or m._global_backward_hooks
                or m._global_backward_pre_hooks)


def _hooked(module: nn.Module) -> bool:
    """Whether ``module`` has hooks of its own, which a bypass would skip (global ones: :func:`global_hooks`)."""
    return bool(module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
                or module._backward_pre_hooks)


def fusable_block(block: nn.Module) -> bool:
    """Whether :func:`fused_block_forward` computes ``block(x)``: an open_clip ``ResidualAttentionBlock``
    (self-attention only) whose ``nn.MultiheadAttention`` has packed q/k/v weights, no bias_k/bias_v and no zero
    attention, whose MLP is open_clip's ``c_fc``/``gelu``/``c_proj`` and whose layer scales are LayerScale or
    Identity, and no hooks on the block or any of its submodules (a bypass would skip them), nor global ones."""
    attn, mlp = getattr(block, "attn", None), getattr(block, "mlp", None)
    return (
        type(block) is ResidualAttentionBlock
        and not hasattr(block, "ln_1_kv")
        and type(attn) is nn.MultiheadAttention
        and attn._qkv_same_embed_dim
        and isinstance(attn.in_proj_weight, torch.Tensor)
        and attn.bias_k is None
        and attn.bias_v is None
        and not attn.add_zero_attn
        and type(mlp) is nn.Sequential
        and list(mlp._modules) == ["c_fc", "gelu", "c_proj"]
        and type(mlp.c_fc) is nn.Linear
        and type(mlp.c_proj) is nn.Linear
        and type(block.ls_1) in (nn.Identity, LayerScale)
        and type(block.ls_2) in (nn.Identity, LayerScale)
        and not global_hooks()
        and not any(_hooked(m) for m in block.modules())
    )


QUICK_GELU_SCALE = 1.702  # open_clip's QuickGELU: h * sigmoid(1.702 * h)


def _buffer(workspace: dict | None, slot: str, rows: int, cols: int, like: torch.Tensor) -> torch.Tensor | None:
    """A (rows, cols) buffer of ``workspace`` kept under ``slot`` for the blocks of one inference pass (None
    without a workspace). Why: a fresh buffer of some MB is returned to the OS when freed and page-faulted in again
    by the next block (about 3 ms per 12 MB on this CPU), 12 times a crop."""
    if workspace is None:
        return None
    key = (slot, rows, cols, like.dtype, like.device)
    if key not in workspace:
        workspace[key] = like.new_empty(rows, cols)
    return workspace[key]


def _mlp(mlp: nn.Sequential, x: torch.Tensor, inplace: bool, workspace: dict | None = None) -> torch.Tensor:
    """``c_proj(gelu(c_fc(x)))`` for (..., width) ``x``. With QuickGELU, as SiLU with the scale in the GEMMs:

    ``h * sigmoid(1.702 h) = silu(1.702 h) / 1.702``, and both factors ride on the matmuls' ``alpha`` (BLAS scales the
    product for free): ``h' = addmm(1.702 b_fc, x, W_fc^T, alpha=1.702)``, ``silu_(h')``, ``addmm(b_proj, h', W_proj^T,
    alpha=1/1.702)`` - one fused pass over the (rows, 4 * width) activation instead of open_clip's three (mul,
    sigmoid, mul); equal within float rounding (~4e-7 relative).

    ``workspace`` (inference only): the hidden activation goes into a buffer kept for the next block
    (:func:`_buffer`; a fresh (1025, 3072) one cost 3.3 ms of page faults per block).
    """
    if (type(mlp.gelu) is not QuickGELU or x.dtype != mlp.c_fc.weight.dtype or mlp.c_fc.bias is None
            or mlp.c_proj.bias is None or torch.is_autocast_enabled(x.device.type)):
        return mlp.c_proj(mlp.gelu(mlp.c_fc(x)))
    flat = x.reshape(-1, x.shape[-1])
    s = QUICK_GELU_SCALE
    out = _buffer(workspace if inplace else None, "mlp", flat.shape[0], mlp.c_fc.out_features, flat)
    h = torch.addmm(mlp.c_fc.bias * s, flat, mlp.c_fc.weight.T, alpha=s, out=out)
    h = F.silu(h, inplace=inplace)
    return torch.addmm(mlp.c_proj.bias, h, mlp.c_proj.weight.T, alpha=1.0 / s).view(*x.shape[:-1], -1)


def fused_block_forward(block: nn.Module, x: torch.Tensor, rows: int | None = None,
                        workspace: dict | None = None) -> torch.Tensor:
    """``block(x)`` for a :func:`fusable_block` and a batch-first ``x`` (B, N, width), attention through SDPA.

    The same function as open_clip's ``ResidualAttentionBlock.forward`` (no mask)::

        x = x + ls_1(out_proj(attention(ln_1(x))))
        x = x + ls_2(c_proj(gelu(c_fc(ln_2(x)))))

    with ``attention`` = ``F.scaled_dot_product_attention`` on the heads of the packed in-projection, scale
    1/sqrt(head_dim), dropout ``attn.dropout`` in training mode only (0 in CLIP), as nn.MultiheadAttention does.

    ``rows``: return only the outputs of the first ``rows`` tokens (B, rows, width); the other tokens still serve
    as keys and values, but their queries, attention rows, projections and MLP are not computed (the prompt
    tokens, whose outputs the next block discards). The MLP runs as :func:`_mlp` (QuickGELU as SiLU, its scale in
    the GEMMs). Without autograd recording (``no_grad``/inference), the residual adds and the activation work in
    place on fresh buffers (fewer allocations), and a ``workspace`` dict shared by the blocks of one pass keeps the
    q/k/v and MLP hidden buffers for the next block (see :func:`_buffer`).
    """
    attn, mlp = block.attn, block.mlp
    b, n, d = x.shape
    m = n if rows is None else rows
    inplace = not torch.is_grad_enabled()  # every intermediate below is a fresh buffer of this call
    if (workspace is not None and inplace and x.dtype == attn.in_proj_weight.dtype
            and attn.in_proj_bias is not None and not torch.is_autocast_enabled(x.device.type)):
        out = _buffer(workspace, "qkv", b * n, 3 * d, x)  # read by SDPA below, free again for the next block
        qkv = torch.addmm(attn.in_proj_bias, block.ln_1(x).reshape(b * n, d), attn.in_proj_weight.T, out=out)
        qkv = qkv.view(b, n, 3 * d)
    else:
        qkv = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)  # (B, N, 3 * width)
    q, k, v = qkv.view(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4).unbind(0)  # (B, heads, N, hd)
    if rows is not None:
        q, x = q[:, :, :rows], x[:, :rows]
    a = F.scaled_dot_product_attention(q, k, v, dropout_p=attn.dropout if attn.training else 0.0)
    a = block.ls_1(F.linear(a.transpose(1, 2).reshape(b, m, d), attn.out_proj.weight, attn.out_proj.bias))
    x = a.add_(x) if inplace and a.dtype == x.dtype else x + a  # (autocast: a low-precision a promotes to x's dtype)
    y = block.ls_2(_mlp(mlp, block.ln_2(x), inplace, workspace))
    return y.add_(x) if inplace and y.dtype == x.dtype else x + y


@dataclass(frozen=True)
class EncoderConfig:
    mode: str = "dpt"
    num_prompts: int = 10  # T tokens per block (10 for VOC, 100 for COCO/Context)
    deep_prompts: bool = True  # False: shallow VPT (prompts enter block 0 only and flow through)
    prompt_dropout: float = 0.1
    prompt_projection: bool = True  # official: one Linear(width, width) shared by all blocks' prompts
    prompt_norm: bool = True  # official: learnable LayerNorm(eps=1e-6) after the last block (not in the paper)
    cls_double_embedding: bool = True  # official (DenseCLIP quirk): token 0 = 2*class_embedding + pos_0

    def __post_init__(self):
        if self.mode not in ENCODER_MODES:
            raise ValueError(f"encoder mode must be one of {ENCODER_MODES}, got {self.mode!r}")
        if self.mode == "dpt" and self.num_prompts < 1:
            raise ValueError(f"num_prompts must be >= 1 for deep prompt tuning, got {self.num_prompts}")
        if not 0.0 <= self.prompt_dropout < 1.0:
            raise ValueError(f"prompt_dropout must be in [0, 1), got {self.prompt_dropout}")


class PromptedVisionEncoder(nn.Module):
    """open_clip ``VisionTransformer`` + deep prompt tuning; returns (patch features, global embedding)."""

    fused_attention: bool = True  # run standard blocks through fused_block_forward (False: call every block)
    skip_prompt_rows: bool = True  # untraced pass: no query/MLP rows for the discarded prompt outputs

    def __init__(self, vit: nn.Module, cfg: EncoderConfig):
        super().__init__()
        if getattr(vit, "attn_pool", None) is not None or getattr(vit, "pool_type", "tok") != "tok":
            raise ValueError("only CLIP ViTs with a [CLS] token (pool_type 'tok', no attentional pooling) are supported")
        self.vit = vit
        self.cfg = cfg
        self.width = vit.conv1.out_channels
        self.patch_size = tuple(vit.patch_size)
        self.grid_size = tuple(vit.grid_size)
        self.num_blocks = len(vit.transformer.resblocks)
        self.num_prompts = cfg.num_prompts if cfg.mode == "dpt" else 0
        if self.num_prompts:
            bound = math.sqrt(6.0 / (3 * self.patch_size[0] * self.patch_size[1] + self.width))  # VPT's rule
            self.prompt_embeddings = nn.Parameter(torch.empty(1, self.num_prompts, self.width).uniform_(-bound, bound))
            n_deep = self.num_blocks - 1 if cfg.deep_prompts else 0
            if n_deep:
                self.deep_prompt_embeddings = nn.Parameter(
                    torch.empty(n_deep, self.num_prompts, self.width).uniform_(-bound, bound)
                )
            else:
                self.deep_prompt_embeddings = None
            if cfg.prompt_projection:
                self.prompt_proj = nn.Linear(self.width, self.width)
                nn.init.kaiming_normal_(self.prompt_proj.weight, a=0, mode="fan_out")
            else:
                self.prompt_proj = nn.Identity()
            self.prompt_dropout = nn.Dropout(cfg.prompt_dropout)
            self.prompt_norm = nn.LayerNorm(self.width, eps=1e-6) if cfg.prompt_norm else nn.Identity()
        self.set_trainable()

    # ----------------------------------------------------------------------------------------------------------
    def set_trainable(self) -> None:
        """Freeze per mode: fix -> nothing trains; ft -> everything; dpt -> only parameters named '*prompt*'."""
        for name, param in self.named_parameters():
            if self.cfg.mode == "ft":
                param.requires_grad_(True)
            elif self.cfg.mode == "dpt":
                param.requires_grad_("prompt" in name)
            else:
                param.requires_grad_(False)

    def prompt_tokens(self, layer: int, batch: int = 1) -> torch.Tensor:
        """Prompt tokens that enter block ``layer``: (B, T, width), after the shared projection and dropout."""
        if not self.num_prompts:
            raise ValueError(f"encoder mode {self.cfg.mode!r} has no prompt tokens")
        if not 0 <= layer < self.num_blocks or (layer > 0 and self.deep_prompt_embeddings is None):
            raise ValueError(f"no prompt tokens enter block {layer} (blocks 0..{self.num_blocks - 1}, "
                             f"deep_prompts={self.cfg.deep_prompts})")
        raw = self.prompt_embeddings if layer == 0 else self.deep_prompt_embeddings[layer - 1 : layer]
        return self.prompt_dropout(self.prompt_proj(raw)).expand(batch, -1, -1)

    def positional_embedding(self, grid: tuple[int, int]) -> torch.Tensor:
        """(1 + h*w, width): the learnt table, its spatial part bilinearly resized to ``grid`` when it differs."""
        pos = self.vit.positional_embedding
        if tuple(grid) == self.grid_size:
            return pos
        spatial = pos[1:].reshape(1, *self.grid_size, -1).permute(0, 3, 1, 2)
        spatial = F.interpolate(spatial, size=grid, mode="bilinear", align_corners=False)
        return torch.cat([pos[:1], spatial.permute(0, 2, 3, 1).reshape(grid[0] * grid[1], -1)], dim=0)

    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Patch embedding + [CLS] + positions + ln_pre: (B, 1 + h*w, width), and the grid (h, w)."""
        vit = self.vit
        x = vit.conv1(images.to(vit.conv1.weight.dtype))  # (B, width, h, w)
        grid = (x.shape[-2], x.shape[-1])
        x = x.flatten(2).transpose(1, 2)  # (B, h*w, width), row-major
        cls = vit.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1)
        pos = self.positional_embedding(grid).to(x.dtype)
        if self.cfg.cls_double_embedding:
            pos = torch.cat([pos[:1] + vit.class_embedding.to(x.dtype), pos[1:]], dim=0)
        x = x + pos
        return vit.ln_pre(x), grid

    def forward_tokens(self, images: torch.Tensor, trace: dict | None = None) -> tuple[torch.Tensor, tuple[int, int]]:
        """Run the blocks; returns the final (B, 1 + T + h*w, width) sequence (before ln_post) and the grid.

        With a ``trace`` dict, also stores ``tokens`` (B, 1 + h*w, width), the embedded input before prompts, and
        ``block_inputs`` / ``block_outputs``: one (B, 1 + T + h*w, width) sequence per block.
        """
        x, grid = self.embed(images)
        if trace is not None:
            trace.update(tokens=x, block_inputs=[], block_outputs=[])
        batch = x.shape[0]
        T = self.num_prompts
        if T:
            x = torch.cat([x[:, :1], self.prompt_tokens(0, batch).to(x.dtype), x[:, 1:]], dim=1)
        transformer = self.vit.transformer
        batch_first = getattr(transformer, "batch_first", True)
        for i, block in enumerate(transformer.resblocks):
            if i > 0 and T and self.deep_prompt_embeddings is not None:
                # previous block's prompt outputs are discarded and replaced by this block's prompts (Eq. 3)
                x = torch.cat([x[:, :1], self.prompt_tokens(i, batch).to(x.dtype), x[:, 1 + T :]], dim=1)
            if trace is not None:
                trace["block_inputs"].append(x)
            if self.fused_attention and fusable_block(block):
                x = fused_block_forward(block, x)  # SDPA instead of the fast path's bmm + softmax (see module doc)
            elif batch_first:
                x = block(x)
            else:
                x = block(x.transpose(0, 1)).transpose(0, 1)
            if trace is not None:
                trace["block_outputs"].append(x)
        if T:
            x = self.prompt_norm(x)
        return x, grid

    def _compact(self, trace: dict | None) -> bool:
        """Whether :meth:`forward` may skip the prompt rows (see the module doc): deep prompts, no trace, every
        block fusable (no hooks: a tracer such as the MAC counter sees the official layout)."""
        return (trace is None and self.skip_prompt_rows and self.fused_attention and self.num_prompts > 0
                and self.deep_prompt_embeddings is not None
                and all(fusable_block(block) for block in self.vit.transformer.resblocks))

    def forward_compact(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """The deep-prompt blocks computing [CLS, patches] only: (B, 1 + h*w, width) after ``prompt_norm``, grid.

        Block i runs on [CLS, patches, prompts_i] (prompts last) and returns its first 1 + h*w outputs; equal to
        the CLS and patch rows of :meth:`forward_tokens` up to float summation order. Needs :meth:`_compact`.
        """
        x, grid = self.embed(images)
        batch, keep = x.shape[0], x.shape[1]
        workspace: dict = {}  # buffers reused by the blocks of this pass (inference; see _mlp)
        for i, block in enumerate(self.vit.transformer.resblocks):
            x = torch.cat([x, self.prompt_tokens(i, batch).to(x.dtype)], dim=1)
            x = fused_block_forward(block, x, rows=keep, workspace=workspace)
        return self.prompt_norm(x), grid

    def forward(self, images: torch.Tensor, trace: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, 3, H, W) -> features (B, D, H/p, W/p) unit-norm per position, global (B, D) unit-norm.

        ``trace``: optional dict filled as in :meth:`forward_tokens`.
        """
        if self._compact(trace):
            cls_and_patches, (h, w) = self.forward_compact(images)
        else:
            x, (h, w) = self.forward_tokens(images, trace)
            cls_and_patches = torch.cat([x[:, :1], x[:, -h * w :]], dim=1)  # prompt outputs are not read
        y = self.vit.ln_post(cls_and_patches)
        if self.vit.proj is not None:
            y = y @ self.vit.proj
        global_embedding = F.normalize(y[:, 0], dim=-1)
        features = F.normalize(y[:, 1:], dim=-1).transpose(1, 2).reshape(y.shape[0], -1, h, w)
        return features, global_embedding
