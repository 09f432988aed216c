"""The transformer baselines the thesis compares ResUnet against, and ResUnet's decoder on a transformer encoder.

Each row is a :class:`TimmUNetConfig`: a timm encoder, how its features are taken, and a decoder written from the
paper's official code (differences that nnU-Net's contract forces are listed in docs/models.md).

- ``transunet``: TransUNet (Chen et al., 2021), R50+ViT-B/16, cascaded upsampler 256/128/64/16, three skips;
  ``Beckschen/TransUNet`` ``networks/vit_seg_modeling.py``, ``vit_seg_configs.get_r50_b16_config``.
- ``swin_unet``: Swin-Unet (Cao et al., 2022), Swin-T encoder/decoder with patch expanding, the official config
  ``configs/swin_tiny_patch4_window7_224_lite.yaml`` (depths 2, 2, 2, 2; drop path 0.2);
  ``HuCaoFighting/Swin-Unet`` ``networks/swin_transformer_unet_skip_expand_decoder_sys.py``.
- ``emcad``: PVT-EMCAD-B2 (Rahman et al., CVPR 2024), PVTv2-B2 encoder (drop path 0.1, as EMCAD's ``pvt_v2_b2``),
  EMCAD decoder with kernels 1, 3, 5, expansion 2, LGAG kernel 3, and EMCAD's 1x1 conv from grey to RGB; as its
  authors ran it on Synapse, ReLU6 in the MSCBs and the last (stride-4) head as the prediction;
  ``SLDGroup/EMCAD`` ``lib/networks.py`` (``EMCADNet``), ``lib/decoders.py``, ``train_synapse.py``,
  ``test_synapse.py``, ``utils/utils.py`` (``test_single_volume``).
- ``resunet_pvt_v2_b2``: ResUnet v1.0's decoder on EMCAD's encoder, to separate what the decoder contributes from
  what the encoder does. Stage widths are v1.0's at the strides PVTv2 has (512, 384, 96 at 1/16, 1/8, 1/4), the
  upsampler into a stage maps to the width of the level below (512, 320, 128), then the 32-wide full-resolution
  stage; PVTv2 has no 1/2 level, so v1.0's stem stage has no counterpart.

``NO_TRANSFORMER_BLOCKS`` holds each of these with its transformer blocks (attention + MLP) replaced by identity,
everything else unchanged: Primus's ablation (Wald et al., 2025, arXiv 2503.01835), which asks whether a hybrid
model's transformer contributes at all. Each is the row above with one field changed (``transformer_blocks``).

``OFFICIAL_PARAMETERS`` holds the parameter count of each paper's official model at 224 x 224 with 9 classes
(Synapse): a test keeps ours within 1 % of it.
"""

from dataclasses import replace

from nnunetv2_resunet.architectures.timm_unet import TimmUNetConfig

TRANSUNET = TimmUNetConfig(
    name="transunet", change="TransUNet: R50+ViT-B/16 encoder, cascaded upsampler (256/128/64/16, three skips)",
    encoder="vit_base_r50_s16_224", taps="vit_hybrid", decoder="transunet")
SWIN_UNET = TimmUNetConfig(
    name="swin_unet", change="Swin-Unet: Swin-T encoder/decoder (depths 2, 2, 2, 2), patch expanding",
    encoder="swin_tiny_patch4_window7_224", taps="swin", decoder="swin_unet",
    encoder_args=(("depths", (2, 2, 2, 2)), ("drop_path_rate", 0.2)), decoder_args=(("drop_path_rate", 0.2),))
EMCAD = TimmUNetConfig(
    name="emcad", change="EMCAD: PVTv2-B2 encoder, EMCAD decoder (MSCB, EUCB, LGAG, CAB, SAB)",
    encoder="pvt_v2_b2", decoder="emcad", encoder_args=(("drop_path_rate", 0.1),), rgb_stem=True)
RESUNET_PVT_V2_B2 = TimmUNetConfig(
    name="resunet_pvt_v2_b2", change="ResUnet v1.0's decoder on EMCAD's PVTv2-B2 encoder",
    encoder="pvt_v2_b2", decoder="resunet", encoder_args=(("drop_path_rate", 0.1),),
    decoder_args=(("stage_widths", (512, 384, 96)), ("final_width", 32)))

TRANSFORMERS: dict[str, TimmUNetConfig] = {c.name: c for c in (TRANSUNET, SWIN_UNET, EMCAD, RESUNET_PVT_V2_B2)}

#: The name suffix of Primus's ablation, in config names (trainers spell it ``_NoTransformerBlocks``).
NO_TRANSFORMER_BLOCKS_SUFFIX = "_no_transformer_blocks"


def without_transformer_blocks(config: TimmUNetConfig) -> TimmUNetConfig:
    """``config`` with its transformer blocks replaced by identity (Primus's ablation), everything else the same."""
    return replace(config, name=config.name + NO_TRANSFORMER_BLOCKS_SUFFIX, transformer_blocks=False,
                   change=config.change + "; transformer blocks (attention + MLP) replaced by identity")


NO_TRANSFORMER_BLOCKS: dict[str, TimmUNetConfig] = {
    c.name: c for c in map(without_transformer_blocks, TRANSFORMERS.values())}

# Parameters of the official models at 224 x 224, 9 classes, as the papers' code builds them (issue 10's table,
# measured on the official code). Ours include nnU-Net's extra deep-supervision heads (a few thousand).
OFFICIAL_PARAMETERS: dict[str, float] = {"transunet": 105.3e6, "swin_unet": 27.2e6, "emcad": 26.8e6}
