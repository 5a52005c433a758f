"""hvpzip: lossless image compression with a multiscale diffusion prior (W-PCDM style) and bits-back ANS."""
from .api import (Compressed, FormatError, ModelMismatchError, Model, compress, decompress, encode_image,
                  load_model, mode_of)

__version__ = "0.1.0"
__all__ = ["Compressed", "FormatError", "ModelMismatchError", "Model", "compress", "decompress", "encode_image",
           "load_model", "mode_of", "__version__"]
