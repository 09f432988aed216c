"""Parameters and FLOPs of each network config, as a Markdown table (the one in README is produced by this).

    python -m nnunetv2_resunet.model_table --patch 224 224 --classes 9
"""

import argparse
from collections.abc import Mapping, Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode

from nnunetv2_resunet.configs import LADDER
from nnunetv2_resunet.network import ResUnet, ResUnetConfig


def count_parameters(network: torch.nn.Module) -> int:
    return sum(p.numel() for p in network.parameters())


def count_flops(network: torch.nn.Module, input_shape: Sequence[int]) -> int:
    """FLOPs (2 x multiply-accumulates) of one forward pass on an input of ``input_shape`` (B, C, H, W)."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        network.eval()(torch.zeros(*input_shape))
    return counter.get_total_flops()


def model_rows(configs: Mapping[str, ResUnetConfig], patch_size: Sequence[int], input_channels: int = 1,
               num_classes: int = 9) -> list[dict]:
    """One row per config: name, what it changes, parameters, forward GFLOPs per patch, deepest stride."""
    rows = []
    for name, config in configs.items():
        network = ResUnet(input_channels, num_classes, config)
        rows.append({"config": name, "change": config.change, "params_m": count_parameters(network) / 1e6,
                     "gflops": count_flops(network, (1, input_channels, *patch_size)) / 1e9,
                     "stride": network.total_stride})
    return rows


def markdown_table(rows: list[dict], patch_size: Sequence[int], input_channels: int, num_classes: int) -> str:
    lines = [f"Forward pass of one {'x'.join(map(str, patch_size))} patch, {input_channels} input channel(s), "
             f"{num_classes} output classes; FLOPs = 2 x multiply-accumulates (torch.utils.flop_counter).",
             "",
             "| config | trainer | change | params (M) | GFLOPs | deepest stride |",
             "|---|---|---|---:|---:|---:|"]
    for row in rows:
        trainer = f"`ResUnetTrainer_{row['config']}`" + (" = `ResUnetTrainer`" if row["config"] == "v1_0" else "")
        lines.append(f"| {row['config']} | {trainer} | {row['change']} | {row['params_m']:.2f} | "
                     f"{row['gflops']:.1f} | {row['stride']} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Parameters and FLOPs of the ResUnet ladder as a Markdown table.")
    parser.add_argument("--patch", type=int, nargs=2, default=(224, 224), metavar=("H", "W"))
    parser.add_argument("--channels", type=int, default=1, help="input channels (default 1)")
    parser.add_argument("--classes", type=int, default=9, help="output classes incl. background (default 9)")
    args = parser.parse_args(argv)
    rows = model_rows(LADDER, args.patch, args.channels, args.classes)
    print(markdown_table(rows, args.patch, args.channels, args.classes))


if __name__ == "__main__":
    main()
