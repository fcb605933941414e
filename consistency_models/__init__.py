"""Consistency models, derived, checked and trained: a literate PyTorch library (CD, CT, iCT, ECT).

Each module is exported from one chapter of the book (the notebooks in nbs/):

- `pf_ode` (00): noise levels, toy data with exact denoisers, the PF-ODE, Euler/Heun and EDM's sampler
- `parameterization` (01): c_skip, c_out, c_in and `ConsistencyModel`
- `theorem1`, `theorem2`, `ema_bias` (02-04): Theorems 1 and 2 and iCT's Proposition 1, computed
- `curricula` (05): N(k), mu(k), iCT's and ECT's schedules and level samplers
- `losses` (06): metrics, weightings and the CD, CT, iCT, ECT and EDM objectives
- `networks` (07) and `data` (08): an MLP, a DDPM++-style UNet, and the data sets
- `config` (09), `checkpoints` (10), `training` (11): configs and presets, checkpoints and run folders, the trainer
- `sampling` (12): one-step and multistep sampling, pictures of samples
- `cli` (13): the commands `cm-train`, `cm-sample` and `cm-theory`
"""
__version__ = "0.1.0"
