"""mini-CLIP: pretraining runs, its cache is reused, a corrupt cache is detected and rebuilt; mini presets."""
from __future__ import annotations

import pytest
import torch

import zegclip
from zegclip.mini import miniclip

QUICK = miniclip.PretrainConfig(steps=3, batch_size=40, pool=96, warmup=2, eval_images=40)


def test_pretraining_writes_a_cache_that_is_reused(monkeypatch):
    path, record = miniclip.ensure_mini_clip(QUICK, progress=False)
    assert path.is_file() and path.parent.name == "mini-clip"
    assert record["config"]["steps"] == 3 and record["generator_version"] == miniclip.GENERATOR_VERSION
    assert set(record["zero_shot"]) == {"mini-voc", "mini-coco"}
    zs = record["zero_shot"]["mini-voc"]
    assert zs["images"] == 40 and len(zs["per_class"]) == 20  # two held-out images of each of the 20 classes
    assert zs["all"] == pytest.approx(sum(zs["per_class"].values()) / 20)  # equal counts: the mean of the classes

    def boom(*a, **k):
        raise AssertionError("pretraining must not run again")

    monkeypatch.setattr(miniclip, "pretrain", boom)
    again, record2 = miniclip.ensure_mini_clip(QUICK, progress=False)
    assert again == path and record2 == record


def test_cache_key_depends_on_the_config():
    assert miniclip.mini_clip_path(QUICK) != miniclip.mini_clip_path(miniclip.PretrainConfig(steps=4))


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_cache_is_rebuilt_never_used(damage):
    path, _ = miniclip.ensure_mini_clip(QUICK, progress=False)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        path.write_bytes(bytes(data[: len(data) // 2]))
    else:  # flip one byte inside the tensor data: still a valid file, but the content hash no longer matches
        data[-10] ^= 0xFF
        path.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="corrupt"):
        assert miniclip.load_cached(QUICK) is None
    assert not path.exists()
    rebuilt, _ = miniclip.ensure_mini_clip(QUICK, progress=False)
    assert miniclip.load_cached(QUICK)[0] == rebuilt


def test_cached_weights_load_into_the_mini_preset():
    path, _ = miniclip.ensure_mini_clip(QUICK, progress=False)
    model = zegclip.build_model("mini-voc", weights=path)
    from safetensors.torch import load_file

    state = load_file(str(path))
    torch.testing.assert_close(model.backbone.vit.conv1.weight, state["visual.conv1.weight"])
    torch.testing.assert_close(model.text_encoder.token_embedding.weight, state["token_embedding.weight"])
    assert model.num_classes == 20 and model.seen_idx.numel() == 15
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 20, 64, 64)


def test_mini_presets():
    voc = zegclip.get_config("mini-voc")
    coco = zegclip.get_config("mini-coco")
    assert voc.clip.image_size == 64 and voc.decoder.dim == 128 and voc.encoder.num_prompts == 10
    assert coco.templates == "ensemble" and coco.encoder.num_prompts == 20
    model = zegclip.build_model("mini-coco", random_init=True)
    assert model.num_classes == 36 and model.seen_idx.numel() == 32
    counts = model.parameter_counts()
    assert counts["trainable_backbone"] == 4 * 20 * 128 + 128 * 128 + 128 + 2 * 128  # 4 blocks, T=20
    # the same 12 variants exist by configuration for the mini presets
    for variant in zegclip.TABLE5_VARIANTS:
        zegclip.get_config("mini-voc", **zegclip.variant_overrides(variant))


# ------------------------------------------------------------------------------------- the two dials (issue 28)
def test_dials_at_zero_are_the_contrastive_mini_clip_bit_for_bit():
    """Both dials at 0 reproduce the mini-CLIP of the code before the dials: the digest of a tiny pretraining made
    with that code (commit 42e9873, two threads: 1 thread gave 8c114dd9367c9fc72beeb85b3c388517 there and here) and
    the packaged config's cache key are unchanged. The pretraining pins its thread count, so the caller's setting
    does not change the weights."""
    cfg = miniclip.PretrainConfig(steps=3, batch_size=40, pool=120, eval_images=10, warmup=1, locality=0.0,
                                  alignment=0.0)
    threads = torch.get_num_threads()
    digests = []
    try:
        for n in (1, 3):
            torch.set_num_threads(n)
            visual, text, record = miniclip.pretrain(cfg, progress=False)
            digests.append(miniclip._digest(miniclip._state(visual, text)))
            assert torch.get_num_threads() == n and record["torch_threads"] == miniclip.PRETRAIN_THREADS == 2
    finally:
        torch.set_num_threads(threads)
    assert digests == ["b92ac12a0cf08aabbe4d6c4b97d3b86e"] * 2
    assert record["dials"] == {"locality": 0.0, "alignment": 0.0} and record["final_dense_loss"] is None
    assert cfg.key() == "8099034d5887bb4f060e"
    legacy = miniclip.PretrainConfig(steps=500, locality=0.0, alignment=0.0)  # the packaged config before issue 28
    assert legacy.key() == miniclip.LEGACY_KEY == "76aa408d2149b39960e9"
    assert miniclip.PretrainConfig(alignment=0.1).key() != miniclip.PretrainConfig(locality=0.1).key()


def test_dense_targets_leave_the_background_out():
    from zegclip.mini.grammar import get_world
    from zegclip.mini.render import render_scene

    world = get_world("mini-voc")
    lab = torch.full((1, 16, 24), 255)
    lab[0, :8, :5] = 3  # 40 of 64 pixels: class 3 wins the cell
    lab[0, :8, 8:11] = 4  # 24 of 64: the background wins, the cell is left out
    lab[0, 8:, 16:] = 7
    assert miniclip.dense_targets(lab, world, 8).tolist() == [[[3, 255, 255], [255, 255, 7]]]
    img, label, ids = render_scene(world, 5, 0)
    cells = miniclip.dense_targets(torch.from_numpy(label.astype("int64"))[None], world, 8)[0]
    assert cells.shape == (8, 8) and set(cells.unique().tolist()) <= set(ids) | {255}
    for (i, j), c in zip(torch.cartesian_prod(torch.arange(8), torch.arange(8)).tolist(), cells.flatten().tolist()):
        block = torch.from_numpy(label[8 * i:8 * i + 8, 8 * j:8 * j + 8].astype("int64"))
        counts = torch.bincount(block.flatten(), minlength=256)
        assert c == int(counts.argmax()) or (c == 255 and counts[255] == counts.max())


def test_dense_terms_train_heads_and_text_tower():
    cfg = miniclip.PretrainConfig(steps=2, batch_size=40, pool=120, eval_images=10, warmup=1, locality=1.0,
                                  alignment=0.1)
    visual, text = miniclip.build_towers(miniclip.mini_clip_spec(), seed=0)
    dense = miniclip.DenseTerms(cfg, text, miniclip.tokenizer_for(text))
    assert sorted(dense.heads) == ["mini_coco", "mini_voc_b"]
    assert not any(p is q for p in dense.parameters() for q in text.parameters())  # the text tower is not a head
    tokens = torch.randn(3, 64, 128, requires_grad=True)
    targets = torch.full((3, 64), miniclip.DENSE_IGNORE)
    targets[0, :5], targets[2, 10:12] = 2, 30  # two mini-coco scenes and one mini-voc-b scene (all background)
    parts = dense(tokens, targets, ["mini-coco", "mini-voc-b", "mini-coco"], torch.tensor(14.0))
    (parts["head"] + parts["caption"]).backward()
    assert tokens.grad[1].abs().sum() == 0 and tokens.grad[0, :5].abs().sum() > 0  # background cells: no gradient
    assert tokens.grad[0, 5:].abs().sum() == 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in text.parameters())
    assert dense.heads["mini_coco"].weight.grad.abs().sum() > 0
    off = miniclip.DenseTerms(miniclip.PretrainConfig(locality=0.0, alignment=0.1), text, miniclip.tokenizer_for(text))
    assert len(off.heads) == 0  # no head without the locality term
    with pytest.raises(ValueError, match="locality"):
        miniclip.PretrainConfig(locality=-1.0)


def test_training_free_segmentation_and_the_dial_log(tmp_path):
    from zegclip.mini import calibrate, diagnose

    import numpy as np

    from zegclip.mini.grammar import get_world
    from zegclip.mini.render import render_scene

    model = zegclip.build_model("mini-voc", random_init=True, encoder={"mode": "fix"})
    free = diagnose.training_free(model, scenes=6)
    assert free["world"] == "mini-voc" and free["stream"] == 1_000_001 and 0 <= free["mIoU"] <= 100

    class Constant(torch.nn.Module):  # every patch token is the text embedding of class 3: all pixels say "3"
        def forward(self, images):
            emb = torch.nn.functional.normalize(model.class_embeddings[3], dim=0)
            return emb.view(1, -1, 1, 1).expand(len(images), -1, 8, 8), None

    model.backbone = Constant()
    free = diagnose.training_free(model, scenes=6)
    labels = np.stack([render_scene(get_world("mini-voc"), 1_000_001, i)[1] for i in range(6)])
    assert free["pAcc"] == round(100 * float((labels == 3).sum() / (labels != 255).sum()), 2)
    entry = {"key": "k1", "weights": "k1.safetensors", "dials": {"locality": 1.0, "alignment": 0.01}, "steps": 500,
             "pretrain_seconds": 1.0, "torch_threads": 1,
             "zero_shot": {"mini-voc": {"all": 99.0, "seen": 99.0, "unseen": 98.0}},
             "presets": {"mini-voc": {"training_free": {"mIoU": 40.0, "mIoU(S)": 41.0, "mIoU(U)": 38.0, "pAcc": 60.0},
                                      "probe": {"acc": 90.0, "colour_acc": 95.0, "shape_acc": 92.0}}}}
    calibrate.log_dials(entry, tmp_path)
    calibrate.log_dials({**entry, "key": "k0", "dials": {"locality": 0.0, "alignment": 0.0}}, tmp_path)
    calibrate.log_dials({**entry, "pretrain_seconds": 2.0}, tmp_path)  # same key: replaced, not added
    frame = calibrate.dials_frame(tmp_path)
    assert frame["locality"].tolist() == [0.0, 1.0] and frame["pretrain s"].tolist() == [1.0, 2.0]
    assert frame["training-free mIoU (mini-voc)"].tolist() == [40.0, 40.0]
    assert frame["zero-shot min (mini-voc)"].tolist() == [98.0, 98.0]
