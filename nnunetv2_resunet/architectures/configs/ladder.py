"""The ResUnet ablation ladder: one table of configs, each step the previous one with the fields it changes.

Our reading of the thesis's channel counts (see README): the upsampler into a decoder stage maps to 512 (layer3's
stage), 256 (layer2's), 128 (layer1's) or 64 (the stem's); the stages compress 768 -> 256, 384 -> 192, 192 -> 96
and 128 -> 64, or, where a fix preserves width, 768 -> 512 and 384 -> 384.
"""

from dataclasses import replace

from nnunetv2_resunet.architectures.resunet import ResUnetConfig

V0_1 = ResUnetConfig(
    name="v0_1",
    change="baseline: 7x7 s2 stem + max-pool; skips stem, layer1, layer2, layer3; decoder compresses",
)
V0_2 = replace(V0_1, name="v0_2", change="v0_1 + ImageNet weights (-pretrained_weights, nnUNetv2_resunet_init_weights)",
               imagenet_init=True)
V0_3 = replace(V0_1, name="v0_3", change="fix 1: no stem max-pool (deepest stride 32 -> 16)", stem_maxpool=False)
V0_4 = replace(V0_3, name="v0_4", change="fix 2: no layer1 skip", skips=("layer3", "layer2", "stem"))
V0_5 = replace(V0_4, name="v0_5", change="fix 3a: two 3x3 conv-BN-ReLU at the encoder tail", bottleneck_convs=2)
V0_6 = replace(V0_5, name="v0_6", change="fix 3b: layer3 stage preserves width (768 -> 512)",
               decoder_widths=(512, 192, 96, 64))
V0_7 = replace(V0_6, name="v0_7", change="v0_6 with the layer1 skip back (reference branch)",
               skips=("layer3", "layer2", "layer1", "stem"))
V1_0 = replace(V0_6, name="v1_0", change="fix 3c: layer2 stage preserves width too (384 -> 384)",
               decoder_widths=(512, 384, 96, 64))

LADDER: dict[str, ResUnetConfig] = {c.name: c for c in (V0_1, V0_2, V0_3, V0_4, V0_5, V0_6, V0_7, V1_0)}
