"""End-to-end check against an independent, functional transcription of the official forward pass.

The reference below is written from the fact sheet (§2-§6) with plain tensor operations and the model's own
weights; it shares no code with the package. Agreement pins the whole pipeline (QuickGELU blocks, the [CLS]
quirk, prompt replacement, prompt_norm, ln_post/proj on patches, RD, decoder, calibration).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from conftest import tiny_overrides

import zegclip


def _ln(x, mod, eps=None):
    return F.layer_norm(x, (x.shape[-1],), mod.weight, mod.bias, mod.eps if eps is None else eps)


def _clip_block(x, blk, heads):
    b, n, d = x.shape
    h = _ln(x, blk.ln_1)
    qkv = h @ blk.attn.in_proj_weight.T + blk.attn.in_proj_bias
    q, k, v = (t.reshape(b, n, heads, d // heads).transpose(1, 2) for t in qkv.chunk(3, dim=-1))
    att = torch.softmax(q @ k.transpose(-1, -2) / (d // heads) ** 0.5, dim=-1)
    a = (att @ v).transpose(1, 2).reshape(b, n, d)
    x = x + a @ blk.attn.out_proj.weight.T + blk.attn.out_proj.bias
    h = _ln(x, blk.ln_2) @ blk.mlp.c_fc.weight.T + blk.mlp.c_fc.bias
    h = h * torch.sigmoid(1.702 * h)  # QuickGELU
    return x + h @ blk.mlp.c_proj.weight.T + blk.mlp.c_proj.bias


def reference_scores(model, img, heads_vit):
    vit, bb = model.backbone.vit, model.backbone
    b = img.shape[0]
    x = F.conv2d(img, vit.conv1.weight, stride=16)
    gh, gw = x.shape[-2:]
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([vit.class_embedding.expand(b, 1, -1), x], 1)
    pos = vit.positional_embedding.clone()
    pos[0] = pos[0] + vit.class_embedding  # [CLS] gets the class embedding twice
    x = _ln(x + pos, vit.ln_pre)
    proj = lambda p: p @ bb.prompt_proj.weight.T + bb.prompt_proj.bias  # noqa: E731
    T = bb.prompt_embeddings.shape[1]
    x = torch.cat([x[:, :1], proj(bb.prompt_embeddings).expand(b, -1, -1), x[:, 1:]], 1)
    for i, blk in enumerate(vit.transformer.resblocks):
        if i > 0:
            x = torch.cat([x[:, :1], proj(bb.deep_prompt_embeddings[i - 1]).expand(b, -1, -1), x[:, 1 + T:]], 1)
        x = _clip_block(x, blk, heads_vit)
    x = _ln(x, bb.prompt_norm)
    x = _ln(x, vit.ln_post) @ vit.proj
    g = x[:, 0] / x[:, 0].norm(dim=-1, keepdim=True)
    H = x[:, -gh * gw:]
    H = H / H.norm(dim=-1, keepdim=True)  # (B, N, d)
    t = model.class_embeddings
    qin = torch.cat([t[None] * g[:, None], t[None].expand(b, -1, -1)], -1)
    q = qin @ model.queries.proj.weight.T + model.queries.proj.bias
    layers = model.decoder.layers
    heads = model.cfg.decoder.heads
    for li, layer in enumerate(layers):
        at = layer.multihead_attn
        Q = (q @ at.q.weight.T + at.q.bias).unflatten(-1, (heads, -1)).transpose(1, 2)
        K = (H @ at.k.weight.T + at.k.bias).unflatten(-1, (heads, -1)).transpose(1, 2)
        V = (H @ at.v.weight.T + at.v.bias).unflatten(-1, (heads, -1)).transpose(1, 2)
        S = Q @ K.transpose(-1, -2) * Q.shape[-1] ** -0.5
        if li == len(layers) - 1:
            masks = S.mean(1)  # head-averaged, pre-softmax
            break
        a = (S.softmax(-1) @ V).transpose(1, 2).flatten(2) @ at.proj.weight.T + at.proj.bias
        q = _ln(q + a, layer.norm2)
        f = F.relu(q @ layer.linear1.weight.T + layer.linear1.bias) @ layer.linear2.weight.T + layer.linear2.bias
        q = _ln(q + f, layer.norm3)
    logits = F.interpolate(masks.reshape(b, -1, gh, gw), size=img.shape[-2:], mode="bilinear", align_corners=False)
    p = logits.sigmoid()
    p[:, :15] -= 0.1  # seen classes of VOC
    return p


def test_model_matches_the_functional_reference():
    model = zegclip.build_model("voc", random_init=True, **tiny_overrides())
    with torch.no_grad():  # give every parameter non-trivial values (LayerNorm affine, biases)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    img = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = reference_scores(model, img, heads_vit=3)
        got = model.scores(img)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
