"""tenku: an open, self-hostable video generation system.

Layers (imports point down only): cli -> serve -> safety -> pipelines -> train -> eval
-> diffusion -> models -> world -> io.
"""

__version__ = "0.1.0"
