"""Released ZegCLIP checkpoints (mmseg format) -> zegclip models (zegclip.model.official)."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

import zegclip
from zegclip.model.clip import WeightsError
from zegclip.model.presets import PRESETS, get_config
from zegclip.model.official import load_official_checkpoint, map_official_key
from zegclip.model.text import encode_class_names

from conftest import shared_path, tiny_overrides

MODEL_ONLY = {"class_embeddings", "seen_idx", "train_idx"}
EMPTY_WEIGHT = "decode_head.loss_decode.criterion.empty_weight"
NUM_SEEN = {"voc": 15, "coco": 156}  # empty_weight has one entry per seen class + 1 (no-object)


def official_name(key: str) -> str:
    """zegclip key -> official key, written independently of zegclip.model.official."""
    if key.startswith("backbone.vit."):
        return "backbone." + key[len("backbone.vit."):]
    if key.startswith(("backbone.prompt_", "backbone.deep_prompt_", "text_encoder.")):
        return key
    if key.startswith("decoder.layers."):
        return "decode_head.decoder_1." + key[len("decoder."):]
    if key.startswith("queries.proj."):
        return "decode_head.q_proj." + key[len("queries.proj."):]
    raise AssertionError(f"no official name for {key}")


def official_state(model, dataset: str = "voc") -> dict[str, torch.Tensor]:
    out = {official_name(k): v.clone() for k, v in model.state_dict().items() if k not in MODEL_ONLY}
    out[EMPTY_WEIGHT] = torch.ones(NUM_SEEN[dataset] + 1)
    return out


def save_checkpoint(path, state, classes=("aeroplane",)):
    torch.save({"meta": {"CLASSES": list(classes), "mmseg_version": "0.24.0"}, "state_dict": state}, path)
    return path


def tsv_rows(config: str) -> dict[str, dict]:
    path = shared_path("reference", "official-state-dict-keys.tsv")
    with open(path, newline="") as f:
        return {r["key"]: r for r in csv.DictReader(f, delimiter="\t") if r["config"] == config}


def unit_rows(n: int, d: int, seed: int) -> torch.Tensor:
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(seed))
    return x / x.norm(dim=1, keepdim=True)


@pytest.fixture(scope="module")
def voc_model():
    """Full ViT-B/16 voc model with seed 1: differs from the seed-0 model the loader starts from."""
    return zegclip.build_model("voc", random_init=True, text_embeddings=unit_rows(20, 512, 0), seed=1)


@pytest.fixture(scope="module")
def voc_checkpoint(voc_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("official") / "voc_inductive.pth"
    return save_checkpoint(path, official_state(voc_model), voc_model.class_names)


@pytest.fixture
def tiny_preset(monkeypatch):
    """A tiny preset with the voc split, so the loader's full code path runs in milliseconds."""
    monkeypatch.setitem(PRESETS, "tiny-voc", get_config("voc", **tiny_overrides()).replace(name="tiny-voc"))
    return "tiny-voc"


@pytest.fixture
def tiny_state(tiny_preset):
    model = zegclip.build_model(tiny_preset, random_init=True, text_embeddings=unit_rows(20, 32, 0), seed=3)
    return official_state(model)


# ---------------------------------------------------------------------------------------------- key mapping
def check_against_tsv(model, config):
    rows = tsv_rows(config)
    own = {official_name(k): v for k, v in model.state_dict().items() if k not in MODEL_ONLY}
    own[EMPTY_WEIGHT] = torch.empty(NUM_SEEN[config] + 1)
    assert set(own) == set(rows)
    assert {k: list(v.shape) for k, v in own.items()} == {k: eval(r["shape"]) for k, r in rows.items()}
    assert all(r["dtype"] == "float32" for r in rows.values())
    # the official -> zegclip mapping is the inverse of official_name; the loss buffer is dropped
    for key in rows:
        expected = None if key == EMPTY_WEIGHT else next(
            z for z in model.state_dict() if z not in MODEL_ONLY and official_name(z) == key)
        assert map_official_key(key) == expected, key
    # parameters vs buffers, and which parameters train
    params = {official_name(k): p for k, p in model.named_parameters()}
    for key, row in rows.items():
        if key == EMPTY_WEIGHT:
            assert row["kind"] == "buffer"
            continue
        assert row["kind"] == "param", key
        assert str(params[key].requires_grad) == row["requires_grad"], key
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == {"voc": 13_821_184, "coco": 14_650_624}[config]


def test_voc_keys_match_the_official_checkpoint(voc_model):
    check_against_tsv(voc_model, "voc")


def test_coco_keys_match_the_official_checkpoint():
    shared_path("reference", "official-state-dict-keys.tsv")
    model = zegclip.build_model("coco", random_init=True, text_embeddings=torch.zeros(171, 512))
    check_against_tsv(model, "coco")


def test_unknown_official_key():
    with pytest.raises(KeyError):
        map_official_key("decode_head.foo.weight")
    assert map_official_key("backbone.transformer.resblocks.3.ln_1.weight") == "backbone.vit.transformer.resblocks.3.ln_1.weight"
    assert map_official_key("backbone.deep_prompt_embeddings") == "backbone.deep_prompt_embeddings"
    assert map_official_key("decode_head.decoder_1.layers.2.multihead_attn.k.bias") == "decoder.layers.2.multihead_attn.k.bias"


# ---------------------------------------------------------------------------------------------- end to end
def test_load_reproduces_the_model(voc_model, voc_checkpoint):
    a = voc_model
    b = load_official_checkpoint(voc_checkpoint, dataset="voc", text_embeddings=a.class_embeddings.clone())
    assert not b.training
    assert b.cfg.calibration == pytest.approx(0.1) and b.cfg.setting == "inductive"
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert sa[key].dtype == sb[key].dtype and torch.equal(sa[key], sb[key]), key
    assert b.seen_idx.tolist() == list(range(15)) and b.train_idx.tolist() == list(range(15))
    assert b.class_names == a.class_names
    # frozen / trainable split survives loading
    assert [p.requires_grad for p in a.parameters()] == [p.requires_grad for p in b.parameters()]
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ya, yb = a(x), b(x)
    assert ya.shape == (1, 20, 64, 96)
    assert torch.equal(ya, yb)


def test_npy_text_embeddings(voc_checkpoint, tmp_path):
    path = tmp_path / "voc12_single.npy"
    array = unit_rows(20, 512, 5).numpy().astype(np.float16)
    np.save(path, array)
    b = load_official_checkpoint(voc_checkpoint, dataset="voc", text_embeddings=path)
    assert b.class_embeddings.dtype == torch.float32
    assert torch.equal(b.class_embeddings, torch.from_numpy(array.astype(np.float32)))


def test_coco_checkpoint_on_voc_classes(voc_model, tmp_path):
    state = official_state(voc_model, "coco")
    gen = torch.Generator().manual_seed(9)
    state["backbone.prompt_embeddings"] = torch.randn(1, 100, 768, generator=gen)
    state["backbone.deep_prompt_embeddings"] = torch.randn(11, 100, 768, generator=gen)
    path = save_checkpoint(tmp_path / "coco_inductive.pth", state)
    b = load_official_checkpoint(path, dataset="voc", text_embeddings=voc_model.class_embeddings)
    assert b.backbone.num_prompts == 100 and b.cfg.encoder.num_prompts == 100
    assert b.num_classes == 20 and b.class_embeddings.shape == (20, 512)
    assert torch.equal(b.backbone.deep_prompt_embeddings, state["backbone.deep_prompt_embeddings"])
    assert torch.equal(b.queries.proj.weight, state["decode_head.q_proj.weight"])


def test_default_text_embeddings_use_the_loaded_text_encoder(tiny_preset, tiny_state, tmp_path):
    path = save_checkpoint(tmp_path / "tiny.pth", tiny_state)
    b = load_official_checkpoint(path, dataset=tiny_preset)
    assert torch.equal(b.text_encoder.token_embedding.weight, tiny_state["text_encoder.token_embedding.weight"])
    expected = encode_class_names(b.text_encoder, b.class_names, "single")
    torch.testing.assert_close(b.class_embeddings, expected)
    fresh = zegclip.build_model(tiny_preset, random_init=True)  # seed-0 text tower: other embeddings
    assert not torch.allclose(fresh.class_embeddings, b.class_embeddings, atol=1e-3)


def test_module_prefix_and_plain_state_dict(tiny_preset, tiny_state, tmp_path):
    path = tmp_path / "plain.pth"
    torch.save({"module." + k: v for k, v in tiny_state.items()}, path)
    b = load_official_checkpoint(path, dataset=tiny_preset, text_embeddings=unit_rows(20, 32, 1))
    assert torch.equal(b.backbone.prompt_proj.weight, tiny_state["backbone.prompt_proj.weight"])


@pytest.mark.parametrize("setting,calibration,train", [("inductive", 0.1, 15), ("transductive", 0.0, 20)])
def test_setting(tiny_preset, tiny_state, tmp_path, setting, calibration, train):
    path = save_checkpoint(tmp_path / "tiny.pth", tiny_state)
    kwargs = {} if setting == "inductive" else {"setting": setting}
    b = load_official_checkpoint(path, dataset=tiny_preset, text_embeddings=unit_rows(20, 32, 1), **kwargs)
    assert b.cfg.setting == setting
    assert b.cfg.calibration == calibration
    assert b.seen_idx.tolist() == list(range(15))
    assert b.train_idx.tolist() == list(range(train))


# ---------------------------------------------------------------------------------------------- errors
def test_missing_file(tmp_path):
    path = tmp_path / "voc_inductive.pth"
    with pytest.raises(FileNotFoundError) as info:
        load_official_checkpoint(path)
    assert str(path) in str(info.value)


def test_unreadable_file(tmp_path):
    path = tmp_path / "broken.pth"
    path.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(WeightsError) as info:
        load_official_checkpoint(path)
    assert str(path) in str(info.value)


def test_non_tensor_state_dict(tmp_path):
    path = save_checkpoint(tmp_path / "odd.pth", {"backbone.prompt_embeddings": [1, 2, 3]})
    with pytest.raises(WeightsError, match="state dict of tensors") as info:
        load_official_checkpoint(path)
    assert str(path) in str(info.value)


def test_unknown_key(tiny_preset, tiny_state, tmp_path):
    tiny_state["decode_head.foo.weight"] = torch.zeros(3)
    path = save_checkpoint(tmp_path / "extra.pth", tiny_state)
    with pytest.raises(WeightsError, match="unknown keys") as info:
        load_official_checkpoint(path, dataset=tiny_preset)
    assert "decode_head.foo.weight" in str(info.value) and str(path) in str(info.value)


def test_missing_key(tiny_preset, tiny_state, tmp_path):
    del tiny_state["decode_head.q_proj.bias"]
    path = save_checkpoint(tmp_path / "missing.pth", tiny_state)
    with pytest.raises(WeightsError, match="missing") as info:
        load_official_checkpoint(path, dataset=tiny_preset)
    # the message names the key (as its zegclip name, queries.proj.bias) and the file
    assert "proj.bias" in str(info.value) and str(path) in str(info.value)


def test_wrong_shape(tiny_preset, tiny_state, tmp_path):
    tiny_state["decode_head.q_proj.weight"] = torch.zeros(32, 32)
    path = save_checkpoint(tmp_path / "shape.pth", tiny_state)
    with pytest.raises(WeightsError, match="shape") as info:
        load_official_checkpoint(path, dataset=tiny_preset)
    msg = str(info.value)
    assert "proj.weight" in msg and "(32, 32)" in msg and "(32, 64)" in msg


def test_checkpoint_without_prompts(tiny_preset, tiny_state, tmp_path):
    del tiny_state["backbone.prompt_embeddings"]
    path = save_checkpoint(tmp_path / "noprompt.pth", tiny_state)
    with pytest.raises(WeightsError, match="prompt_embeddings") as info:
        load_official_checkpoint(path, dataset=tiny_preset)
    assert str(path) in str(info.value)


def test_unknown_dataset(voc_checkpoint):
    with pytest.raises(ValueError, match="unknown preset"):
        load_official_checkpoint(voc_checkpoint, dataset="cityscapes")
