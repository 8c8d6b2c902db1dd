"""End-to-end check against an independent, functional transcription of the official forward pass.

The reference (:mod:`zegclip.experiments.bench.reference`, also the "official" side of ``bench --vs-official``) is
written from the fact sheet (§2-§6) with plain tensor operations and the model's own weights; it shares no code
with the package's model path. Agreement pins the whole pipeline (QuickGELU blocks, the [CLS] quirk, prompt
replacement, prompt_norm, ln_post/proj on patches, RD, decoder, calibration).
"""
from __future__ import annotations

import pytest
import torch
from conftest import tiny_overrides

import zegclip
from zegclip.experiments.bench.reference import reference_logits, reference_scores


@pytest.mark.parametrize("attention", ["math", "official", "module"])
def test_model_matches_the_functional_reference(attention):
    """``math``: attention written as its definition; ``official``: the official code's kernels and layout;
    ``module``: the official block modules (nn.MultiheadAttention, batch_first=False) on copies of the weights."""
    model = zegclip.build_model("voc", random_init=True, **tiny_overrides())
    with torch.no_grad():  # give every parameter non-trivial values (LayerNorm affine, biases)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    assert model.seen_idx.tolist() == list(range(15))  # the seen classes of VOC get the 0.1 shift
    img = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = reference_scores(model, img, attention=attention)
        got = model.scores(img)
        torch.testing.assert_close(model(img), reference_logits(model, img, attention=attention), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
