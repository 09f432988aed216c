"""Install nnunetv2-resunet. ``pip install .`` and ``pip install -e .`` also install ``nnunetv2_resunet.pth`` into
site-packages, which registers our trainer folder in ``nnUNet_extTrainer`` (``nnunetv2_resunet/_ext_trainer.py``)."""

import os

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

PTH_FILE = "nnunetv2_resunet.pth"


class BuildPyWithPth(build_py):
    """Ship the .pth file at the root of the wheel, i.e. into site-packages.

    A regular wheel is made from ``build_lib``. An editable wheel (PEP 660, setuptools >= 64) is not: it maps our
    packages to the source tree and takes only what lies in its unpacked wheel folder, which is where setuptools
    points ``install_lib`` while it builds one; the .pth goes there too, so ``pip install -e .`` ships it as well.
    """

    def run(self):
        super().run()
        self.copy_file(PTH_FILE, os.path.join(self.build_lib, PTH_FILE), preserve_mode=False)
        if getattr(self, "editable_mode", False):
            unpacked_wheel = self.get_finalized_command("install").install_lib
            self.copy_file(PTH_FILE, os.path.join(unpacked_wheel, PTH_FILE), preserve_mode=False)

    def get_outputs(self, include_bytecode=1):
        return super().get_outputs(include_bytecode) + [os.path.join(self.build_lib, PTH_FILE)]


setup(
    name="nnunetv2-resunet",
    version="0.1.0",
    description="ResUnet (ResNet-34 U-Net with three fixes) and its ablation ladder as nnU-Net v2 trainers",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=[*find_packages(include=["nnunetv2_resunet", "nnunetv2_resunet.*"]),
              "nnunetv2_resunet.dataset_conversion"],
    # dataset_conversion/ sits at the top of the repository but installs inside our package, so it cannot clash
    # with another distribution's top-level module of the same generic name.
    package_dir={"nnunetv2_resunet.dataset_conversion": "dataset_conversion"},
    # The demo's real ACDC sample (8 volumes, 7 MB) installs with the plugin, so nnUNetv2_resunet_demo runs anywhere.
    package_data={"nnunetv2_resunet.demo": ["acdc_sample/*.h5", "acdc_sample/README.md"]},
    install_requires=[
        # The trainer API (build_network_architecture's signature, the extTrainer lookup) changed across
        # releases; 2.8.1 is the release this plugin is tested against.
        "nnunetv2>=2.8.1,<2.9",
        # 2.4: autocast introspection per device (torch.is_autocast_enabled(device_type), get_autocast_dtype),
        # which keeps the transformers finite under nnU-Net's fp16 autocast.
        "torch>=2.4",
        # The transformer encoders are timm's: 1.0.22 is the release tested (VisionTransformer, HybridEmbed,
        # ResNetV2, SwinTransformer with strict_img_size=False, pvt_v2 with forward_intermediates, their
        # checkpoint_filter_fn and vision_transformer._load_weights in the tests).
        "timm>=1.0.22,<1.1",
        "dynamic-network-architectures>=0.4",
        "batchgenerators>=0.25",
        "SimpleITK>=2.2",
        "numpy>=1.24",
        "scipy>=1.10",
        "h5py>=3.8",
        "tqdm",
        "matplotlib",
        # nnUNetv2_resunet_study submit: SLURM array jobs with dependencies. submitit writes the sbatch scripts,
        # submits arrays (executor.batch()), runs a pickled Python call on the node and requeues it at its time
        # limit; the field's code bases use it, and it brings only cloudpickle and typing_extensions along.
        # 1.5 is the release tested here (SlurmExecutor's parameters and batch() arrays are stable since 1.2).
        "submitit>=1.2,<2",
        # Study files are TOML: tomllib from Python 3.11, the same parser as tomli before.
        "tomli>=1.1; python_version < '3.11'",
    ],
    extras_require={
        # pytest-timeout: a test that hangs (a subprocess that never returns, a lock never released) fails by name
        # after pyproject.toml's time limit instead of stopping the whole CI run.
        "test": ["pytest>=7", "pytest-timeout>=2.1", "medpy>=0.5", "ruff>=0.5"],
    },
    entry_points={
        "console_scripts": [
            "nnUNetv2_resunet_report = nnunetv2_resunet.evaluation.report.cli:main",
            "nnUNetv2_resunet_convert_synapse = nnunetv2_resunet.dataset_conversion.convert_synapse:main",
            "nnUNetv2_resunet_convert_acdc = nnunetv2_resunet.dataset_conversion.convert_acdc:main",
            "nnUNetv2_resunet_convert_avt = nnunetv2_resunet.dataset_conversion.convert_avt:main",
            "nnUNetv2_resunet_benchmark = nnunetv2_resunet.benchmarking.cli:main",
            "nnUNetv2_resunet_check = nnunetv2_resunet.benchmarking.check_cli:main",
            "nnUNetv2_resunet_plan = nnunetv2_resunet.experiment_planning.cli:main",
            "nnUNetv2_resunet_study = nnunetv2_resunet.studies.cli:main",
            "nnUNetv2_resunet_init_weights = nnunetv2_resunet.training.init_weights:main",
            "nnUNetv2_resunet_demo = nnunetv2_resunet.demo.cli:main",
        ],
    },
    cmdclass={"build_py": BuildPyWithPth},
)
