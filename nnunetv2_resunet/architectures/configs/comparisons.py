"""The comparison models: one table of ResNet-encoder configs and one of plain-conv U-Nets, one row per model.

``encoders/resnet.py`` holds the five torchvision depths as config fields; any ResUnet config takes any of them
with ``replace(config, **resnet_encoder(50))``, and any decoder with ``replace(config, decoder="unetpp")``. The
ResUnet fixes stay switches on every row (``stem_maxpool``, ``skips``, ``bottleneck_convs``).

The seeds' U-Net / UNet++ / UNet3+ rows start from the ladder's baseline encoder (v0_1: torchvision's ResNet
with its stem max-pool, every skip, no tail), which is what the other ResNet-U-Net projects build; ResUnet_R50
is ResUnet v1.0 (all fixes) on a ResNet-50.
"""

from dataclasses import replace

from nnunetv2_resunet.architectures.configs.ladder import LADDER
from nnunetv2_resunet.architectures.conv_unet import ConvUNetConfig
from nnunetv2_resunet.architectures.encoders.resnet import resnet_encoder
from nnunetv2_resunet.architectures.resunet import ResUnetConfig

_SEED_R34 = LADDER["v0_1"]

RESUNET_R50 = replace(LADDER["v1_0"], name="resunet_r50", change="ResUnet v1.0 (all fixes) on a ResNet-50 encoder",
                      **resnet_encoder(50))
UNET_R34 = replace(_SEED_R34, name="unet_r34", change="ResNet-34 encoder + classic U-Net decoder", decoder="unet")
UNETPP_R34 = replace(_SEED_R34, name="unetpp_r34", change="ResNet-34 encoder + UNet++ decoder (nested dense skips)",
                     decoder="unetpp")
UNET3P_R34 = replace(_SEED_R34, name="unet3p_r34", change="ResNet-34 encoder + UNet3+ decoder (full-scale skips)",
                     decoder="unet3p")

COMPARISONS: dict[str, ResUnetConfig] = {c.name: c for c in (RESUNET_R50, UNET_R34, UNETPP_R34, UNET3P_R34)}

CLASSIC_UNET = ConvUNetConfig(name="classic_unet", change="classic U-Net: two 3x3 convs per level, 64-1024, max-pool")
RESIDUAL_UNET = ConvUNetConfig(name="residual_unet", change="residual U-Net: pre-activation residual units, 64-512",
                               widths=(64, 128, 256, 512), block="residual", downsampling="stride")
RESIDUAL_UNET_SA = replace(RESIDUAL_UNET, name="residual_unet_sa",
                           change="residual U-Net + spatial-attention gates on the skips", skip_attention=True)

PLAIN_UNETS: dict[str, ConvUNetConfig] = {c.name: c for c in (CLASSIC_UNET, RESIDUAL_UNET, RESIDUAL_UNET_SA)}
