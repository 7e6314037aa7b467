"""selfdistill: self-distillation vs early stopping on noisy labels, seen through the frequency principle.

The package is a plain library (no Snakemake import) so every step of the pipeline can be run and tested
from Python or a notebook; ``workflow/scripts`` only forward the Snakemake object to these functions.
"""

__version__ = "0.1.0"
