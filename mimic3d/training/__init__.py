"""Training engine of EG3D and Mimic3D: typed configs and presets (``config``, ``presets``), the
loss phases (``loss``), the loop (``loop.Trainer``), crash-safe snapshots (``snapshot``), multi-process
support (``distributed``), run monitoring (``monitor``, ``visuals``) and ADA (``augment``).

Entry points: ``mimic3d train`` / ``mimic3d demo``, or ``Trainer(load_config(preset, overrides)[0],
run_dir).run()``.
"""
