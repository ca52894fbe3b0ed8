"""The controller's learning rules, their registry and their storage in a bundle.

Importing this package registers every rule (``qtrust``, ``logodds``, ``logodds-bins``) with
:func:`blackboard.controllers.base.register_controller`, so a stored table of any kind loads.
"""

from blackboard.controllers import ctxbins, logodds, qtrust  # noqa: F401  (registration on import)
