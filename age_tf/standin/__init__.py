"""Stand-in pretrained backbones: what `--weights=standin` loads when ImageNet cannot be had.

ImageNet weights cannot be downloaded offline, and a backbone trained from random weights
inside the demo's minutes learns nothing useful. So `tools/pretrain_standin.py` pretrains
each backbone once, for hours, on synthetic faces of people disjoint from every demo set,
and the package ships the result (float16, `<backbone>.npz` in this folder) with a JSON
card (`<backbone>.json`) saying exactly how it was made.

Two floors, so that the model code needs no renderer: `age_tf.train.standin_weights` is the
shipped file format (what `--weights=standin` reads, beside the model code); `pretraining`,
here, is the corpus and the network that write it (what the tool and its tests need).
"""
