"""The model pinned to the fact sheet's §16: shapes, prompt handling, queries, decoder, calibration, windows."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_overrides

import zegclip
from zegclip.model.presets import TABLE5_VARIANTS, get_config, variant_overrides
from zegclip.engine.selftrain import pseudo_labels
from zegclip.model.segmentor import num_windows, window_starts
from zegclip.model.queries import QUERY_FORMATS


@pytest.fixture(scope="module")
def voc_model():
    """The full-size VOC model with random CLIP weights (text embeddings given, so no text encoding)."""
    return zegclip.build_model("voc", random_init=True, text_embeddings=torch.randn(20, 512))


def _block0_input(model, images):
    seen = {}
    handle = model.backbone.vit.transformer.resblocks[0].register_forward_pre_hook(
        lambda mod, args: seen.setdefault("x", args[0].detach().clone())
    )
    try:
        out = model.backbone(images)
    finally:
        handle.remove()
    return seen["x"], out


# ------------------------------------------------------------------------------------------------ backbone
def test_backbone_full_size_shapes_norms_and_sequence_length(voc_model):
    images = torch.randn(2, 3, 512, 512)
    with torch.no_grad():
        x0, (features, g) = _block0_input(voc_model, images)
    assert x0.shape == (2, 1035, 768)  # 1 CLS + 10 prompts + 1024 patches
    assert features.shape == (2, 512, 32, 32)
    assert g.shape == (2, 512)
    torch.testing.assert_close(features.norm(dim=1), torch.ones(2, 32, 32))
    torch.testing.assert_close(g.norm(dim=1), torch.ones(2))


def test_coco_sequence_length_is_1125():
    model = zegclip.build_model("coco", random_init=True, text_embeddings=torch.zeros(171, 512))
    with torch.no_grad():
        x0, _ = _block0_input(model, torch.randn(1, 3, 512, 512))
    assert x0.shape == (1, 1125, 768)


def test_cls_token_gets_class_embedding_twice(tiny_model):
    vit = tiny_model.backbone.vit
    with torch.no_grad():
        x, grid = tiny_model.backbone.embed(torch.randn(1, 3, 64, 64))
        expected = vit.ln_pre(2 * vit.class_embedding + vit.positional_embedding[0])
    assert grid == (4, 4)
    torch.testing.assert_close(x[0, 0], expected)
    once = zegclip.build_model("voc", random_init=True, **tiny_overrides(encoder={"cls_double_embedding": False}))
    with torch.no_grad():
        y, _ = once.backbone.embed(torch.randn(1, 3, 64, 64))
        torch.testing.assert_close(y[0, 0], vit.ln_pre(vit.class_embedding + vit.positional_embedding[0]))


def test_prompts_do_not_touch_the_patch_embedding_stage(tiny_model):
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before, _ = tiny_model.backbone.embed(images)
        tiny_model.backbone.prompt_embeddings.add_(1.0)
        tiny_model.backbone.deep_prompt_embeddings.add_(1.0)
        after, _ = tiny_model.backbone.embed(images)
    torch.testing.assert_close(before, after, rtol=0, atol=0)


def test_prompt_outputs_of_a_layer_never_reach_the_next(tiny_model):
    """Overwriting the prompt outputs of blocks 0..L-2 leaves everything unchanged (paper Eq. 3)."""
    T = tiny_model.backbone.num_prompts
    blocks = tiny_model.backbone.vit.transformer.resblocks
    images = torch.randn(2, 3, 64, 64)

    def keep(module, args, output):
        return output.clone()

    def scramble(module, args, output):
        output = output.clone()
        output[:, 1 : 1 + T] = torch.randn_like(output[:, 1 : 1 + T]) * 100
        return output

    def run(hook):  # the reference gets a hook too: hooked blocks are called, not fused (same kernels, exact compare)
        handles = [b.register_forward_hook(hook) for b in blocks[:-1]]
        try:
            return tiny_model.backbone(images)
        finally:
            for h in handles:
                h.remove()

    with torch.no_grad():
        ref_f, ref_g = run(keep)
        f, g = run(scramble)
    torch.testing.assert_close(f, ref_f, rtol=0, atol=0)
    torch.testing.assert_close(g, ref_g, rtol=0, atol=0)


def test_deep_prompts_do_change_the_output(tiny_model):
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        f0, _ = tiny_model.backbone(images)
        tiny_model.backbone.deep_prompt_embeddings[-1].add_(0.5)
        f1, _ = tiny_model.backbone(images)
    assert not torch.allclose(f0, f1)


def test_prompt_initialisation_and_norm(voc_model):
    bb = voc_model.backbone
    bound = (6 / (3 * 16 * 16 + 768)) ** 0.5
    assert bound == pytest.approx(0.0625)
    for p in (bb.prompt_embeddings, bb.deep_prompt_embeddings):
        assert p.abs().max() <= 0.0625
        assert p.abs().max() > 0.06  # really uniform over the whole range
    assert bb.prompt_embeddings.shape == (1, 10, 768)
    assert bb.deep_prompt_embeddings.shape == (11, 10, 768)
    assert bb.prompt_norm.eps == 1e-6
    torch.testing.assert_close(bb.prompt_norm.weight, torch.ones(768))
    std = bb.prompt_proj.weight.std().item()
    assert std == pytest.approx((2 / 768) ** 0.5, rel=0.02)  # Kaiming normal, fan_out


def test_only_prompt_parameters_train_in_the_backbone(voc_model):
    trainable = sorted(n for n, p in voc_model.backbone.named_parameters() if p.requires_grad)
    assert trainable == [
        "deep_prompt_embeddings", "prompt_embeddings", "prompt_norm.bias", "prompt_norm.weight",
        "prompt_proj.bias", "prompt_proj.weight",
    ]
    assert not any(p.requires_grad for p in voc_model.text_encoder.parameters())


def test_parameter_counts_match_the_official_configurations(voc_model):
    counts = voc_model.parameter_counts()
    assert counts["trainable_params"] == 13_821_184
    assert counts["total_params"] == 164_077_824
    assert counts["trainable_backbone"] == 684_288
    assert counts["trainable_decoder"] == 13_136_896
    assert counts["frozen_clip_visual"] == 86_828_544
    assert counts["frozen_clip_text"] == 63_428_096


def test_coco_trainable_parameters():
    model = zegclip.build_model("coco", random_init=True, text_embeddings=torch.zeros(171, 512))
    assert model.parameter_counts()["trainable_params"] == 14_650_624
    assert model.parameter_counts()["total_params"] == 164_907_264


def test_encoder_modes_freeze_as_documented(voc_model):
    ft = zegclip.build_model("voc", random_init=True, text_embeddings=torch.zeros(20, 512), encoder={"mode": "ft"})
    fix = zegclip.build_model("voc", random_init=True, text_embeddings=torch.zeros(20, 512), encoder={"mode": "fix"})
    decoder_and_queries = 13_136_896
    assert fix.parameter_counts()["trainable_params"] == decoder_and_queries
    assert ft.parameter_counts()["trainable_params"] == decoder_and_queries + 86_828_544
    assert not hasattr(fix.backbone, "prompt_embeddings")


def test_positional_embedding_is_interpolated_to_other_grids(tiny_model):
    bb = tiny_model.backbone
    pos = bb.positional_embedding((6, 2))
    assert pos.shape == (1 + 12, 48)
    torch.testing.assert_close(pos[0], bb.vit.positional_embedding[0])
    grid = bb.vit.positional_embedding[1:].reshape(1, 4, 4, 48).permute(0, 3, 1, 2)
    expected = F.interpolate(grid, size=(6, 2), mode="bilinear", align_corners=False)
    torch.testing.assert_close(pos[1:], expected.permute(0, 2, 3, 1).reshape(12, 48))
    with torch.no_grad():
        features, _ = bb(torch.randn(1, 3, 96, 32))
    assert features.shape == (1, 32, 6, 2)
    assert bb.positional_embedding((4, 4)) is bb.vit.positional_embedding  # identity at the training grid


# ------------------------------------------------------------------------------------------------ queries
def test_relationship_descriptor_is_t_times_g_then_t(voc_model):
    t = F.normalize(torch.randn(20, 512), dim=-1)
    g = F.normalize(torch.randn(3, 512), dim=-1)
    rd = voc_model.queries
    described = rd.describe(t, g)
    assert described.shape == (3, 20, 1024)
    torch.testing.assert_close(described[..., :512], t[None] * g[:, None])
    torch.testing.assert_close(described[..., 512:], t[None].expand(3, -1, -1))
    assert rd(t, g).shape == (3, 20, 512)
    assert rd.proj.in_features == 1024


@pytest.mark.parametrize("fmt", list(QUERY_FORMATS))
def test_all_twelve_query_formats(fmt):
    t = torch.randn(5, 8)
    g = torch.randn(2, 8)
    parts = {"t": t[None].expand(2, -1, -1), "g": g[:, None].expand(-1, 5, -1), "t*g": t[None] * g[:, None],
             "t-g": t[None] - g[:, None], "|t-g|": (t[None] - g[:, None]).abs(), "t+g": t[None] + g[:, None]}
    rd = zegclip.model.queries.RelationshipDescriptor(8, 4, fmt)
    expected = torch.cat([parts[p] for p in QUERY_FORMATS[fmt]], dim=-1)
    torch.testing.assert_close(rd.describe(t, g), expected)
    assert rd.proj.in_features == 8 * len(QUERY_FORMATS[fmt])
    assert len(QUERY_FORMATS) == 12


def test_query_format_aliases_and_errors():
    assert zegclip.model.queries.canonical_format("[t ⊙ g, t]") == "[t*g,t]"
    with pytest.raises(ValueError, match="unknown query format"):
        zegclip.model.queries.canonical_format("[t/g]")


# ------------------------------------------------------------------------------------------------ decoder
def test_mask_logits_are_head_averaged_scaled_scores_of_the_last_layer(voc_model):
    dec = voc_model.decoder
    queries = torch.randn(2, 15, 512)
    patches = F.normalize(torch.randn(2, 1024, 512), dim=-1)
    dec.eval()
    with torch.no_grad():
        out = dec(queries, patches)
        q3 = dec.layers[1](dec.layers[0](queries, patches), patches)  # queries entering layer 3
        attn = dec.layers[2].multihead_attn
        q = attn.q(q3).reshape(2, 15, 8, 64).transpose(1, 2)
        k = attn.k(patches).reshape(2, 1024, 8, 64).transpose(1, 2)
        expected = (q @ k.transpose(-1, -2) / 8.0).mean(dim=1)
    assert out.shape == (2, 15, 1024)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    assert len(dec.layers) == 3


def test_only_the_last_layers_q_and_k_shape_the_masks():
    model = zegclip.build_model("voc", random_init=True, **tiny_overrides())
    model.train()
    logits = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 15, 64, 64)  # inductive training queries the 15 seen classes
    logits.sum().backward()
    last = model.decoder.layers[-1]
    dead = [last.multihead_attn.v, last.multihead_attn.proj, last.linear1, last.linear2, last.norm2, last.norm3]
    for module in dead:
        assert all(p.grad is None for p in module.parameters())
    for layer in model.decoder.layers:
        assert all(p.grad is None for p in layer.self_attn.parameters())
        assert all(p.grad is None for p in layer.norm1.parameters())
    assert last.multihead_attn.q.weight.grad is not None and last.multihead_attn.k.weight.grad.abs().sum() > 0
    assert model.backbone.deep_prompt_embeddings.grad is not None


def test_full_size_pred_masks_shape(voc_model):
    voc_model.train()
    try:
        with torch.no_grad():
            logits = voc_model(torch.randn(1, 3, 512, 512))
    finally:
        voc_model.eval()
    assert logits.shape == (1, 15, 512, 512)


def test_query_self_attention_and_patch_projection_switches():
    plain = zegclip.build_model("voc", random_init=True, **tiny_overrides())
    paper = zegclip.build_model("voc", random_init=True, **tiny_overrides(
        decoder={"query_self_attention": True, "patch_projection": True}))
    images = torch.randn(1, 3, 64, 64)
    paper.load_state_dict(plain.state_dict(), strict=False)
    assert isinstance(paper.decoder.input_proj, torch.nn.Sequential)
    with torch.no_grad():
        assert not torch.allclose(plain(images), paper(images))
    # with self-attention on, self_attn receives gradients
    paper.train()
    paper(images).sum().backward()
    assert paper.decoder.layers[0].self_attn.in_proj_weight.grad is not None


def test_trunc_normal_decoder_init():
    model = zegclip.build_model("voc", random_init=True, **tiny_overrides(decoder={"init": "trunc_normal"}))
    w = model.decoder.layers[0].linear1.weight
    # mmcv/timm truncate at absolute +-2, i.e. effectively a normal(0, 0.02)
    assert w.std().item() == pytest.approx(0.02, rel=0.1)
    assert model.decoder.layers[0].linear1.bias.abs().max() == 0


# ------------------------------------------------------------------------------------------------ inference
def test_calibration_with_zero_logits(tiny_model, monkeypatch):
    monkeypatch.setattr(type(tiny_model), "forward", lambda self, images, class_idx=None: torch.zeros(
        images.shape[0], self.num_classes, *images.shape[-2:]))
    scores = tiny_model.scores(torch.randn(1, 3, 64, 80))
    seen = tiny_model.seen_idx.tolist()
    assert seen == list(range(15))
    torch.testing.assert_close(scores[:, :15], torch.full((1, 15, 64, 80), 0.4))
    torch.testing.assert_close(scores[:, 15:], torch.full((1, 5, 64, 80), 0.5))
    st = zegclip.build_model("voc", random_init=True, **tiny_overrides(setting="transductive"))
    torch.testing.assert_close(st.scores(torch.randn(1, 3, 64, 80)), torch.full((1, 20, 64, 80), 0.5))
    assert st.train_idx.tolist() == list(range(20))
    paper = zegclip.build_model("voc", random_init=True, **tiny_overrides(seen_calibration=0.0))
    torch.testing.assert_close(paper.scores(torch.randn(1, 3, 64, 64)), torch.full((1, 20, 64, 64), 0.5))


@pytest.mark.parametrize("kind", ["el", "plain", "plus"])
def test_scores_follow_the_loss_that_trained_the_logits(kind, monkeypatch):
    """NEL models: sigmoid - 0.1 on seen classes (official). EL models: softmax over the classes, then the same shift;
    their logits carry an arbitrary per-pixel offset, which must not change a prediction (issue 28, step 1)."""
    model = zegclip.build_model("voc", random_init=True, **tiny_overrides(loss={"kind": kind}))
    torch.manual_seed(0)
    base = 0.5 * torch.randn(1, 20, 16, 16)
    base[:, 3] += 8.0  # a seen class leads everywhere
    for offset in (0.0, -20.0):
        monkeypatch.setattr(type(model), "forward", lambda self, images, class_idx=None, o=offset: base + o)
        scores = model.scores(torch.randn(1, 3, 16, 16))
        probs = (base + offset).softmax(1) if kind == "el" else (base + offset).sigmoid()
        probs[:, :15] -= 0.1
        torch.testing.assert_close(scores, probs, rtol=0, atol=1e-6)
        labels = scores.argmax(1)
        if kind == "el" or offset == 0.0:
            assert labels.eq(3).all()  # the seen class survives the shift
        else:  # sigmoid of low logits is under the shift for every seen class: the scoring rule that EL must avoid
            assert (labels >= 15).all()
    monkeypatch.undo()


def test_pseudo_labels_use_the_scores_of_the_loss():
    logits = torch.randn(2, 6, 4, 4)
    labels = torch.full((2, 4, 4), 4)
    for kind in ("el", "plus"):
        got = pseudo_labels(labels, logits - 30.0, [3, 4, 5], "dagger", loss_kind=kind)
        assert got.tolist() == (logits[:, 3:].argmax(1) + 3).tolist()  # argmax over the unseen, offset-free


def test_fully_supervised_setting_trains_on_all_classes():
    full = zegclip.build_model("voc", random_init=True, **tiny_overrides(setting="fully"))
    assert full.train_idx.tolist() == list(range(20)) == full.seen_idx.tolist()


@pytest.mark.parametrize("length,count", [(512, 1), (300, 1), (683, 2), (938, 2), (939, 3), (1000, 3), (2048, 5)])
def test_slide_window_counts(length, count):
    assert num_windows(length) == count == max(length - 512 + 425, 0) // 426 + 1


def test_slide_windows_are_border_aligned():
    assert window_starts(683, 512, 426) == [0, 171]
    assert window_starts(1000, 512, 426) == [0, 426, 488]
    assert window_starts(300, 512, 426) == [0]


def test_slide_inference_averages_overlapping_windows(tiny_model, monkeypatch):
    calls = []

    def fake_forward(self, images, class_idx=None):
        calls.append(tuple(images.shape[-2:]))
        return torch.full((images.shape[0], self.num_classes, *images.shape[-2:]), float(len(calls)))

    monkeypatch.setattr(type(tiny_model), "forward", fake_forward)
    scores = tiny_model.scores(torch.randn(1, 3, 64, 100))  # windows at x = 0 and 36
    assert calls == [(64, 64), (64, 64)]
    s1, s2 = torch.sigmoid(torch.tensor(1.0)), torch.sigmoid(torch.tensor(2.0))
    unseen = 19
    torch.testing.assert_close(scores[0, unseen, 0, 10], s1)
    torch.testing.assert_close(scores[0, unseen, 0, 50], (s1 + s2) / 2)
    torch.testing.assert_close(scores[0, unseen, 0, 90], s2)


def test_segment_returns_label_maps(tiny_model):
    labels = tiny_model.segment(torch.randn(2, 3, 64, 64))
    assert labels.shape == (2, 64, 64) and labels.dtype == torch.long
    assert labels.min() >= 0 and labels.max() < 20
    assert not tiny_model.training


@pytest.mark.parametrize("mask_size", [512, None])
def test_logits_are_upsampled_attention_maps(mask_size):
    model = zegclip.build_model("voc", random_init=True, **tiny_overrides(mask_size=mask_size))
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        logits = model(images)
        features, g = model.backbone(images)
        maps = model.decoder(model.queries(model.class_embeddings, g), features.flatten(2).transpose(1, 2))
        maps = maps.reshape(1, 20, 4, 4)
        if mask_size:  # official: always through img_size (512) first, then to the crop
            maps = F.interpolate(maps, size=(512, 512), mode="bilinear", align_corners=False)
        expected = F.interpolate(maps, size=(64, 64), mode="bilinear", align_corners=False)
    assert logits.shape == (1, 20, 64, 64)
    # inference resizes by matmuls, the two stages composed into one map (issue 15): equal up to float rounding
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-6 * expected.abs().max().item())


# ------------------------------------------------------------------------------------------------ variants
@pytest.mark.parametrize("variant", TABLE5_VARIANTS)
def test_table5_variants_by_configuration(variant):
    over = variant_overrides(variant)
    cfg = get_config("voc", **over)
    assert cfg.encoder.mode == variant.split("+")[0].lower()
    assert cfg.loss.kind == ("plus" if "+NEL" in variant else "el")
    assert cfg.query_format == ("[t*g,t]" if "+RD" in variant else "t")
    model = zegclip.build_model("voc", random_init=True, **tiny_overrides(**over))
    model.train()
    logits = model(torch.randn(1, 3, 64, 64))
    losses = zegclip.build_loss(model.cfg.loss)(logits, torch.randint(0, 15, (1, 64, 64)))
    losses["loss"].backward()
    assert torch.isfinite(losses["loss"])


def test_table5_has_twelve_variants_and_zegclip_is_the_default():
    assert len(TABLE5_VARIANTS) == 12
    zeg = get_config("voc", **variant_overrides("Baseline-DPT + NEL + RD (ZegCLIP)"))
    assert zeg == get_config("voc")
    with pytest.raises(ValueError, match="unknown variant"):
        variant_overrides("DPT+XYZ")


def test_config_round_trip_and_bad_overrides():
    cfg = get_config("coco", loss={"kind": "plain"}, encoder={"mode": "ft"})
    assert type(cfg).from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match=r"^unknown field\(s\) \['nope'\]; known: \['clip', "):
        get_config("voc", nope=1)
    with pytest.raises(ValueError, match=r"^encoder: unknown field\(s\) \['prompts'\]"):
        get_config("voc", encoder={"prompts": 3})
    with pytest.raises(ValueError, match="unknown preset"):
        get_config("pascal")
    with pytest.raises(ValueError, match="setting"):
        get_config("voc", setting="semi")


# ------------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("images,match", [
    (torch.randn(3, 64, 64), "rank 3"),
    (torch.randn(1, 1, 64, 64), "3 channels"),
    (torch.randint(0, 255, (1, 3, 64, 64), dtype=torch.uint8), "floating-point"),
])
def test_bad_images_are_rejected(tiny_model, images, match):
    with pytest.raises(ValueError, match=match):
        tiny_model(images)
    with pytest.raises(ValueError, match=match):
        tiny_model.scores(images)


def test_bad_class_lists_are_rejected(tiny_model):
    with pytest.raises(ValueError, match="empty"):
        tiny_model.set_classes([])
    with pytest.raises(ValueError, match="duplicate class name 'cat'"):
        tiny_model.set_classes(["cat", "dog", "cat"])
    with pytest.raises(ValueError, match="position 1 is empty"):
        tiny_model.set_classes(["cat", " "])
    with pytest.raises(ValueError, match=r"\(3, 32\) but there are 2 class names"):
        tiny_model.set_classes(["cat", "dog"], embeddings=torch.zeros(3, 32))
    with pytest.raises(ValueError, match=r"\(19, 32\) but there are 20 class names"):
        zegclip.build_model("voc", random_init=True, text_embeddings=torch.zeros(19, 32), **tiny_overrides())


def test_free_text_classes_at_inference(tiny_model):
    tiny_model.set_classes(["aeroplane", "a red sofa", "sheep", "person"])
    assert tiny_model.num_classes == 4
    assert tiny_model.seen_idx.tolist() == [0, 3]  # names that were seen classes keep the calibration
    assert tiny_model.class_embeddings.shape == (4, 32)
    torch.testing.assert_close(tiny_model.class_embeddings.norm(dim=-1), torch.ones(4))
    assert tiny_model.scores(torch.randn(1, 3, 64, 64)).shape == (1, 4, 64, 64)
