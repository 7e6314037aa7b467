"""Names of the training modes that the analysis treats specially, importable without torch or pandas."""

#: The mode every other mode is compared with (the reference of every paired comparison): plain cross-entropy on
#: the noisy labels (selfdistill.modes.CE), early-stopped on the noisy validation split or at its last epoch.
REFERENCE_MODE = "ce"
