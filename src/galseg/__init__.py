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
HEXAGON_MODES = ("paint", "keep")
"""What prepare and predict do with the MaNGA hexagon burned into GZ:3D images: paint it out (the
default: networks then never see it, and survey cutouts without one look like their training
images) or keep it."""
WORLD_NAMES = ("classic", "thick")
"""The synthetic worlds (``galseg synth --world``, :data:`galseg.synthetic.WORLDS`), the default first."""


class GalsegError(Exception):
    """A problem with the user's input or setup, reported as one line (file and fix), not a traceback."""


__all__ = [
    "HEXAGON_MODES",
    "STRUCTURES",
    "TARGETS",
    "THRESHOLDS",
    "WORLD_NAMES",
    "GalsegError",
    "__version__",
]
