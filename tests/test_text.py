"""Class embeddings from the text tower: templates, batching, normalisation and the on-disk cache."""
from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_CLIP

from zegclip.model import text as ztext
from zegclip.model.clip import ClipSpec, build_towers, tokenizer_for


@pytest.fixture(scope="module")
def tower():
    _, text = build_towers(ClipSpec(model="tiny-test", config=TINY_CLIP, image_size=64), seed=3)
    return text


def test_template_sets():
    assert ztext.resolve_templates("single") == ("a photo of a {}",)
    ens = ztext.resolve_templates("ensemble")
    assert len(ens) == 15 and ens[0] == "a photo of a {}." and ens[-1] == "This is one {} in the scene."
    with pytest.raises(ValueError, match="unknown template set"):
        ztext.resolve_templates("many")
    with pytest.raises(ValueError, match="contain"):
        ztext.resolve_templates(["a photo"])


def test_single_template_equals_direct_encoding(tower):
    names = ["cat", "wall-concrete", "pottedplant"]
    emb = ztext.encode_class_names(tower, names, "single")
    tokens = tokenizer_for(tower)([f"a photo of a {n}" for n in names])
    with torch.no_grad():
        direct = F.normalize(tower(tokens), dim=-1)
    torch.testing.assert_close(emb, direct)
    assert emb.dtype == torch.float32 and emb.shape == (3, 32)


def test_ensemble_is_normalised_mean_of_normalised_templates(tower):
    names = ["cow", "sky-other"]
    emb = ztext.encode_class_names(tower, names, "ensemble", batch_size=7)  # batches cross class boundaries
    tok = tokenizer_for(tower)
    with torch.no_grad():
        per = torch.stack([F.normalize(tower(tok([t.format(n) for t in ztext.ENSEMBLE_TEMPLATES])), dim=-1).mean(0)
                           for n in names])
    torch.testing.assert_close(emb, F.normalize(per, dim=-1))
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2))


def test_cache_is_reused_and_keyed_by_names_and_templates(tower, monkeypatch):
    first = ztext.class_embeddings(tower, ["cat", "dog"], "single", model_id="tiny")
    files = list((ztext.cache_dir() / "text").glob("*.safetensors"))
    assert len(files) == 1
    calls = []
    real = ztext.encode_class_names
    monkeypatch.setattr(ztext, "encode_class_names", lambda *a, **k: calls.append(a) or real(*a, **k))
    again = ztext.class_embeddings(tower, ["cat", "dog"], "single", model_id="tiny")
    assert calls == [] and torch.equal(first, again)
    ztext.class_embeddings(tower, ["dog", "cat"], "single", model_id="tiny")
    ztext.class_embeddings(tower, ["cat", "dog"], "ensemble", model_id="tiny")
    assert len(calls) == 2
    assert len(list((ztext.cache_dir() / "text").glob("*.safetensors"))) == 3
    assert not list((ztext.cache_dir() / "text").glob("*.tmp"))  # atomic writes leave nothing behind


def test_cache_depends_on_the_weights(tower):
    other = build_towers(ClipSpec(model="tiny-test", config=TINY_CLIP, image_size=64), seed=4)[1]
    a = ztext.class_embeddings(tower, ["cat"], model_id="tiny")
    b = ztext.class_embeddings(other, ["cat"], model_id="tiny")
    assert not torch.allclose(a, b)


def test_corrupt_cache_is_detected_and_rebuilt(tower):
    good = ztext.class_embeddings(tower, ["cat", "dog"], model_id="tiny")
    (path,) = (ztext.cache_dir() / "text").glob("*.safetensors")
    path.write_bytes(b"\x00garbage" * 10)
    with pytest.warns(UserWarning, match="corrupt"):
        rebuilt = ztext.class_embeddings(tower, ["cat", "dog"], model_id="tiny")
    torch.testing.assert_close(rebuilt, good)
    assert os.path.getsize(path) > 100  # rewritten


def test_embedding_file_errors(tmp_path):
    import numpy as np

    with pytest.raises(FileNotFoundError, match="nope.npy"):
        ztext.load_embedding_file(tmp_path / "nope.npy")
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not numpy")
    with pytest.raises(ValueError, match="bad.npy"):
        ztext.load_embedding_file(bad)
    f = tmp_path / "e.npy"
    np.save(f, np.ones((4, 8), dtype=np.float16))
    assert ztext.load_embedding_file(f, 4, 8).dtype == torch.float32
    with pytest.raises(ValueError, match="dimension 8 but the model needs 16"):
        ztext.load_embedding_file(f, 4, 16)
