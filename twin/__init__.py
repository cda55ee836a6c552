"""Krefeld digital twin."""

import os

# numba's parallel kernels (heat, ground water) run on GNU OpenMP, whose idle threads spin between
# parallel regions by default. On a shared 2-core machine the spinning competes with the other
# processes: the heat model's air-layer phase took 9.4 s instead of 1.6 s beside a SUMO run. Passive
# waiting costs nothing measurable when the machine is idle (city day 9.8 -> 9.5 s wall, 14.6 -> 12.8
# CPU s). Set before libgomp loads (on numba's first parallel call); a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
