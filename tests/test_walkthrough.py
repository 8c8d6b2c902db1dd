"""The learner walkthrough (notebooks/walkthrough.ipynb), the inspection API it uses, and book/differences.md.

* ``ZegCLIP.intermediates`` / ``PromptedVisionEncoder.prompt_tokens``: shapes, and agreement with the forward pass.
* The notebook runs with papermill (``quick=True``: random mini-CLIP, a few seconds) and prints the shapes that the
  mini-voc preset implies (derived here from the config, not typed in).
* Every ``--set key=value`` switch named in book/differences.md is a real config field and a valid value.
"""
from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest
import torch

from conftest import tiny_overrides

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "walkthrough.ipynb"
DIFFERENCES = REPO / "book" / "differences.md"


# ------------------------------------------------------------------------------------------- inspection API
def _images(model, size=64, batch=2):
    torch.manual_seed(1)
    return model.normalize(torch.randint(0, 256, (batch, 3, size, size)))


def test_intermediates_shapes_and_forward(tiny_model):
    """Every documented key has the documented shape, and the logits are the forward pass's (eval mode)."""
    x = _images(tiny_model)
    enc = tiny_model.backbone
    with torch.no_grad():
        out = tiny_model.intermediates(x)
        logits = tiny_model(x)
    b, (h, w), width, T = x.shape[0], enc.grid_size, enc.width, enc.num_prompts
    n, c, d = h * w, tiny_model.num_classes, tiny_model.embed_dim
    assert out["tokens"].shape == (b, 1 + n, width)
    assert len(out["block_inputs"]) == len(out["block_outputs"]) == enc.num_blocks
    assert all(t.shape == (b, 1 + T + n, width) for t in out["block_inputs"] + out["block_outputs"])
    assert out["features"].shape == (b, d, h, w) and out["global"].shape == (b, d)
    assert out["text"].shape == (c, d) and out["class_idx"].tolist() == list(range(c))
    assert out["descriptor"].shape == (b, c, 2 * d)
    assert out["queries"].shape == (b, c, tiny_model.cfg.decoder.dim)
    assert len(out["layer_masks"]) == tiny_model.cfg.decoder.layers
    assert out["masks"].shape == (b, c, h, w)
    assert torch.equal(out["masks"].flatten(2), out["layer_masks"][-1])
    # the untraced no_grad pass skips the prompt rows (issue 15): equal up to float summation order
    torch.testing.assert_close(out["logits"], logits, rtol=1e-5, atol=1e-6)
    tiny_model.backbone.skip_prompt_rows = False
    with torch.no_grad():
        assert torch.equal(out["logits"], tiny_model(x))  # the same kernels: bit-identical


def test_intermediates_prompts_are_replaced_between_blocks(tiny_model):
    """Block l reads its own prompts; the previous block's prompt outputs are dropped, the other tokens kept."""
    x = _images(tiny_model, batch=1)
    enc = tiny_model.backbone
    T = enc.num_prompts
    with torch.no_grad():
        out = tiny_model.intermediates(x)
        for layer in range(enc.num_blocks):
            assert torch.equal(out["block_inputs"][layer][:, 1 : 1 + T], enc.prompt_tokens(layer))
        for prev, nxt in zip(out["block_outputs"][:-1], out["block_inputs"][1:]):
            assert not torch.equal(prev[:, 1 : 1 + T], nxt[:, 1 : 1 + T])
            assert torch.equal(prev[:, :1], nxt[:, :1]) and torch.equal(prev[:, 1 + T :], nxt[:, 1 + T :])
        assert torch.equal(out["block_inputs"][0][:, :1], out["tokens"][:, :1])
        assert torch.equal(out["block_inputs"][0][:, 1 + T :], out["tokens"][:, 1:])


def test_intermediates_training_mode_queries_seen_classes(tiny_model):
    tiny_model.train()
    out = tiny_model.intermediates(_images(tiny_model, batch=1))
    assert out["class_idx"].tolist() == tiny_model.train_idx.tolist()
    assert out["logits"].shape[1] == tiny_model.train_idx.numel()
    out["logits"].mean().backward()  # gradients flow through the traced pass
    assert tiny_model.backbone.prompt_embeddings.grad is not None


def test_prompt_tokens_errors():
    import zegclip

    model = zegclip.build_model("voc", random_init=True, **tiny_overrides())
    with pytest.raises(ValueError, match="no prompt tokens enter block"):
        model.backbone.prompt_tokens(model.backbone.num_blocks)
    fix = zegclip.build_model("voc", random_init=True, **tiny_overrides(encoder={"mode": "fix"}))
    with pytest.raises(ValueError, match="has no prompt tokens"):
        fix.backbone.prompt_tokens(0)
    with torch.no_grad():  # no prompts: the traced sequence is [CLS] + patches
        out = fix.intermediates(_images(fix, batch=1))
    assert out["block_inputs"][0].shape == out["tokens"].shape


# ------------------------------------------------------------------------------------------- the notebook
def test_walkthrough_parameters_cell():
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert "parameters" in first.metadata.get("tags", [])
    values = {t.id: ast.literal_eval(node.value) for node in ast.parse(first.source).body
              for t in node.targets}
    assert values == {"profile": "mini", "quick": False, "weights": None}
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "ship the notebook without outputs"


def _printed_shapes(nb) -> dict[str, str]:
    """Lines printed by the notebook's ``show(name, tensor)``: name -> shape text, e.g. '(1, 65, 128)'."""
    found = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                for line in output["text"].splitlines():
                    m = re.match(r"^(.*\S)\s+(\([\d, ]*\))$", line)
                    if m:
                        found[m.group(1)] = m.group(2)
    return found


@pytest.mark.slow
def test_walkthrough_quick_runs_and_prints_shapes(tmp_path):
    papermill = pytest.importorskip("papermill")
    from zegclip.model.presets import get_config
    from zegclip.model.factory import resolve_split

    out_path = tmp_path / "walkthrough.ipynb"
    papermill.execute_notebook(str(NOTEBOOK), str(out_path), parameters={"quick": True}, cwd=str(tmp_path),
                               progress_bar=False, kernel_name="python3")
    import nbformat

    nb = nbformat.read(out_path, as_version=4)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    shapes = _printed_shapes(nb)

    cfg = get_config("mini-voc")
    vision = cfg.clip.config["vision_cfg"]
    grid = cfg.clip.image_size // vision["patch_size"]
    width, d = vision["width"], cfg.clip.config["embed_dim"]
    split = resolve_split(cfg)
    c_all, c_seen, size = len(split.classes), len(split.seen), cfg.slide_crop
    expected = {
        "tokens z0 = [CLS] + patches": (1, 1 + grid * grid, width),
        "patch embeddings H": (1, d, grid, grid),
        "descriptor [t⊙g, t]": (1, c_all, 2 * d),
        "masks = last layer, on the grid": (1, c_all, grid, grid),
        "training logits (B, |seen|, H, W)": (1, c_seen, size, size),
    }
    for name, shape in expected.items():
        assert shapes.get(name) == str(shape), f"{name}: printed {shapes.get(name)}, expected {shape}"


# ------------------------------------------------------------------------------------------- the book chapter
SWITCH = re.compile(r"`--set ([A-Za-z_][\w.]*)=([^`]+)`")


def _switches() -> list[tuple[str, str]]:
    return SWITCH.findall(DIFFERENCES.read_text(encoding="utf-8"))


def _field_types() -> dict[str, type]:
    from zegclip.model.config import _NESTED, ZegCLIPConfig
    from zegclip.engine.run import DataConfig, RunConfig
    from zegclip.engine.train import TrainConfig

    return {"model": ZegCLIPConfig, "train": TrainConfig, "data": DataConfig, "": RunConfig, **{
        f"model.{k}": v for k, v in _NESTED.items()}}


def test_differences_switches_are_config_fields():
    """Each `--set a.b=value` in the chapter names a dataclass field (ZegCLIPConfig and its nested configs,
    TrainConfig, DataConfig or a top-level run field)."""
    switches = _switches()
    assert len(switches) >= 15, f"expected the chapter to name its switches as `--set key=value`, found {switches}"
    types = _field_types()
    for key, _ in switches:
        section, _, name = key.rpartition(".")
        cls = types.get(section)
        assert cls is not None, f"{key}: unknown section {section!r}"
        assert name in {f.name for f in dataclasses.fields(cls)}, f"{key}: {cls.__name__} has no field {name!r}"


def test_differences_switch_values_are_valid():
    """Applied as the CLI applies them (``--set``), every switch gives a valid run configuration that differs
    from the default: the chapter's values are accepted and change something."""
    from zegclip.engine.run import load_run

    default = load_run(None).to_dict()
    for key, value in _switches():
        changed = load_run(None, [f"{key}={value}"]).to_dict()
        assert changed != default, f"--set {key}={value} changes nothing"
