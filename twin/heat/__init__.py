"""The urban heat model: surface energy balance with shading by buildings and trees, canopy-layer
air temperature, mean radiant temperature and UTCI at street level, climate stations merged in.

Modules: ``sun`` (solar position), ``shadow`` (shading, sky view), ``radiation`` (short- and
longwave, Tmrt), ``comfort`` (UTCI), ``surface`` (cover fractions and parameters), ``energy``
(storage, sensible, latent heat), ``air`` (the air layer), ``stations`` (merging readings),
``forcing`` (weather), ``model`` (the ``twin.core`` adapter), ``scenario``, ``run``, ``outputs``,
``report`` and ``commands``. Equations, parameters and sources: ``twin/heat/README.md``.
"""
