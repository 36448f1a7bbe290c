"""The RGM model: generator networks, noise schedules, the model file format and the shipped-model index.

- :mod:`pnprgm.rgm.unet`: pnprgm's own UNet generator ``G(x, level, z)`` and its sizes;
- :mod:`pnprgm.rgm.official`: the port of the official NCSN++ generator (official checkpoints);
- :mod:`pnprgm.rgm.drunet`: deepinv's DRUNet in the same protocol (no latent);
- :mod:`pnprgm.rgm.architectures`: the architectures by name, rebuilt from a stored config;
- :mod:`pnprgm.rgm.schedules`: RGM's DDPM-style schedule of time levels;
- :mod:`pnprgm.rgm.model_file`: save, read and load model files (format and version);
- :mod:`pnprgm.rgm.models`: the shipped models (``pretrained/index.json``) and what a model string names.

Restoring uses this package and never imports :mod:`pnprgm.training`, which trains these networks.
The denoiser wrapper and its registration are :mod:`pnprgm.denoisers.rgm`.
"""
