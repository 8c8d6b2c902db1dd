"""Class queries for the decoder: the relationship descriptor (RD, paper Sec. 3.5) and the formats of Table 4.

With L2-normalised text embeddings t (C, d) and the image's global embedding g (B, d), a *format* lists the
parts that are concatenated per class, then projected by one learnable Linear(k*d, D):

=================  ==============================  ==============
format             parts                           input dim
=================  ==============================  ==============
``t``              t  (no RD: the baseline query)  d
``t*g``            t⊙g                             d
``|t-g|``          |t−g|                           d
``t-g``            t−g                             d
``t+g``            t+g                             d
``[t,g]``          t, g                            2d
``[t*g,t]``        t⊙g, t  (ZegCLIP, default)      2d
``[t-g,t]``        t−g, t                          2d
``[t*g,t+g]``      t⊙g, t+g                        2d
``[t+g,t]``        t+g, t                          2d
``[t*g,t-g]``      t⊙g, t−g                        2d
``[t*g,t-g,t]``    t⊙g, t−g, t                     3d
=================  ==============================  ==============

``⊙`` may be written instead of ``*``; spaces are ignored.
"""
from __future__ import annotations

import torch
from torch import nn

QUERY_FORMATS: dict[str, tuple[str, ...]] = {
    "t": ("t",),
    "t*g": ("t*g",),
    "|t-g|": ("|t-g|",),
    "t-g": ("t-g",),
    "t+g": ("t+g",),
    "[t,g]": ("t", "g"),
    "[t*g,t]": ("t*g", "t"),
    "[t-g,t]": ("t-g", "t"),
    "[t*g,t+g]": ("t*g", "t+g"),
    "[t+g,t]": ("t+g", "t"),
    "[t*g,t-g]": ("t*g", "t-g"),
    "[t*g,t-g,t]": ("t*g", "t-g", "t"),
}
DEFAULT_QUERY_FORMAT = "[t*g,t]"


def canonical_format(name: str) -> str:
    """Normalise a format name (``⊙`` -> ``*``, no spaces) and check that it is one of the 12 of Table 4."""
    key = name.replace("⊙", "*").replace("−", "-").replace(" ", "")
    if key not in QUERY_FORMATS:
        raise ValueError(f"unknown query format {name!r}; choose one of {list(QUERY_FORMATS)}")
    return key


def _part(name: str, t: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    if name == "t":
        return t.expand(g.shape[0], -1, -1)
    if name == "g":
        return g.expand(-1, t.shape[1], -1)
    if name == "t*g":
        return t * g
    if name == "t-g":
        return t - g
    if name == "|t-g|":
        return (t - g).abs()
    if name == "t+g":
        return t + g
    raise AssertionError(name)


class RelationshipDescriptor(nn.Module):
    """Builds per-image class queries: (B, C, D) from text (C, d) and global embedding (B, d)."""

    def __init__(self, embed_dim: int, out_dim: int, query_format: str = DEFAULT_QUERY_FORMAT):
        super().__init__()
        self.query_format = canonical_format(query_format)
        self.parts = QUERY_FORMATS[self.query_format]
        self.proj = nn.Linear(len(self.parts) * embed_dim, out_dim)

    def describe(self, text: torch.Tensor, global_embedding: torch.Tensor) -> torch.Tensor:
        """The un-projected query input: (B, C, k*d)."""
        t = text.to(global_embedding.dtype).unsqueeze(0)  # (1, C, d)
        g = global_embedding.unsqueeze(1)  # (B, 1, d)
        return torch.cat([_part(p, t, g) for p in self.parts], dim=-1)

    def forward(self, text: torch.Tensor, global_embedding: torch.Tensor) -> torch.Tensor:
        return self.proj(self.describe(text, global_embedding))
