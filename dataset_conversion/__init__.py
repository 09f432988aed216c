"""Dataset converters: public releases (Synapse, ACDC, AVT) into nnU-Net raw format, with the published splits.

Installed as ``nnunetv2_resunet.dataset_conversion``. One module per release (``convert_synapse``, ``convert_acdc``,
``convert_avt``: find the cases, plan, convert) on shared pieces: ``common`` (the plan, the case job, names and
folders), ``reading`` (reading and checking source files), ``jobs`` (writing a case; job kinds several releases
share), ``splits``, ``execute`` (running a plan), ``transaction`` (dataset and split land together, or not at all),
``cli`` (the command line), ``ct_intensity`` (HU vs HU + 1024).

Imports: nnU-Net's dataset helpers, SimpleITK, h5py and numpy; nothing else of this package.
"""
