"""Make nnU-Net find our trainers by name, with no manual step.

nnunetv2 (2.8) looks up ``-tr NAME`` in its own package and then in the folders listed in the ``nnUNet_extTrainer``
environment variable. The ``nnunetv2_resunet.pth`` file that setup.py installs into site-packages imports this
module when any Python interpreter starts, so ``nnUNetv2_train`` and ``nnUNetv2_predict`` see our folder. We append
to a value the user set (never replace it), and never add our folder twice. Only ``os`` is imported here: this
runs in every Python process.
"""

import os

EXT_TRAINER_FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ext_trainers")


def register_ext_trainer_folder(environ=os.environ) -> None:
    """Append our trainer folder to ``nnUNet_extTrainer`` in ``environ`` unless it is listed already."""
    current = environ.get("nnUNet_extTrainer", "")
    entries = [p for p in current.split(os.pathsep) if p.strip()]
    if any(os.path.abspath(p) == EXT_TRAINER_FOLDER for p in entries):
        return
    environ["nnUNet_extTrainer"] = os.pathsep.join(entries + [EXT_TRAINER_FOLDER])


register_ext_trainer_folder()
