"""The ``study_pipeline`` science (stdlib only, run inside ``urgentflow/base:1`` containers).

A steady 2-D heat-conduction study on the unit square: ``generate`` the problem (grid, Gaussian heat
sources, Dirichlet boundary temperatures, all from the parameters and a seed), ``solve`` it with
successive over-relaxation down to a relative residual, ``postprocess`` the field into statistics,
the discrete energy balance and a PNG map. ``python -m study <step>`` runs one step against the
object store (``study.transfer``); the modules ``heat``, ``post`` and ``png`` are pure.
"""
