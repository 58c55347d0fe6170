"""The one place that fixes how ages are scaled for the network.

The network regresses age / AGE_SCALE, so the study's test loss (MAE 0.047) is in these
units; everything shown to people is converted back to years.
"""

AGE_SCALE = 100.0

# The ages a manifest may hold (years): wider than any dataset's labels (UTKFace goes to 116),
# narrow enough that a typo (250, -40) is refused, not trained on.
MIN_AGE, MAX_AGE = 0, 150

# The distribution and ordinal heads' classes: whole years 0..MAX_CLASS_AGE. Training refuses
# older labels for those heads (clipping them would train a 120 as a 100 and calibrate
# intervals the head cannot reach).
MAX_CLASS_AGE = 100


def to_label(age_years):
    """Years -> the regression target (works on floats, numpy arrays and tensors)."""
    return age_years / AGE_SCALE


def to_years(label):
    """Regression output -> years."""
    return label * AGE_SCALE
