"""Efficiency (issue 6): parameter counts, the MAC counter, fused-path equality, the training step, bench, Table 3.

Every speed-related path is checked against a reference: fused attention against the math path, the native
MultiheadAttention fast path against an explicit softmax(QK^T)V, channels-last / compile / bf16 against the
plain float32 forward. Small models only (the tiny CLIP of conftest and the bench's quick model).
"""
from __future__ import annotations

import ast
import json
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_CLIP, tiny_overrides
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torch.utils._python_dispatch import TorchDispatchMode

import zegclip
from zegclip.experiments import bench
from zegclip.model.backbone import fusable_block, fused_block_forward
from zegclip.model.decoder import CrossAttention
from zegclip.experiments.bench.efficiency import _no_requires_grad, count_macs, math_attention, parameter_counts
from zegclip.experiments.bench.twostage import build_two_stage

ROOT = Path(__file__).resolve().parents[1]


def _no_dropout(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
        if isinstance(m, CrossAttention):
            m.attn_dropout = 0.0
    return model


class _OpLog(TorchDispatchMode):
    """Records the aten ops that reach the dispatcher."""

    def __init__(self):
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


# ------------------------------------------------------------------------------------------- parameters
def test_parameter_counts_full_size_on_meta():
    """Trainable 13,821,184 (VOC) / 14,650,624 (COCO) as the paper; the comparator's counts from its parts."""
    with torch.device("meta"):  # no memory, no init cost: counts only
        voc = zegclip.build_model("voc", random_init=True, text_embeddings=torch.zeros(20, 512))
        coco = zegclip.build_model("coco", random_init=True, text_embeddings=torch.zeros(171, 512))
        two = build_two_stage("voc")
    frozen_visual_512, frozen_visual_224 = 86_828_544, 86_192_640  # fact sheet §13; 224 px: 197-row pos table
    assert parameter_counts(voc) == {"trainable_params": 13_821_184, "total_params": 13_821_184 + frozen_visual_512}
    assert parameter_counts(coco) == {"trainable_params": 14_650_624, "total_params": 14_650_624 + frozen_visual_512}
    # text tower: excluded by default, included on request
    assert parameter_counts(voc, exclude=())["total_params"] == voc.parameter_counts()["total_params"] == 164_077_824
    decoder = 3 * 4_204_032  # fact sheet §13: 3 decoder layers (the official unused self-attention included)
    counts = two.parameter_counts()
    assert counts["trainable_proposal_encoder"] == frozen_visual_512  # "ft": the whole ViT-B/16 trains
    assert counts["trainable_decoder"] == decoder + 100 * 512  # + N = 100 learned proposal queries
    assert counts["frozen_clip_crop_encoder"] == frozen_visual_224
    assert parameter_counts(two) == {"trainable_params": frozen_visual_512 + decoder + 51_200,
                                     "total_params": frozen_visual_512 + decoder + 51_200 + frozen_visual_224}


# ------------------------------------------------------------------------------------------- MAC counter
def zegclip_macs(*, width, layers, mlp, patch, size, prompts, embed, dec_dim, dec_ffn, dec_layers, classes,
                 rd_parts=2) -> int:
    """Hand count of one ZegCLIP crop's multiply-adds (batch 1, eval, all classes queried; heads do not matter).

    Tiny config (width 48, 3 blocks, 64 px -> 16 patches, T = 4 -> 21 tokens, d = 32, C = 20):
    conv 589,824 + prompt projections 27,648 + 3 blocks x 622,944 + ln_post/proj 26,112 + RD 40,960
    + 2 full decoder layers x 176,128 + last layer (q, k, QK^T) 47,104 = 2,952,736.
    """
    n = (size // patch) ** 2
    tokens = 1 + prompts + n
    conv = n * 3 * patch * patch * width
    prompt_proj = layers * prompts * width * width if prompts else 0
    block = tokens * width * 3 * width + tokens * width * width + 2 * tokens * tokens * width + 2 * tokens * width * mlp
    proj = (1 + n) * width * embed  # ln_post/proj on [CLS] + patches (prompt outputs are dropped)
    rd = classes * rd_parts * embed * dec_dim
    full_layer = (classes * dec_dim * dec_dim * 2 + 2 * n * dec_dim * dec_dim  # q, proj; k, v
                  + 2 * classes * n * dec_dim + 2 * classes * dec_dim * dec_ffn)  # QK^T, AV; FFN
    last_layer = classes * dec_dim * dec_dim + n * dec_dim * dec_dim + classes * n * dec_dim  # q, k, head-avg QK^T
    return conv + prompt_proj + layers * block + proj + rd + (dec_layers - 1) * full_layer + last_layer


def test_mac_count_tiny_equals_hand_count(tiny_model):
    v = TINY_CLIP["vision_cfg"]
    expected = zegclip_macs(width=v["width"], layers=v["layers"], mlp=4 * v["width"], patch=v["patch_size"], size=64,
                            prompts=4, embed=TINY_CLIP["embed_dim"], dec_dim=32, dec_ffn=64, dec_layers=3, classes=20)
    assert expected == 2_952_736  # the sum written out term by term in zegclip_macs' docstring
    counted = count_macs(tiny_model, torch.randn(1, 3, 64, 64))
    assert counted["macs"] == expected
    assert counted["flops"] == 2 * expected


def test_full_size_hand_count_matches_paper_within_half_a_percent():
    """The same formula at ViT-B/16, 512², 1035 / 1125 tokens: 110.25 / 123.42 GMAC vs the paper's 110.4 / 123.9.

    (``python -m zegclip bench`` counts exactly these numbers on the real model: 110,245,185,536 and
    123,415,758,848.)"""
    common = dict(width=768, layers=12, mlp=3072, patch=16, size=512, embed=512, dec_dim=512, dec_ffn=2048,
                  dec_layers=3)
    voc = zegclip_macs(prompts=10, classes=20, **common)
    coco = zegclip_macs(prompts=100, classes=171, **common)
    assert voc == 110_245_185_536 and coco == 123_415_758_848
    assert abs(voc / 110.4e9 - 1) < 0.005 and abs(coco / 123.9e9 - 1) < 0.005


def test_counter_needs_math_attention_and_no_fast_path(tiny_model):
    """Without the two switches the counter misses the attention (and the fast path's projections)."""
    x = torch.randn(1, 3, 64, 64)
    plain = FlopCounterMode(display=False)
    with _no_requires_grad(tiny_model), torch.no_grad(), plain:
        tiny_model(x)
    counted = count_macs(tiny_model, x)["macs"]
    assert plain.get_total_flops() // 2 < counted
    # the switches are restored afterwards
    assert torch.backends.mha.get_fastpath_enabled()


def test_two_stage_mac_breakdown_equals_whole_count():
    """Stage 1 + B*N x one crop + combination == counting the whole two-stage forward at once."""
    model = build_two_stage("voc", proposals=3, crop_size=32, **tiny_overrides())
    x = torch.randn(2, 3, 64, 64)
    parts = model.mac_breakdown(x)
    assert parts["crops"] == 6
    assert parts["macs"] == count_macs(model, x)["macs"]
    assert parts["macs"] == parts["proposals"] + 6 * parts["per_crop"] + parts["combine"]
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 20, 64, 64) and torch.isfinite(out).all()


def test_two_stage_boxes_are_mask_bounding_boxes():
    model = build_two_stage("voc", proposals=2, crop_size=32, **tiny_overrides())
    probs = torch.zeros(1, 2, 8, 10)
    probs[0, 0, 2:5, 3:7] = 0.9  # rows 2..4, cols 3..6
    boxes = model.boxes(probs)
    assert boxes.tolist() == [[0, 3, 2, 7, 5], [0, 0, 0, 10, 8]]  # an empty mask -> the whole image


# ------------------------------------------------------------------------------------------- fused paths
def test_decoder_cross_attention_sdpa_equals_math():
    torch.manual_seed(0)
    attn = CrossAttention(32, 4, attn_dropout=0.1).eval()
    q, m = torch.randn(2, 5, 32), torch.randn(2, 16, 32)
    with _OpLog() as log:
        fused = attn(q, m)
    assert any("scaled_dot_product" in op for op in log.ops)  # the fused kernel, no explicit softmax
    assert not any("softmax" in op for op in log.ops)
    split = lambda x: x.unflatten(-1, (4, 8)).transpose(1, 2)  # noqa: E731
    Q, K, V = split(attn.q(q)), split(attn.k(m)), split(attn.v(m))
    ref = (Q @ K.transpose(-1, -2) / math.sqrt(8)).softmax(-1) @ V
    ref = attn.proj(ref.transpose(1, 2).flatten(2))
    torch.testing.assert_close(fused, ref, atol=1e-5, rtol=1e-5)
    # the mask logits (last layer) stay exact: head average of the scaled scores
    scores = (Q @ K.transpose(-1, -2) / math.sqrt(8)).mean(dim=1)
    torch.testing.assert_close(attn.mask_logits(q, m), scores, atol=1e-6, rtol=1e-6)


def test_backbone_attention_is_fused_in_training_and_eval(tiny_model):
    """open_clip blocks use nn.MultiheadAttention: SDPA in training, the native fast path in eval under no_grad."""
    block = tiny_model.backbone.vit.transformer.resblocks[0]
    x = torch.randn(2, 21, 48)
    block.train()
    with _OpLog() as log:
        block(x.requires_grad_())
    assert any("scaled_dot_product" in op for op in log.ops) and not any("softmax" in op for op in log.ops)
    block.eval()
    with torch.no_grad(), _OpLog() as log:
        fast = block(x)
    # the tiny block has 3 heads (the fast path needs an even count): SDPA; ViT-B/16's 12 heads: the native op
    assert any("scaled_dot_product" in op for op in log.ops) and not any("softmax" in op for op in log.ops)
    even = type(block)(64, 4).eval()
    with torch.no_grad(), _OpLog() as log:
        even(torch.randn(2, 21, 64))
    assert any("_native_multi_head_attention" in op for op in log.ops)
    # reference: explicit softmax attention from the block's own weights
    mha = block.attn
    h = block.ln_1(x)
    qkv = F.linear(h, mha.in_proj_weight, mha.in_proj_bias).unflatten(-1, (3, mha.num_heads, -1)).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    a = ((q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])).softmax(-1) @ v
    y = x + mha.out_proj(a.transpose(1, 2).flatten(2))
    ref = y + block.mlp(block.ln_2(y))
    torch.testing.assert_close(fast, ref.detach(), atol=1e-5, rtol=1e-5)


def test_model_fused_equals_math_path_eval_and_train(tiny_model):
    """Whole model: default kernels vs math SDPA + no fast path, in eval and in training (outputs and gradients)."""
    x = torch.randn(2, 3, 64, 64)
    model = _no_dropout(tiny_model)
    with torch.no_grad():
        fused = model(x)
        with math_attention():
            ref = model(x)
    torch.testing.assert_close(fused, ref, atol=1e-5, rtol=1e-4)
    model.train()
    grads = []
    for ctx in (torch.enable_grad, math_attention):
        model.zero_grad(set_to_none=True)
        with ctx():
            model(x).square().mean().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and any("prompt" in n for n in grads[0])
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-5, rtol=1e-3, msg=name)


def _open_clip_block(width=64, heads=4, **kw):
    from open_clip.transformer import QuickGELU, ResidualAttentionBlock

    torch.manual_seed(0)
    block = ResidualAttentionBlock(width, heads, act_layer=QuickGELU, **kw)
    with torch.no_grad():  # non-trivial LayerNorm affines and biases
        for p in block.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return block


@pytest.mark.parametrize("kw", [{}, {"ls_init_value": 0.5}, {"batch_first": False}], ids=["plain", "layerscale", "seq-first"])
def test_fused_block_equals_the_open_clip_block_call(kw):
    """fused_block_forward (issue 15) == calling the open_clip block: eval (native fast path) and training (grads)."""
    block = _open_clip_block(**kw).eval()
    assert block.attn.dropout == 0.0 and fusable_block(block)  # CLIP attention has no dropout
    x = torch.randn(2, 23, 64)
    call = (lambda t: block(t)) if block.attn.batch_first else (lambda t: block(t.transpose(0, 1)).transpose(0, 1))
    with torch.no_grad():
        with _OpLog() as log:
            plain = call(x)
        if block.attn.batch_first:  # even heads, eval, no grad: the fast path this replaces
            assert any("_native_multi_head_attention" in op for op in log.ops)
        with _OpLog() as log:
            fused = fused_block_forward(block, x)
    assert any("_scaled_dot_product_flash_attention" in op for op in log.ops)
    assert not any("softmax" in op or "bmm" in op or "_native_multi_head" in op for op in log.ops)
    torch.testing.assert_close(fused, plain, atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # rows: outputs of the first tokens only, the rest (prompts) as keys/values
        torch.testing.assert_close(fused_block_forward(block, x, rows=17), plain[:, :17], atol=1e-5, rtol=1e-5)
    block.train().requires_grad_(True)
    outs, grads = [], []
    for fn in (call, lambda t: fused_block_forward(block, t)):
        block.zero_grad(set_to_none=True)
        xi = x.clone().requires_grad_()
        out = fn(xi)
        out.square().mean().backward()
        outs.append(out.detach())
        grads.append({"x": xi.grad, **{n: p.grad for n, p in block.named_parameters()}})
    torch.testing.assert_close(outs[1], outs[0], atol=1e-5, rtol=1e-5)
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-5, rtol=1e-4, msg=name)


def test_fused_block_falls_back_to_the_block_call():
    """Blocks it cannot reproduce exactly are called as they are: other types, hooks, bias_k/v, zero attention."""
    from open_clip.transformer import CustomResidualAttentionBlock, ResidualAttentionBlock

    assert not fusable_block(CustomResidualAttentionBlock(64, 4))
    assert not fusable_block(ResidualAttentionBlock(64, 4, is_cross_attention=True))
    assert not fusable_block(nn.Linear(4, 4))
    block = _open_clip_block()
    handle = block.register_forward_hook(lambda *a: None)
    assert not fusable_block(block)
    handle.remove()
    handle = block.attn.register_forward_pre_hook(lambda *a: None)
    assert not fusable_block(block)
    handle.remove()
    handle = nn.modules.module.register_module_forward_hook(lambda *a: None)  # global hooks (e.g. FLOP counters)
    assert not fusable_block(block)
    handle.remove()
    assert fusable_block(block)
    block.attn.add_zero_attn = True
    assert not fusable_block(block)


def test_model_fused_blocks_equal_block_calls():
    """Whole model, 4-head ViT (fast path engaged without fusion): logits (prompt rows skipped) and intermediates
    (every row) equal in eval; outputs and gradients (prompt rows skipped) equal in training."""
    model = zegclip.build_model("voc", random_init=True, **tiny_overrides(
        clip={"config": {**TINY_CLIP, "vision_cfg": {**TINY_CLIP["vision_cfg"], "head_width": 12}}}))
    assert model.backbone.vit.transformer.resblocks[0].attn.num_heads == 4
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert model.backbone._compact(None)  # the untraced pass skips the prompt rows, in inference
    assert model.backbone._compact(None) and not model.backbone._compact({})  # and in training; a trace: every row
    runs = {}
    for fused in (False, True):
        model.backbone.fused_attention = fused
        with torch.no_grad(), _OpLog() as log:
            runs[fused] = model.intermediates(x)
            runs[fused]["forward"] = model(x)
        assert any("_native_multi_head_attention" in op for op in log.ops) != fused
    torch.testing.assert_close(runs[True]["forward"], runs[False]["forward"], atol=1e-5, rtol=1e-5)
    for key, ref in runs[False].items():
        got = runs[True][key]
        for a, b in zip(got, ref) if isinstance(ref, list) else [(got, ref)]:
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5, msg=key)
    model = _no_dropout(model).train()
    grads = []
    for fused in (False, True):
        model.backbone.fused_attention = fused
        model.zero_grad(set_to_none=True)
        model(x).square().mean().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and any("prompt" in n for n in grads[0])
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-5, rtol=1e-3, msg=name)


@pytest.mark.parametrize("hw,size", [((23, 31), (375, 500)), ((32, 32), (683, 512)), ((4, 4), (64, 48)), ((1, 7), (5, 600))])
def test_two_stage_resize_is_one_matmul_pair(hw, size):
    """resize_logits (issue 15): the official resize to 512, then to the crop, as one composed map; one stage as
    matmuls too."""
    from zegclip.model.segmentor import bilinear_matrix, resize_logits

    x = torch.randn(2, 5, *hw) * 10
    two = F.interpolate(F.interpolate(x, size=(512, 512), mode="bilinear", align_corners=False), size=size,
                        mode="bilinear", align_corners=False)
    with torch.no_grad(), _OpLog() as log:
        fast = resize_logits(x, size, 512)
    assert not any("upsample" in op for op in log.ops)
    torch.testing.assert_close(fast, two, rtol=1e-5, atol=1e-5 * two.abs().max().item())
    assert torch.equal(resize_logits(x, size, 512), two)  # autograd on (training): the official two resizes
    for target, mask_size in ((size, None), ((512, 512), 512)):  # one stage: matmuls too, equal within rounding
        one = F.interpolate(x, size=target, mode="bilinear", align_corners=False)
        with torch.no_grad(), _OpLog() as log:
            fast = resize_logits(x, target, mask_size)
        assert not any("upsample" in op for op in log.ops)
        torch.testing.assert_close(fast, one, rtol=1e-5, atol=1e-5 * one.abs().max().item())
        assert torch.equal(resize_logits(x, target, mask_size), one)  # autograd on: F.interpolate itself
    m = bilinear_matrix(hw[1], size[1]).float()  # one axis alone is F.interpolate's 1-D rule (which rounds its
    one_axis = F.interpolate(x, size=(hw[0], size[1]), mode="bilinear", align_corners=False)  # source index in fp32)
    torch.testing.assert_close(x @ m.T, one_axis, rtol=1e-5, atol=1e-5 * one_axis.abs().max().item())


def test_channels_last_equals_contiguous(tiny_model):
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = tiny_model(x)
        out = tiny_model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)


def test_bf16_autocast_close_to_float32(tiny_model):
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = tiny_model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = tiny_model(x)
    assert low.dtype == torch.bfloat16
    err = (low.float() - ref).abs().max() / ref.abs().max()
    assert err < 0.05, f"bf16 relative error {err:.3f}"


def test_torch_compile_has_no_graph_break_and_equals_eager(tiny_model):
    """train.compile=true compiles the model as one graph (fullgraph: a break would raise), train and eval."""
    x = torch.randn(2, 3, 64, 64)
    torch._dynamo.reset()
    compiled = torch.compile(tiny_model, backend="eager", fullgraph=True)  # dynamo's capture, no codegen (fast)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), tiny_model(x), atol=1e-6, rtol=1e-6)
    tiny_model.train()
    outs = []
    for fn in (compiled, tiny_model):
        torch.manual_seed(3)  # same dropout draws
        outs.append(fn(x))
        outs[-1].mean().backward()
    torch.testing.assert_close(outs[0], outs[1], atol=1e-6, rtol=1e-6)
    torch._dynamo.reset()


# ------------------------------------------------------------------------------------------- training step
_OPENED: list[str] | None = None


def _audit(event, args):  # an audit hook cannot be removed: it only records while _OPENED is a list
    if _OPENED is not None and event == "open":
        _OPENED.append(str(args[0]))


sys.addaudithook(_audit)


def test_training_step_does_no_redundant_work(tiny_model, monkeypatch):
    """Frozen CLIP: no grads, no optimiser state; text embeddings never recomputed; no file opened per step."""
    global _OPENED
    cfg = bench.resolve({"quick": True, "device": "cpu"})
    text_calls = []
    tiny_model.text_encoder.register_forward_hook(lambda *a: text_calls.append(1))
    monkeypatch.setattr("zegclip.model.segmentor.class_embeddings", lambda *a, **k: pytest.fail("text re-encoded"))
    from zegclip.engine.train import TrainConfig, param_groups

    groups = param_groups(tiny_model, TrainConfig())
    in_optimizer = {id(p) for g in groups for p in g["params"]}
    frozen = [p for p in tiny_model.parameters() if not p.requires_grad]
    assert frozen and not any(id(p) in in_optimizer for p in frozen)
    assert in_optimizer == {id(p) for p in tiny_model.parameters() if p.requires_grad}
    step = bench.make_train_step(tiny_model, torch.randn(2, 3, 64, 64), cfg)
    before = tiny_model.backbone.prompt_embeddings.detach().clone()
    step()  # first step: lazy initialisations happen here
    _OPENED = []
    try:
        step()
        step()
        opened, _OPENED = _OPENED, None
    finally:
        _OPENED = None
    assert opened == [], f"files opened during training steps: {opened[:3]}"
    assert not text_calls
    assert all(p.grad is None for p in tiny_model.backbone.vit.parameters())
    assert all(p.grad is None for p in tiny_model.text_encoder.parameters())
    assert not torch.equal(before, tiny_model.backbone.prompt_embeddings)  # the prompts did train


# ------------------------------------------------------------------------------------------- bench + notebooks
@pytest.fixture(scope="module")
def bench_results(tmp_path_factory):
    """One quick bench through the CLI (in process) into a temp results dir."""
    from zegclip.cli import main

    root = tmp_path_factory.mktemp("results")
    code = main(["bench", "--quick", "--results-dir", str(root), "--run-id", "q1", "--methods", "voc,twostage",
                 "--phases", "forward,throughput,train", "--repeats", "1", "--warmup", "0", "--device", "cpu"])
    assert code == 0
    return root


def test_bench_cli_quick_writes_valid_json(bench_results):
    path = bench_results / "mini" / "bench" / "q1.json"
    data = json.loads(path.read_text())
    assert bench.valid_bench(data) is None
    assert not list(path.parent.glob(".*tmp"))  # written atomically: no temporary file left
    assert data["params"]["quick"] is True and data["params"]["run_id"] == "q1"
    assert set(data["params"]) == set(bench.DEFAULT_PARAMS)
    assert data["config"]["size"] == 64 and data["device"]["type"] == "cpu" and data["dtype"] == "float32"
    assert data["environment"]["versions"]["torch"] and data["torch_threads"] >= 1
    voc, two = data["methods"]
    assert (voc["method"], voc["stage"], two["method"], two["stage"]) == ("voc", "one-stage", "twostage-voc", "two-stage")
    assert voc["tokens"] == 1 + 10 + 16 and voc["classes"] == 20
    assert voc["macs"] > 0 and two["macs"] == two["macs_breakdown"]["macs"]
    for phase in ("forward", "throughput", "train"):
        r = voc["phases"][phase]
        assert r["median_ms"] > 0 and r["images_per_s"] > 0 and r["peak_memory_bytes"] > 0
    assert voc["phases"]["throughput"]["batch"] == 2
    assert "skipped" in two["phases"]["train"]
    table = bench.format_table(data)
    assert "ZegCLIP VOC" in table and "two-stage VOC" in table


def test_bench_rejects_bad_values_in_one_line():
    for params, word in (({"methods": "voc,zegformer"}, "'zegformer'"), ({"size": 100}, "100"),
                         ({"dtype": "fp8"}, "'fp8'"), ({"phases": "fwd"}, "'fwd'"), ({"batch": 0}, "0"),
                         ({"colour": 1}, "colour")):
        with pytest.raises(ValueError, match=word) as err:
            bench.resolve(params)
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="run_id"):
        bench.result_path("results", "mini", "../x")


def test_bench_notebook_parameters_equal_bench_defaults():
    import nbformat

    nb = nbformat.read(ROOT / "notebooks" / "bench.ipynb", as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    values = {t.id: ast.literal_eval(node.value) for node in ast.parse(cell.source).body for t in node.targets}
    assert values == bench.DEFAULT_PARAMS


def test_table3_notebook_runs_and_skips_bad_files(bench_results, tmp_path):
    import nbformat
    import papermill

    folder = bench_results / "mini" / "bench"
    (folder / "corrupt.json").write_text("{not json")
    (folder / "foreign.json").write_text(json.dumps({"params": {}, "hello": 1}))
    out = tmp_path / "table3.ipynb"
    papermill.execute_notebook(str(ROOT / "notebooks" / "table3.ipynb"), str(out), progress_bar=False,
                               parameters={"profile": "mini", "results_dir": str(bench_results)}, cwd=str(ROOT))
    text = json.dumps(nbformat.read(out, as_version=4).cells)
    assert "corrupt.json" in text and "foreign.json" in text and "q1" in text
    assert "quick mode" in text and "ZegFormer [12]" in text and "1829.3" in text
    # an empty profile says so and shows no number
    results, problems = bench.load_bench_results(bench_results, "paper")
    assert results == [] and problems == []
    assert len(bench.table3_frame([])) == 0


def test_bench_vs_official_quick(tmp_path, capsys):
    """`bench --vs-official --quick`: both presets at tiny size, equal outputs, a ratio and the load averages."""
    from zegclip.cli import main
    from zegclip.experiments.bench.config import VS_OFFICIAL_FORMAT

    assert main(["bench", "--vs-official", "--quick", "--results-dir", str(tmp_path), "--repeats", "2",
                 "--warmup", "0", "--threads", "1", "--phases", "forward,train"]) == 0
    path = tmp_path / "mini" / "bench" / "vs-official-cpu-quick.json"
    data = json.loads(path.read_text())
    assert data["format"] == VS_OFFICIAL_FORMAT and data["torch_threads"] == 1 and data["device"]["type"] == "cpu"
    assert [p["preset"] for p in data["presets"]] == ["voc", "coco"]
    for p in data["presets"]:
        assert p["max_rel_diff"] < 1e-5
        assert len(p["ours"]["times_ms"]) == len(p["official"]["times_ms"]) == len(p["floor"]["times_ms"]) == 2
        assert p["ratio_official_over_ours"] == pytest.approx(p["official"]["median_ms"] / p["ours"]["median_ms"], rel=1e-3)
        assert p["ratio_official_over_floor"] == pytest.approx(p["official"]["median_ms"] / p["floor"]["median_ms"],
                                                               rel=1e-3)
        assert set(p["load_average"]) == {"before", "after"}
        # the official attention module, layout and mode as the official code: no native fast path, and why
        assert p["official_mha_fast_path"] == {"taken": False, "batch_first": False, "training": False,
                                               "grad_enabled": False, "inference_mode": True,
                                               "why_not": "batch_first was not True"}
    assert [t["preset"] for t in data["train_step"]] == ["voc", "coco"] and data["params"]["train_batch"] == 2
    for t in data["train_step"]:
        assert len(t["fused"]["times_ms"]) == len(t["blocks"]["times_ms"]) == 2
        assert t["ratio_blocks_over_fused"] == pytest.approx(t["blocks"]["median_ms"] / t["fused"]["median_ms"], rel=1e-3)
    out = capsys.readouterr().out
    assert "official/ours" in out and "official/floor" in out and "blocks/fused" in out
    assert "official nn.MultiheadAttention fast path: not taken (batch_first was not True)" in out
    from zegclip.experiments.bench import vs_official_frame
    frame = vs_official_frame(tmp_path)  # what the Table 3 page shows: machine, threads, ratios, fast path
    assert list(frame["preset"]) == ["voc", "coco"] and set(frame["threads"]) == {1}
    assert set(frame["official MHA fast path"]) == {"not taken (batch_first was not True)"}
    assert list(frame["official / ours"]) == [round(p["ratio_official_over_ours"], 3) for p in data["presets"]]
    from zegclip.model.backbone import PromptedVisionEncoder
    assert PromptedVisionEncoder.fused_attention is True  # the switch is back to its default
    assert main(["bench", "--vs-official", "--quick", "--phases", "image", "--results-dir", str(tmp_path)]) != 0
    assert "runs the phases forward[,train]; got --phases image" in capsys.readouterr().err
    assert bench.load_bench_results(tmp_path, "mini") == ([], [])  # not a Table 3 row, not a problem either
    assert main(["bench", "--vs-official", "--quick", "--methods", "twostage", "--results-dir", str(tmp_path)]) != 0
    assert "compares the presets ['voc', 'coco']; got ['twostage']" in capsys.readouterr().err


def test_kernel_floor_runs_the_backbone_kernels_of_the_model_shapes():
    """The floor runs exactly the patch conv and 5 kernels per block (4 linears + SDPA) with the model's weights:
    a count of the aten calls, with the kept rows (1 + N) and all tokens (1 + T + N) in the right places."""
    from torch.profiler import profile

    from zegclip.experiments.bench.config import resolve
    from zegclip.experiments.bench.measure import build_subject
    from zegclip.experiments.bench.vsofficial import kernel_floor

    model = build_subject("voc", resolve({"methods": "voc", "quick": True})).model.eval()
    images = torch.randn(1, 3, 64, 64)
    run = kernel_floor(model, images)
    blocks = len(model.backbone.vit.transformer.resblocks)
    with torch.no_grad(), profile(record_shapes=True) as prof:
        run()
    calls = {e.key: e.count for e in prof.key_averages()}
    assert calls["aten::linear"] == 4 * blocks and calls["aten::scaled_dot_product_attention"] == blocks
    assert calls["aten::conv2d"] == 1
    grid, T = (64 // model.backbone.patch_size[0]) ** 2, model.backbone.num_prompts
    shapes = [tuple(e.input_shapes[0]) for e in prof.events() if e.name == "aten::linear"][:4]
    width = model.backbone.width
    assert shapes == [(1, 1 + T + grid, width), (1, 1 + grid, width), (1, 1 + grid, width), (1, 1 + grid, 4 * width)]


@pytest.mark.slow
def test_gpu_check_runs_end_to_end_on_a_cpu_in_quick_mode(tmp_path):
    """`bench --gpu-report --quick --device cpu`: the GPU check's whole path (eager and torch.compile benches, a
    mini-world run on the device, the summary) with the tiny model; the compiled bench once failed on `forward or
    model` (a compiled module has no truth value)."""
    from zegclip.cli import main
    from zegclip.experiments.bench.config import GPU_CHECK_FORMAT

    results = tmp_path / "results"
    assert main(["bench", "--gpu-report", "--quick", "--device", "cpu", "--results-dir", str(results)]) == 0
    bench_dir = results / "mini" / "bench"
    assert sorted(p.name for p in bench_dir.iterdir()) == [
        "gpu-check-compiled-quick.json", "gpu-check-eager-quick.json", "gpu-check-quick.json"]
    summary = json.loads((bench_dir / "gpu-check-quick.json").read_text())
    assert summary["format"] == GPU_CHECK_FORMAT and summary["device"]["type"] == "cpu"
    for mode in ("eager", "compiled"):
        phases = summary["bench"][mode]["phases"]
        assert sorted(phases) == ["forward", "throughput", "train"]
        assert all(phases[ph]["images_per_s"] > 0 for ph in phases)
        assert json.loads(Path(summary["bench"][mode]["file"]).read_text())["config"]["compile"] == (mode == "compiled")
    mini = summary["mini_run"]
    assert (mini["iters"], mini["train_device"]) == (4, "cpu")
    assert 0.0 <= mini["mIoU"] <= 100.0
    assert Path(mini["file"]).is_file() and str(tmp_path / "runs" / "gpu-check") in mini["file"]
    # the summary is not a Table 3 row; its two bench runs are
    results_, problems = bench.load_bench_results(results, "mini")
    assert sorted(r["run"] for r in results_) == ["gpu-check-compiled-quick", "gpu-check-eager-quick"]
    assert problems == []


@pytest.mark.parametrize("batch_first, mode, taken, why", [
    (False, "inference", False, "batch_first was not True"),  # the official layout
    (True, "inference", True, ""),
    (True, "no_grad", True, ""),
    (True, "grad", False, "autograd is recording"),
])
def test_mha_fast_path_is_traced_not_assumed(batch_first, mode, taken, why):
    """`mha_fast_path` sees whether nn.MultiheadAttention called torch._native_multi_head_attention."""
    import contextlib

    from zegclip.experiments.bench.reference import OfficialBlock, mha_fast_path

    block = OfficialBlock(64, 4).eval()
    block.attn.batch_first = batch_first
    x = torch.randn(2, 5, 64) if batch_first else torch.randn(5, 2, 64)
    ctx = {"inference": torch.inference_mode(), "no_grad": torch.no_grad(), "grad": contextlib.nullcontext()}[mode]
    with ctx:
        got = mha_fast_path(block, x)
    assert (got["taken"], got["why_not"], got["batch_first"]) == (taken, why, batch_first)
    assert torch._native_multi_head_attention.__name__ == "_native_multi_head_attention"  # restored
