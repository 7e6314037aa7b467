"""Names of the training modes that the analysis treats specially, importable without torch or pandas."""

#: The mode every other mode is compared with (the reference of every paired comparison): plain cross-entropy on
#: the noisy labels (selfdistill.modes.CE), early-stopped on the noisy validation split or at its last epoch.
REFERENCE_MODE = "ce"

#: Modes that distil from another run of the same setting and seed: mode → the mode whose early-stopped network
#: (``model_early_stopped.pt``) is its teacher. The one place that says so: the train rule's input, the config
#: check and the training loop read it.
TEACHER_OF = {"distill_early_teacher": REFERENCE_MODE}
