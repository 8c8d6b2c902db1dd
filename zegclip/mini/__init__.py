"""The mini world: procedural scenes and a small CLIP pretrained on them, so the whole paper runs on a CPU.

What it is
    * Scenes (``render.py``; class names and worlds in ``grammar.py``, captions in ``captions.py``, the dataset in
      ``dataset.py``): 64-px images with 1-4 objects over textured grey backgrounds, with occlusion and
      scale/position variation, and exact per-pixel masks. Object classes are compositional, "<colour> <shape>"
      (e.g. "blue triangle"); each shape carries a characteristic surface pattern (rings, grid, stripes...) so
      that the inside of an object, not only its outline, tells its shape - as fur or wheels tell a real class;
      "stuff" classes are "<tint> <texture>" regions ("dark dots"). Two class sets:
      ``mini-voc`` (5 colours x 4 shapes = 20 classes, 15 seen / 5 unseen, background ignored like VOC) and
      ``mini-coco`` (30 things + 6 stuff = 36 classes, 32 / 4, ~10 % unseen, like COCO-Stuff). A second rendering
      style (``mini-voc-b``: checkerboard backgrounds, outlined and smaller objects) plays the role of another
      dataset for the cross-dataset experiment (Table 7).
    * mini-CLIP (``miniclip.py``): an open_clip CLIP of the same classes as ViT-B/16 (patch tokens, [CLS],
      QuickGELU, the real CLIP BPE tokenizer) with 7.8 M parameters (6.3 M of them the token embedding),
      contrastively pretrained on image-caption pairs that name every class, seen and unseen, plus two dense
      terms on the pretraining scenes' patch cells (its "locality" and "alignment" dials) that give its frozen
      patch tokens the locality of real CLIP's, and an alignment to the text set by a published figure.
    * Presets ``mini-voc`` / ``mini-coco`` (``zegclip.model.config``) and runs (``experiments.py``) that go through the
      very same model, loss, training and evaluation code as the real presets.
    * Tiny stand-ins of the real downloads (``layouts.py``, ``python -m zegclip mini fake-datasets OUT``): scenes
      written in the official VOC + SBD, COCO-Stuff and PASCAL Context layouts with real class ids, so that
      ``prepare`` and ``reproduce --profile paper --quick`` run end to end on a CPU.

How it maps to the paper
    CLIP knows every concept from image-text pretraining; segmentation training sees masks of seen classes only
    (unseen pixels are ignored, as in inductive ZegCLIP); evaluation segments seen and unseen classes together
    (generalised zero-shot). Every unseen class is built from attributes that seen classes also have (checked by
    :func:`zegclip.mini.grammar.check_compositional`), as "sheep" shares visual parts with cows and horses.

Where the analogy breaks
    * An 8x8-pixel patch inside a flat-coloured object carries no shape information at all; a first version of the
      world (generator version 1) had flat objects, and even fully supervised training could only learn the
      colour. The shape patterns (version 2) make the classes locally recognisable, as real object parts are.
    * Concepts are combinations of two attributes, not open-vocabulary objects; "generalising" means binding a
      seen colour to a seen shape in a new combination, which CLIP learned at image level.
    * Colour is a class attribute here, so colour jitter (mmseg's PhotoMetricDistortion) would change the class and
      is switched off; real images do not have this property.
    * The mini-CLIP is pretrained on the same renderer that makes the segmentation data, so there is no domain gap
      between pretraining and fine-tuning, unlike web images vs. VOC/COCO.
    * Scale: 8x8 patch grids, a few hundred training iterations and a 7.8 M-parameter CLIP. Effects that need
      CLIP's breadth (e.g. text-embedding ensembles, 100 prompt tokens) may not show, and differences between
      variants can be within seed noise; the tables report the spread over seeds.
"""
from .miniclip import register_weights as _register_weights
from .presets import register as _register_presets
from .dataset import register_datasets as _register_datasets

# The mini world plugs into the core's registries (presets, default CLIP weights, datasets); the core never imports it.
_register_presets()
_register_weights()
_register_datasets()
