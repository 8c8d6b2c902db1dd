"""CLIP weight files (zegclip.model.clip) and text-embedding files (zegclip.model.text.load_embedding_file)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import zegclip
from zegclip.model.clip import WEIGHTS_ENV, ClipSpec, WeightsError, build_towers, resize_positional_embedding
from zegclip.model.text import load_embedding_file

from conftest import TINY_CLIP, shared_path, tiny_overrides

SMALL_GRID = 2  # the saved positional table is for a 2x2 grid (32 px); the tiny model trains at 64 px (4x4)


def tiny_towers(seed: int = 1):
    return build_towers(ClipSpec(model="tiny-test", config=TINY_CLIP, image_size=64), seed=seed)


def clip_state_dict(seed: int = 1) -> dict[str, torch.Tensor]:
    """An OpenAI/open_clip-style CLIP state dict for the tiny config, positional table at a 2x2 grid."""
    visual, text = tiny_towers(seed)
    state = {"visual." + k: v.clone() for k, v in visual.state_dict().items()}
    state.update({k: v.clone() for k, v in text.state_dict().items()})
    width = TINY_CLIP["vision_cfg"]["width"]
    gen = torch.Generator().manual_seed(123)
    state["visual.positional_embedding"] = torch.randn(1 + SMALL_GRID * SMALL_GRID, width, generator=gen)
    state["logit_scale"] = torch.tensor(4.6052)
    return state


def build_tiny(weights):
    return zegclip.build_model("voc", weights=weights, **tiny_overrides())


# ---------------------------------------------------------------------------------------------- missing weights
def test_no_weights_no_env_var_explains_how_to_get_them():
    with pytest.raises(WeightsError) as info:
        build_tiny(None)
    msg = str(info.value)
    for word in (WEIGHTS_ENV, "ZEGCLIP_CLIP_WEIGHTS", "ViT-B-16.pt", "random_init"):
        assert word in msg


def test_env_var_to_missing_file(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere" / "ViT-B-16.pt"
    monkeypatch.setenv(WEIGHTS_ENV, str(missing))
    with pytest.raises(WeightsError, match="not found") as info:
        build_tiny(None)
    assert str(missing) in str(info.value)
    assert WEIGHTS_ENV in str(info.value)


def test_argument_to_missing_file(tmp_path):
    missing = tmp_path / "missing.pt"
    with pytest.raises(WeightsError, match="not found") as info:
        build_tiny(missing)
    assert str(missing) in str(info.value)


def test_random_init_and_weights_are_exclusive(tmp_path):
    with pytest.raises(ValueError, match="not both"):
        zegclip.build_model("voc", weights=tmp_path / "x.pt", random_init=True, **tiny_overrides())


# ---------------------------------------------------------------------------------------------- unreadable files
def test_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.pt"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(WeightsError, match="cannot read") as info:
        build_tiny(path)
    assert str(path) in str(info.value)


def test_corrupt_safetensors(tmp_path):
    path = tmp_path / "corrupt.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}" + bytes(64))
    with pytest.raises(WeightsError) as info:
        build_tiny(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "obj",
    [{"a": 1, "b": torch.zeros(2)}, {"state_dict": {"x": "text"}}, [torch.zeros(2)], {}],
    ids=["non-tensor-value", "wrapped-non-tensor", "list", "empty"],
)
def test_file_without_a_tensor_state_dict(tmp_path, obj):
    path = tmp_path / "odd.pt"
    torch.save(obj, path)
    with pytest.raises(WeightsError, match="state dict of tensors") as info:
        build_tiny(path)
    assert str(path) in str(info.value)


# ---------------------------------------------------------------------------------------------- round trip
def _save(state: dict[str, torch.Tensor], tmp_path, fmt: str):
    if fmt == "plain":
        path = tmp_path / "clip.pt"
        torch.save(state, path)
    elif fmt == "half":  # OpenAI's weights are float16
        path = tmp_path / "clip-fp16.pt"
        torch.save({k: v.half() for k, v in state.items()}, path)
    elif fmt == "wrapped":
        path = tmp_path / "clip-wrapped.bin"
        torch.save({"state_dict": {"module." + k: v for k, v in state.items()}, "epoch": 3}, path)
    else:
        from safetensors.torch import save_file

        path = tmp_path / "clip.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


@pytest.mark.parametrize("fmt", ["plain", "half", "wrapped", "safetensors"])
def test_round_trip_with_positional_resize(tmp_path, fmt):
    state = clip_state_dict(seed=1)
    path = _save(state, tmp_path, fmt)
    if fmt == "half":
        state = {k: v.half().float() for k, v in state.items()}
    model = build_tiny(path)
    vit = model.backbone.vit
    assert tuple(vit.grid_size) == (4, 4)

    loaded_vis = vit.state_dict()
    for key, value in loaded_vis.items():
        assert value.dtype == torch.float32
        if key != "positional_embedding":
            torch.testing.assert_close(value, state["visual." + key], rtol=0, atol=0, msg=key)
    loaded_txt = model.text_encoder.state_dict()
    assert set(loaded_txt) == {k for k in state if not k.startswith("visual.") and k != "logit_scale"}
    for key, value in loaded_txt.items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0, msg=key)

    saved_pos = state["visual.positional_embedding"]
    pos = loaded_vis["positional_embedding"]
    assert pos.shape == (17, TINY_CLIP["vision_cfg"]["width"])
    torch.testing.assert_close(pos, resize_positional_embedding(saved_pos, (4, 4)), rtol=0, atol=0)
    # independent check: CLS row kept, spatial rows bilinearly upsampled (align_corners=False), row-major
    torch.testing.assert_close(pos[0], saved_pos[0], rtol=0, atol=0)
    grid = saved_pos[1:].reshape(1, 2, 2, -1).permute(0, 3, 1, 2)
    expected = F.interpolate(grid, size=(4, 4), mode="bilinear", align_corners=False)
    torch.testing.assert_close(pos[1:], expected.permute(0, 2, 3, 1).reshape(16, -1))
    # and by hand: 1-D weights of 2 -> 4 are (1, 0), (.75, .25), (.25, .75), (0, 1)
    g = saved_pos[1:].reshape(2, 2, -1)
    w = torch.tensor([[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]])
    by_hand = torch.einsum("ia,jb,abd->ijd", w, w, g).reshape(16, -1)
    torch.testing.assert_close(pos[1:], by_hand)
    assert torch.equal(pos[1], saved_pos[1]) and torch.equal(pos[16], saved_pos[4])  # corners are copies


def test_weights_from_env_var(tmp_path, monkeypatch):
    state = clip_state_dict(seed=1)
    path = _save(state, tmp_path, "plain")
    monkeypatch.setenv(WEIGHTS_ENV, str(path))
    model = build_tiny(None)
    assert torch.equal(model.backbone.vit.conv1.weight, state["visual.conv1.weight"])


def test_same_grid_table_is_kept_unchanged():
    pos = torch.randn(17, 8)
    assert resize_positional_embedding(pos, (4, 4)) is pos
    resized = resize_positional_embedding(pos, (2, 3))
    assert resized.shape == (7, 8)
    assert torch.equal(resized[0], pos[0])


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.* deprecation notices
def test_torchscript_archive(tmp_path):
    """OpenAI's release format (a TorchScript archive); its non-persistent attn_mask buffer is saved too."""
    from open_clip.model import CLIP

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        clip = CLIP(TINY_CLIP["embed_dim"], TINY_CLIP["vision_cfg"], TINY_CLIP["text_cfg"], quick_gelu=True)
    try:
        scripted = torch.jit.script(clip.eval())
    except Exception as exc:  # pragma: no cover - depends on the open_clip version
        pytest.skip(f"open_clip's CLIP is not scriptable here: {exc}")
    path = tmp_path / "ViT-tiny.pt"
    torch.jit.save(scripted, str(path))
    state = clip.state_dict()
    model = build_tiny(path)
    vis = model.backbone.vit.state_dict()
    txt = model.text_encoder.state_dict()
    assert len(vis) + len(txt) + 1 == len(state)  # + logit_scale
    for key, value in vis.items():
        assert torch.equal(value, state["visual." + key]), key
    for key, value in txt.items():
        assert torch.equal(value, state[key]), key
    # a random-init model (seed 0) differs: the weights really came from the archive
    assert not torch.equal(zegclip.build_model("voc", random_init=True, **tiny_overrides()).backbone.vit.conv1.weight,
                           vis["conv1.weight"])


# ---------------------------------------------------------------------------------------------- foreign checkpoints
def test_resnet_checkpoint_is_rejected(tmp_path):
    path = tmp_path / "RN50.pt"
    torch.save({"visual.bn1.weight": torch.ones(64), "visual.layer1.0.conv1.weight": torch.zeros(64, 64, 1, 1),
                "visual.attnpool.positional_embedding": torch.zeros(50, 2048)}, path)
    with pytest.raises(WeightsError, match="not a CLIP checkpoint") as info:
        build_tiny(path)
    msg = str(info.value)
    assert str(path) in msg and "attnpool.positional_embedding" in msg and "class_embedding" in msg


def test_extra_visual_key_is_rejected(tmp_path):
    state = clip_state_dict()
    state["visual.foo"] = torch.zeros(3)
    path = _save(state, tmp_path, "plain")
    with pytest.raises(WeightsError, match="unexpected") as info:
        build_tiny(path)
    assert "'foo'" in str(info.value) and "visual" in str(info.value)


def test_extra_text_key_is_rejected(tmp_path):
    state = clip_state_dict()
    state["bar.weight"] = torch.zeros(3)
    path = _save(state, tmp_path, "plain")
    with pytest.raises(WeightsError, match="bar.weight"):
        build_tiny(path)


def test_missing_key_is_rejected(tmp_path):
    state = clip_state_dict()
    del state["visual.ln_post.bias"]
    path = _save(state, tmp_path, "plain")
    with pytest.raises(WeightsError, match="missing") as info:
        build_tiny(path)
    assert "ln_post.bias" in str(info.value)


@pytest.mark.parametrize("key,shape", [("visual.conv1.weight", (48, 3, 8, 8)), ("ln_final.weight", (31,))])
def test_wrong_shape_is_rejected(tmp_path, key, shape):
    state = clip_state_dict()
    state[key] = torch.zeros(shape)
    path = _save(state, tmp_path, "plain")
    with pytest.raises(WeightsError) as info:
        build_tiny(path)
    msg = str(info.value)
    assert key.removeprefix("visual.") in msg and str(shape) in msg and str(path) in msg


def test_non_square_positional_table_is_rejected(tmp_path):
    state = clip_state_dict()
    state["visual.positional_embedding"] = torch.zeros(1 + 6, 48)
    path = _save(state, tmp_path, "plain")
    with pytest.raises(WeightsError, match="square"):
        build_tiny(path)


# ---------------------------------------------------------------------------------------------- text-embedding files
def test_embedding_file_missing(tmp_path):
    path = tmp_path / "none.npy"
    with pytest.raises(FileNotFoundError) as info:
        load_embedding_file(path)
    assert str(path) in str(info.value)


def test_embedding_file_wrong_row_count(tmp_path):
    path = tmp_path / "emb.npy"
    np.save(path, np.zeros((19, 512), dtype=np.float16))
    with pytest.raises(ValueError) as info:
        load_embedding_file(path, num_classes=20, dim=512)
    assert "19" in str(info.value) and "20" in str(info.value)


def test_embedding_file_wrong_dim(tmp_path):
    path = tmp_path / "emb.npy"
    np.save(path, np.zeros((20, 256), dtype=np.float16))
    with pytest.raises(ValueError) as info:
        load_embedding_file(path, num_classes=20, dim=512)
    assert "256" in str(info.value) and "512" in str(info.value)


@pytest.mark.parametrize("shape", [(512,), (2, 20, 512)])
def test_embedding_file_wrong_rank(tmp_path, shape):
    path = tmp_path / "emb.npy"
    np.save(path, np.zeros(shape, dtype=np.float32))
    with pytest.raises(ValueError, match="expected"):
        load_embedding_file(path)


def test_embedding_file_unreadable(tmp_path):
    path = tmp_path / "emb.npy"
    path.write_bytes(b"not a numpy file")
    with pytest.raises(ValueError, match="cannot read"):
        load_embedding_file(path)


def test_embedding_file_float16_to_float32(tmp_path):
    path = tmp_path / "emb.npy"
    array = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float16)
    np.save(path, array)
    out = load_embedding_file(path, num_classes=5, dim=8)
    assert out.dtype == torch.float32 and out.shape == (5, 8)
    assert torch.equal(out, torch.from_numpy(array).float())


EMB = ("data", "clip-text-embeddings")


# row-norm tolerances from the fact sheet §3.2 (fp16 rounding of unit rows; coco_single reaches 0.99949)
@pytest.mark.parametrize("name,rows,tol", [("zegclip_voc12_single.npy", 20, 5e-4), ("zegclip_coco_multi.npy", 171, 5e-4),
                                           ("zegclip_coco_single.npy", 171, 6e-4)])
def test_official_embedding_files(name, rows, tol):
    path = shared_path(*EMB, name)
    raw = np.load(path)
    assert raw.dtype == np.float16 and raw.shape == (rows, 512)
    out = load_embedding_file(path, num_classes=rows, dim=512)
    assert out.dtype == torch.float32 and out.shape == (rows, 512)
    assert torch.equal(out, torch.from_numpy(raw.astype(np.float32)))
    norms = out.norm(dim=1)
    assert torch.all((norms - 1).abs() <= tol), (norms.min(), norms.max())


def test_official_voc_file_goes_into_model():
    path = shared_path(*EMB, "zegclip_voc12_single.npy")
    model = zegclip.build_model("voc", random_init=True, text_embeddings=path)
    expected = torch.from_numpy(np.load(path).astype(np.float32))
    assert model.class_embeddings.dtype == torch.float32
    assert torch.equal(model.class_embeddings, expected)


def test_voc_and_coco_single_rows_agree_on_shared_names():
    from zegclip.data.classes import load_class_split

    voc_emb = load_embedding_file(shared_path(*EMB, "zegclip_voc12_single.npy"))
    coco_emb = load_embedding_file(shared_path(*EMB, "zegclip_coco_single.npy"))
    voc, coco = list(load_class_split("voc").classes), list(load_class_split("coco").classes)
    shared = ["bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "dog", "horse", "person",
              "sheep", "train"]
    assert [n for n in voc if n in coco] == shared
    cos = torch.stack([F.cosine_similarity(voc_emb[voc.index(n)], coco_emb[coco.index(n)], dim=0) for n in shared])
    assert torch.all(cos > 0.999), dict(zip(shared, cos.tolist()))
    # and a different pair of classes is clearly not the same row
    assert F.cosine_similarity(voc_emb[voc.index("cat")], coco_emb[coco.index("dog")], dim=0) < 0.99


# ------------------------------------------------------------------------------ open_clip tags (never the network)
def test_a_named_tag_downloads_through_open_clip_and_a_file_never_does(tmp_path, monkeypatch):
    import open_clip

    from zegclip.model.clip import resolve_weights_path

    asked = []

    def fake_download(cfg, *args, **kwargs):
        asked.append(cfg["url"])
        return str(tmp_path / "ViT-B-16.pt")

    monkeypatch.setattr(open_clip.pretrained, "download_pretrained", fake_download)
    assert resolve_weights_path("openai") == tmp_path / "ViT-B-16.pt"
    assert asked == [open_clip.pretrained.get_pretrained_cfg("ViT-B-16", "openai")["url"]]
    local = tmp_path / "openai"  # a file of that name wins: nothing is downloaded
    local.write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    assert resolve_weights_path("openai") == Path("openai") and len(asked) == 1


def test_offline_tag_is_a_one_line_error_naming_the_file_to_fetch(monkeypatch):
    import urllib.error

    import open_clip

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(open_clip.pretrained, "download_pretrained", offline)
    with pytest.raises(ValueError, match=r"cannot download the ViT-B-16 weights 'openai' \(URLError: .*\); fetch "
                                         r"https://openaipublic\.azureedge\.net/.*/ViT-B-16\.pt by hand"):
        zegclip.build_model("voc", weights="openai")


def test_tag_with_the_other_activation_asks_for_the_switch(monkeypatch):
    import open_clip

    monkeypatch.setattr(open_clip.pretrained, "download_pretrained", lambda *a, **k: pytest.fail("no download"))
    with pytest.raises(ValueError, match="trained without QuickGELU: set model.clip.quick_gelu=False"):
        zegclip.build_model("voc", weights="laion2b_s34b_b88k")


def test_unknown_name_is_neither_file_nor_tag():
    from zegclip.model.clip import WeightsError, resolve_weights_path

    with pytest.raises(WeightsError, match=r"CLIP weights file not found: nope\.pt \(from argument\); nor is it a "
                                           r"pretrained tag of ViT-B-16 \(openai, "):
        resolve_weights_path("nope.pt")


def test_weights_flags_become_run_overrides(tmp_path, capsys, monkeypatch):
    from zegclip.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["train", "--config", "voc-inductive", "--weights", "a.pt", "--random-init"]) == 2
    assert "give either --weights or --random-init, not both" in capsys.readouterr().err
