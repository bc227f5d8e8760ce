"""galseg: spiral arms in galaxy images, pixel by pixel, with U-Nets trained on GZ:3D masks."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("galseg")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

THRESHOLDS = (1, 2, 3, 4, 5, 6)
"""The paper's six confidence levels: a pixel is arm at level th if at least th volunteers drew it."""

STRUCTURES = ("spiral", "bar")
"""What GZ:3D volunteers outlined and galseg segments: spiral arms (HDU 3) and bars (HDU 4)."""
TARGETS = {"spiral": ("spiral",), "bar": ("bar",), "both": ("spiral", "bar")}
"""``--target`` -> the structures one run learns; ``both`` is one network with a head per structure."""


class GalsegError(Exception):
    """A problem with the user's input or setup, reported as one line (file and fix), not a traceback."""


__all__ = ["STRUCTURES", "TARGETS", "THRESHOLDS", "GalsegError", "__version__"]
