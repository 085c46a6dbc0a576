"""The embedded light-cone halo simulator (``simulator.backend: embedded``).

One core (hashed Gaussian initial conditions, 2LPT, light-cone geometry) and two halo
modes: ``sample`` (Tinker08 mass function with a Lagrangian-bias weight, calibrated) and
``peaks`` (a peak-patch excursion-set finder, predictive). See docs/embedded-simulator.md.
"""

from cosmo_sbi.simulators.embedded.simulate import (
    EmbeddedSettings,
    simulate_halos,
    simulate_lightcone,
    simulate_lightcones,
)

__all__ = ["EmbeddedSettings", "simulate_halos", "simulate_lightcone", "simulate_lightcones"]
