"""flowdiff: the library of the course book on flow matching and diffusion models.

Modules, one per idea (the chapter that introduces each is in its docstring):

- :mod:`flowdiff.distributions`: Gaussians, mixtures and 2-D toy data (Chapter 1)
- :mod:`flowdiff.dynamics`: ODEs and SDEs (Chapters 2 and 3)
- :mod:`flowdiff.solvers`: Euler, Heun, Euler–Maruyama (Chapters 2 and 3)
- :mod:`flowdiff.plotting`: figures and animations shared by the chapters
"""

__version__ = "0.1.0"
