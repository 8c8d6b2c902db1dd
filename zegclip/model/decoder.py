"""The ZegCLIP mask decoder: class queries attend to patch embeddings; the last attention map is the mask.

Official structure (fact sheet §5), per layer, with queries q (B, C, D) and patch memory m (B, N, D)::

    a, S  = CrossAttention(q, m)              # S: pre-softmax scaled scores (B, heads, C, N)
    q     = norm2(q + dropout(a))
    q     = norm3(q + dropout(W2 dropout(relu(W1 q))))

The mask logits are the head-average of S in the **last** layer (paper Eq. 2): ``mean_h(Q_h K_h^T)/sqrt(d_h)``.
Since averaging over heads equals one full-width dot product divided by the number of heads, it is computed
as ``(Q K^T) / (sqrt(d_h) * heads)``. Nothing after the last layer's Q/K reaches an output, so that layer's
value/output/FFN path is not evaluated (it would receive no gradient in the official code either).

Switches (official default first): no query self-attention (``self_attn``/``norm1`` exist, as in the
official checkpoints, but are unused) vs. a standard post-norm self-attention step; no learnable projection of
the patch embeddings vs. the paper's Linear + LayerNorm; PyTorch default init (the official training script
never calls ``init_weights``) vs. truncated normal(0.02).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class DecoderConfig:
    dim: int = 512
    layers: int = 3
    heads: int = 8
    ffn_dim: int = 2048
    dropout: float = 0.1
    query_self_attention: bool = False  # official: False (self_attn is built but never called)
    patch_projection: bool = False  # official: False; paper: learnable projection of H as well
    init: str = "pytorch"  # "pytorch" (official, init_weights never runs) or "trunc_normal" (intended 0.02)

    def __post_init__(self):
        if self.layers < 1 or self.heads < 1 or self.dim % self.heads:
            raise ValueError(f"decoder needs layers >= 1 and dim divisible by heads, got {self}")
        if self.init not in ("pytorch", "trunc_normal"):
            raise ValueError(f"decoder init must be 'pytorch' or 'trunc_normal', got {self.init!r}")


class CrossAttention(nn.Module):
    """Multi-head attention of queries over memory with separate q/k/v/proj linears (official naming)."""

    def __init__(self, dim: int, heads: int, attn_dropout: float):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.attn_dropout = attn_dropout

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, D) -> (B, heads, L, head_dim)
        return x.unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)

    def mask_logits(self, query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """Head-averaged pre-softmax scores: (B, C, N)."""
        q, k = self.q(query), self.k(memory)
        return torch.matmul(q, k.transpose(1, 2)) * (self.head_dim**-0.5 / self.heads)

    def forward(self, query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """query (B, C, D), memory (B, N, D) -> attended values (B, C, D)."""
        q, k, v = self._split(self.q(query)), self._split(self.k(memory)), self._split(self.v(memory))
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_dropout if self.training else 0.0)
        return self.proj(out.transpose(1, 2).flatten(2))


class DecoderLayer(nn.Module):
    """One post-norm decoder layer; parameter names follow the official checkpoints."""

    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        d = cfg.dim
        self.use_self_attention = cfg.query_self_attention
        self.self_attn = nn.MultiheadAttention(d, cfg.heads, dropout=cfg.dropout, batch_first=True)
        self.multihead_attn = CrossAttention(d, cfg.heads, attn_dropout=cfg.dropout)
        self.linear1 = nn.Linear(d, cfg.ffn_dim)
        self.linear2 = nn.Linear(cfg.ffn_dim, d)
        self.norm1 = nn.LayerNorm(d)
        self.norm2 = nn.LayerNorm(d)
        self.norm3 = nn.LayerNorm(d)
        self.dropout = nn.Dropout(cfg.dropout)

    def attend_self(self, query: torch.Tensor) -> torch.Tensor:
        if not self.use_self_attention:
            return query
        return self.norm1(query + self.dropout(self.self_attn(query, query, query, need_weights=False)[0]))

    def forward(self, query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        query = self.attend_self(query)
        query = self.norm2(query + self.dropout(self.multihead_attn(query, memory)))
        ffn = self.linear2(self.dropout(F.relu(self.linear1(query))))
        return self.norm3(query + self.dropout(ffn))

    def mask_logits(self, query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        return self.multihead_attn.mask_logits(self.attend_self(query), memory)


class MaskDecoder(nn.Module):
    """Queries (B, C, D) and patch features (B, N, d_in) -> mask logits (B, C, N)."""

    def __init__(self, cfg: DecoderConfig, in_dim: int):
        super().__init__()
        self.cfg = cfg
        if cfg.patch_projection:
            self.input_proj = nn.Sequential(nn.Linear(in_dim, cfg.dim), nn.LayerNorm(cfg.dim))
        elif in_dim != cfg.dim:
            raise ValueError(f"patch features have {in_dim} channels but the decoder has {cfg.dim}; enable patch_projection")
        else:
            self.input_proj = nn.Identity()
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.layers))
        if cfg.init == "trunc_normal":
            self.apply(_trunc_normal_init)

    def forward(self, queries: torch.Tensor, patches: torch.Tensor, all_layers: bool = False):
        """Mask logits of the last layer (B, C, N); with ``all_layers`` a list with one map per layer."""
        memory = self.input_proj(patches)
        maps = []
        for layer in self.layers[:-1]:
            if all_layers:
                maps.append(layer.mask_logits(queries, memory))
            queries = layer(queries, memory)
        maps.append(self.layers[-1].mask_logits(queries, memory))
        return maps if all_layers else maps[-1]


def _trunc_normal_init(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
