"""The mini world: procedural scenes and a small CLIP pretrained on them."""
