"""Class names of each dataset's label space (id -> name), for palettes, legends and the demo.

Ids are the model's class ids after the source's mapping (data/sources.py): ADE20K raw 1..150 ->
0..149, COCO-Stuff 0..181, Cityscapes label ids 0..33 (+ 34 license plate), CelebAMask-HQ 0 =
background then the part masks; the don't-care class (id label_nc) is appended when configured.
"""
from __future__ import annotations

from typing import Any

from ecgan_jax import configuration
from ecgan_jax.data.sources import CELEBA_PARTS
from ecgan_jax.data.synthetic import CLASS_NAMES as SYNTHETIC

DONTCARE = "don't care"

ADE20K = tuple("""wall|building|sky|floor|tree|ceiling|road|bed|windowpane|grass|cabinet|sidewalk|
person|earth|door|table|mountain|plant|curtain|chair|car|water|painting|sofa|shelf|house|sea|mirror|
rug|field|armchair|seat|fence|desk|rock|wardrobe|lamp|bathtub|railing|cushion|base|box|column|
signboard|chest of drawers|counter|sand|sink|skyscraper|fireplace|refrigerator|grandstand|path|
stairs|runway|case|pool table|pillow|screen door|stairway|river|bridge|bookcase|blind|coffee table|
toilet|flower|book|hill|bench|countertop|stove|palm|kitchen island|computer|swivel chair|boat|bar|
arcade machine|hovel|bus|towel|light|truck|tower|chandelier|awning|streetlight|booth|television|
airplane|dirt track|apparel|pole|land|bannister|escalator|ottoman|bottle|buffet|poster|stage|van|
ship|fountain|conveyer belt|canopy|washer|plaything|swimming pool|stool|barrel|basket|waterfall|
tent|bag|minibike|cradle|oven|ball|food|step|tank|trade name|microwave|pot|animal|bicycle|lake|
dishwasher|screen|blanket|sculpture|hood|sconce|vase|traffic light|tray|ashcan|fan|pier|crt screen|
plate|monitor|bulletin board|shower|radiator|glass|clock|flag""".replace('\n', '').split('|'))

CITYSCAPES = tuple("""unlabeled|ego vehicle|rectification border|out of roi|static|dynamic|ground|
road|sidewalk|parking|rail track|building|wall|fence|guard rail|bridge|tunnel|pole|polegroup|
traffic light|traffic sign|vegetation|terrain|sky|person|rider|car|truck|bus|caravan|trailer|train|
motorcycle|bicycle|license plate""".replace('\n', '').split('|'))

COCO_STUFF = tuple("""person|bicycle|car|motorcycle|airplane|bus|train|truck|boat|traffic light|
fire hydrant|street sign|stop sign|parking meter|bench|bird|cat|dog|horse|
sheep|cow|elephant|bear|zebra|giraffe|hat|backpack|umbrella|shoe|
eye glasses|handbag|tie|suitcase|frisbee|skis|snowboard|sports ball|kite|
baseball bat|baseball glove|skateboard|surfboard|tennis racket|bottle|plate|
wine glass|cup|fork|knife|spoon|bowl|banana|apple|sandwich|orange|broccoli|
carrot|hot dog|pizza|donut|cake|chair|couch|potted plant|bed|mirror|
dining table|window|desk|toilet|door|tv|laptop|mouse|remote|keyboard|
cell phone|microwave|oven|toaster|sink|refrigerator|blender|book|clock|vase|
scissors|teddy bear|hair drier|toothbrush|hair brush|banner|blanket|branch|
bridge|building-other|bush|cabinet|cage|cardboard|carpet|ceiling-other|
ceiling-tile|cloth|clothes|clouds|counter|cupboard|curtain|desk-stuff|dirt|
door-stuff|fence|floor-marble|floor-other|floor-stone|floor-tile|floor-wood|
flower|fog|food-other|fruit|furniture-other|grass|gravel|ground-other|hill|
house|leaves|light|mat|metal|mirror-stuff|moss|mountain|mud|napkin|net|
paper|pavement|pillow|plant-other|plastic|platform|playingfield|railing|
railroad|river|road|rock|roof|rug|salad|sand|sea|shelf|sky-other|skyscraper|
snow|solid-other|stairs|stone|straw|structural-other|table|tent|
textile-other|towel|tree|vegetable|wall-brick|wall-concrete|wall-other|
wall-panel|wall-stone|wall-tile|wall-wood|water-other|waterdrops|
window-blind|window-other|wood""".replace('\n', '').split('|'))

CELEBAMASK_HQ = ('background',) + CELEBA_PARTS

# Conventional colours where a dataset has them (Cityscapes' own), a readable set for the synthetic
# scenes; other datasets get the pseudo-random training palette (inference.class_colors).
COLORS: dict[str, tuple[tuple[int, int, int], ...]] = {
    'synthetic': ((110, 170, 230), (90, 170, 60), (120, 120, 120), (170, 90, 60), (40, 80, 200),
                  (20, 100, 30)),
    'cityscapes': ((0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0), (111, 74, 0),
                   (81, 0, 81), (128, 64, 128), (244, 35, 232), (250, 170, 160), (230, 150, 140),
                   (70, 70, 70), (102, 102, 156), (190, 153, 153), (180, 165, 180),
                   (150, 100, 100), (150, 120, 90), (153, 153, 153), (153, 153, 153),
                   (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180),
                   (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 0, 90),
                   (0, 0, 110), (0, 80, 100), (0, 0, 230), (119, 11, 32), (0, 0, 142)),
}

NAMES: dict[str, tuple[str, ...]] = {
    'synthetic': SYNTHETIC, 'ade20k': ADE20K, 'cityscapes': CITYSCAPES, 'coco_stuff': COCO_STUFF,
    'celebamask_hq': CELEBAMASK_HQ}


def class_names(config: Any) -> tuple[str, ...]:
  """One name per class id 0..num_classes-1 of `config`'s label space ("class N" where the
  dataset has no list, e.g. plain folders, and for ids past the list)."""
  known = NAMES.get(str(config.dataset.name), ())
  names = [known[i] if i < len(known) else f'class {i}'
           for i in range(int(config.dataset.label_nc))]
  if config.dataset.contain_dontcare_label:
    names.append(DONTCARE)
  assert len(names) == configuration.num_classes(config)
  return tuple(names)

