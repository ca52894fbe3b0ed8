"""Class order, label names and the "fake is positive" convention, defined once.

Every model outputs softmax probabilities in ``CLASSES`` order; every metric treats ``fake``
as the positive class; every ``p_fake`` in the system is ``probs[:, FAKE_INDEX]``.
"""

from __future__ import annotations

REAL = "real"
FAKE = "fake"
# Index order of every model's output.
CLASSES: tuple[str, str] = (REAL, FAKE)
REAL_INDEX = 0
FAKE_INDEX = 1
# The positive class for precision/recall/AUC: a detector's job is to find fakes.
POSITIVE = FAKE


def label_to_index(label: str) -> int:
    """Maps a label name ("real"/"fake", any case) to its class index.

    Raises:
        ValueError: if the label is not one of ``CLASSES``.
    """
    key = str(label).strip().lower()
    if key not in CLASSES:
        raise ValueError(f"Unknown label {label!r}; expected one of {CLASSES}.")
    return CLASSES.index(key)
