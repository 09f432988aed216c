"""Benchmark: our HD95 against medpy's on an abdomen-sized (90 x 512 x 512) synthetic mask pair.

Prints both timings, the speed-up and that both give the same number. Needs medpy (the ``test`` extra).
Run: ``python benchmarks/bench_hd95.py [--repeats N]``.
"""

import argparse
import time

import numpy as np
from medpy.metric.binary import hd95 as medpy_hd95
from scipy.ndimage import gaussian_filter

from nnunetv2_resunet.evaluation.metrics import hd95

SHAPE = (90, 512, 512)
SPACING = (3.0, 0.78, 0.78)


def abdomen_like_pair(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An organ-sized blob (roughly a liver: 40 x 180 x 160 voxels) and a perturbed copy of it as 'prediction'."""
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    ellipsoid = ((z - 45) / 20.0) ** 2 + ((y - 260) / 90.0) ** 2 + ((x - 200) / 80.0) ** 2
    noise = gaussian_filter(rng.standard_normal((SHAPE[0] // 3, SHAPE[1] // 8, SHAPE[2] // 8)), 1.5)
    noise = np.kron(noise, np.ones((3, 8, 8)))
    noise /= np.abs(noise).max()
    ref = ellipsoid < 1.0
    pred = ellipsoid + 0.3 * noise < 1.0
    pred[40:44, 100:110, 380:395] = True  # a false-positive island away from the organ
    return pred, ref


def best_time(function, repeats: int) -> tuple[float, float]:
    """Fastest wall time over ``repeats`` calls and the value returned."""
    best, value = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        value = function()
        best = min(best, time.perf_counter() - start)
    return best, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per implementation (best is reported)")
    args = parser.parse_args()
    pred, ref = abdomen_like_pair()
    print(f"shape {SHAPE}, spacing {SPACING}, pred voxels {pred.sum()}, ref voxels {ref.sum()}")
    for spacing in (None, SPACING):
        t_medpy, v_medpy = best_time(lambda s=spacing: medpy_hd95(pred, ref, voxelspacing=s), args.repeats)
        t_ours, v_ours = best_time(lambda s=spacing: hd95(pred, ref, spacing=s), args.repeats)
        print(
            f"spacing={spacing}: medpy {t_medpy:.3f} s ({v_medpy:.6f}), ours {t_ours:.3f} s ({v_ours:.6f}), "
            f"speed-up {t_medpy / t_ours:.1f}x, identical: {v_medpy == v_ours}"
        )


if __name__ == "__main__":
    main()
