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
