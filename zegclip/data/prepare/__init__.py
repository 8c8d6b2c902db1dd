"""Turn the official downloads into the mmseg layouts read by :mod:`zegclip.data.datasets`.

* :func:`prepare_voc` (:mod:`.voc`) -- VOC2012 tar + SBD (``benchmark_RELEASE``) -> ``SegmentationClassAug/*.png``
  and ``ImageSets/Segmentation/{aug,trainaug}.txt``.
* :func:`prepare_coco_stuff` (:mod:`.coco_stuff`) -- ``stuffthingmaps_trainval2017`` (ids 0..181, 255 unlabeled) ->
  ``annotations/{train2017,val2017}/*_labelTrainIds.png`` (0..170, 255).
* :func:`prepare_context` (:mod:`.context`) -- PASCAL-Context per-image ``.mat`` files (``LabelMap``, 459-class
  ids) -> ``VOC2010/SegmentationClassContext/*.png`` (0 = background/other, 1..59) and
  ``VOC2010/ImageSets/SegmentationContext/{train,val}.txt``.

Each writes every file atomically (temporary file + rename, so an interrupted run never leaves a truncated PNG),
shows a tqdm progress bar, and ends with a verification pass (file counts, label value ranges) whose summary
dict it returns (``summary["ok"]`` is False when a problem was found; ``summary["problems"]`` lists them). The
helpers they share are in :mod:`.common`; the input folders are found by :mod:`zegclip.data.roots`.
"""

from .coco_stuff import COCO_STUFF_UNUSED_IDS, COCO_STUFF_USED_IDS, coco_stuff_lut, prepare_coco_stuff
from .context import CONTEXT_459_IDS, context59_lut, prepare_context
from .voc import VOC_AUG_TRAIN_LEN, prepare_voc

__all__ = [
    "prepare_voc",
    "prepare_coco_stuff",
    "prepare_context",
    "COCO_STUFF_UNUSED_IDS",
    "COCO_STUFF_USED_IDS",
    "coco_stuff_lut",
    "CONTEXT_459_IDS",
    "context59_lut",
    "VOC_AUG_TRAIN_LEN",
]
